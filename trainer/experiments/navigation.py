"""`fewtask-train navigation`: MALTML on 2D navigation crop families (paper section 4.2).

MALTML, FO-MALTML, MAML, pretrain and an oracle are trained with TRPO on the training
crops (`fewtask-data build navigation-families`) and scored on held-out crops after 0..S
goal steps, with and without the meta-update V_beta on L tasks of the crop, in the one
results schema (returns per held-out family, paired over the same families and goals).
`NavigationCommon` holds the options it shares with `navigation-maml` (and continual-rl),
`NavigationStepSizes` the learned step sizes of both navigation commands: the paper's
fixed ones by default; with --learn-step-sizes (Adam only) MALTML learns alpha, beta and
gamma per policy tensor, MAML its inner step alpha, and each is scored with its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError, io
from fewtask_data.sources.navigation import goals_in, load_navigation_families
from trainer.core.functional import REDUCTIONS
from trainer.core.step_sizes import mean_step_sizes
from trainer.domains.rl import dice
from trainer.domains.rl.env import check_horizon, env_maker
from trainer.domains.rl.methods import RLSettings, Sampler, direct, initial_step_sizes, maltml, maml, meta_update
from trainer.domains.rl.policy import GaussianMLP
from trainer.domains.rl.rollout import rollout
from trainer.evaluation import plots, report
from trainer.evaluation.protocol import sizes_record
from trainer.evaluation.rl import describe, family_curves, own_step_sizes
from trainer.evaluation.trajectories import trajectory_figure
from trainer.experiments.options import (
    Config, config_option, methods_option, option, parse_ints, parse_names, parse_seeds, run_option, step_size_option,
    typer_command,
)  # fmt: skip
from trainer.training.policy_loop import OPTIMIZERS, RLTrainConfig, train_or_load

EXPERIMENT = "MALTML on 2D navigation crop families (Devos & Dandi, section 4.2)"
FAMILY_METHODS = ("maltml", "fo-maltml", "maml", "pretrain", "oracle")
PAIRS = (("maltml", "maml"), ("fo-maltml", "maml"), ("maltml", "pretrain"), ("maltml", "fo-maltml"))
OFF_SCALE = -200.0  # a curve with a mean below this (a wrecked policy) would flatten the others in the plot
# The methods that can learn their step sizes, and the level their goal steps take (the
# others adapt nothing in training: nothing to learn a step size from).
GOAL_LEVEL = {"maltml": "gamma", "fo-maltml": "gamma", "maml": "alpha"}


@dataclass(kw_only=True)
class NavigationCommon(Config):
    """Options shared by the navigation commands."""

    iterations: int = option(100, "Meta-iterations (TRPO steps) per method and seed.")
    seeds: str = option("0,1,2", "Comma-separated training seeds (with 2 or more, intervals are over seeds).")
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
                                           "noise; same adaptation): results.json's metric return_mean_action.",
                                    "--eval-mean-action/--no-eval-mean-action")  # fmt: skip
    max_minutes: float = option(0.0, "Stop each method's training after this many minutes (checkpointed; 0: no limit).")
    order: int = run_option("order", help="Derivative order: 3 exact, 2 first-order task steps inside the meta-update, "
                                          "1 fully first order (FO-MALTML is always 1; for MAML 1 is first-order MAML).")
    meta_reduction: str = run_option("meta_reduction", help="Eq. 2 over the L tasks' query losses: sum (the paper) or mean.")
    checkpoint_every: int = run_option("checkpoint_every", 10, "Checkpoint every N iterations.")
    resume: bool = run_option("resume")
    eval_only: bool = run_option("eval_only")
    threads: int = run_option("threads")

    def check(self) -> None:
        check_horizon(self.horizon)
        if self.meta_reduction not in REDUCTIONS:
            raise FewtaskError(f"--meta-reduction must be sum or mean, got {self.meta_reduction!r}")
        if self.estimator not in dice.ESTIMATORS:
            raise FewtaskError(f"unknown estimator {self.estimator!r}; choose from {', '.join(dice.ESTIMATORS)}")
        self.seed_list = parse_seeds(self.seeds)
        self.hidden_sizes = tuple(parse_ints(self.hidden, "--hidden"))
        RLTrainConfig(0, Path("."), optimizer=self.optimizer, max_kl=self.max_kl, lr=self.lr)  # validates them

    def train_config(self, out: Path, seed: int, learn_step_sizes: bool = False) -> RLTrainConfig:
        return RLTrainConfig(self.iterations, out, seed, self.optimizer, self.max_kl, self.lr, self.checkpoint_every,
                             self.resume, 60 * self.max_minutes, learn_step_sizes)  # fmt: skip

    def settings(self, **changes) -> RLSettings:
        """The RL settings of a method: these options, with ``changes`` (its step sizes, order)."""
        base = dict(trajectories=self.trajectories, estimator=self.estimator, order=self.order,
                    meta_reduction=self.meta_reduction)  # fmt: skip
        return RLSettings(**{**base, **changes})


@dataclass(kw_only=True)
class NavigationStepSizes(NavigationCommon):
    """`NavigationCommon` with learned step sizes (navigation, navigation-maml) and the goal
    steps of training (several make per-step step sizes mean something)."""

    goal_steps: int = run_option("goal_steps", help="Goal steps per task in training (MALTML's gamma steps, MAML's "
                                 "inner steps), each on fresh trajectories of the current policy.")  # fmt: skip
    learn_step_sizes: bool = run_option("learn_step_sizes", help="Learn the step sizes per policy tensor, from the "
                                        "given ones, with Adam (--optimizer adam; TRPO refuses it): MALTML and "
                                        "FO-MALTML alpha, beta and gamma, MAML its inner step alpha; each is evaluated "
                                        "with its own. Default: fixed step sizes, as the paper.")  # fmt: skip
    per_step_step_sizes: bool = run_option("per_step_step_sizes")

    def check(self) -> None:
        super().check()
        RLTrainConfig(0, Path("."), optimizer=self.optimizer, learn_step_sizes=self.learn_step_sizes)  # TRPO refuses them

    def settings(self, **changes) -> RLSettings:
        return super().settings(**{"goal_steps": self.goal_steps, **changes})

    def start_step_sizes(self, method: str, settings: RLSettings, theta) -> dict:
        """The log step sizes ``method`` starts learning from, or {} (fixed step sizes)."""
        if not (self.learn_step_sizes and method in GOAL_LEVEL):
            return {}
        return initial_step_sizes(settings, theta, GOAL_LEVEL[method], self.per_step_step_sizes)


def training_record(method: str, seed: int, budget: dict, sizes: dict) -> dict:
    """results.json's training record of a method and seed: its budget and, when it learned
    them, its step sizes (`protocol.sizes_record`; their means are logged too)."""
    record = {"seed": seed, **budget}
    if sizes:
        record["step_sizes"] = sizes_record(sizes, True, GOAL_LEVEL[method])
        means = ", ".join(f"{level} {value:.4g}" for level, value in mean_step_sizes(sizes).items())
        typer.echo(f"{method} seed {seed}: learned step sizes (mean over policy tensors) {means}")
    return record


def learned_step_size_figure(out: Path, budgets: dict) -> None:
    """step_sizes.png: each learned step size of the first seed's methods, when any learned."""
    learned = {m: b[0]["step_sizes"] for m, b in budgets.items() if b and "step_sizes" in b[0]}
    if learned:
        plots.step_size_figure(out / "step_sizes.png", learned, "learned step sizes per policy tensor (first seed)")


