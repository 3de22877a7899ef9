"""Finn et al.'s sinusoid benchmark scored over several draws of each task's support
points: plain K-shot adaptation (no meta-update) after 0..S steps, and what the draws
say (the mean over draws and tasks, the median draw, the draws that diverge)."""

from __future__ import annotations

import torch

from trainer.domains.regression.sinusoid import redrawn_supports
from trainer.evaluation.protocol import episode_curves
from trainer.evaluation.report import WITHOUT
from trainer.evaluation.stats import summarize

DIVERGED_MSE = 10.0  # a draw whose MSE exceeds this (or is not finite) counts as diverging: the data's variance is ~4


def support_draw_curves(algo, params, step_sizes, held_out, steps: int, draws: int, seed: int) -> torch.Tensor:
    """Plain K-shot adaptation MSE after 0..steps steps, [draws, tasks, steps+1]
    (`redrawn_supports`: draw 0 is the tasks' own support points)."""
    out = []
    for view in redrawn_supports(held_out, draws, seed):
        curves = episode_curves(algo, params, step_sizes, {}, view, steps, protocols=(WITHOUT,))
        out.append(curves[WITHOUT]["loss"].double())
    return torch.stack(out)


def draw_summary(mse: torch.Tensor) -> dict:
    """What [draws, tasks, steps+1] MSEs say: the mean over draws and tasks (interval over
    tasks, each task's mean over its draws), the median draw, the diverging draws, and
    for comparison the first draw alone."""
    diverged = ~(mse <= DIVERGED_MSE)  # NaN counts as diverged
    flat = mse.flatten(0, 1)
    kept = torch.where(diverged, torch.nan, mse).flatten(0, 1)
    return {
        "draws": mse.shape[0], "tasks": mse.shape[1],
        "mse_vs_steps": summarize(mse.mean(0)),
        "median_mse_vs_steps": flat.nanquantile(0.5, dim=0).tolist(),  # the usual median (torch.median takes the lower middle)
        "diverging_draws": diverged.flatten(0, 1).sum(0).tolist(),
        "tasks_with_a_diverging_draw": diverged.any(0).sum(0).tolist(),
        "mean_mse_without_diverging_draws": kept.nanmean(0).tolist(),
        "first_draw_mse_vs_steps": summarize(mse[0]),
    }  # fmt: skip
