"""Javed & White's evaluation of a continual learner, and its summaries.

For each evaluation problem (functions of the evaluation pool): one online pass over
its trajectory -- the layers from ``split`` on learned by SGD, one step per mini-batch --
then the MSE on fresh points of each of its F functions. The inner step is the one of
a grid with the lowest mean MSE on separate validation problems. Summaries give each
function position's mean MSE (bars) and the mean over functions, each with a 95%
percentile-bootstrap interval over problems.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fewtask_data.sources.continual_sines import ContinualBatch, ContinualSpec, function_points
from trainer.domains.continual.net import Params, run_layers
from trainer.domains.continual.oml import learn_online

LR_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)


def test_points(batch: ContinualBatch, spec: ContinualSpec, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fresh points of every function of every problem: [P, F, n, .] (fixed by seed)."""
    gen = torch.Generator().manual_seed(seed)
    return function_points(gen, batch.functions.double(), n, spec, batch.traj_x.dtype)


def function_mse(params: Params, batch: ContinualBatch, test: tuple[torch.Tensor, torch.Tensor], lr: float,
                 split: int, depth: int) -> torch.Tensor:  # fmt: skip
    """[P, F]: per problem, each function's MSE after one online pass over the trajectory."""

    test_x, test_y = test
    with torch.no_grad():
        h = run_layers(params, batch.traj_x, 0, split, depth)
        tuned = {**params, **learn_online(params, h, batch.traj_y, lr, split, depth, first_order=True)}
        out = (run_layers(tuned, test_x, 0, depth, depth) - test_y).pow(2).mean(dim=(-2, -1))
    return torch.nan_to_num(out, nan=float("inf"))


def choose(params: Params, batch: ContinualBatch, test, depth: int, lrs: Sequence[float],
           splits: Sequence[int]) -> tuple[float, int, dict[str, float]]:  # fmt: skip
    """(lr, split) with the lowest mean MSE on the validation problems, and every candidate's."""
    scores = {(lr, s): float(function_mse(params, batch, test, lr, s, depth).mean()) for s in splits for lr in lrs}
    lr, split = min(scores, key=scores.get)
    return lr, split, {f"lr={k[0]},split={k[1]}": v for k, v in scores.items()}


def bootstrap(values: torch.Tensor, reps: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``values`` [n]."""
    gen = torch.Generator().manual_seed(seed)
    v = values.double()
    idx = torch.randint(v.shape[0], (reps, v.shape[0]), generator=gen)
    means = v[idx].mean(1)
    return [float(means.quantile(0.025)), float(means.quantile(0.975))]


def summarize(mse: torch.Tensor) -> dict:
    """Per-function and overall mean MSE with bootstrap intervals, from [P, F]."""
    mse = mse.cpu()
    per_problem = mse.mean(1)
    return {
        "problems": mse.shape[0],
        "mean": float(per_problem.mean()),
        "ci95": bootstrap(per_problem),
        "per_function": {"mean": mse.mean(0).tolist(), "ci95": [bootstrap(mse[:, f], seed=f + 1) for f in range(mse.shape[1])]},
    }


def paired_gain(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean of a - b per problem (same problems) with its bootstrap interval."""
    d = a.cpu().mean(1) - b.cpu().mean(1)
    return {"mean": float(d.mean()), "ci95": bootstrap(d)}
