"""`fewtask-train navigation-maml` and `navigation`.

`navigation-maml`: MAML's 2D navigation benchmark (Finn et al. 2017,
section 5.3), end to end: train MAML, a pretrained policy and an oracle with TRPO, then
evaluate them and a random policy on fixed test goals after 0..3 policy-gradient steps.

Defaults are the published settings: 20 trajectories per task, 20 tasks per meta-batch,
inner step 0.1, horizon 100, one inner step, TRPO with max KL 0.01, 100 iterations, 40
test goals. (maml_rl's own script uses inner step 0.5: see docs/navigation.md.)

`navigation`: MALTML, FO-MALTML, MAML, pretrain and oracle on crop families
(fewtask-data build navigation-families), evaluated on held-out crops with and without
the meta-update.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError, io
from trainer.domains.rl import dice
from trainer.domains.rl.env import GOAL_RANGE, PointEnv, check_horizon
from trainer.domains.rl.methods import RLSettings, Sampler, direct, maltml, maml, meta_update
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import plots
from trainer.evaluation.rl import describe, finetune_curves, paired_summary, summary
from trainer.experiments.options import parse_seeds, methods_option, option, parse_ints, parse_names, run_option, step_size_option, typer_command
from trainer.training.policy_loop import OPTIMIZERS, RLTrainConfig, train_policy

# The published mean returns on 40 test goals after 0/1/2/3 policy-gradient steps.
PUBLISHED = {
    "maml": [-40.41, -11.68, -3.33, -3.23],
    "pretrain": [-40.81, -19.70, -11.70, -8.47],
    "random": [-82.69, -58.00, -53.77, -46.78],
    "oracle": [-2.29],
}
MAML_METHODS = ("maml", "pretrain", "random", "oracle")


@dataclass(kw_only=True)
class NavigationCommon:
    """Options shared by the navigation commands."""

    iterations: int = option(100, "Meta-iterations (TRPO steps) per method and seed.")
    seeds: str = option("0,1,2", "Comma-separated training seeds (intervals pool goals over seeds).")
    trajectories: int = option(20, "Trajectories per task at every level.")
    horizon: int = option(100, "Steps per trajectory.")
    estimator: str = option("dice", f"Meta-gradient estimator: {', '.join(dice.ESTIMATORS)} (exact is unbiased but "
                                    "noisy; docs/navigation.md).")  # fmt: skip
    optimizer: str = option("trpo", f"Outer optimizer: {', '.join(OPTIMIZERS)}.")
    max_kl: float = option(0.01, "TRPO's KL limit.")
    lr: float = run_option("lr", help="Adam's step (--optimizer adam).")
    hidden: str = option("100,100", "Policy hidden layer sizes.")
    eval_steps: int = option(3, "Evaluate after 0..N policy-gradient steps.")
    eval_seed: int = run_option("eval_seed", 1234, "Seed of the test goals and evaluation trajectories.")
    eval_mean_action: bool = option(False, "Also score every evaluation step by the policy's mean action (no exploration "
                                           "noise; same adaptation): results.json's returns_mean_action.",
                                    "--eval-mean-action/--no-eval-mean-action")  # fmt: skip
    max_minutes: float = option(0.0, "Stop each method's training after this many minutes (checkpointed; 0: no limit).")
    checkpoint_every: int = run_option("checkpoint_every", 10, "Checkpoint every N iterations.")
    resume: bool = run_option("resume")
    eval_only: bool = run_option("eval_only")
    threads: int = run_option("threads")

    def check(self) -> None:
        check_horizon(self.horizon)
        if self.trajectories < 1 or self.iterations < 0 or self.eval_steps < 0 or self.threads < 1:
            raise FewtaskError("--trajectories and --threads must be >= 1, --iterations and --eval-steps >= 0")
        if self.estimator not in dice.ESTIMATORS:
            raise FewtaskError(f"unknown estimator {self.estimator!r}; choose from {', '.join(dice.ESTIMATORS)}")
        self.seed_list = parse_seeds(self.seeds)
        self.hidden_sizes = tuple(parse_ints(self.hidden, "--hidden"))
        RLTrainConfig(0, Path("."), optimizer=self.optimizer, max_kl=self.max_kl, lr=self.lr)  # validates them

    def train_config(self, out: Path, seed: int) -> RLTrainConfig:
        return RLTrainConfig(self.iterations, out, seed, self.optimizer, self.max_kl, self.lr, self.checkpoint_every,
                             self.resume, 60 * self.max_minutes)  # fmt: skip


@dataclass(kw_only=True)
class NavigationMamlConfig(NavigationCommon):
    """`fewtask-train navigation-maml`'s options (the published MAML settings)."""

    out: Path = option(Path("runs/navigation-maml"), "Output folder: one subfolder per method and seed, results.json, PNGs.")
    methods: str = methods_option(MAML_METHODS)
    tasks: int = option(20, "Goals per meta-batch.")
    alpha: float = option(0.1, "Inner policy-gradient step (training and evaluation).")
    test_goals: int = option(40, "Test goals (the same for every method and seed).")
    eval_alphas: str = option("", "Evaluation step sizes, one per step (e.g. 0.5,0.25,0.25 as in maml_rl's "
                                  "test_maml_point.py); empty: --alpha for every step.")  # fmt: skip
    eval_trajectories: int = option(0, "Trajectories per goal and evaluation step (maml_rl's test: 40); 0: --trajectories.")

    def check(self) -> None:
        super().check()
        if self.eval_trajectories < 0:
            raise FewtaskError("--eval-trajectories must be >= 0 (0: --trajectories)")
        self.eval_step_sizes()

    def eval_step_sizes(self) -> list[float]:
        """One step size per evaluation step."""
        if not self.eval_alphas.strip():
            return [self.alpha] * self.eval_steps
        try:
            rates = [float(v) for v in self.eval_alphas.split(",") if v.strip()]
        except ValueError:
            rates = []
        if len(rates) != self.eval_steps or min(rates, default=0) <= 0:
            raise FewtaskError(f"--eval-alphas needs {self.eval_steps} positive step sizes (one per --eval-steps), "
                               f"got {self.eval_alphas!r}")  # fmt: skip
        return rates


