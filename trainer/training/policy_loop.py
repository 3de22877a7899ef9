"""The RL meta-training loop: per iteration, draw tasks, sample the objective's
trajectories, and take a TRPO (or Adam) step on the policy's parameters.

Every iteration's randomness (tasks and action noise) comes from its own generator seeded
with (seed, iteration), so a run resumed from a checkpoint continues exactly as the
uninterrupted run would (tests/trainer/test_rl_train.py). trainer/training/loop.py's Adam loop
takes one gradient per batch; TRPO needs the objective re-evaluated on the same samples,
hence this loop; the run folder (lock, resume, log, time) is the same (`run_folder`).

Learned step sizes (`trainer.domains.rl.methods.initial_step_sizes`): Adam trains their logs
beside the policy, from the same objective's gradient; TRPO refuses them (its trust region
bounds the policy's KL, which says nothing about a step size). The checkpoint holds them.

Output folder: ``checkpoint.pt`` and ``metrics.jsonl`` (one line per logged iteration:
mean return before and after adaptation, KL, whether the step was accepted, learned step
sizes' means per level, seconds).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from fewtask_data import FewtaskError
from trainer.core.functional import Params
from trainer.core.step_sizes import mean_step_sizes
from trainer.domains.rl.methods import Outcome, Sampler
from trainer.training import checkpoint as ckpt
from trainer.training.run_folder import RunFolder
from trainer.training.trpo import TrpoSettings, trpo_step

OPTIMIZERS = ("trpo", "adam")

# objective(sampler, params, generator, graph) -> Outcome; the generator draws the tasks;
# graph=False: values only (the inner steps build no graph for outer derivatives). With
# learned step sizes it takes their logs as a fifth argument.
Objective = Callable[..., Outcome]
LEARNED_NEEDS_ADAM = ("--learn-step-sizes needs --optimizer adam (TRPO's trust region bounds the policy's KL, "
                      "not its step sizes)")  # fmt: skip


@dataclass
class RLTrainConfig:
    iterations: int
    out: Path
    seed: int = 0
    optimizer: str = "trpo"
    max_kl: float = 0.01
    lr: float = 1e-3  # Adam's step, with --optimizer adam
    checkpoint_every: int = 10
    resume: bool = False
    max_seconds: float = 0.0  # stop (and checkpoint) after this much training time; 0 = all iterations
    learn_step_sizes: bool = False  # Adam trains the objective's log step sizes too

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise FewtaskError(f"iterations must be >= 0, got {self.iterations}")
        if self.optimizer not in OPTIMIZERS:
            raise FewtaskError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if not self.max_kl > 0 or not self.lr > 0:
            raise FewtaskError("--max-kl and --lr must be positive")
        if self.learn_step_sizes and self.optimizer != "adam":
            raise FewtaskError(LEARNED_NEEDS_ADAM)
        self.out = Path(self.out)


def iteration_generator(seed: int, iteration: int, stream: int = 0) -> torch.Generator:
    """The generator of one iteration's action noise (stream 0) or tasks (stream 1)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration) * 2 + stream)


def signature_of(params: Params) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in params.items()}


def train_policy(theta: Params, objective: Objective, make_sampler: Callable[[torch.Generator], Sampler],
                 config: RLTrainConfig, label: str, progress: Callable[[int, dict], None] | None = None,
                 step_sizes: Params | None = None) -> tuple[Params, int, Params]:  # fmt: skip
    """Train (or resume) ``theta``, holding the run folder's lock; returns the final
    parameters, the iteration reached and the final log step sizes ({} when fixed).
    ``step_sizes``: the initial log step sizes, given exactly when ``config.learn_step_sizes``."""
    if config.learn_step_sizes != bool(step_sizes):
        raise ValueError("learned step sizes need their initial values, and only they do")
    with RunFolder(config.out, step_key="iteration").locked() as folder:
        return _train_policy(folder, theta, objective, make_sampler, config, label, progress, step_sizes or {})


