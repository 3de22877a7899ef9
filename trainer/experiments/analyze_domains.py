"""`fewtask-train analyze` on navigation and continual run folders (issue 23).

A `fewtask-train navigation` run (MALTML, FO-MALTML, MAML, pretrain on crop families), a
`fewtask-train continual` run (MALTML-continual and OML on frequency families) or a
`fewtask-train continual-oml` run (OML and its oracle on the plain benchmark) is analysed
from its own folder: its results.json gives the settings, each method's checkpoint the
parameters (and learned step sizes), and the held-out families, goals and problems are
rebuilt from the same seeds as the run's evaluation. The library code is
`trainer/evaluation/rl_analysis.py` and `trainer/evaluation/continual_analysis.py`; each
method's section has the layout of the other runs' (similarity per measure, pair and
layer; the ablation grid), so analyze.py writes it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import (
    function_pool,
    load_family_definitions,
    sample_problems,
)
from fewtask_data.sources.navigation import goals_in, load_navigation_families
from trainer.core.step_sizes import level_lrs
from trainer.domains.continual.oml import MALTMLContinual
from trainer.domains.rl.env import env_maker
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import continual_analysis as cont
from trainer.evaluation import report, rl_analysis, stats
from trainer.evaluation.rl import own_step_sizes
from trainer.experiments import continual, continual_oml, navigation
from trainer.models import signature
from trainer.training import checkpoint as ckpt
from trainer.training.policy_loop import signature_of

KINDS = {navigation.EXPERIMENT: "navigation", continual.EXPERIMENT: "continual", continual_oml.EXPERIMENT: "continual-oml"}
SKIPPED = {
    "oracle (navigation)": "its observation carries the goal: nothing to adapt, no family level",
    "pretrain (continual-oml)": "i.i.d. regression with its own frozen split: no meta-learned online level",
    "scratch": "an untrained network: nothing meta-learned to compare",
}


def _config(cls, saved: dict, folder: Path, **changes):
    fields = cls.__dataclass_fields__
    config = {k: v for k, v in saved["config"].items() if k in fields}
    return cls(**{**config, "out": folder, **changes})


def _summaries(sims: dict, grid: dict) -> tuple[dict, dict]:
    similarity = {s: {p: {layer: stats.summarize(v) for layer, v in per.items()} for p, per in sims[s].items()}
                  for s in sims}  # fmt: skip
    cells = {r: {c: {k: stats.summarize(v) for k, v in cell.items()} for c, cell in row.items()} for r, row in grid.items()}
    return similarity, cells


def _layers(cfg) -> list[str]:
    return [x.strip() for x in cfg.layers.split(",") if x.strip()]


def _first(tensor: torch.Tensor, count: int) -> torch.Tensor:
    return tensor if count == 0 else tensor[:count]


def navigation_sections(folder: Path, saved: dict, cfg, measures: list[str], wanted: list[str] | None):
    """(sections, skipped, source, families) of a `navigation` run folder."""
    c = _config(navigation.NavigationConfig, saved, folder, eval_only=True, resume=False)
    c.check()
    found = [m for m in navigation.FAMILY_METHODS if (folder / m).is_dir() and (wanted is None or m in wanted)]
    seed = c.seed_list[0]
    crops = load_navigation_families(Path(c.families) if c.families else folder / "families")
    test = crops["test"][: c.test_families or None]
    eval_gen = torch.Generator().manual_seed(c.eval_seed)
    meta_goals, goal_goals = goals_in(test, c.tasks, eval_gen), goals_in(test, c.goal_tasks, eval_gen)
    test, meta_goals, goal_goals = (_first(t, cfg.max_families) for t in (test, meta_goals, goal_goals))
    sections, skipped = {}, {}
    for method in found:
        if method == "oracle":
            skipped[method] = SKIPPED["oracle (navigation)"]
            continue
        settings = c.settings(alpha=c.alpha, beta=c.beta, gamma=c.gamma, **({"order": 1} if method == "fo-maltml" else {}))
        policy = GaussianMLP(2, 2, c.hidden_sizes)
        theta0 = policy.init(torch.Generator().manual_seed(seed))
        state = ckpt.load(folder / method / f"seed-{seed}" / ckpt.CHECKPOINT_NAME, signature_of(theta0))
        theta = {k: v.detach() for k, v in state["model"].items()}
        goal_lr, own = own_step_sizes(state.get("step_sizes", {}), navigation.GOAL_LEVEL.get(method, "gamma"), c.gamma)
        layers = rl_analysis.check_policy_layers(policy, _layers(cfg))
        make_env = env_maker(c.horizon, False)
        typer.echo(f"analyzing {method} (seed {seed}) on {len(test)} held-out crop families")
        common = (make_env, policy, settings, theta, goal_lr, own)
        sims = rl_analysis.similarities(*common, test, meta_goals, goal_goals, layers, measures, cfg.steps,
                                        c.eval_seed + seed, cfg.max_rows, cfg.seed)  # fmt: skip
        grid = rl_analysis.ablation_grid(*common, meta_goals, goal_goals, cfg.steps, c.eval_seed + seed)
        similarity, cells = _summaries(sims, grid)
        sections[method] = {
            "algorithm": method, "seed": seed, "iterations": state["step"], "layers": layers,
            "head": sorted(policy.head_names()), "body": sorted(rl_analysis.subset(policy, "body")),
            "step_sizes": "learned" if own else {"alpha": c.alpha, "beta": c.beta, "goal": goal_lr},
            "similarity": similarity,
            "ablation": {"metric": "return", "rows": "meta-update adapts", "columns": "goal steps adapt", "grid": cells},
        }  # fmt: skip
    source = {"kind": "navigation", "run": str(folder), "seed": seed, "eval_seed": c.eval_seed, "probes": rl_analysis.PROBES,
              "unit": "held-out crop family (goal tasks averaged)", "tasks": c.tasks, "goal_tasks": c.goal_tasks}  # fmt: skip
    return sections, skipped, source, len(test)


def _continual_params(folder: Path, method: str, model) -> tuple[dict, dict]:
    state = ckpt.load(folder / method / ckpt.CHECKPOINT_NAME, signature(model))
    return {k: v.detach() for k, v in state["model"].items()}, state.get("step_sizes", {})


def _online_lr(saved: dict, method: str, protocol: str, sizes: dict, level: str):
    """The online step the run evaluated ``method`` with: the number it chose on its
    validation problems, or its learned sizes."""
    details = saved["extra"]["methods"][method]
    lr = (details[protocol] if protocol else details)["inner_lr"]
    return level_lrs(sizes, level) if lr == "learned" else float(lr)


def continual_sections(folder: Path, saved: dict, kind: str, cfg, measures: list[str], wanted: list[str] | None):
    """(sections, skipped, source, units) of a `continual` or `continual-oml` run folder."""
    families = kind == "continual"
    cls = continual.ContinualFamiliesConfig if families else continual_oml.ContinualOMLConfig
    c = _config(cls, saved, folder, device="cpu")
    methods = continual.FAMILY_METHODS if families else continual_oml.METHODS
    found = [m for m in methods if (folder / m).is_dir() or m == "scratch"]
    found = [m for m in found if m in saved["methods"] and (wanted is None or m in wanted)]
    if families:
        defs = load_family_definitions(c.families)
        spec, pool, freqs = defs.spec, defs.pools["test"], defs.frequencies["test"]
    else:
        spec, freqs = c.spec(), [None]
        pool = function_pool(c.data_seed, "eval", spec)
    count = cfg.max_families or len(freqs)
    sections, skipped = {}, {}
    for method in found:
        if method in ("pretrain", "scratch"):
            skipped[method] = SKIPPED["scratch" if method == "scratch" else "pretrain (continual-oml)"]
            continue
        model = c.net(spec)
        params, sizes = _continual_params(folder, method, model)
        maltml = method == "maltml"
        algo = MALTMLContinual(model, lr=c.inner_lr, beta=getattr(c, "beta", 0.003), meta_steps=getattr(c, "meta_steps", 1),
                               order=getattr(c, "order", 3), meta_reduction=getattr(c, "meta_reduction", "sum"))  # fmt: skip
        meta_sizes = sizes if maltml and c.learn_step_sizes else None
        protocol = (report.WITH if maltml else report.WITHOUT) if families else None
        lr = _online_lr(saved, method, protocol, sizes, "gamma" if maltml else "alpha")
        rows = cont.META if maltml else ("none",)
        layers = cont.check_layers(model.depth, _layers(cfg))
        groups = []
        for j, w in enumerate(freqs[:count]):
            if families:
                sets = continual.eval_sets(c, spec, pool, w, offset=1_000 * (j + 1))
                gen = torch.Generator().manual_seed(continual.EVAL_SEED - 1 - j)
                meta = sample_problems(gen, pool, c.meta_problems, spec, [w] * c.meta_problems).tensors()
            else:
                sets = continual.eval_sets(c, spec, pool)
            primes = {r: (params if r == "none" else cont.meta_updated(algo, params, meta, r, meta_sizes)) for r in rows}
            groups.append((params, primes, *sets))
        typer.echo(f"analyzing {method} on {sum(len(g[2]) for g in groups)} held-out problems")
        point = "all" if maltml else "none"
        sims = cont.similarities([(g[0], g[1][point], g[2], g[3]) for g in groups], lr, model.split, model.depth, layers,
                                 measures, cfg.max_rows, cfg.seed)  # fmt: skip
        learned = isinstance(lr, (dict, list))
        lrs = dict.fromkeys(cont.ONLINE, lr) if learned else cont.choose_online_lrs(groups, point, c.grid(), model.split, model.depth)
        lrs["pln"] = lr  # the run's own choice (the same rule, on the same validation problems)
        grid = cont.ablation_grid(groups, lrs, model.split, model.depth, rows)
        similarity, cells = _summaries(sims, grid)
        sections[method] = {
            "algorithm": "MALTMLContinual" if maltml else "OML", "layers": layers, "split": model.split,
            "rln": layers[: model.split], "pln": layers[model.split :], "online_lr": "learned" if learned else lrs,
            "theta_prime": "after the family meta-update V_beta" if maltml else "= theta (OML has no family meta-update)",
            "similarity": similarity,
            "ablation": {"metric": "mse", "rows": "meta-update adapts", "columns": "online pass adapts", "grid": cells},
        }  # fmt: skip
    units = sum(len(g[2]) for g in groups) if sections else 0  # the last method's: every method has the same
    source = {"kind": kind, "run": str(folder), "probes": cont.PROBES,
              "unit": "held-out evaluation problem" + (" (of the held-out families)" if families else ""),
              "families": len(freqs[:count]) if families else None}  # fmt: skip
    return sections, skipped, source, units


def domain_sections(folder: Path, cfg, measures: list[str], wanted: list[str] | None):
    """The sections of a navigation or continual run folder, or None when ``folder`` holds neither."""
    path = folder / "results.json"
    if not folder.is_dir() or not path.exists():
        return None
    saved = json.loads(path.read_text())
    kind = KINDS.get(saved.get("experiment", ""))
    if kind is None:
        return None
    if cfg.episodes:
        raise FewtaskError(f"a {kind} run carries its own held-out families: pass its folder and no --episodes")
    if kind == "navigation":
        return navigation_sections(folder, saved, cfg, measures, wanted)
    return continual_sections(folder, saved, kind, cfg, measures, wanted)
