"""Deploying a learner on a stream: after every phase, score its current policy on every
phase's goal task (the Continual World matrix) and on the evaluation grid (Kaplanis et
al.'s gravities), and count the environment steps each phase's update sampled.

A learner has ``learn(phase, generator) -> env steps`` and ``score(tasks) -> returns``
(`trainer.training.stream_learners.PolicyLearner` wrapped by the experiment, or SAC)."""

from __future__ import annotations

import time
from typing import Callable

import torch

from trainer.evaluation import cw
from trainer.training.stream_learners import phase_generator


def deploy(learner, phases: list[dict], score: Callable[[list[dict]], torch.Tensor], grid: list[dict], seed: int,
           progress: Callable[[str], None] | None = None) -> dict:  # fmt: skip
    """Run ``learner`` along ``phases``: {"returns" [P+1, P], "grid" [P+1, G], "steps" [P], "seconds"}."""
    goals = [ph["goal"] for ph in phases]
    t0 = time.perf_counter()
    first = score(goals + grid)
    rows, grids, steps = [first[: len(goals)]], [first[len(goals):]], []
    for ph in phases:
        steps.append(learner.learn(ph, phase_generator(seed, ph["phase"])))
        scores = score(goals + grid)
        rows.append(scores[: len(goals)])
        grids.append(scores[len(goals):])
        if progress:
            progress(f"phase {ph['phase']} ({ph['family']}): goal return {float(rows[-1][ph['phase']]):.1f}, grid mean "
                     f"{float(grids[-1].mean()):.1f}, {steps[-1]} env steps ({time.perf_counter() - t0:.0f}s)")  # fmt: skip
    return {"returns": torch.stack(rows), "grid": torch.stack(grids), "steps": torch.tensor(steps, dtype=torch.float64),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def stream_metrics(result: dict, random: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Continual World metrics per task (`cw.metrics`) of a deployment, normalised by
    the random and single-task reference returns, with the grid curve (units: grid points, one value per
    phase) and the step cost."""
    p = cw.normalise(result["returns"], random, reference)
    return {**cw.metrics(p), "grid_return": result["grid"].T, "env_steps_per_phase": result["steps"]}
