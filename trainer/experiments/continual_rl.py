"""`fewtask-train continual-rl`: MALTML across drifting dynamics families (paper section
4.2's continual RL experiment, after Kaplanis et al. 2020; docs/continual-rl.md).

Per seed: MALTML, MAML, a pretrained policy and a context oracle are meta-trained with
TRPO on the training families (bands of gravity, or of goal_x for the point file) and
scored on the held-out families after 0..S goal steps with and without the meta-update
(the one results schema). Then every method is deployed on a stream over the held-out
families (abrupt switches, a linear drift or a sinusoid; `fewtask_data.sources.dynamics`)
together with stable-baselines3 SAC under FIFO, reservoir, half/half and MTR replay; the
Continual World metrics, the evaluation-grid curve and the adaptation cost go to
``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError, io
from fewtask_data.sources.dynamics import STREAM_KINDS, load_dynamics_families, make_stream
from trainer.domains.dynamics.env import make_raw, task_env_maker
from trainer.domains.dynamics.tasks import as_vectors, bands_of, tasks_in
from trainer.domains.rl.methods import Sampler, direct, maltml, maml
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import plots, report, stats
from trainer.evaluation.rl import describe, family_curves
from trainer.evaluation.stream import deploy, stream_metrics
from trainer.experiments.navigation import NavigationCommon, progress_line, rl_curves, row
from trainer.experiments.options import methods_option, option, parse_names, run_option, step_size_option, typer_command
from trainer.training.policy_loop import train_or_load
from trainer.training.stream_learners import PolicyLearner, score, single_task_reference

EXPERIMENT = "MALTML across drifting dynamics families (Devos & Dandi section 4.2, after Kaplanis et al. 2020)"
# SAC and its replay strategy; sac-oracle also observes the task's parameters (Kaplanis et al.'s agents see the
# gravity), with the simplest buffer, so what it keeps beyond sac-fifo is what the context buys
SAC_METHODS = {"sac-fifo": "fifo", "sac-reservoir": "reservoir", "sac-half": "half", "sac-mtr": "mtr",
               "sac-oracle": "fifo"}  # fmt: skip
TRAINED = {"maltml": "maltml", "maml": "maml", "maml-continual": "maml", "pg-finetune": "pretrain", "oracle": "oracle"}
METHODS = (*TRAINED, *SAC_METHODS)
PAIRS = (("maltml", "maml"), ("maltml", "pretrain"), ("maltml", "oracle"), ("maml", "pretrain"))
STREAM_PAIRS = [("maltml", m) for m in METHODS if m != "maltml"]


@dataclass(kw_only=True)
class ContinualRLConfig(NavigationCommon):
    """`fewtask-train continual-rl`'s options."""

    families: str = option(help="Family folder (fewtask-data build dynamics-families [--env point]).")
    iterations: int = option(20, "Meta-iterations (TRPO steps) per meta-trained policy and seed.")
    trajectories: int = option(10, "Trajectories per task at every level.")
    horizon: int = option(200, "Steps per trajectory (MAML's HalfCheetah: 200).")
    out: Path = option(Path("runs/continual-rl"), "Output folder: a subfolder per method and seed, results.json, PNGs.")
    stream: str = option("abrupt", f"Stream over the held-out families: {', '.join(STREAM_KINDS)}.")
    methods: str = methods_option(METHODS)
    phases: int = option(6, "Phases of the stream (a family and its goal task each).", low=1)
    phase_steps: int = option(2000, "Environment steps per phase for SAC (Kaplanis: gravity updated every 1,000).", low=1)
    stream_steps: int = option(0, "Environment steps of the stream to run (0: its whole schedule; longer is an error).")
    stream_seed: int = option(0, "Seed of the stream's schedule (plus the training seed).")
    batch_families: int = option(2, "Families per MALTML meta-batch (B).")
    tasks: int = run_option("tasks", 3)
    goal_tasks: int = run_option("goal_tasks", 2)
    maml_tasks: int = option(10, "Tasks per meta-batch of maml/pretrain/oracle (each from a random training family).")
    alpha: float = step_size_option("alpha", 0.1, "MALTML's meta tasks; MAML's inner step")
    beta: float = step_size_option("beta", 0.1, "on the *sum* of the L task losses, Eq. 2")
    gamma: float = step_size_option("gamma", 0.1, "goal steps in training, evaluation and on the stream")
    stream_goal_steps: int = option(1, "Policy-gradient steps on each phase's goal task on the stream.", low=1)
    eval_trajectories: int = option(10, "Trajectories per task when scoring a policy on the stream.", low=1)
    reference_iterations: int = option(5, "TRPO steps of the single-task reference (Continual World's normalisation).")
    sac_buffer: int = option(10000, "SAC replay capacity (transitions).", low=2)
    sac_learning_starts: int = option(1000, "SAC: environment steps before the first update.")
    sac_batch: int = option(256, "SAC minibatch.", low=1)
    sac_hidden: int = option(256, "SAC hidden layer width (two layers).", low=1)

    def check(self) -> None:
        super().check()
        self.method_list = parse_names(self.methods, METHODS)
        if self.stream not in STREAM_KINDS:
            raise FewtaskError(f"unknown stream {self.stream!r}; use one of {', '.join(STREAM_KINDS)}")


