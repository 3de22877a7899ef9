"""`fewtask-train analyze`: rapid learning or feature reuse, at both of MALTML's levels.

For trained runs (a sinusoid run folder; `fit` runs, or a demo folder holding them, with
fixed HDF5 episodes) and each held-out family: layer-by-layer similarity (linear CKA,
debiased CKA, SVCCA, PWCCA) of the activations on the goal validation inputs at theta,
theta' (after the meta-update) and phi (after the goal steps), and the freezing ablation
grid (meta-update and goal steps each adapting all / head / body). Everything is computed
by trainer/evaluation/analysis.py with the evaluation protocol's own meta-update and goal
steps. Writes, into --out:

- analysis.json (schema "fewtask-analysis" 1): ``methods[m].similarity[measure][pair][layer]``
  and ``methods[m].ablation.grid[meta][goal][metric]``, each ``{mean, ci95, diverged}``
  over held-out families (`stats.summarize`), plus the rule for intervals and subsampling;
- similarity-<measure>.png: per method a layer x pair heatmap, methods side by side;
- ablation.md: the grid as a table per method.

A `navigation`, `continual` or `continual-oml` run folder is analysed the same way from its
own held-out families and problems (trainer/experiments/analyze_domains.py): policies'
hidden layers and mean, the RLN/PLN layers; ablations over head/body or PLN/RLN.
`navigation-maml` and `sinusoid-maml` runs are refused with a one-line error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import typer

from fewtask_data import EpisodeStore, FewtaskError, io
from fewtask_data.sources import sinusoid as sinusoid_source
from trainer.algorithms import make_algorithm, resolve_impl
from trainer.domains.regression.sinusoid import eval_batches
from trainer.evaluation import analysis, plots, report, stats
from trainer.evaluation.activations import check_layers, default_layers
from trainer.evaluation.similarity import MEASURES
from trainer.experiments import navigation_maml, sinusoid_maml
from trainer.experiments.analyze_domains import domain_sections
from trainer.experiments import sinusoid as sinusoid_exp
from trainer.experiments.eval import check_episodes_fit, load_trained
from trainer.experiments.options import Config, option, parse_names, typer_command
from trainer.training import checkpoint as ckpt

SCHEMA, SCHEMA_VERSION = "fewtask-analysis", 1
INTERVALS = ("Per method, layer and pair: the mean over held-out families (goal tasks averaged within a family) and "
             "ci95 = 1.96 standard errors over families (normal approximation, trainer/evaluation/stats.py); "
             "diverged counts families whose value is not finite.")  # fmt: skip
DOMAIN_INTERVALS = ("Per method, layer and pair (and ablation cell): the mean over units ({unit}) and ci95 = 1.96 "
                    "standard errors over them (normal approximation, trainer/evaluation/stats.py); diverged counts "
                    "units whose value is not finite.")  # fmt: skip
DOMAIN_SUBSAMPLING = ("Probe inputs: {probes} A layer with more than max_rows rows keeps a uniform draw of max_rows of "
                      "them without replacement (torch.Generator seeded with seed + 1000 * family + goal task for "
                      "navigation, seed + problem index for continual runs), the same rows at all three points.")  # fmt: skip
UNSUPPORTED = (navigation_maml.EXPERIMENT, sinusoid_maml.EXPERIMENT)
SKIPPED = {"oracle": "its inputs carry the task's parameters (a different input layer); nothing to compare"}


@dataclass(kw_only=True)
class AnalyzeConfig(Config):
    """`fewtask-train analyze`'s options."""

    checkpoint: str = option(help="Run folders, comma-separated: a `sinusoid`, `navigation`, `continual` or "
                                  "`continual-oml` run (OUT of the command), `fit` runs (or their checkpoint.pt), or a "
                                  "folder of fit runs such as runs/demo.")
    episodes: Optional[str] = option(None, "Fixed held-out episodes (HDF5 from `fewtask-data episodes`) for fit runs; "
                                           "a sinusoid run uses its own held-out families.")
    out: Optional[str] = option(None, "Output folder (default: RUN/analysis of the first run).")
    methods: str = option("", "Comma-separated methods to analyze (default: every one found).")
    layers: str = option("", "Comma-separated module names to record (default: each block of the body, and the head).")
    measures: str = option(",".join(MEASURES), f"Comma-separated similarity measures from: {', '.join(MEASURES)}.")
    steps: int = option(10, "Goal steps from theta' to phi (and in the ablation grid); navigation: policy-gradient "
                            "steps; continual runs take one online pass over each problem instead.")
    max_families: int = option(200, "Held-out families (episodes, crops) analyzed, the first ones in order; 0 = all.")
    max_rows: int = option(4096, "Rows (inputs x positions) kept per layer, a seeded uniform draw; 0 = all.")
    batch_size: int = option(8, "Episodes evaluated together.", low=1)
    impl: str = option("auto", "auto (vmap for sinusoid MLPs; conv nets: loop on CPU), vmap or loop: same numbers, "
                               "different speed.")
    seed: int = option(0, "Seed of the row subsampling.")
    threads: int = option(1, "torch intra-op threads.", low=1)


