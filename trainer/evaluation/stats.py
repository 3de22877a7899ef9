"""Every interval the project reports, computed one way.

- Over evaluation units (held-out families, episodes, goals or problems): the mean and a
  95% normal-approximation half-width, 1.96 standard errors (`summarize`). A unit whose
  value is not finite (an adaptation that diverged) makes the mean NaN on purpose; the
  count of such units and the summary of the finite rest are reported beside it.
- Paired: `summarize` of a - b over the same units (`paired`): tighter than two intervals.
- Over training seeds: the mean of the per-seed means with a Student t interval,
  t(0.975, n-1) * sd / sqrt(n) (`over_seeds`); wide on purpose with 3 seeds (t = 4.30):
  it is what a claim about a method, not one trained model, must clear.

Pure functions of tensors and floats; no scipy in the dependencies.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch

from fewtask_data import FewtaskError

Z95 = 1.96


def _normal(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 95% half-width) over the leading axis; a single unit has half-width 0."""
    v = values.double()
    n = v.shape[0]
    half = Z95 * v.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(v.mean(0))
    return v.mean(0), half


def _plain(t: torch.Tensor):
    """A 0-d tensor as a float, a 1-d one as a list (one entry per finetuning step)."""
    return t.item() if t.dim() == 0 else t.tolist()


def summarize(values: torch.Tensor) -> dict:
    """``{"mean", "ci95", "diverged"}`` over the leading (unit) axis of ``values`` [n] or
    [n, steps]; when some units diverged also ``finite_mean`` and ``finite_ci95``, the
    summary without them."""
    values = values.detach().cpu()
    mean, half = _normal(values)
    finite = torch.isfinite(values)
    out = {"mean": _plain(mean), "ci95": _plain(half), "diverged": _plain((~finite).sum(0))}
    if not finite.all():
        columns = values.reshape(values.shape[0], -1).unbind(-1)
        rest = [_normal(col[ok]) if ok.sum() else (torch.tensor(math.nan),) * 2
                for col, ok in zip(columns, finite.reshape(values.shape[0], -1).unbind(-1))]  # fmt: skip
        shape = values.shape[1:]
        out["finite_mean"] = _plain(torch.stack([m for m, _ in rest]).reshape(shape))
        out["finite_ci95"] = _plain(torch.stack([h for _, h in rest]).reshape(shape))
    return out


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """`summarize` of a - b over the same units."""
    return summarize(a.double() - b.double())


@lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with ``df`` degrees of freedom: bisection on
    the CDF, the density integrated with Simpson's rule."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(t: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))

    def cdf(x: float, n: int = 2000) -> float:
        h = x / n
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
        return 0.5 + h / 3 * (density(0.0) + inner + density(x))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:  # the t tails are heavy for df = 1: widen until bracketed
        lo, hi = hi, 2 * hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def over_seeds(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 95% half-width) over seeds: t_{0.975, n-1} * sd / sqrt(n); NaN propagates."""
    n = len(values)
    if n < 2:
        raise FewtaskError(f"an interval over seeds needs at least 2 seeds, got {n}; pass --seeds 0,1,2")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(0.975, n - 1) * sd / math.sqrt(n)


def _columns(values: list) -> list[list[float]]:
    """Per-seed floats or equal-length lists -> one list of per-seed values per entry."""
    return [list(col) for col in zip(*values)] if isinstance(values[0], list) else [list(values)]


def pool_seeds(per_seed: Sequence[dict]) -> dict:
    """Per-seed `summarize` results -> one summary: the mean of the seeds' means; ``ci95``
    over seeds (`over_seeds`) when there are two or more, else the single seed's interval
    over units; ``unit_ci95`` the mean of the seeds' unit intervals; ``per_seed`` means;
    ``diverged`` summed over seeds."""
    means = [s["mean"] for s in per_seed]
    scalar = not isinstance(means[0], list)
    one = (lambda xs: xs[0]) if scalar else (lambda xs: xs)  # noqa: E731
    if len(per_seed) > 1:
        pairs = [over_seeds(col) for col in _columns(means)]
        mean, half = one([m for m, _ in pairs]), one([h for _, h in pairs])
    else:
        mean, half = means[0], per_seed[0]["ci95"]
    unit = one([sum(col) / len(col) for col in _columns([s["ci95"] for s in per_seed])])
    diverged = one([sum(col) for col in _columns([s["diverged"] for s in per_seed])])
    return {"mean": mean, "ci95": half, "unit_ci95": unit, "per_seed": means, "diverged": diverged}