def progress_line(label: str):
    """A log line per training iteration."""

    def show(iteration: int, line: dict) -> None:
        typer.echo(f"{label} it {iteration}: return {line.get('returns_before', 0):.1f} -> {line.get('returns_after', 0):.1f} "
                   f"kl {line.get('kl', 0):.4f} ({line['elapsed_s']:.0f}s)")  # fmt: skip

    return show


def rl_curves(sampled: torch.Tensor, quiet: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A protocol's metrics: sampled returns and, with --eval-mean-action, mean-action ones."""
    return {"return": sampled, **({"return_mean_action": quiet} if quiet is not None else {})}


def row(summary: dict) -> str:
    """A summary as mean±ci95 per step; where adaptations diverged, the mean of the rest."""
    finite = summary.get("finite_mean", summary["mean"])
    return " / ".join(f"{a:.1f}±{h:.1f}" if not d else f"{fa:.1f} without {d} diverged"
                      for a, h, d, fa in zip(summary["mean"], summary["ci95"], summary["diverged"], finite))  # fmt: skip


@dataclass(kw_only=True)
class NavigationConfig(NavigationStepSizes):
    """`fewtask-train navigation`'s options (MALTML on crop families, paper section 4.2)."""

    out: Path = option(Path("runs/navigation"), "Output folder: one subfolder per method and seed, results.json, PNGs.")
    config: str = config_option()
    families: str = option("", "Family-definition folder (fewtask-data build navigation-families); empty: build the "
                               "default families into OUT/families.")  # fmt: skip
    methods: str = methods_option(FAMILY_METHODS)
    batch_families: int = option(4, "Families per MALTML meta-batch (B).")
    tasks: int = run_option("tasks")
    goal_tasks: int = run_option("goal_tasks", help="Goal tasks per family (C), in training and evaluation.")
    maml_tasks: int = option(20, "Tasks per meta-batch of maml/pretrain/oracle (one goal from each of as many training families).")
    task_steps: int = run_option("task_steps", help="Task steps (alpha) on each meta task inside the meta-update.")
    meta_steps: int = run_option("meta_steps", help="Meta steps (beta, Eq. 2) of the meta-update.")
    alpha: float = step_size_option("alpha", 0.5, "MALTML's meta tasks; MAML's inner step")
    beta: float = step_size_option("beta", 0.1, "on the *sum* of the L task losses, Eq. 2")
    gamma: float = step_size_option("gamma", 0.5, "training and evaluation finetuning")
    test_families: int = option(0, "Held-out test families to evaluate (0: every one in the file).")

    def settings(self, **changes) -> RLSettings:
        return super().settings(**{"task_steps": self.task_steps, "meta_steps": self.meta_steps, **changes})


def family_objective(method: str, c: NavigationConfig, crops: torch.Tensor):
    """The training objective of ``method`` on families drawn from ``crops``."""

    def pick(gen: torch.Generator, count: int) -> torch.Tensor:
        return crops[torch.randint(len(crops), (count,), generator=gen)]

    def objective(sampler, params, gen, graph, sizes=None):
        if method in ("maltml", "fo-maltml"):
            chosen = pick(gen, c.batch_families)
            meta_goals, goal_goals = goals_in(chosen, c.tasks, gen), goals_in(chosen, c.goal_tasks, gen)
            return maltml(sampler, params, meta_goals, goal_goals, graph, sizes)
        goals = goals_in(pick(gen, c.maml_tasks), 1, gen)[:, 0]
        return maml(sampler, params, goals, graph, sizes) if method == "maml" else direct(sampler, params, goals, graph)

    return objective


def on_scale_curves(methods: dict, metric: str = "return") -> tuple[dict, list[str]]:
    """The with/without-meta-update curves of every method that stay above OFF_SCALE and
    finite (to plot), and the names of the rest (to say they were left out)."""
    curves = {f"{m} ({label})": r[key][metric] for m, r in methods.items()
              for label, key in (("meta-update", report.WITH), ("none", report.WITHOUT))}  # fmt: skip
    keep = {k: c for k, c in curves.items() if all(not math.isnan(v) and v > OFF_SCALE for v in c["mean"])}
    return keep, [k for k in curves if k not in keep]


def family_paths(make_env, policy, settings, params, sizes, meta_goals, goal_goals, seed: int) -> dict[str, list]:
    """A few sampled paths on the first held-out crop's first goal, before and after the
    meta-update (with the method's learned ``sizes``, or the settings' when {})."""
    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(seed))
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    tuned, _ = meta_update(sampler, leaves, meta_goals[:1], True, [], sizes)
    paths = {}
    for label, p in (("before meta-update", params), ("after meta-update", {k: v.detach() for k, v in tuned.items()})):
        traj = rollout(make_env(goal_goals[:1, :1], 3), policy, policy.broadcast(p, (1, 1)), torch.Generator().manual_seed(0))
        paths[label] = [[xy for xy, m in zip(t.tolist(), mask.tolist()) if m]
                        for t, mask in zip(traj.obs[0, 0, ..., :2], traj.mask[0, 0])]  # fmt: skip
    return paths


