"""The sinusoid domain: held-out families and tasks as fixed FamilyBatches.

A task is a sine curve (amplitude, phase); in the paper's section 4.1 a family fixes the
phase and its tasks draw amplitudes, in Finn et al.'s benchmark every task draws both
(`fewtask_data.sources.sinusoid`). Held-out sets come from a seed stream that training
never uses, so every method and seed is scored on the same families.
"""

from __future__ import annotations

import torch

from fewtask_data import EpisodeShape, FamilyBatch
from fewtask_data.sources import sinusoid

EVAL_SEED_OFFSET = 7_919_000  # held-out families come from a seed stream training never uses


def eval_batches(seed: int, count: int, shape: EpisodeShape, spec: sinusoid.SinusoidSpec, chunk: int = 100,
                 dtype: torch.dtype = torch.float32) -> list[FamilyBatch]:  # fmt: skip
    """``count`` held-out families, fixed by ``seed``, in chunks."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    done: list[FamilyBatch] = []
    while sum(len(b) for b in done) < count:
        done.append(sinusoid.sample_batch(gen, min(chunk, count - sum(len(b) for b in done)), shape, spec, dtype))
    return done


def finn_eval_tasks(eval_seed: int, tasks: int, shots: int, val: int, dtype: torch.dtype = torch.float32):
    """Finn et al.'s held-out tasks: own amplitude and phase, ``shots`` support and ``val`` query points."""
    shape = EpisodeShape(ways=1, shots=shots, queries=1, val=val, meta_tasks=0, goal_tasks=1)
    return eval_batches(eval_seed, tasks, shape, sinusoid.SinusoidSpec(per_task_phase=True), dtype=dtype)


def redrawn_supports(held_out: list[FamilyBatch], draws: int, seed: int):
    """Draw 0 is the tasks' own support points, draws 1.. redraw them (fixed by ``seed``)."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + 1)
    for d in range(draws):
        yield held_out if d == 0 else [sinusoid.redraw_support(b, gen) for b in held_out]