def policy_parts(c: ContinualRLConfig, space, name: str):
    """(policy, make_env, settings) of a meta-trained policy name (the oracle sees the task)."""
    oracle = name == "oracle"
    probe = task_env_maker(space, c.horizon, oracle)(torch.tensor([space.vector(space.grid_tasks()[0])]), 1)
    policy = GaussianMLP(probe.obs_dim, probe.act_dim, c.hidden_sizes)
    return policy, task_env_maker(space, c.horizon, oracle), c.settings(alpha=c.alpha, beta=c.beta, gamma=c.gamma)


def objective_of(name: str, c: ContinualRLConfig, space, bands: torch.Tensor):
    """The meta-training objective of ``name`` on families drawn from ``bands``."""

    def pick(gen: torch.Generator, count: int) -> torch.Tensor:
        return bands[torch.randint(len(bands), (count,), generator=gen)]

    def objective(sampler, params, gen, graph):
        if name == "maltml":
            chosen = pick(gen, c.batch_families)
            return maltml(sampler, params, tasks_in(space, chosen, c.tasks, gen), tasks_in(space, chosen, c.goal_tasks, gen), graph)
        tasks = tasks_in(space, pick(gen, c.maml_tasks), 1, gen)[:, 0]
        return (maml if name == "maml" else direct)(sampler, params, tasks, graph)

    return objective


def held_out_tasks(c: ContinualRLConfig, space, fams) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out families' meta tasks [F, L, P] and goal tasks [F, C, P], the same for every method."""
    gen = torch.Generator().manual_seed(c.eval_seed)
    test = bands_of(fams["test"])
    return tasks_in(space, test, c.tasks, gen), tasks_in(space, test, c.goal_tasks, gen)


def train_and_score(c, space, fams, name: str, seed: int):
    """Meta-train (or load) one policy and score it on the held-out families both ways."""
    policy, make_env, settings = policy_parts(c, space, name)
    theta = policy.init(torch.Generator().manual_seed(seed))
    config = c.train_config(c.out / name / f"seed-{seed}", seed)
    params, budget, _ = train_or_load(theta, objective_of(name, c, space, bands_of(fams["train"])),
                                      lambda gen: Sampler(make_env, policy, settings, gen), config, name, c.eval_only,
                                      progress_line(f"{name} seed {seed}"))  # fmt: skip
    meta, goal = held_out_tasks(c, space, fams)
    curves = {}
    for protocol in report.PROTOCOLS:
        sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(c.eval_seed + seed))
        sampled, _ = family_curves(sampler, params, meta, goal, c.gamma, c.eval_steps, protocol == report.WITH)
        curves[protocol] = rl_curves(sampled, None)
    typer.echo(f"{name} seed {seed}: held-out return with / without meta-update after 0..{c.eval_steps} goal steps: "
               f"{describe(curves[report.WITH]['return'])} | {describe(curves[report.WITHOUT]['return'])}")  # fmt: skip
    return params, curves, {"seed": seed, **budget}


