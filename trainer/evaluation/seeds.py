"""Results over training seeds: each number as the mean over seeds with a 95% interval
over seeds (Student t, n - 1 degrees of freedom) beside the mean held-out-family interval.

The two intervals answer different questions. The family interval (`evaluate.summarize`,
1.96 standard errors over held-out families) says how well one trained model was measured;
the seed interval says how much training itself varies. With 3 seeds t is 4.30, so the seed
interval is wide on purpose: it is what a claim about the method (not one model) must clear.

Pure functions on the evaluation schema (trainer/evaluation/protocol.py); no torch.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

from fewtask_data import FewtaskError


@lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with ``df`` degrees of freedom: bisection on
    the CDF, the density integrated with Simpson's rule (no scipy in the dependencies)."""
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


def _is_summary(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"mean", "ci95"}


def aggregate_summaries(per_seed: Sequence[dict]) -> dict:
    """Per-seed ``{"mean": [...], "ci95": [...]}`` (one entry per finetuning step) ->
    ``{"mean", "seed_ci95", "family_ci95", "per_seed"}``: the mean over seeds of the
    per-seed means, its interval over seeds, the mean of the per-seed family intervals."""
    means = [s["mean"] for s in per_seed]
    columns = [over_seeds(col) for col in zip(*means)]
    return {
        "mean": [m for m, _ in columns],
        "seed_ci95": [h for _, h in columns],
        "family_ci95": [sum(col) / len(col) for col in zip(*(s["ci95"] for s in per_seed))],
        "per_seed": means,
    }


def aggregate_tree(per_seed: Sequence[Any]) -> Any:
    """The same result tree from every seed -> one tree in which each ``{"mean", "ci95"}``
    leaf is `aggregate_summaries` of that leaf over seeds. Other values are kept when all
    seeds agree (e.g. "episodes", "steps") and listed per seed otherwise."""
    first = per_seed[0]
    if _is_summary(first):
        return aggregate_summaries(per_seed)
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(t, dict) and k in t for t in per_seed)]
        return {k: aggregate_tree([t[k] for t in per_seed]) for k in keys}
    return first if all(v == first for v in per_seed) else list(per_seed)


def paired_at(seeds: Sequence[int], per_seed: Sequence[dict], step: int) -> dict:
    """A paired difference (`evaluate.paired` per seed, over the same families) at one
    finetuning step: each seed's mean and family interval, and the mean over seeds with
    its seed interval."""
    rows = [{"seed": seed, "mean": s["mean"][step], "family_ci95": s["ci95"][step]} for seed, s in zip(seeds, per_seed)]
    mean, half = over_seeds([r["mean"] for r in rows])
    return {"step": step, "per_seed": rows, "mean": mean, "seed_ci95": half,
            "seeds_with_family_interval_below_zero": sum(r["mean"] + r["family_ci95"] < 0 for r in rows)}  # fmt: skip