def _row(r: dict) -> str:
    """A summary as mean±ci95 per step; where adaptations diverged, the mean of the rest."""
    return " / ".join(f"{a:.1f}±{h:.1f}" if not d else f"{fa:.1f} without {d} diverged"
                      for a, h, d, fa in zip(r["mean"], r["ci95"], r["diverged"], r["finite_mean"]))  # fmt: skip


def uniform_goals(generator: torch.Generator, count: int) -> torch.Tensor:
    """MAML's goals: uniform in [-0.5, 0.5]^2."""
    return (torch.rand(count, 2, generator=generator) * 2 - 1) * GOAL_RANGE


def env_maker(horizon: int, oracle: bool):
    return lambda goals, n: PointEnv(goals, n, horizon, oracle)


def _progress(label: str):
    def show(iteration: int, line: dict) -> None:
        typer.echo(f"{label} it {iteration}: return {line.get('returns_before', 0):.1f} -> {line.get('returns_after', 0):.1f} "
                   f"kl {line.get('kl', 0):.4f} ({line['elapsed_s']:.0f}s)")  # fmt: skip

    return show


def _trained(folder: Path, theta: dict, config: RLTrainConfig, label: str, eval_only: bool, train) -> tuple[dict, dict]:
    """Train (or with --eval-only load) one policy; returns (parameters, budget record)."""
    from trainer.training import checkpoint as ckpt
    from trainer.training.policy_loop import signature_of

    if eval_only:
        state = ckpt.load(folder / ckpt.CHECKPOINT_NAME, signature_of(theta))
        params, iterations, seconds = state["model"], state["step"], state.get("seconds", 0.0)
    else:
        t0 = time.perf_counter()
        params, iterations = train()
        seconds = time.perf_counter() - t0
        if config.resume and (folder / ckpt.CHECKPOINT_NAME).exists():
            seconds = ckpt.load(folder / ckpt.CHECKPOINT_NAME)["seconds"]
    return params, {"iterations": iterations, "seconds": round(seconds, 1), "folder": str(folder)}