def _sinusoid_config(folder: Path) -> sinusoid_exp.SinusoidConfig | None:
    """The settings of a finished `sinusoid` run in ``folder`` (None: not one)."""
    path = folder / "results.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    experiment = saved.get("experiment", "")
    if experiment in UNSUPPORTED:
        raise FewtaskError(f"{folder} holds a run of {experiment!r}; analyze takes `sinusoid`, `navigation`, "
                           "`continual`, `continual-oml` and `fit` runs (the demo's)")  # fmt: skip
    if experiment != sinusoid_exp.EXPERIMENT:
        return None  # e.g. the demo's results.json beside its fit runs
    fields = sinusoid_exp.SinusoidConfig.__dataclass_fields__
    config = {k: v for k, v in saved["config"].items() if k in fields}
    seeds = saved["config"].get("seeds") or [config.get("seed", 0)]
    out = folder if len(seeds) == 1 else folder / f"seed-{seeds[0]}"  # several seeds: the first one's models
    return sinusoid_exp.SinusoidConfig(**{**config, "out": out, "seed": seeds[0], "seeds": "", "eval_only": True,
                                          "resume": False, "progress": False, "compile": False})  # fmt: skip


def sinusoid_methods(s: sinusoid_exp.SinusoidConfig, wanted: list[str] | None):
    """(methods to analyze, skipped with reasons, held-out family batches) of a sinusoid run."""
    spec = sinusoid_source.SinusoidSpec()
    held_out = eval_batches(s.eval_seed, s.eval_families, s.shape(s.eval_val), spec)
    found = [m for m in sinusoid_exp.METHODS if (s.out / m).is_dir() and (wanted is None or m in wanted)]
    methods, skipped = [], {}
    for name in found:
        if name in SKIPPED:
            skipped[name] = SKIPPED[name]
        elif name == "maml-oracle":
            algo, params, sizes, _ = sinusoid_exp.train_maml_oracle(s, held_out)
            methods.append(analysis.Analyzed(name, algo, params, sizes, {}, per_family=True))
        else:
            algo, params, sizes, _, _ = sinusoid_exp.train_method(name, s, spec)
            methods.append(analysis.Analyzed(name, algo, params, sizes, {}))
    return methods, skipped, held_out


def fit_runs(path: Path) -> list[Path]:
    """The `fit` runs at ``path``: itself, or its subfolders holding a checkpoint."""
    if path.is_file() or (path / ckpt.CHECKPOINT_NAME).exists():
        return [path]
    runs = sorted(p for p in path.iterdir() if (p / ckpt.CHECKPOINT_NAME).exists()) if path.is_dir() else []
    if not runs:
        raise FewtaskError(f"no run at {path}; pass a `fit` run folder, a folder of them (e.g. runs/demo) or a "
                           "`sinusoid`, `navigation`, `continual` or `continual-oml` run folder")  # fmt: skip
    return runs


def fit_method(run: Path, store: EpisodeStore) -> analysis.Analyzed:
    """A `fit` checkpoint as the protocol evaluates it (as `fewtask-train eval` loads it)."""
    model, record, sizes, _ = load_trained(run, torch.device("cpu"), store.shape.ways)
    check_episodes_fit(store, record["model"])
    hp = {k: v for k, v in record["algorithm"].items() if k not in ("name", "compile", "impl")}
    hp["meta_reduction"] = hp.get("meta_reduction", "mean")  # checkpoints from before the option used the mean
    name = record["algorithm"]["name"]
    algo = make_algorithm(name, model, **hp, impl="vmap")
    params = {k: v.detach() for k, v in model.named_parameters()}
    return analysis.Analyzed(name, algo, params, sizes, dict(model.named_buffers()))


