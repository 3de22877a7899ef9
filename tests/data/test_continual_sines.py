"""Incremental sine problems: shapes, the trajectory's function order, one-hot inputs,
disjoint pools, pure functions of the seeds, and bad settings as one-line errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import (
    ContinualSpec, family_batches, function_pool, problem_batches, sample_problems,
)  # fmt: skip

SPEC = ContinualSpec(functions=4, steps_per_function=3, batch=5, rand_points=2, train_pool=40, eval_pool=50)


def test_problem_shapes_order_and_one_hot():
    pool = function_pool(1, "train", SPEC)
    b = sample_problems(torch.Generator().manual_seed(0), pool, 3, SPEC, dtype=torch.float64)
    assert len(b) == 3
    assert b.traj_x.shape == (3, 12, 5, 5) and b.traj_y.shape == (3, 12, 5, 1)
    assert b.rand_x.shape == (3, 8, 5) and b.rand_y.shape == (3, 8, 1) and b.functions.shape == (3, 4, 3)
    for p, step in itertools.product(range(3), range(12)):
        f = step // SPEC.steps_per_function  # 3 mini-batches of function 1, then of function 2, ...
        x = b.traj_x[p, step]
        assert torch.equal(x[:, 1:], torch.eye(4, dtype=torch.float64)[f].expand(5, 4))
        amp, phase, freq = b.functions[p, f]
        assert torch.allclose(b.traj_y[p, step, :, 0], amp * torch.sin(freq * x[:, 0] + phase))
        assert x[:, 0].abs().max() <= 5.0
    # each problem's functions are distinct members of the pool, with frequency 1
    for p in range(3):
        rows = b.functions[p, :, :2]
        assert len({tuple(r.tolist()) for r in rows}) == 4
        assert all(any(torch.allclose(r, q) for q in pool) for r in rows)
    assert torch.all(b.functions[..., 2] == 1.0)
    assert torch.all((pool[:, 0] >= 0.1) & (pool[:, 0] <= 5.0) & (pool[:, 1] >= 0) & (pool[:, 1] <= torch.pi))


def test_pools_are_disjoint_and_pure_functions_of_the_seed():
    train, evaluation = function_pool(3, "train", SPEC), function_pool(3, "eval", SPEC)
    assert train.shape == (40, 2) and evaluation.shape == (50, 2)
    assert not {tuple(r) for r in train.tolist()} & {tuple(r) for r in evaluation.tolist()}
    assert torch.equal(train, function_pool(3, "train", SPEC))
    assert not torch.equal(train, function_pool(4, "train", SPEC))


def test_training_batches_resume_at_any_step():
    pool = function_pool(0, "train", SPEC)
    a = list(itertools.islice(problem_batches(5, pool, 2, SPEC), 4))
    b = next(problem_batches(5, pool, 2, SPEC, start_step=3))
    assert torch.equal(a[3].traj_x, b.traj_x) and torch.equal(a[3].rand_y, b.rand_y)
    fams = next(family_batches(5, pool, [0.5, 1.5], 3, 2, 1, SPEC))
    assert fams.meta.traj_x.shape[:2] == (3, 2) and fams.goal.traj_x.shape[:2] == (3, 1)
    assert set(fams.frequencies.tolist()) <= {0.5, 1.5}
    assert torch.all(fams.meta.functions[..., 2] == fams.frequencies[:, None, None])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"functions": 0}, "functions must be a positive integer"),
        ({"steps_per_function": 0}, "steps-per-function must be a positive integer"),
        ({"functions": 60, "train_pool": 50}, "needs 60 distinct functions"),
        ({"rand_points": -1}, "rand-points must be >= 0"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(FewtaskError, match=message):
        ContinualSpec(**kwargs)