def train_and_score(c: NavigationConfig, method: str, seed: int, crops, meta_goals, goal_goals,
                    protocols: tuple[str, ...] = report.PROTOCOLS):
    """Train (or load) one method for one seed and score it on the held-out crops under
    ``protocols`` (default both): (curves, budget record, policy pieces for the path figure).
    A method that learned its step sizes is scored with its own (`own_step_sizes`), the
    others with gamma."""
    oracle = method == "oracle"
    settings = c.settings(alpha=c.alpha, beta=c.beta, gamma=c.gamma, **({"order": 1} if method == "fo-maltml" else {}))
    policy = GaussianMLP(4 if oracle else 2, 2, c.hidden_sizes)
    theta = policy.init(torch.Generator().manual_seed(seed))
    make_env = env_maker(c.horizon, oracle)
    start = c.start_step_sizes(method, settings, theta)
    config = c.train_config(c.out / method / f"seed-{seed}", seed, bool(start))
    params, budget, sizes = train_or_load(theta, family_objective(method, c, crops),
                                          lambda gen: Sampler(make_env, policy, settings, gen), config, method,
                                          c.eval_only, progress_line(f"{method} seed {seed}"), start)  # fmt: skip
    goal_lr, own = own_step_sizes(sizes, GOAL_LEVEL.get(method, "gamma"), c.gamma)
    curves = {}
    for protocol in protocols:
        sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(c.eval_seed + seed))
        sampled, quiet = family_curves(sampler, params, meta_goals, goal_goals, goal_lr, c.eval_steps,
                                       protocol == report.WITH, c.eval_mean_action, sizes=own)  # fmt: skip
        curves[protocol] = rl_curves(sampled, quiet)
    typer.echo(f"{method} seed {seed}: return after 0..{c.eval_steps} steps, "
               + " | ".join(f"{p}: {describe(v['return'])}" for p, v in curves.items()))
    return curves, training_record(method, seed, budget, sizes), (make_env, policy, settings, params, own)


