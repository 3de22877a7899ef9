"""Policy-gradient surrogates whose derivatives of every order are unbiased.

The magic box of DiCE (Foerster et al. 2018), ``box(x) = exp(x - x_ref)``, is 1 at the
sampling parameters (``x_ref`` = x there, detached) and differentiates as ``box(x) dx``;
away from them it is the importance weight of the samples, so the same surrogate serves
TRPO's line search.

Three estimators of the meta-gradient (``ESTIMATORS``); trajectories are always drawn
from the current (adapted) policy:

- ``exact``: inner steps use the plain surrogate ``-mean(log pi * A)`` (the update rule
  actually applied to the samples), and the outer return is boxed with the log-probs of
  every upstream trajectory whose samples shaped the adapted policy (`upstream`) as well
  as its own: the objective E_inner[E_outer[R]] of the sampled updates and all its
  derivatives are estimated without bias (tested against closed forms, tests/trainer/
  test_rl_estimator.py).
- ``dice``: inner steps use the Loaded DiCE surrogate (score-score terms in the
  adaptation's Hessian), no upstream term: ProMP's "DiCE" meta-gradient for the
  expected-gradient objective.
- ``fixed``: plain inner surrogate, no upstream term: the sampling distribution's
  dependence on theta is dropped, as maml_rl's TensorFlow graph effectively does; biased.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("exact", "dice", "fixed")


def magic_box(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return torch.exp(x - ref)


def _steps(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum((-2, -1)).clamp_min(1)


def pg_loss(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Vanilla policy-gradient loss per task, [*lead]: -(sum of log pi(a_t|s_t) A_t) / steps
    (rllab's VPG surrogate, a mean over the running steps)."""
    return -(logp * adv * mask).sum((-2, -1)) / _steps(mask)


def loaded_terms(logp: torch.Tensor, ref: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                 upstream: torch.Tensor | float = 0.0) -> torch.Tensor:  # fmt: skip
    """sum_t (box(U + w_t) - box(U + w_{t-1})) A_t per trajectory, [*lead, N], where
    w_t = sum_{t' <= t} log pi(a_t'|s_t') (Loaded DiCE, Farquhar et al. 2019: the baseline
    inside A_t keeps every derivative unbiased) and U the upstream log-probs (a
    [*lead] tensor of differences to their reference, or 0)."""
    shift = (upstream if isinstance(upstream, float) else upstream[..., None, None])
    cum = torch.cumsum(logp - ref, -1) + shift
    box_t = torch.exp(cum)
    box_prev = torch.exp(cum - (logp - ref))
    return ((box_t - box_prev) * adv * mask).sum(-1)


def dice_pg_loss(logp: torch.Tensor, ref: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loaded DiCE version of `pg_loss` (same value and gradient at the sampling parameters)."""
    return -loaded_terms(logp, ref, adv, mask).sum(-1) / _steps(mask)


def leave_one_out(values: torch.Tensor) -> torch.Tensor:
    """For each index of the first axis, the mean of ``values`` over the other indices (0
    with a single index): a baseline for the upstream score that is independent of the
    index's own samples."""
    n = values.shape[0]
    if n < 2:
        return torch.zeros_like(values)
    total = values.sum(0, keepdim=True)
    return (total - values) / (n - 1)


def outer_objective(logp: torch.Tensor, ref: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    returns0: torch.Tensor, upstream: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Per task, [*lead]: the DiCE surrogate of the expected return of the outer
    trajectories, mean over trajectories. ``upstream`` ([*lead], log-probs of upstream
    samples minus their reference values) adds box(U) (R - b) with R the task's mean
    discounted return and b its `leave_one_out` mean over the first lead axis."""
    if upstream is None:
        return loaded_terms(logp, ref, adv, mask).mean(-1)
    value = returns0.mean(-1)
    score = torch.exp(upstream) * (value - leave_one_out(value))
    return loaded_terms(logp, ref, adv, mask, upstream).mean(-1) + score