def image_methods(cfg: AnalyzeConfig, folders: list[Path], wanted: list[str] | None):
    """(methods, skipped, episode batches) of `fit` runs on ``cfg.episodes``."""
    runs = [run for folder in folders for run in fit_runs(folder)]  # a folder that is no run fails first
    if not cfg.episodes:
        raise FewtaskError("fit runs need --episodes EPISODES.h5 (fixed held-out episodes from `fewtask-data episodes`)")
    if not Path(cfg.episodes).exists():
        raise FewtaskError(f"no episodes file {cfg.episodes}; write one with `fewtask-data episodes ... --out FILE.h5`")
    with EpisodeStore(Path(cfg.episodes)) as store:
        methods = [fit_method(run, store) for run in runs]
        count = len(store) if cfg.max_families == 0 else min(cfg.max_families, len(store))
        batches = [store.batch(i, min(i + cfg.batch_size, count)) for i in range(0, count, cfg.batch_size)]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise FewtaskError(f"two runs of the same method ({', '.join(names)}); analyze one run per method at a time")
    return [m for m in methods if wanted is None or m.name in wanted], {}, batches


def load_methods(cfg: AnalyzeConfig):
    """(methods, skipped, held-out batches, source record) from ``cfg.checkpoint``."""
    folders = [Path(p.strip()) for p in cfg.checkpoint.split(",") if p.strip()]
    if not folders:
        raise FewtaskError("--checkpoint needs at least one run folder")
    wanted = [m.strip() for m in cfg.methods.split(",") if m.strip()] or None
    s = _sinusoid_config(folders[0]) if folders[0].is_dir() else None
    if s is not None:
        if len(folders) > 1 or cfg.episodes:
            raise FewtaskError("a sinusoid run carries its own held-out families: pass one run folder and no --episodes")
        methods, skipped, batches = sinusoid_methods(s, wanted)
        source = {"kind": "sinusoid", "run": str(folders[0]), "seed": s.seed, "eval_seed": s.eval_seed}
        batches = _first(batches, cfg.max_families)
    else:
        methods, skipped, batches = image_methods(cfg, folders, wanted)
        source = {"kind": "fit", "runs": [str(f) for f in folders], "episodes": str(cfg.episodes)}
    if not methods:
        raise FewtaskError(f"no method to analyze in {cfg.checkpoint}" + (f" named {cfg.methods}" if wanted else ""))
    return methods, skipped, batches, source


def _first(batches: list, count: int) -> list:
    """The first ``count`` families of ``batches`` (all when 0)."""
    if count == 0:
        return batches
    out, left = [], count
    for b in batches:
        if left <= 0:
            break
        out.append(b if len(b) <= left else _head(b, left))
        left -= len(b)
    return out


def _head(b, n: int):
    """The first ``n`` families of a FamilyBatch."""
    cut = lambda t: None if t is None else t[:n]  # noqa: E731
    return replace(b, meta_x=b.meta_x[:n], meta_y=b.meta_y[:n], goal_x=b.goal_x[:n], goal_y=b.goal_y[:n],
                   families=b.families[:n], identities=b.identities[:n], meta_info=cut(b.meta_info),
                   goal_info=cut(b.goal_info))  # fmt: skip


def analyze_method(m: analysis.Analyzed, batches, cfg: AnalyzeConfig, measures: list[str], impl: str) -> dict:
    """One method's section of analysis.json."""
    layers = check_layers(m.algo.model, [x.strip() for x in cfg.layers.split(",") if x.strip()]
                          or default_layers(m.algo.model))  # fmt: skip
    sims = analysis.similarities(m, batches, layers, measures, cfg.steps, impl, cfg.max_rows, cfg.seed)
    grid = analysis.ablation_grid(m, batches, cfg.steps, impl)
    metric = "accuracy" if "accuracy" in grid["none"]["all"] else "loss"
    return {
        "algorithm": type(m.algo).__name__, "adapts": m.algo.adapt, "finetune_level": m.algo.finetune_level,
        "meta_reduction": m.algo.meta_reduction, "per_family_params": m.per_family, "layers": layers,
        "similarity": {s: {p: {layer: stats.summarize(v) for layer, v in per.items()} for p, per in sims[s].items()}
                       for s in measures},
        "ablation": {"metric": metric, "rows": "meta-update adapts", "columns": "goal steps adapt",
                     "grid": {r: {c: {k: stats.summarize(v) for k, v in cell.items()} for c, cell in row.items()}
                              for r, row in grid.items()}},
    }  # fmt: skip


