"""Continual World's metrics (Wolczyk et al. 2021) on a stream's tasks.

``returns[j, i]`` is the return on task i (the goal of phase i) after j phases
(row 0: before the stream). Returns are normalised per task between a random policy
(0) and a single-task reference (1): p = (R - random) / (reference - random).

- performance: the mean over tasks of p after the last phase;
- forgetting of task i: p right after its own phase minus p at the end, averaged over
  every task but the last (which cannot have been forgotten yet);
- forward transfer of task i: (AUC_i - AUC_ref) / (1 - AUC_ref), AUC_i the trapezoid of
  p over task i's own phase (mean of p before and after it); the reference trained from
  the random policy goes from 0 to 1 over the same trapezoid, so AUC_ref = 1/2 and the
  transfer is 2 AUC_i - 1.

Each metric also comes per task (``*_per_task``), the units its intervals are over.
"""

from __future__ import annotations

import torch

TINY = 1e-6


def normalise(returns: torch.Tensor, random: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(R - random) / (reference - random) per task (last axis); a reference no better than
    random gets a denominator of +-1e-6 rather than a division by zero."""
    span = reference - random
    span = torch.where(span.abs() < TINY, torch.full_like(span, TINY) * torch.where(span < 0, -1.0, 1.0), span)
    return (returns - random) / span


def metrics(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per task of a normalised [phases + 1, phases] matrix: performance, forgetting, forward transfer."""
    n = p.shape[1]
    idx = torch.arange(n)
    after_own = p[idx + 1, idx]
    auc = (p[idx, idx] + after_own) / 2
    return {"performance": p[-1], "forgetting": (after_own - p[-1])[: max(n - 1, 1)],
            "forward_transfer": (auc - 0.5) / 0.5}  # fmt: skip
