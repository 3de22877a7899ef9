"""Javed & White's evaluation of a continual learner, and its summaries.

For each evaluation problem (functions of the evaluation pool): one online pass over
its trajectory -- the layers from ``split`` on learned by SGD, one step per mini-batch --
then the MSE on fresh points of each of its F functions. The inner step is the one of
a grid with the lowest mean MSE on separate validation problems. A problem's score is its
mean MSE over the functions (the unit of `trainer.evaluation.stats`' intervals);
`per_function` summarizes each function position (the bars of the figures).

A method with learned step sizes is evaluated with them instead of the grid: per PLN
tensor, or per step (a schedule: the trajectory's step s takes entry s, as in training, and
a step past its end the last entry; evaluation trajectories have training's length).
"""

from __future__ import annotations

from typing import Sequence

import torch

from fewtask_data.sources.continual_sines import ContinualBatch, ContinualSpec, function_points
from trainer.domains.continual.net import Params, run_layers
from trainer.domains.continual.oml import learn_online
from trainer.evaluation.stats import summarize

LR_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)


def test_points(batch: ContinualBatch, spec: ContinualSpec, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fresh points of every function of every problem: [P, F, n, .] (fixed by seed)."""
    gen = torch.Generator().manual_seed(seed)
    return function_points(gen, batch.functions.double(), n, spec, batch.traj_x.dtype)


def function_mse(params: Params, batch: ContinualBatch, test: tuple[torch.Tensor, torch.Tensor], lr,
                 split: int, depth: int) -> torch.Tensor:  # fmt: skip
    """[P, F]: per problem, each function's MSE after one online pass over the trajectory
    (``lr``: a number, learned sizes per tensor or their per-step schedule, `oml.learn_online`)."""

    test_x, test_y = test
    with torch.no_grad():
        h = run_layers(params, batch.traj_x, 0, split, depth)
        tuned = {**params, **learn_online(params, h, batch.traj_y, lr, split, depth, first_order=True)}
        out = (run_layers(tuned, test_x, 0, depth, depth) - test_y).pow(2).mean(dim=(-2, -1))
    return torch.nan_to_num(out, nan=float("inf"))


def lr_label(lr) -> float | str:
    """An online step for reports: the number, or "learned" for learned sizes (per tensor, or
    a per-step schedule of them)."""
    return "learned" if isinstance(lr, (dict, list)) else lr


def choose(params: Params, batch: ContinualBatch, test, depth: int, lrs: Sequence,
           splits: Sequence[int]) -> tuple[float | dict, int, dict[str, float]]:  # fmt: skip
    """(lr, split) with the lowest mean MSE on the validation problems, and every candidate's.
    A candidate online step is a number, learned per-tensor sizes ({name: tensor}) or a
    per-step schedule of them (a list)."""
    scores = {(i, s): float(function_mse(params, batch, test, lr, s, depth).mean()) for s in splits for i, lr in enumerate(lrs)}
    i, split = min(scores, key=scores.get)
    return lrs[i], split, {f"lr={lr_label(lrs[k[0]])},split={k[1]}": v for k, v in scores.items()}


def problem_mse(mse: torch.Tensor) -> torch.Tensor:
    """[P, F] -> [P]: each problem's mean MSE over its functions."""
    return mse.cpu().double().mean(1)


def per_function(mse: torch.Tensor) -> dict:
    """Each function position's mean MSE and 95% interval over problems, from [P, F]."""
    return summarize(mse.cpu().double())