def _cell(summary: dict, scale: float) -> str:
    """mean ± ci95; where some units diverged, the summary of the others and their count."""
    if summary.get("diverged"):
        return f"{scale * summary['finite_mean']:.3g} ± {scale * summary['finite_ci95']:.2g} ({summary['diverged']} diverged)"
    return f"{scale * summary['mean']:.3g} ± {scale * summary['ci95']:.2g}"


def ablation_lines(name: str, section: dict, steps: int) -> list[str]:
    """One method's ablation grid as a markdown table (mean ± ci95)."""
    metric = section["ablation"]["metric"]
    scale, unit = (100, " %") if metric == "accuracy" else (1, "")
    level = "online pass" if section["ablation"]["columns"].startswith("online") else "goal steps"
    after = "one online pass" if level == "online pass" else f"{steps} goal steps"
    lines = [f"**{name}**: goal validation {metric}{unit} after {after} (rows: the meta-update adapts; "
             f"columns: what the {level} adapt{'s' if level == 'online pass' else ''})", ""]  # fmt: skip
    columns = list(next(iter(section["ablation"]["grid"].values())))
    lines += [f"| meta-update \\ {level} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, cells in section["ablation"]["grid"].items():
        text = [_cell(c[metric], scale) for c in cells.values()]
        lines.append(f"| {row if row != 'none' else 'none (no meta-update)'} | " + " | ".join(text) + " |")
    return lines + [""]


def run_analyze(cfg: AnalyzeConfig) -> dict:
    """Analyze every method of the runs; write analysis.json, the heatmaps and ablation.md."""
    torch.set_num_threads(cfg.threads)
    measures = parse_names(cfg.measures, MEASURES, "similarity measure")
    impl = resolve_impl(cfg.impl, torch.device("cpu"))  # a bad --impl fails before any work
    first = Path(cfg.checkpoint.split(",")[0].strip())
    out_dir = Path(cfg.out) if cfg.out else (first if first.is_dir() else first.parent) / "analysis"
    wanted = [m.strip() for m in cfg.methods.split(",") if m.strip()] or None
    domain = domain_sections(first, cfg, measures, wanted) if "," not in cfg.checkpoint.strip(",") else None
    if domain is not None:  # a navigation or continual run folder: its own families and problems
        sections, skipped, source, units = domain
        if not sections:
            raise FewtaskError(f"no method to analyze in {cfg.checkpoint}" + (f" named {cfg.methods}" if wanted else ""))
        unit = source.pop("unit")
    else:
        methods, skipped, batches, source = load_methods(cfg)
        if cfg.impl == "auto" and source["kind"] == "sinusoid":
            impl = "vmap"  # the MLP: vmap is the fast path, as `sinusoid` evaluates it
        units, unit = sum(len(b) for b in batches), "held-out family"
        sections = {}
        for m in methods:
            typer.echo(f"analyzing {m.name} on {units} held-out families")
            sections[m.name] = analyze_method(m, batches, cfg, measures, impl)
    out = io.ensure_writable(out_dir)
    result = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "experiment": "rapid learning or feature reuse (issue 23)",
        "source": source, "unit": unit, "families": units, "steps": cfg.steps,
        "measures": measures, "pairs": {p: list(v) for p, v in analysis.PAIRS.items()},
        "intervals": INTERVALS if domain is None else DOMAIN_INTERVALS.format(unit=unit),
        "subsampling": analysis.SUBSAMPLING if domain is None else DOMAIN_SUBSAMPLING.format(probes=source["probes"]), "config": report.json_safe(cfg), "methods": sections, "skipped": skipped,
    }  # fmt: skip
    io.write_json(out / "analysis.json", result)
    for s in measures:
        plots.similarity_heatmaps(out / f"similarity-{s}.png", {n: sec["similarity"][s] for n, sec in sections.items()},
                                  s, list(analysis.PAIRS), {n: sec["layers"] for n, sec in sections.items()})  # fmt: skip
    table = [line for n, sec in sections.items() for line in ablation_lines(n, sec, cfg.steps)]
    io.write_bytes(out / "ablation.md", "\n".join(["# Freezing ablations", "", *table]).encode())
    typer.echo("\n".join(table))
    typer.echo(f"wrote {out / 'analysis.json'}, similarity-*.png and ablation.md")
    return result


analyze_command = typer_command(AnalyzeConfig, run_analyze, """Rapid learning or feature reuse: layer similarity
    (CKA, SVCCA, PWCCA) between theta, theta' (after the meta-update) and phi (after the
    goal steps), and the freezing ablation grid, on held-out families.""")
