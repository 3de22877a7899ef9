"""Procedural sinusoid families (MALTML section 4.1) and plain MAML sinusoid tasks.

Family j: phase phi ~ U[0, pi]. Task in family j: amplitude A ~ U[0.1, 5.0].
Examples: x ~ U[-5, 5], y = A * sin(x - phi). With ``per_task_phase`` every task
draws its own phase too: the plain task distribution of Finn et al.'s MAML
sinusoid benchmark.

Batches are a pure function of (seed, step), so a training run can resume at any
step and get exactly the batches it would have seen.

Fixed families as data: `fewtask-data build sinusoid-families` draws each split's phases
with `family_phases` and writes them as procedural family definitions; read them back with
`load_sinusoid_families` and give a split's phases to `sample_batch(..., phases=...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from fewtask_data.episode import EpisodeShape, FamilyBatch
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import load_procedural

BUILDER, BUILDER_VERSION = "sinusoid-families", "1"  # fixed families as data (fewtask_data/builders/sinusoid.py)


@dataclass(frozen=True)
class SinusoidSpec:
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    per_task_phase: bool = False  # True: Finn et al.'s plain MAML tasks


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low_high: tuple[float, float]) -> torch.Tensor:
    low, high = low_high
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low


def sample_batch(
    gen: torch.Generator,
    families: int,
    shape: EpisodeShape,
    spec: SinusoidSpec = SinusoidSpec(),
    dtype: torch.dtype = torch.float32,
    phases: torch.Tensor | None = None,
) -> FamilyBatch:
    """B sinusoid families with L meta tasks (K+Q points) and C goal tasks (K+V points).

    ``meta_info``/``goal_info`` hold each task's true (amplitude, phase) for oracles.
    ``phases`` ([B]) fixes the families instead of drawing them: new tasks of known
    families (the maml-oracle trains on the held-out families this way).
    """
    if not isinstance(families, int) or families < 1:
        raise FewtaskError(f"need at least one family per batch, got {families!r}")
    if shape.ways != 1:
        raise FewtaskError("sinusoid regression has one output: ways must be 1")
    b, tasks = families, shape.meta_tasks + shape.goal_tasks
    if phases is not None:
        if phases.shape != (b,) or spec.per_task_phase:
            raise FewtaskError(f"phases must be one per family ({b}) and families must share a phase")
        phase = phases.to(torch.float64)[:, None].expand(b, tasks)
    else:
        phase = _uniform(gen, (b, tasks if spec.per_task_phase else 1), spec.phase).expand(b, tasks)
    amp = _uniform(gen, (b, tasks), spec.amplitude)

    def points(task_slice: slice, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, p = amp[:, task_slice, None], phase[:, task_slice, None]
        x = _uniform(gen, (b, a.shape[1], n), spec.x_range)
        y = a * torch.sin(x - p)
        return x.unsqueeze(-1).to(dtype), y.unsqueeze(-1).to(dtype)

    meta = slice(0, shape.meta_tasks)
    goal = slice(shape.meta_tasks, tasks)
    meta_x, meta_y = points(meta, shape.meta_size)
    goal_x, goal_y = points(goal, shape.goal_size)
    info = torch.stack([amp, phase], dim=-1).to(dtype)
    phases = phase[:, 0].tolist()
    return FamilyBatch(
        meta_x, meta_y, goal_x, goal_y, shape, [f"sinusoid-phase-{p:.6f}" for p in phases],
        identities=[{"source": "sinusoid", "phase": p} for p in phases],
        meta_info=info[:, meta], goal_info=info[:, goal],
    )  # fmt: skip


CHUNK = 64  # steps sampled at once: one sampling call per 64 steps instead of per step


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator fixed by (seed, step): used per chunk of training steps and by tests."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def _rows(batch: FamilyBatch, lo: int, hi: int) -> FamilyBatch:
    """Families lo..hi-1 of a batch (views)."""
    return FamilyBatch(
        batch.meta_x[lo:hi], batch.meta_y[lo:hi], batch.goal_x[lo:hi], batch.goal_y[lo:hi], batch.shape,
        batch.families[lo:hi], batch.identities[lo:hi], batch.meta_info[lo:hi], batch.goal_info[lo:hi],
    )  # fmt: skip


def batches(
    seed: int, families: int, shape: EpisodeShape, spec: SinusoidSpec = SinusoidSpec(), start_step: int = 0
) -> Iterator[FamilyBatch]:
    """Endless training batches from ``start_step`` on; batch n depends only on (seed, n)."""
    chunk, offset = divmod(start_step, CHUNK)
    while True:
        big = sample_batch(step_generator(seed, chunk), families * CHUNK, shape, spec)
        for i in range(offset, CHUNK):
            yield _rows(big, i * families, (i + 1) * families)
        chunk, offset = chunk + 1, 0


def with_task_info(batch: FamilyBatch) -> FamilyBatch:
    """Append each task's true (amplitude, phase) to every input: the oracle's view."""
    if batch.meta_info is None or batch.goal_info is None:
        raise FewtaskError("the oracle needs batches that carry task parameters (meta_info/goal_info)")

    def extend(x: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, info[:, :, None, :].expand(*x.shape[:3], info.shape[-1])], dim=-1)

    return FamilyBatch(
        extend(batch.meta_x, batch.meta_info), batch.meta_y,
        extend(batch.goal_x, batch.goal_info), batch.goal_y,
        batch.shape, batch.families, batch.identities, batch.meta_info, batch.goal_info,
    )  # fmt: skip


def redraw_support(batch: FamilyBatch, gen: torch.Generator, spec: SinusoidSpec = SinusoidSpec()) -> FamilyBatch:
    """The same goal tasks (amplitude, phase) and validation points with new K support
    points: one more support draw of each task, to see how much a result depends on it."""
    if batch.goal_info is None:
        raise FewtaskError("redrawing support points needs batches that carry task parameters (goal_info)")
    k = batch.shape.support_size
    b, c = batch.goal_x.shape[:2]
    x = _uniform(gen, (b, c, k), spec.x_range)
    amp, phase = (batch.goal_info[..., i, None].double() for i in (0, 1))
    y = amp * torch.sin(x - phase)
    dtype = batch.goal_x.dtype
    goal_x = torch.cat([x.unsqueeze(-1).to(dtype), batch.goal_x[:, :, k:]], dim=2)
    goal_y = torch.cat([y.unsqueeze(-1).to(dtype), batch.goal_y[:, :, k:]], dim=2)
    return FamilyBatch(
        batch.meta_x, batch.meta_y, goal_x, goal_y, batch.shape, batch.families,
        identities=batch.identities, meta_info=batch.meta_info, goal_info=batch.goal_info,
    )  # fmt: skip


def family_phases(gen: torch.Generator, count: int, spec: SinusoidSpec = SinusoidSpec()) -> torch.Tensor:
    """``count`` family phases [count], float64, drawn as `sample_batch` draws a family's phase."""
    return _uniform(gen, (count,), spec.phase)


@dataclass
class SinusoidFamilies:
    """A sinusoid-families build, read back: the task distribution (amplitude and x ranges)
    and per split its families' phases [n] (float64, in build order)."""

    spec: SinusoidSpec
    phases: dict[str, torch.Tensor]
    build_id: str


def load_sinusoid_families(source) -> SinusoidFamilies:
    """Read what `fewtask-data build sinusoid-families` wrote (a folder or its manifest.json);
    another builder or version is a one-line error."""
    m = load_procedural(source, BUILDER, BUILDER_VERSION)
    spec = SinusoidSpec(*(tuple(m.param(k)) for k in ("amplitude_range", "phase_range", "x_range")))
    phases = {split: torch.tensor(m.values(split, "phase"), dtype=torch.float64) for split in m.splits}
    return SinusoidFamilies(spec, phases, m.build_id)
