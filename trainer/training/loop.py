"""The training loop: an iterator of FamilyBatch + an algorithm + Adam.

It knows nothing of datasets. ``make_batches(start_step)`` must return the batches
from ``start_step`` on; for an exact ``resume`` it must give the same batches as
an uninterrupted run would (sources that draw from the global RNGs get them
restored by the loop before the first batch is drawn).

Output folder (`trainer.training.run_folder`): ``checkpoint.pt`` (atomic, every
``checkpoint_every`` steps and at the end) and ``metrics.jsonl`` (one JSON object per
logged step). The algorithm is anything with `AlgorithmProtocol`'s members.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from fewtask_data import FamilyBatch, FewtaskError
from trainer.algorithms.base import AlgorithmProtocol
from trainer.models import signature
from trainer.training import checkpoint as ckpt
from trainer.training.run_folder import RunFolder


@dataclass
class TrainConfig:
    steps: int
    out: Path
    lr: float = 1e-3  # Adam's eta
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000
    resume: bool = False
    progress: bool = True
    tensorboard: bool = False  # also log to OUT/tensorboard when the tensorboard package is installed
    max_seconds: float = 0.0  # stop (and checkpoint) after this much training time; 0 = run all steps
    # MAML++'s outer-loop stabilizers (off by default): derivative-order annealing (the algorithm at
    # order 1 for the first N outer steps, then its own order) and cosine annealing of Adam's rate
    # from lr at step 1 toward min_lr at the last step (torch's CosineAnnealingLR over `steps`).
    first_order_steps: int = 0
    cosine_lr: bool = False
    min_lr: float = 0.0
    # Step decay (torch's MultiStepLR stepped once per outer step): Adam's rate times lr_gamma
    # for every milestone already passed; the published OML pretraining baseline uses it.
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # caller's settings, stored in the checkpoint

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise FewtaskError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise FewtaskError(f"learning rate must be positive, got {self.lr}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise FewtaskError("log-every and checkpoint-every must be >= 1")
        if self.first_order_steps < 0:
            raise FewtaskError(f"first-order-steps must be >= 0, got {self.first_order_steps}")
        if not 0 <= self.min_lr <= self.lr:
            raise FewtaskError(f"min-lr must be between 0 and the learning rate {self.lr}, got {self.min_lr}")
        if self.cosine_lr and self.lr_milestones:
            raise FewtaskError("choose one learning-rate schedule: cosine annealing or milestones, not both")
        self.out = Path(self.out)


@dataclass
class TrainResult:
    params: dict[str, torch.Tensor]
    step_sizes: dict[str, torch.Tensor]
    step: int
    last_metrics: dict[str, float]
    seconds: float


def _all_finite(loss: torch.Tensor, trainable: list[torch.Tensor]) -> bool:
    """One check (one device sync) that the loss and every gradient are finite."""
    norms = [p.grad.detach().norm() for p in trainable if p.grad is not None]
    return bool(torch.isfinite(torch.stack([loss.detach().float().reshape(()), *[n.float() for n in norms]])).all())


class _Rate:
    """Family episodes per second since the last ``take``."""

    def __init__(self) -> None:
        self.count, self.since = 0, time.perf_counter()

    def add(self, n: int) -> None:
        self.count += n

    def take(self) -> float:
        now = time.perf_counter()
        value = self.count / max(now - self.since, 1e-9)
        self.count, self.since = 0, now
        return round(value, 2)


def train(
    model: torch.nn.Module,
    algorithm: AlgorithmProtocol,
    make_batches: Callable[[int], Iterator[FamilyBatch]],
    config: TrainConfig,
    transform: Callable[[FamilyBatch], FamilyBatch] | None = None,
    after_backward: Callable[[list[torch.Tensor]], None] | None = None,
    is_main: bool = True,
    agree: Callable[[bool], bool] = bool,
) -> TrainResult:
    """Run (or resume) training; returns the final parameters and step sizes.

    ``after_backward(trainable)`` runs once the outer gradients are set and before the
    optimizer step (multi-process training averages them there); only the ``is_main``
    process writes checkpoints and logs; ``agree(flag)`` turns a process's wish to stop
    (``max_seconds`` reached) into one decision for all processes. A non-finite loss or gradient stops training
    with a FewtaskError and leaves the last checkpoint (all finite) untouched. The main process holds
    the run folder's lock (`io.exclusive`): a second process training into it gets a one-line error.
    """
    with RunFolder(config.out, main=is_main).locked() as folder:
        return _train(folder, model, algorithm, make_batches, config, transform, after_backward, agree)


def cosine_lr(config: TrainConfig, step: int) -> float:
    """Adam's rate at outer step ``step`` (1-based) under cosine annealing: lr at step 1, falling to
    min_lr at step ``steps + 1`` (torch's CosineAnnealingLR with T_max = steps)."""
    frac = (step - 1) / max(config.steps, 1)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * frac))


def step_decay_lr(config: TrainConfig, step: int) -> float:
    """Adam's rate at outer step ``step`` (1-based) under MultiStepLR stepped after every
    optimizer step: ``step - 1`` scheduler steps have passed, so milestone m counts from step m + 1."""
    return config.lr * config.lr_gamma ** sum(m < step for m in config.lr_milestones)


