"""Incremental sine problems (Javed & White 2019, "OML"), and frequency families of them.

A *function* is y = A sin(w z + phi) with A ~ U[0.1, 5] and phi ~ U[0, pi]; w is 1 for
the plain benchmark and one value per family for the families of MALTML section 4.2.
A *continual problem* is F functions (10) learned one after the other: the learner sees
S mini-batches (40) of b points (8) from function 1, then S from function 2, ... -- a
trajectory of F*S online steps. Each input is (z, one-hot of the function's position in
the problem), z ~ U[-5, 5]; the target is y.

Functions come from fixed pools: one for meta-training (400), a disjoint one for
evaluation (500), each a pure function of (seed, split). Problems draw F distinct
functions of a pool; batch n of a training stream depends only on (seed, n), so a run
resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import load_procedural
from fewtask_data.sources.sinusoid import step_generator

POOLS = {"train": 0, "eval": 1}  # pool name -> its stream offset in the seed
BUILDER, BUILDER_VERSION = "continual-sine-families", "1"  # family definitions (fewtask_data/builders/continual_sines.py)


@dataclass(frozen=True)
class ContinualSpec:
    functions: int = 10  # F: functions per problem, learned in sequence
    steps_per_function: int = 40  # S: online mini-batches per function
    batch: int = 8  # b: points per mini-batch
    rand_points: int = 8  # per function: the meta-loss's random batch of the problem's functions
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    z_range: tuple[float, float] = (-5.0, 5.0)
    train_pool: int = 400
    eval_pool: int = 500

    def __post_init__(self) -> None:
        for key in ("functions", "steps_per_function", "batch", "train_pool", "eval_pool"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise FewtaskError(f"{key.replace('_', '-')} must be a positive integer, got {getattr(self, key)!r}")
        if self.rand_points < 0:
            raise FewtaskError(f"rand-points must be >= 0, got {self.rand_points}")
        if self.functions > min(self.train_pool, self.eval_pool):
            raise FewtaskError(
                f"a problem needs {self.functions} distinct functions but a pool holds "
                f"{min(self.train_pool, self.eval_pool)}; lower --functions or enlarge the pools"
            )

    @property
    def in_features(self) -> int:
        return 1 + self.functions  # z and the one-hot position

    @property
    def steps(self) -> int:
        return self.functions * self.steps_per_function


@dataclass
class ContinualBatch:
    """P continual problems on a leading axis.

    ``traj_x`` [P, F*S, b, 1+F], ``traj_y`` [P, F*S, b, 1]: the online trajectory;
    ``rand_x`` [P, F*r, 1+F], ``rand_y``: fresh points of every function of the problem;
    ``functions`` [P, F, 3]: each function's (amplitude, phase, frequency), in order.
    """

    traj_x: torch.Tensor
    traj_y: torch.Tensor
    rand_x: torch.Tensor
    rand_y: torch.Tensor
    functions: torch.Tensor

    def __len__(self) -> int:
        return self.traj_x.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.traj_x, self.traj_y, self.rand_x, self.rand_y

    def to(self, device: torch.device | str) -> "ContinualBatch":
        return ContinualBatch(*(t.to(device) for t in (*self.tensors(), self.functions)))

    def rows(self, lo: int, hi: int) -> "ContinualBatch":
        return ContinualBatch(*(t[lo:hi] for t in (*self.tensors(), self.functions)))


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low_high: tuple[float, float]) -> torch.Tensor:
    low, high = low_high
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low


def function_pool(seed: int, pool: str, spec: ContinualSpec = ContinualSpec()) -> torch.Tensor:
    """The pool's functions as [size, 2] (amplitude, phase), float64: a pure function of (seed, pool)."""
    if pool not in POOLS:
        raise FewtaskError(f"unknown function pool {pool!r}; choose train or eval")
    size = spec.train_pool if pool == "train" else spec.eval_pool
    gen = torch.Generator().manual_seed((seed * 7_919 + POOLS[pool]) % (2**63))
    return torch.stack([_uniform(gen, (size,), spec.amplitude), _uniform(gen, (size,), spec.phase)], dim=-1)