def learning_curve(folder: Path) -> list[float]:
    """Mean post-update return per logged iteration (metrics.jsonl)."""
    path = folder / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line).get("returns_after") for line in lines]


def learning_figure(path: Path, budgets: dict[str, list[dict]], title: str) -> None:
    """Mean post-update training return per iteration (first seed of each trained method)."""
    curves = {m: {"mean": b[0]["learning_curve"], "ci95": [0.0] * len(b[0]["learning_curve"])}
              for m, b in budgets.items() if b and b[0].get("learning_curve")}  # fmt: skip
    if curves:
        plots.curve_figure(path, curves, title, "meta-iteration", "training return after adaptation")


def run_navigation_maml(c: NavigationMamlConfig) -> None:
    c.check()
    methods = parse_names(c.methods, MAML_METHODS)
    if c.tasks < 1 or c.test_goals < 2:
        raise FewtaskError("--tasks must be >= 1 and --test-goals >= 2 (for an interval)")
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    settings = RLSettings(trajectories=c.trajectories, alpha=c.alpha, estimator=c.estimator)
    eval_settings = replace(settings, trajectories=c.eval_trajectories or c.trajectories)
    eval_rates = c.eval_step_sizes()
    test_goals = uniform_goals(torch.Generator().manual_seed(c.eval_seed), c.test_goals)
    curves: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    quiet: dict[str, list[torch.Tensor]] = {m: [] for m in methods}  # --eval-mean-action
    budgets: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in c.seed_list:
        for method in methods:
            oracle = method == "oracle"
            policy = GaussianMLP(4 if oracle else 2, 2, c.hidden_sizes)
            theta = policy.init(torch.Generator().manual_seed(seed))
            make_env = env_maker(c.horizon, oracle)
            folder = out / method / f"seed-{seed}"
            if method == "random":
                params, budget = theta, {"iterations": 0}
            else:
                step = maml if method == "maml" else direct

                def objective(sampler, p, gen, graph, step=step):
                    return step(sampler, p, uniform_goals(gen, c.tasks), graph)

                config = c.train_config(folder, seed)
                params, budget = _trained(folder, theta, config, method, c.eval_only, lambda: train_policy(
                    theta, objective, lambda gen: Sampler(make_env, policy, settings, gen), config, method,
                    _progress(f"{method} seed {seed}")))  # fmt: skip
                budget["learning_curve"] = learning_curve(folder)
            sampler = Sampler(make_env, policy, eval_settings, torch.Generator().manual_seed(c.eval_seed + seed))
            curve, still = finetune_curves(sampler, params, test_goals, eval_rates, c.eval_steps, c.eval_mean_action)
            curves[method].append(curve)
            if still is not None:
                quiet[method].append(still)
                typer.echo(f"{method} seed {seed}: mean-action return after 0..{c.eval_steps} steps {describe(quiet[method][-1])}")
            budgets[method].append({"seed": seed, **budget})
            typer.echo(f"{method} seed {seed}: return after 0..{c.eval_steps} steps {describe(curve)}")
    pooled = {m: torch.cat(v) for m, v in curves.items()}
    results = {m: summary(v) for m, v in pooled.items()}
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(c).items()},
        "steps": list(range(c.eval_steps + 1)),
        "returns": results,
        "per_seed_means": {m: [x.mean(0).tolist() for x in v] for m, v in curves.items()},
        "returns_mean_action": {m: summary(torch.cat(v)) for m, v in quiet.items() if v},
        "paired_vs_pretrain_mean_action": {m: paired_summary(torch.cat(quiet[m]), torch.cat(quiet["pretrain"]))
                                           for m in methods if quiet[m] and quiet.get("pretrain") and m != "pretrain"},
        "paired_vs_pretrain": {m: paired_summary(pooled[m], pooled["pretrain"]) for m in pooled if "pretrain" in pooled and m != "pretrain"},
        "published": {m: PUBLISHED[m] for m in methods},
        "training": budgets,
        "interval": "95% normal interval over test goals x seeds (trainer.evaluation.protocol.summarize); diverged: "
                    "adaptations with a non-finite return, finite_*: the summary without them",
    }  # fmt: skip
    io.write_json(out / "results.json", report)
    plots.curve_figure(out / "returns_vs_steps.png", results, "2D navigation, 40 test goals", "policy-gradient steps",
                       "mean return")  # fmt: skip
    learning_figure(out / "learning_curves.png", budgets, "2D navigation: training")
    for m in methods:
        typer.echo(f"{m:>8}: {_row(results[m])}   (published {' / '.join(str(v) for v in PUBLISHED[m])})")  # fmt: skip
        if quiet[m]:
            typer.echo(f"{'':>8}  mean action: {_row(report['returns_mean_action'][m])}")
    typer.echo(f"wrote {out / 'results.json'}")


