"""MAML++'s training stabilizers that are plain functions (Antoniou, Edwards, Storkey, "How to
train your MAML", ICLR 2019), and the zeroing trick (Ye & Chao 2022).

- `multi_step_weights`: the multi-step loss's weights over a level's N steps at an outer
  step, annealed from uniform toward the last step as MAML++ does (its
  ``get_per_step_loss_importance_vector``, with outer steps in place of epochs).
- `inner_step` / `at_inner_step`: which inner step a forward pass belongs to, so per-step
  batch-norm weights (`trainer.models.convnets.TaskBatchNorm2d` with ``steps``) pick their
  row. The innermost running adaptation sets it: a forward at the parameters after s steps
  of it runs with ``inner_step() == s``; outside any adaptation it is 0.
- `zero_head`: the zeroing trick, the head's parameters set to zero before each task's
  inner loop (its initialization then never matters and gets no gradient).

Everything here is off unless an algorithm or model option turns it on.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# The floor MAML++ keeps under every non-final step's weight (0.03 / N).
MSL_FLOOR = 0.03


def multi_step_weights(n: int, step: int, anneal_steps: int) -> list[float] | None:
    """Weights of the target loss after each of ``n`` inner steps at outer step ``step``
    (0-based), or None once annealing is over (``step >= anneal_steps``: the last step's
    loss alone, the plain objective). At step 0 they are uniform; over ``anneal_steps``
    outer steps the non-final ones fall linearly to ``MSL_FLOOR / n`` and the last rises;
    they always sum to 1."""
    if n <= 1 or step >= anneal_steps:
        return None
    frac = step / anneal_steps
    floor = MSL_FLOOR / n
    early = max((1 - frac) / n, floor)
    last = min((1 + frac * (n - 1)) / n, 1 - (n - 1) * floor)
    return [early] * (n - 1) + [last]


class _Step:
    """The current inner step (a plain attribute: read at trace time under vmap and grad)."""

    value = 0


def inner_step() -> int:
    """The step index of the innermost running adaptation (0 outside one)."""
    return _Step.value


@contextlib.contextmanager
def at_inner_step(step: int) -> Iterator[None]:
    """Forward passes inside run as those at the parameters after ``step`` inner steps."""
    before, _Step.value = _Step.value, step
    try:
        yield
    finally:
        _Step.value = before


def zero_head(params: dict[str, torch.Tensor], heads: frozenset[str], autograd: bool = False) -> dict[str, torch.Tensor]:
    """The zeroing trick: the head's parameters replaced by zeros (no gradient flows to them).
    ``autograd``: the zeros are leaves that require grad (the plain-loop reference's inner
    steps differentiate with torch.autograd)."""
    def zero(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(v).requires_grad_() if autograd else torch.zeros_like(v)

    return {k: zero(v) if k in heads else v for k, v in params.items()}
