"""Deploying a learner on a stream: after every phase, score its current policy on every
phase's goal task (the Continual World matrix) and on the evaluation grid (Kaplanis et
al.'s gravities), and count the environment steps each phase's update sampled.

A learner has ``learn(phase, generator) -> env steps`` and ``score(tasks) -> returns``
(`trainer.training.stream_learners.PolicyLearner` wrapped by the experiment, or SAC)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import cloudpickle
import numpy as np
import torch

from fewtask_data import FewtaskError, io
from trainer.evaluation import cw
from trainer.training.stream_learners import phase_generator


def deploy(learner, phases: list[dict], score: Callable[[list[dict]], torch.Tensor], grid: list[dict], seed: int,
           progress: Callable[[str], None] | None = None, checkpoint: Path | None = None) -> dict:  # fmt: skip
    """Run ``learner`` along ``phases``: {"returns" [P+1, P], "grid" [P+1, G], "steps" [P], "seconds"}.

    ``checkpoint``: after every phase the deployment so far is saved there (`save_deployment`),
    and a deployment that finds one goes on after its last phase, exactly as if never stopped:
    a killed stream (hours of SAC) loses at most one phase."""
    goals = [ph["goal"] for ph in phases]
    saved = load_deployment(checkpoint, learner) if checkpoint is not None else None
    if saved is None:
        first = score(goals + grid)
        rows, grids, steps, before = [first[: len(goals)]], [first[len(goals):]], [], 0.0
    else:
        rows, grids, steps, before = saved["rows"], saved["grids"], saved["steps"], saved["seconds"]
        if len(steps) > len(phases) or len(rows[0]) != len(goals):
            raise FewtaskError(f"{checkpoint} holds a deployment on another stream ({len(steps)} phases done, "
                               f"{len(rows[0])} goals); delete it to restart this deployment")  # fmt: skip
    t0 = time.perf_counter() - before
    for ph in phases[len(steps):]:
        steps.append(learner.learn(ph, phase_generator(seed, ph["phase"])))
        scores = score(goals + grid)
        rows.append(scores[: len(goals)])
        grids.append(scores[len(goals):])
        if checkpoint is not None:
            save_deployment(checkpoint, learner, rows, grids, steps, time.perf_counter() - t0)
        if progress:
            progress(f"phase {ph['phase']} ({ph['family']}): goal return {float(rows[-1][ph['phase']]):.1f}, grid mean "
                     f"{float(grids[-1].mean()):.1f}, {steps[-1]} env steps ({time.perf_counter() - t0:.0f}s)")  # fmt: skip
    return {"returns": torch.stack(rows), "grid": torch.stack(grids), "steps": torch.tensor(steps, dtype=torch.float64),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def save_deployment(path: Path, learner, rows: list, grids: list, steps: list, seconds: float) -> None:
    """The learner whole (cloudpickle: SB3's SAC with its replay buffer and its env's physics
    state, or a policy learner's parameters), the global generators SAC draws from, and the
    scores so far; written atomically."""
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    state = {"learner": learner, "rng": rng, "rows": rows, "grids": grids, "steps": steps, "seconds": seconds}
    io.write_bytes(path, cloudpickle.dumps(state))


def load_deployment(path: Path, learner) -> dict | None:
    """The state `save_deployment` wrote, with ``learner`` and the global generators put back
    to it (in place: callers' references to ``learner`` stay valid); None without a file."""
    if not path.exists():
        return None
    try:
        state = cloudpickle.loads(path.read_bytes())
    except Exception as err:  # a foreign or truncated file
        raise FewtaskError(f"cannot read the stream checkpoint {path} ({type(err).__name__}); delete it to restart "
                           "this deployment") from None  # fmt: skip
    vars(learner).update(vars(state["learner"]))
    py, np_state, torch_state = state["rng"]
    random.setstate(py)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    return state


def stream_metrics(result: dict, random: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Continual World metrics per task (`cw.metrics`) of a deployment, normalised by
    the random and single-task reference returns, with the grid curve (units: grid points, one value per
    phase) and the step cost."""
    p = cw.normalise(result["returns"], random, reference)
    return {**cw.metrics(p), "grid_return": result["grid"].T, "env_steps_per_phase": result["steps"]}