navigation_maml_command = typer_command(NavigationMamlConfig, run_navigation_maml, """MAML's 2D navigation benchmark (Finn et al. 2017, section 5.3).

    Trains MAML, a pretrained policy and an oracle with TRPO, evaluates them and a
    random policy on fixed test goals after 0..3 policy-gradient steps (95% intervals
    over goals and seeds), and writes results.json and returns_vs_steps.png.""")


# ---------------------------------------------------------------- `fewtask-train navigation`

FAMILY_METHODS = ("maltml", "fo-maltml", "maml", "pretrain", "oracle")


@dataclass(kw_only=True)
class NavigationConfig(NavigationCommon):
    """`fewtask-train navigation`'s options (MALTML on crop families, paper section 4.2)."""

    out: Path = option(Path("runs/navigation"), "Output folder: one subfolder per method and seed, results.json, PNGs.")
    families: str = option("", "Family-definition folder (fewtask-data build navigation-families); empty: build the "
                               "default families into OUT/families.")  # fmt: skip
    methods: str = methods_option(FAMILY_METHODS)
    batch_families: int = option(4, "Families per MALTML meta-batch (B).")
    tasks: int = run_option("tasks")
    goal_tasks: int = run_option("goal_tasks", help="Goal tasks per family (C), in training and evaluation.")
    maml_tasks: int = option(20, "Tasks per meta-batch of maml/pretrain/oracle (one goal from each of as many training families).")
    alpha: float = step_size_option("alpha", 0.5, "MALTML's meta tasks; MAML's inner step")
    beta: float = step_size_option("beta", 0.1, "on the *sum* of the L task losses, Eq. 2")
    gamma: float = step_size_option("gamma", 0.5, "training and evaluation finetuning")
    test_families: int = option(0, "Held-out test families to evaluate (0: every one in the file).")


def family_objective(method: str, c: NavigationConfig, crops: torch.Tensor):
    """The training objective of ``method`` on families drawn from ``crops``."""
    from fewtask_data.sources.navigation import goals_in

    def pick(gen: torch.Generator, count: int) -> torch.Tensor:
        return crops[torch.randint(len(crops), (count,), generator=gen)]

    def objective(sampler, params, gen, graph):
        if method in ("maltml", "fo-maltml"):
            chosen = pick(gen, c.batch_families)
            return maltml(sampler, params, goals_in(chosen, c.tasks, gen), goals_in(chosen, c.goal_tasks, gen), graph)
        goals = goals_in(pick(gen, c.maml_tasks), 1, gen)[:, 0]
        return (maml if method == "maml" else direct)(sampler, params, goals, graph)

    return objective


OFF_SCALE = -200.0  # a curve with a mean below this (a wrecked policy) would flatten the others in the plot


def on_scale_curves(results: dict) -> tuple[dict, list[str]]:
    """The with/without-meta-update curves of every method that stay above OFF_SCALE and
    finite (to plot), and the names of the rest (to say they were left out)."""
    curves = {f"{m} ({label})": r[key] for m, r in results.items()
              for label, key in (("meta-update", "with_meta_update"), ("none", "without_meta_update"))}  # fmt: skip
    keep = {k: c for k, c in curves.items() if all(not math.isnan(v) and v > OFF_SCALE for v in c["mean"])}
    return keep, [k for k in curves if k not in keep]