def function_points(
    gen: torch.Generator, functions: torch.Tensor, n: int, spec: ContinualSpec, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fresh points of every function: x [P, F, n, 1+F] (z, one-hot position), y [P, F, n, 1]."""
    p, f = functions.shape[:2]
    z = _uniform(gen, (p, f, n), spec.z_range)
    amp, phase, freq = (functions[..., i, None] for i in range(3))
    y = amp * torch.sin(freq * z + phase)
    onehot = torch.eye(f, dtype=torch.float64)[None, :, None, :].expand(p, f, n, f)
    x = torch.cat([z.unsqueeze(-1), onehot], dim=-1)
    return x.to(dtype), y.unsqueeze(-1).to(dtype)


def sample_problems(
    gen: torch.Generator, pool: torch.Tensor, count: int, spec: ContinualSpec,
    frequencies: torch.Tensor | Sequence[float] | None = None, dtype: torch.dtype = torch.float32,
) -> ContinualBatch:  # fmt: skip
    """``count`` problems, each F distinct functions of ``pool`` in random order;
    ``frequencies`` ([count]) gives each problem its family's w (default 1)."""
    if count < 1:
        raise FewtaskError(f"need at least one problem, got {count}")
    f, s, b = spec.functions, spec.steps_per_function, spec.batch
    if f > pool.shape[0]:
        raise FewtaskError(f"a problem needs {f} distinct functions but the pool holds {pool.shape[0]}")
    picks = torch.stack([torch.randperm(pool.shape[0], generator=gen)[:f] for _ in range(count)])
    freq = torch.ones(count, dtype=torch.float64) if frequencies is None else torch.as_tensor(frequencies, dtype=torch.float64)
    if freq.shape != (count,):
        raise FewtaskError(f"need one frequency per problem ({count}), got shape {tuple(freq.shape)}")
    functions = torch.cat([pool[picks], freq[:, None, None].expand(count, f, 1)], dim=-1)
    tx, ty = function_points(gen, functions, s * b, spec, dtype)  # [P, F, S*b, .]: function by function
    rx, ry = function_points(gen, functions, spec.rand_points, spec, dtype)
    return ContinualBatch(
        tx.reshape(count, f * s, b, -1), ty.reshape(count, f * s, b, 1),
        rx.reshape(count, f * spec.rand_points, -1), ry.reshape(count, f * spec.rand_points, 1),
        functions.to(dtype),
    )  # fmt: skip


def problem_batches(
    seed: int, pool: torch.Tensor, problems: int, spec: ContinualSpec, start_step: int = 0,
    frequencies: Sequence[float] | None = None,
) -> Iterator[ContinualBatch]:  # fmt: skip
    """Endless training batches of ``problems`` problems from ``start_step`` on; batch n
    depends only on (seed, n). With ``frequencies`` (a family split's w values) each
    problem belongs to a family drawn uniformly from them."""
    step = start_step
    while True:
        gen = step_generator(seed, step)
        freq = None
        if frequencies is not None:
            choice = torch.randint(len(frequencies), (problems,), generator=gen)
            freq = torch.as_tensor(frequencies, dtype=torch.float64)[choice]
        yield sample_problems(gen, pool, problems, spec, freq)
        step += 1


@dataclass
class ContinualFamilies:
    """B families, each with L meta-finetuning problems and C goal problems: ``meta`` and
    ``goal`` hold ContinualBatch tensors shaped [B, L, ...] and [B, C, ...]."""

    meta: ContinualBatch
    goal: ContinualBatch
    frequencies: torch.Tensor  # [B]

    def __len__(self) -> int:
        return self.frequencies.shape[0]

    def to(self, device: torch.device | str) -> "ContinualFamilies":
        return ContinualFamilies(self.meta.to(device), self.goal.to(device), self.frequencies)


def sample_families(
    gen: torch.Generator, pool: torch.Tensor, frequencies: torch.Tensor, meta_problems: int, goal_problems: int,
    spec: ContinualSpec, dtype: torch.dtype = torch.float32,
) -> ContinualFamilies:  # fmt: skip
    """One family per entry of ``frequencies``: L + C problems of the pool at that w."""
    if meta_problems < 0 or goal_problems < 1:
        raise FewtaskError(f"need >= 0 meta problems and >= 1 goal problem, got {meta_problems} and {goal_problems}")
    b, n = frequencies.shape[0], meta_problems + goal_problems
    flat = sample_problems(gen, pool, b * n, spec, frequencies.to(torch.float64).repeat_interleave(n), dtype)
    parts = [t.reshape(b, n, *t.shape[1:]) for t in (*flat.tensors(), flat.functions)]
    meta = ContinualBatch(*(t[:, :meta_problems] for t in parts))
    goal = ContinualBatch(*(t[:, meta_problems:] for t in parts))
    return ContinualFamilies(meta, goal, frequencies)


def family_batches(
    seed: int, pool: torch.Tensor, frequencies: Sequence[float], families: int, meta_problems: int,
    goal_problems: int, spec: ContinualSpec, start_step: int = 0,
) -> Iterator[ContinualFamilies]:  # fmt: skip
    """Endless MALTML batches: ``families`` families drawn uniformly (with replacement)
    from ``frequencies``; batch n depends only on (seed, n)."""
    if not frequencies:
        raise FewtaskError("need at least one family frequency")
    table = torch.as_tensor(list(frequencies), dtype=torch.float64)
    step = start_step
    while True:
        gen = step_generator(seed, step)
        chosen = table[torch.randint(len(table), (families,), generator=gen)]
        yield sample_families(gen, pool, chosen, meta_problems, goal_problems, spec)
        step += 1


@dataclass
class FamilyDefinitions:
    """A continual-sine-families build, read back: per split its function pool [n, 2]
    (amplitude, phase) and its families' frequencies, and the problem settings."""

    spec: ContinualSpec
    pools: dict[str, torch.Tensor]
    frequencies: dict[str, list[float]]
    build_id: str


def load_family_definitions(source) -> FamilyDefinitions:
    """Read the family definitions that `fewtask-data build continual-sine-families` wrote
    (a folder or its manifest.json, either manifest kind); another builder or version is a
    one-line error."""
    m = load_procedural(source, BUILDER, BUILDER_VERSION)
    settings = [m.param(k) for k in ("functions", "steps_per_function", "batch", "rand_points", "amplitude", "phase", "z_range")]
    spec = ContinualSpec(*settings[:4], *map(tuple, settings[4:]), len(m.pool("train")), len(m.pool("test")))
    pools = {split: torch.tensor([[f["amplitude"], f["phase"]] for f in m.pool(split)], dtype=torch.float64).reshape(-1, 2)
             for split in m.splits}  # fmt: skip
    return FamilyDefinitions(spec, pools, {split: m.values(split, "frequency") for split in m.splits}, m.build_id)