class _Sac:
    """A SAC learner seen as a stream learner (its phase budget is the stream's phase_steps)."""

    def __init__(self, c: ContinualRLConfig, space, method: str, seed: int) -> None:
        from trainer.domains.dynamics.sac import SacLearner, SacSettings

        settings = SacSettings(c.sac_buffer, c.sac_learning_starts, c.sac_batch, c.sac_hidden)
        context = method == "sac-oracle"
        self.sac, self.steps = SacLearner(space, SAC_METHODS[method], c.horizon, seed, settings, context), c.phase_steps

    def learn(self, phase: dict, generator) -> int:
        return self.sac.learn(phase, self.steps)


def deploy_method(c, space, method: str, seed: int, trained: dict, phases: list[dict], progress) -> dict:
    """Deploy one method on the stream (or load its finished deployment with --resume / --eval-only)."""
    folder = io.ensure_writable(c.out / method / f"seed-{seed}")
    path = folder / "stream.pt"
    if (c.resume or c.eval_only) and path.exists():
        return torch.load(path)
    grid = space.grid_tasks()
    checkpoint = folder / "stream-checkpoint.pkl"  # every phase; --resume goes on from it
    with io.exclusive(folder):
        if not c.resume:
            checkpoint.unlink(missing_ok=True)
        if method in SAC_METHODS:
            learner = _Sac(c, space, method, seed)
            result = deploy(learner, phases, lambda tasks: learner.sac.score(tasks, 1, c.eval_seed), grid, seed, progress,
                            checkpoint)  # fmt: skip
            goal = held_out_tasks(c, space, load_dynamics_families(c.families)[1])[1]  # SAC's final policy, no adaptation
            dicts = [dict(zip(space.names, t)) for t in goal.reshape(-1, goal.shape[-1]).tolist()]
            result["held_out"] = learner.sac.score(dicts, 1, c.eval_seed).reshape(goal.shape[:2]).mean(-1)
        else:
            policy, make_env, settings = policy_parts(c, space, TRAINED[method])
            learner = PolicyLearner(method, policy, trained[TRAINED[method]], make_env, settings, space, c.tasks,
                                    c.stream_goal_steps, c.max_kl)  # fmt: skip
            scorer = lambda tasks: score(make_env, policy, learner.current, as_vectors(space, tasks), c.eval_trajectories, c.eval_seed)  # noqa: E731
            result = deploy(learner, phases, scorer, grid, seed, progress, checkpoint)
        torch.save(result, path)
        checkpoint.unlink(missing_ok=True)  # the finished deployment is stream.pt
    return result


