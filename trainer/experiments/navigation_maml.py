"""`fewtask-train navigation-maml`: MAML's 2D navigation benchmark (Finn et al. 2017,
section 5.3), end to end: train MAML, a pretrained policy and an oracle with TRPO, then
score them and a random policy on fixed test goals after 0..3 policy-gradient steps.

Defaults are the published settings: 20 trajectories per task, 20 tasks per meta-batch,
inner step 0.1, horizon 100, one inner step, TRPO with max KL 0.01, 100 iterations, 40
test goals. (maml_rl's own script uses inner step 0.5: see docs/navigation.md.) With
--learn-step-sizes (Adam) MAML learns its inner step per policy tensor and is scored with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError, io
from trainer.domains.rl.env import env_maker, uniform_goals
from trainer.domains.rl.methods import Sampler, direct, maml
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import plots, report
from trainer.evaluation.rl import describe, finetune_curves, own_step_sizes
from trainer.experiments.navigation import (
    GOAL_LEVEL, NavigationStepSizes, learned_step_size_figure, progress_line, rl_curves, row, training_record,
)  # fmt: skip
from trainer.experiments.options import methods_option, option, parse_names, typer_command
from trainer.training.policy_loop import train_or_load

EXPERIMENT = "MAML 2D navigation benchmark (Finn et al. 2017, section 5.3)"
# The published mean returns on 40 test goals after 0/1/2/3 policy-gradient steps.
PUBLISHED = {
    "maml": [-40.41, -11.68, -3.33, -3.23],
    "pretrain": [-40.81, -19.70, -11.70, -8.47],
    "random": [-82.69, -58.00, -53.77, -46.78],
    "oracle": [-2.29],
}
MAML_METHODS = ("maml", "pretrain", "random", "oracle")


@dataclass(kw_only=True)
class NavigationMamlConfig(NavigationStepSizes):
    """`fewtask-train navigation-maml`'s options (the published MAML settings)."""

    out: Path = option(Path("runs/navigation-maml"), "Output folder: one subfolder per method and seed, results.json, PNGs.")
    methods: str = methods_option(MAML_METHODS)
    tasks: int = option(20, "Goals per meta-batch.")
    alpha: float = option(0.1, "Inner policy-gradient step (training and evaluation).")
    test_goals: int = option(40, "Test goals (the same for every method and seed).")
    eval_alphas: str = option("", "Evaluation step sizes, one per step (e.g. 0.5,0.25,0.25 as in maml_rl's "
                                  "test_maml_point.py); empty: --alpha for every step. A MAML that learned its "
                                  "step sizes takes its own instead.")  # fmt: skip
    eval_trajectories: int = option(0, "Trajectories per goal and evaluation step (maml_rl's test: 40); 0: --trajectories.")

    def check(self) -> None:
        super().check()
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


def train_and_score(c: NavigationMamlConfig, method: str, seed: int, test_goals: torch.Tensor):
    """Train (or load) one method for one seed and score it on the test goals: (curves, budget)."""
    oracle = method == "oracle"
    settings = c.settings(alpha=c.alpha)
    policy = GaussianMLP(4 if oracle else 2, 2, c.hidden_sizes)
    theta = policy.init(torch.Generator().manual_seed(seed))
    make_env = env_maker(c.horizon, oracle)
    if method == "random":
        params, budget, sizes = theta, {"iterations": 0}, {}
    else:

        def objective(sampler, p, gen, graph, sizes=None):
            goals = uniform_goals(gen, c.tasks)
            return maml(sampler, p, goals, graph, sizes) if method == "maml" else direct(sampler, p, goals, graph)

        start = c.start_step_sizes(method, settings, theta)
        config = c.train_config(c.out / method / f"seed-{seed}", seed, bool(start))
        params, budget, sizes = train_or_load(theta, objective, lambda gen: Sampler(make_env, policy, settings, gen),
                                              config, method, c.eval_only, progress_line(f"{method} seed {seed}"),
                                              start)  # fmt: skip
    eval_settings = replace(settings, trajectories=c.eval_trajectories or c.trajectories)
    sampler = Sampler(make_env, policy, eval_settings, torch.Generator().manual_seed(c.eval_seed + seed))
    rates, _ = own_step_sizes(sizes, GOAL_LEVEL["maml"], c.eval_step_sizes())  # learned: MAML's own inner step
    sampled, quiet = finetune_curves(sampler, params, test_goals, rates, c.eval_steps, c.eval_mean_action)
    typer.echo(f"{method} seed {seed}: return after 0..{c.eval_steps} steps {describe(sampled)}")
    if quiet is not None:
        typer.echo(f"{method} seed {seed}: mean-action return after 0..{c.eval_steps} steps {describe(quiet)}")
    return {report.WITHOUT: rl_curves(sampled, quiet)}, training_record(method, seed, budget, sizes)


def run_navigation_maml(c: NavigationMamlConfig) -> dict:
    c.check()
    methods = parse_names(c.methods, MAML_METHODS)
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    test_goals = uniform_goals(torch.Generator().manual_seed(c.eval_seed), c.test_goals)
    curves, budgets = {}, {m: [] for m in methods}
    for seed in c.seed_list:
        curves[seed] = {}
        for method in methods:
            curves[seed][method], budget = train_and_score(c, method, seed, test_goals)
            budgets[method].append(budget)
    pairs = [(m, "pretrain") for m in methods if m != "pretrain"]
    extra = {"published": {m: PUBLISHED[m] for m in methods}}
    results = report.results(EXPERIMENT, c, "test goal", curves, range(c.eval_steps + 1), budgets, pairs, extra)
    io.write_json(out / "results.json", results)
    returns = {m: r[report.WITHOUT]["return"] for m, r in results["methods"].items()}
    plots.curve_figure(out / "returns_vs_steps.png", returns, f"2D navigation, {c.test_goals} test goals",
                       "policy-gradient steps", "mean return")  # fmt: skip
    plots.learning_figure(out / "learning_curves.png", budgets, "2D navigation: training")
    learned_step_size_figure(out, budgets)
    for m, r in results["methods"].items():
        typer.echo(f"{m:>8}: {row(r[report.WITHOUT]['return'])}   (published {' / '.join(str(v) for v in PUBLISHED[m])})")
        if c.eval_mean_action:
            typer.echo(f"{'':>8}  mean action: {row(r[report.WITHOUT]['return_mean_action'])}")
    typer.echo(f"wrote {out / 'results.json'}")
    return results


navigation_maml_command = typer_command(NavigationMamlConfig, run_navigation_maml, """MAML's 2D navigation benchmark (Finn et al. 2017, section 5.3).

    Trains MAML, a pretrained policy and an oracle with TRPO, evaluates them and a
    random policy on fixed test goals after 0..3 policy-gradient steps (95% intervals
    over goals, or over seeds with several), and writes results.json and returns_vs_steps.png.""")