def scheduled(algorithm: AlgorithmProtocol, step: int, config: TrainConfig) -> AlgorithmProtocol:
    """The algorithm outer step ``step`` (1-based) runs: its first-order version during
    derivative-order annealing, told which outer step it is (the multi-step loss anneals)."""
    algo = algorithm
    if step <= config.first_order_steps:
        if not hasattr(algorithm, "first_order_version"):
            raise FewtaskError(f"{algorithm.name} has no derivative order to anneal; drop --first-order-steps")
        algo = algorithm.first_order_version()
    if hasattr(algo, "set_outer_step"):
        algo.set_outer_step(step - 1)
    return algo


def _reduction_check(algorithm: AlgorithmProtocol, path: Path) -> Callable[[dict], None]:
    """For an algorithm that trains Eq. 2's step: refuses to resume a run trained with the other reduction."""

    def check(state: dict) -> None:
        trained_with = state.get("meta_reduction", "mean")  # checkpoints from before the option averaged
        if trained_with != algorithm.meta_reduction:
            raise FewtaskError(
                f"checkpoint {path} was trained with --meta-reduction {trained_with}, not "
                f"{algorithm.meta_reduction}; resume with --meta-reduction {trained_with} or use a fresh --out"
            )

    return check


def _train(folder: RunFolder, model, algorithm, make_batches, config, transform, after_backward, agree) -> TrainResult:
    """The body of `train` (same arguments), run while the run folder's lock is held."""
    is_main = folder.main
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    step_sizes = {k: v.clone().requires_grad_(algorithm.learn_step_sizes) for k, v in algorithm.init_step_sizes(params).items()}
    trainable = list(params.values()) + (list(step_sizes.values()) if algorithm.learn_step_sizes else [])
    # Fused Adam: one kernel for all tensors (3x cheaper than the default for small models).
    fused = all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in trainable)
    opt = torch.optim.Adam(trainable, lr=config.lr, fused=fused)

    start = 0
    check = _reduction_check(algorithm, folder.checkpoint_path) if algorithm.trains_meta_step else None
    state = folder.start(config.resume, signature(model), algorithm.name, check)
    if state is not None:
        model.load_state_dict(state["model"])
        with torch.no_grad():
            for k, v in state["step_sizes"].items():
                step_sizes[k].copy_(v)
        opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        start = state["step"]

    config_record = {**asdict(config), "out": str(config.out), "algorithm": algorithm.name}

    def save(step: int) -> None:
        folder.save({
            "model": model.state_dict(),
            "step_sizes": {k: v.detach().clone() for k, v in step_sizes.items()},
            "optimizer": opt.state_dict(),
            "rng": ckpt.rng_state(),
            "step": step,
            "seconds": folder.seconds(),
            "config": config_record,
            "algorithm": algorithm.name,
            "meta_reduction": algorithm.meta_reduction,
            "signature": signature(model),
        })  # fmt: skip

    metrics: dict[str, float] = {}
    batches = make_batches(start)
    bar = tqdm(total=config.steps, initial=start, disable=not (config.progress and is_main), desc=algorithm.name, mininterval=1.0)
    board = folder.tensorboard() if config.tensorboard and is_main else None
    saved = start if state is not None else None
    rate = _Rate()
    last = start
    with folder.metrics() as log:
        for step in range(start + 1, config.steps + 1):
            batch = next(batches)
            if transform is not None:
                batch = transform(batch)
            detached = {k: v.detach() for k, v in params.items()}
            sizes = {k: v.detach() for k, v in step_sizes.items()}
            grads, sgrads, raw = scheduled(algorithm, step, config).outer_grads(detached, sizes, buffers, batch)
            for k, p in params.items():
                p.grad = grads[k]
            for k, g in sgrads.items():
                step_sizes[k].grad = g
            if after_backward is not None:
                after_backward(trainable)
            if not _all_finite(raw["loss"], trainable):
                kept = "no checkpoint was written yet"
                if saved is not None:
                    kept = f"the last good checkpoint (step {saved}) is kept in {folder.checkpoint_path}"
                raise FewtaskError(
                    f"non-finite loss or gradient at step {step}; training stopped and {kept}; "
                    "lower --lr or the step sizes, then resume with --resume"
                )
            if config.cosine_lr:  # a function of the step alone, so a resumed run follows it exactly
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(config, step)
            elif config.lr_milestones:  # the same: a function of the step alone
                for group in opt.param_groups:
                    group["lr"] = step_decay_lr(config, step)
            opt.step()
            rate.add(len(batch))
            last = step
            stopping = folder.over_budget(config.max_seconds, agree)
            if step % config.log_every == 0 or step == config.steps or stopping:
                metrics = {k: float(v) for k, v in raw.items()}
                metrics["episodes_per_s"] = rate.take()
                log({"step": step, **metrics, "elapsed_s": round(folder.seconds(), 3)})
                if board is not None:
                    for k, v in metrics.items():
                        board.add_scalar(k, v, step)
                bar.set_postfix({"loss": f"{metrics['loss']:.4f}", "ep/s": f"{metrics['episodes_per_s']:.1f}"}, refresh=False)
            if step % config.checkpoint_every == 0 and step != config.steps and not stopping:
                save(step)
                saved = step
            bar.update(1)
            if stopping:
                break
    bar.close()
    if board is not None:
        board.close()
    if last == start and not metrics:  # nothing left to train: report the finished run's last metrics
        metrics = {k: v for k, v in folder.last_logged().items() if k not in ("step", "elapsed_s")}
    seconds = folder.seconds()
    save(last)
    return TrainResult(
        {k: v.detach() for k, v in params.items()},
        {k: v.detach() for k, v in step_sizes.items()},
        last,
        metrics,
        seconds,
    )