def reference_for(c, space, phases: list[dict], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The random and single-task reference returns of each phase's goal task (cached per seed)."""
    path = io.ensure_writable(c.out / "reference") / f"seed-{seed}.pt"
    if path.exists():
        return torch.load(path)
    policy, make_env, settings = policy_parts(c, space, "pretrain")
    tasks = as_vectors(space, [ph["goal"] for ph in phases])
    ref = single_task_reference(make_env, policy, settings, tasks, c.reference_iterations, seed, c.eval_trajectories, c.max_kl)
    torch.save(ref, path)
    return ref


def run_seed(c, space, fams, seed: int, budgets: dict) -> tuple[dict, dict, dict]:
    """One seed: meta-train and score the held-out families, then deploy every method on the stream."""
    full = make_stream(c.stream, space, fams["test"], c.phases, c.phase_steps, c.stream_seed + seed)
    stream = full.take(c.stream_steps or full.total_steps)
    io.write_json(c.out / f"stream-seed-{seed}.json", stream.to_json())
    names = list(dict.fromkeys(TRAINED[m] for m in c.method_list if m in TRAINED))
    trained, curves = {}, {}
    for name in names:
        trained[name], curves[name], budget = train_and_score(c, space, fams, name, seed)
        budgets.setdefault(name, []).append(budget)
    phases = list(stream.phases)
    random_r, reference = reference_for(c, space, phases, seed)
    deployed, grids, raw = {}, {}, {}
    for method in c.method_list:
        result = deploy_method(c, space, method, seed, trained, phases, lambda line, m=method: typer.echo(f"{m} seed {seed} {line}"))
        deployed[method] = stream_metrics(result, random_r, reference)
        grids[method], raw[method] = result["grid"].tolist(), result["returns"].tolist()  # [phases + 1, grid / phases]
        if "held_out" in result:  # SAC: its policy after the stream on the held-out goals, 0 steps only
            curves[method] = {report.WITHOUT: {"return": result["held_out"][:, None]}}
    return curves, deployed, {"random": random_r.tolist(), "reference": reference.tolist(), "grid_returns": grids,
                              "phase_returns": raw}  # fmt: skip


def summarize_streams(per_seed: dict) -> dict:
    """Per method and metric, the seeds' summaries over tasks pooled over seeds; paired maltml - other."""
    seeds = list(per_seed)
    methods = list(per_seed[seeds[0]])
    out = {m: {k: stats.pool_seeds([stats.summarize(per_seed[s][m][k]) for s in seeds]) for k in per_seed[seeds[0]][m]}
           for m in methods}  # fmt: skip
    pairs = {}
    for a, b in STREAM_PAIRS:
        if a in methods and b in methods:
            keys = ("performance", "forgetting", "forward_transfer", "grid_return")
            pairs[f"{a}_minus_{b}"] = {k: stats.pool_seeds([stats.paired(per_seed[s][a][k], per_seed[s][b][k]) for s in seeds])
                                       for k in keys}  # fmt: skip
    return {"methods": out, "comparisons": pairs}


def run_continual_rl(c: ContinualRLConfig) -> dict:
    c.check()
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    space, fams = load_dynamics_families(c.families)
    if space.env != "point":
        make_raw(space.env).close()  # an unknown env id fails here, before any training
    if len(fams["test"]) < 2:
        raise FewtaskError("need at least 2 held-out test families; build more with --test-families")
    curves, streams, refs, budgets = {}, {}, {}, {}
    for seed in c.seed_list:
        curves[seed], streams[seed], refs[seed] = run_seed(c, space, fams, seed, budgets)
    extra = {"families": c.families, "env": space.env, "task_type": space.task_type, "stream": c.stream,
             "grid": list(space.grid), "per_seed_stream": refs, "stream_results": summarize_streams(streams),
             "held_out_families": len(fams["test"])}  # fmt: skip
    results = report.results(EXPERIMENT, c, "held-out family", curves, range(c.eval_steps + 1), budgets, PAIRS, extra)
    io.write_json(out / "results.json", results)
    write_figures(out, results, streams)
    for m, r in results["methods"].items():
        with_ = f"with {row(r[report.WITH]['return'])}  " if report.WITH in r else ""
        typer.echo(f"{m:>9}: {with_}without {row(r[report.WITHOUT]['return'])}")
    for m, r in extra["stream_results"]["methods"].items():
        typer.echo(f"{m:>14} stream: performance {report.cell(r['performance'])}, forgetting {report.cell(r['forgetting'])}, "
                   f"forward transfer {report.cell(r['forward_transfer'])}")  # fmt: skip
    typer.echo(f"wrote {out / 'results.json'}")
    return results


def write_figures(out: Path, results: dict, streams: dict) -> None:
    if results["methods"]:
        curves = {f"{m} ({'meta-update' if p == report.WITH else 'none'})": r[p]["return"]
                  for m, r in results["methods"].items() for p in report.PROTOCOLS if p in r}  # fmt: skip
        plots.curve_figure(out / "returns_vs_steps.png", curves, "held-out families", "policy-gradient steps on the goal task",
                           "mean return")  # fmt: skip
    grid = results["extra"]["stream_results"]["methods"]
    plots.curve_figure(out / "grid_return_vs_phase.png", {m: r["grid_return"] for m, r in grid.items()},
                       "stream: mean return over the evaluation grid", "phases of the stream", "mean return on the grid")  # fmt: skip


continual_rl_command = typer_command(ContinualRLConfig, run_continual_rl, """Continual RL across drifting dynamics families (paper section 4.2, after Kaplanis et al. 2020).

    Meta-trains MALTML, MAML, pretrain and a context oracle on the training families
    (fewtask-data build dynamics-families), scores them on the held-out families after
    0..3 goal steps with and without the meta-update, then deploys them and SAC with
    FIFO / reservoir / half / MTR replay on an abrupt, drift or sine stream: Continual
    World performance, forgetting and forward transfer, the evaluation-grid curve and the
    adaptation cost, over seeds; writes results.json and plots.""")