def family_folder(families: str, out: Path) -> Path:
    """--families, or (empty) the default crop families built into OUT/families: 500 train, 50 val, 40 test."""
    if families:
        return Path(families)
    from fewtask_data.builders.navigation import build_navigation_families

    build_navigation_families(out / "families", counts={"train": 500, "val": 50, "test": 40})
    return out / "families"


def run_navigation(c: NavigationConfig) -> dict:
    c.check()
    methods = parse_names(c.methods, FAMILY_METHODS)
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    source = family_folder(c.families, out)
    crops = load_navigation_families(source)
    test = crops["test"][: c.test_families or None]
    if len(test) < 2:
        raise FewtaskError("need at least 2 test families for an interval; build more with --test-families")
    eval_gen = torch.Generator().manual_seed(c.eval_seed)
    meta_goals, goal_goals = goals_in(test, c.tasks, eval_gen), goals_in(test, c.goal_tasks, eval_gen)
    curves, budgets, paths = {}, {m: [] for m in methods}, {}
    for seed in c.seed_list:
        curves[seed] = {}
        for method in methods:
            curves[seed][method], budget, pieces = train_and_score(c, method, seed, crops["train"], meta_goals, goal_goals)
            report.save_curves(out / method / f"seed-{seed}", curves[seed][method])  # for `combine` (tuned methods' runs)
            budgets[method].append(budget)
            if seed == c.seed_list[0] and method in ("maltml", "maml"):
                paths[method] = family_paths(*pieces, meta_goals, goal_goals, c.eval_seed)
    # what fixes the scored units (crops, goals, rollouts): `combine` pairs runs only where these agree
    evaluation = {"families": str(source), "test_families": len(test), "eval_seed": c.eval_seed,
                  "eval_steps": c.eval_steps, "tasks": c.tasks, "goal_tasks": c.goal_tasks, "horizon": c.horizon,
                  "trajectories": c.trajectories, "eval_mean_action": c.eval_mean_action}  # fmt: skip
    extra = {"families": str(source), "test_families": len(test), "evaluation": evaluation}
    results = report.results(EXPERIMENT, c, "held-out crop family", curves, range(c.eval_steps + 1), budgets, PAIRS, extra)
    io.write_json(out / "results.json", results)
    write_figures(out, results["methods"], budgets, test[0].tolist(), meta_goals, goal_goals, paths)
    for m, r in results["methods"].items():
        typer.echo(f"{m:>9}: with {row(r[report.WITH]['return'])}  without {row(r[report.WITHOUT]['return'])}")
        if c.eval_mean_action:
            typer.echo(f"{'mean action':>11}: with {row(r[report.WITH]['return_mean_action'])}  "
                       f"without {row(r[report.WITHOUT]['return_mean_action'])}")  # fmt: skip
    typer.echo(f"wrote {out / 'results.json'}")
    return results


def write_figures(out: Path, methods: dict, budgets: dict, crop: list, meta_goals, goal_goals, paths: dict) -> None:
    shown, off_scale = on_scale_curves(methods)
    left_out = f" ({len(off_scale)} curves below {OFF_SCALE:.0f} left out)" if off_scale else ""
    plots.curve_figure(out / "returns_vs_steps.png", shown, "held-out crop families" + left_out,
                       "policy-gradient steps on the goal task", "mean return")  # fmt: skip
    if off_scale:
        typer.echo(f"returns_vs_steps.png leaves out (a mean below {OFF_SCALE:.0f} or diverged): {', '.join(off_scale)}")
    plots.learning_figure(out / "learning_curves.png", budgets, "crop families: training")
    learned_step_size_figure(out, budgets)
    for method, p in paths.items():
        trajectory_figure(out / f"trajectories_{method}.png", crop, meta_goals[0].tolist(), goal_goals[0, 0].tolist(), p,
                          f"{method}: a held-out crop, paths before/after the meta-update")  # fmt: skip


navigation_command = typer_command(NavigationConfig, run_navigation, """MALTML on 2D navigation crop families (paper section 4.2).

    Trains MALTML, FO-MALTML, MAML, pretrain and an oracle on the training crops,
    evaluates on held-out crops after the meta-update (V_beta on L tasks of the
    family) and 0..3 goal steps, with and without the meta-update, with paired 95%
    intervals; writes results.json, returns_vs_steps.png and trajectory plots.""")