def _train_policy(folder: RunFolder, theta, objective, make_sampler, config, label, progress,
                  sizes: Params) -> tuple[Params, int, Params]:  # fmt: skip
    """The body of `train_policy` (same arguments), run while the run folder's lock is held."""
    theta = {k: v.detach().clone() for k, v in theta.items()}
    sizes = {k: v.detach().clone() for k, v in sizes.items()}
    adam = _adam(theta, sizes, config.lr) if config.optimizer == "adam" else None
    start = 0
    state = folder.start(config.resume, signature_of(theta), label, _sizes_check(sizes, folder.checkpoint_path))
    if state is not None:
        theta = {k: v.clone() for k, v in state["model"].items()}
        sizes = {k: v.clone() for k, v in state.get("step_sizes", {}).items()}
        if adam is not None:
            adam = _adam(theta, sizes, config.lr)
            adam[2].load_state_dict(state["optimizer"])
        start = state["step"]

    def save(iteration: int) -> None:
        folder.save({"model": theta, "step_sizes": sizes, "optimizer": adam[2].state_dict() if adam else None,
                     "step": iteration, "seconds": folder.seconds(), "config": {**asdict(config), "out": str(config.out)},
                     "algorithm": label, "signature": signature_of(theta)})  # fmt: skip

    iteration = start
    with folder.metrics() as log:
        for iteration in range(start + 1, config.iterations + 1):
            gen = iteration_generator(config.seed, iteration)
            sampler = make_sampler(gen)
            record: dict = {}

            def evaluate(params: Params, differentiate: bool = True):
                learned = (adam[1],) if adam and adam[1] else ()  # the objective differentiates the log step sizes too
                outcome = objective(sampler, params, iteration_generator(config.seed, iteration, 1), differentiate, *learned)
                sampler.rewind()
                if not record:
                    record.update(returns_before=float(outcome.first_returns.mean()), returns_after=float(outcome.returns.mean()))
                return -outcome.objective.mean(), outcome.kl

            if adam is None:
                theta, stats = trpo_step(theta, evaluate, TrpoSettings(max_kl=config.max_kl))
            else:
                stats = _adam_step(adam, evaluate)
                theta = {k: v.detach() for k, v in adam[0].items()}
                sizes = {k: v.detach() for k, v in adam[1].items()}
                stats.update({f"step_size_{level}": v for level, v in mean_step_sizes(sizes).items()})
            stats = {k: round(v, 6) for k, v in stats.items()}
            line = {"iteration": iteration, **record, **stats, "elapsed_s": round(folder.seconds(), 2)}
            log(line)
            if progress is not None:
                progress(iteration, line)
            stop = folder.over_budget(config.max_seconds)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations or stop:
                save(iteration)
            if stop:
                break
    if config.iterations == start and not folder.checkpoint_path.exists():
        save(start)
    return theta, iteration, sizes


def _sizes_check(sizes: Params, path: Path) -> Callable[[dict], None]:
    """Refuses to resume a checkpoint whose learned step sizes (or their absence) differ from this run's."""

    def check(state: dict) -> None:
        if set(state.get("step_sizes", {})) != set(sizes):
            had = "learned" if state.get("step_sizes") else "fixed"
            raise FewtaskError(f"checkpoint {path} was trained with {had} step sizes of other levels or steps; resume "
                               "with its --learn-step-sizes/--per-step-step-sizes or use a fresh --out")  # fmt: skip

    return check


def _adam(theta: Params, sizes: Params, lr: float):
    """(policy leaves, log step size leaves, one Adam over both, the policy's first)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    size_leaves = {k: v.detach().clone().requires_grad_() for k, v in sizes.items()}
    return leaves, size_leaves, torch.optim.Adam([*leaves.values(), *size_leaves.values()], lr=lr)


def _adam_step(adam, evaluate) -> dict[str, float]:
    leaves, _, opt = adam
    loss, divergence = evaluate(leaves)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss_before": float(loss.detach()), "kl": float(divergence.detach())}


def train_or_load(theta: Params, objective: Objective, make_sampler: Callable[[torch.Generator], Sampler],
                  config: RLTrainConfig, label: str, eval_only: bool,
                  progress: Callable[[int, dict], None] | None = None,
                  step_sizes: Params | None = None) -> tuple[Params, dict, Params]:  # fmt: skip
    """Train ``theta`` (`train_policy`; ``step_sizes``: initial learned ones), or with
    ``eval_only`` load the finished checkpoint; returns (parameters, budget record:
    iterations, seconds of training, folder, learning curve; log step sizes, {} when fixed)."""
    path = config.out / ckpt.CHECKPOINT_NAME
    if eval_only:
        state = ckpt.load(path, signature_of(theta))
        params, iterations, seconds = state["model"], state["step"], state.get("seconds", 0.0)
        sizes = state.get("step_sizes", {})  # as trained: a checkpoint from before learned sizes had none
    else:
        t0 = time.perf_counter()
        params, iterations, sizes = train_policy(theta, objective, make_sampler, config, label, progress, step_sizes)
        seconds = time.perf_counter() - t0
        if config.resume and path.exists():
            seconds = ckpt.load(path)["seconds"]
    return params, {"iterations": iterations, "seconds": round(seconds, 1), "folder": str(config.out),
                    "learning_curve": learning_curve(config.out)}, sizes  # fmt: skip


def learning_curve(folder: Path) -> list[float]:
    """Mean post-update return per logged iteration (metrics.jsonl)."""
    path = folder / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line).get("returns_after") for line in lines]