def pool_seeds(curves: dict[str, dict[str, list[torch.Tensor]]]) -> dict[str, dict[str, torch.Tensor]]:
    """Per method and protocol, the seeds' per-family curves stacked into one tensor."""
    return {m: {p: torch.cat(v) for p, v in pc.items()} for m, pc in curves.items()}


def family_tables(pooled: dict[str, dict[str, torch.Tensor]]) -> tuple[dict, dict]:
    """Per method the summaries with and without the meta-update and its paired gain; the
    paired method differences (same families, goals and seeds) under both protocols."""
    results = {m: {"with_meta_update": summary(pc["with"]), "without_meta_update": summary(pc["without"]),
                   "meta_update_gain": paired_summary(pc["with"], pc["without"])} for m, pc in pooled.items()}  # fmt: skip
    comparisons = {f"{a}_minus_{b}": {p: paired_summary(pooled[a][p], pooled[b][p]) for p in ("with", "without")}
                   for a, b in (("maltml", "maml"), ("fo-maltml", "maml"), ("maltml", "pretrain"), ("maltml", "fo-maltml"))
                   if a in pooled and b in pooled}  # fmt: skip
    comparisons.update({f"{m}_with_minus_maml_without": paired_summary(pooled[m]["with"], pooled["maml"]["without"])
                        for m in ("maltml", "fo-maltml") if m in pooled and "maml" in pooled})  # fmt: skip
    return results, comparisons


def run_navigation(c: NavigationConfig) -> None:
    from fewtask_data.builders.navigation import build_navigation_families
    from fewtask_data.sources.navigation import goals_in, load_navigation_families
    from trainer.evaluation.rl import family_curves
    from trainer.evaluation.trajectories import trajectory_figure
    from trainer.domains.rl.rollout import rollout

    c.check()
    methods = parse_names(c.methods, FAMILY_METHODS)
    if min(c.batch_families, c.tasks, c.goal_tasks, c.maml_tasks) < 1 or c.test_families < 0:
        raise FewtaskError("--batch-families, --tasks, --goal-tasks and --maml-tasks must be >= 1")
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    source = Path(c.families) if c.families else out / "families"
    if not c.families:
        build_navigation_families(source, counts={"train": 500, "val": 50, "test": 40})
    crops = load_navigation_families(source)
    test = crops["test"][: c.test_families or None]
    if len(test) < 2:
        raise FewtaskError("need at least 2 test families for an interval; build more with --test-families")
    eval_gen = torch.Generator().manual_seed(c.eval_seed)
    meta_goals, goal_goals = goals_in(test, c.tasks, eval_gen), goals_in(test, c.goal_tasks, eval_gen)
    curves: dict[str, dict[str, list[torch.Tensor]]] = {m: {"with": [], "without": []} for m in methods}
    quiet: dict[str, dict[str, list[torch.Tensor]]] = {m: {"with": [], "without": []} for m in methods}  # --eval-mean-action
    budgets: dict[str, list[dict]] = {m: [] for m in methods}
    figures = {}
    for seed in c.seed_list:
        for method in methods:
            oracle = method == "oracle"
            settings = RLSettings(trajectories=c.trajectories, alpha=c.alpha, beta=c.beta, gamma=c.gamma,
                                  estimator=c.estimator, first_order=method == "fo-maltml")  # fmt: skip
            policy = GaussianMLP(4 if oracle else 2, 2, c.hidden_sizes)
            theta = policy.init(torch.Generator().manual_seed(seed))
            make_env = env_maker(c.horizon, oracle)
            folder = out / method / f"seed-{seed}"
            config = c.train_config(folder, seed)
            params, budget = _trained(folder, theta, config, method, c.eval_only, lambda: train_policy(
                theta, family_objective(method, c, crops["train"]), lambda gen: Sampler(make_env, policy, settings, gen),
                config, method, _progress(f"{method} seed {seed}")))  # fmt: skip
            budget["learning_curve"] = learning_curve(folder)
            budgets[method].append({"seed": seed, **budget})
            for protocol in ("with", "without"):
                sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(c.eval_seed + seed))
                sampled, still = family_curves(sampler, params, meta_goals, goal_goals, c.gamma, c.eval_steps,
                                               protocol == "with", c.eval_mean_action)  # fmt: skip
                curves[method][protocol].append(sampled)
                if still is not None:
                    quiet[method][protocol].append(still)
            if seed == c.seed_list[0] and method in ("maltml", "maml"):
                sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(c.eval_seed))
                tuned, _ = meta_update(sampler, {k: v.detach().requires_grad_() for k, v in params.items()}, meta_goals[:1], True, [])
                goal = goal_goals[:1, :1]
                paths = {}
                for label, p in (("before meta-update", params), ("after meta-update", {k: v.detach() for k, v in tuned.items()})):
                    traj = rollout(make_env(goal, 3), policy, policy.broadcast(p, (1, 1)), torch.Generator().manual_seed(0))
                    paths[label] = [[xy for xy, m in zip(t.tolist(), mask.tolist()) if m] for t, mask in
                                    zip(traj.obs[0, 0, ..., :2], traj.mask[0, 0])]  # fmt: skip
                figures[method] = paths
            typer.echo(f"{method} seed {seed}: return with / without meta-update after 0..{c.eval_steps} steps: "
                       f"{describe(curves[method]['with'][-1])} | {describe(curves[method]['without'][-1])}")  # fmt: skip
    results, comparisons = family_tables(pool_seeds(curves))
    if c.eval_mean_action:
        results_quiet, comparisons_quiet = family_tables(pool_seeds(quiet))
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(c).items()},
        "families": str(source), "test_families": len(test), "steps": list(range(c.eval_steps + 1)),
        "returns": results, "paired": comparisons, "training": budgets,
        **({"returns_mean_action": results_quiet, "paired_mean_action": comparisons_quiet} if c.eval_mean_action else {}),
        "interval": "95% normal interval over test families x seeds; paired: same families, goals and seeds; "
                    "diverged: families with a non-finite return, finite_*: the summary without them",
    }  # fmt: skip
    io.write_json(out / "results.json", report)
    curves_shown, off_scale = on_scale_curves(results)
    plots.curve_figure(out / "returns_vs_steps.png", curves_shown,
                       "held-out crop families" + (f" ({len(off_scale)} curves below {OFF_SCALE:.0f} left out)" if off_scale else ""),
                       "policy-gradient steps on the goal task", "mean return")  # fmt: skip
    if off_scale:
        typer.echo(f"returns_vs_steps.png leaves out (a mean below {OFF_SCALE:.0f} or diverged): {', '.join(off_scale)}")
    learning_figure(out / "learning_curves.png", budgets, "crop families: training")
    crop = test[0].tolist()
    for method, paths in figures.items():
        trajectory_figure(out / f"trajectories_{method}.png", crop, meta_goals[0].tolist(), goal_goals[0, 0].tolist(), paths,
                          f"{method}: a held-out crop, paths before/after the meta-update")  # fmt: skip
    for m in methods:
        r = results[m]
        typer.echo(f"{m:>9}: with {_row(r['with_meta_update'])}  without {_row(r['without_meta_update'])}")
        if c.eval_mean_action:
            r = results_quiet[m]
            typer.echo(f"{'mean action':>11}: with {_row(r['with_meta_update'])}  without {_row(r['without_meta_update'])}")
    typer.echo(f"wrote {out / 'results.json'}")


navigation_command = typer_command(NavigationConfig, run_navigation, """MALTML on 2D navigation crop families (paper section 4.2).

    Trains MALTML, FO-MALTML, MAML, pretrain and an oracle on the training crops,
    evaluates on held-out crops after the meta-update (V_beta on L tasks of the
    family) and 0..3 goal steps, with and without the meta-update, with paired 95%
    intervals; writes results.json, returns_vs_steps.png and trajectory plots.""")
