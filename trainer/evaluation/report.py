"""One results.json schema for every experiment (`results.schema.json` beside this file).

An experiment hands over, per training seed and method, its evaluation curves::

    curves[seed][method] = {protocol: {metric: tensor [units, steps + 1] or [units]}}

with protocol ``without_meta_update`` and/or ``with_meta_update`` (the method used with
and without its meta-update V_beta on the family's L tasks) and the units its held-out
families, episodes, goals or problems (the same units, in the same order, for every
method of a seed, so differences are paired). `results` turns them into the report:

    {"schema": "fewtask-results", "schema_version": 1, "experiment", "config", "unit",
     "seeds", "steps", "intervals",
     "methods":     {method: {"train": [per seed], "without_meta_update": {metric: S},
                              "with_meta_update": {...}, "meta_update_gain": {...}}},
     "comparisons": {"a_minus_b": {"without_meta_update" | "with_meta_update" |
                                   "with_minus_without": {metric: S}}},
     "per_seed":    {seed: {"methods": ..., "comparisons": ...}},   # S over units
     "extra":       {experiment-specific}}

where every S is `stats.pool_seeds` of the seeds' `stats.summarize` (see ``INTERVALS``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from trainer.evaluation.stats import paired, pool_seeds, summarize

SCHEMA, SCHEMA_VERSION = "fewtask-results", 1
WITHOUT, WITH, GAIN = "without_meta_update", "with_meta_update", "meta_update_gain"
PROTOCOLS = (WITHOUT, WITH)
AS_MEANT = "with_minus_without"  # a after its meta-update minus b without one: each as it is meant to be used
INTERVALS = (
    "Per seed, every summary is over the evaluation units: mean and ci95 = 1.96 standard errors (normal "
    "approximation); paired differences are summarized the same way over the same units. Over seeds: mean = the "
    "mean of the seeds' means, ci95 = t(0.975, n-1) * sd / sqrt(n) over the n seeds when n >= 2, else the single "
    "seed's interval over units; unit_ci95 = the mean of the seeds' intervals over units; per_seed = each seed's "
    "mean; diverged = units with a non-finite value, summed over seeds."
)

Curves = Mapping[str, Mapping[str, torch.Tensor]]  # protocol -> metric -> [units, ...]
# One method's curves for one seed, saved beside its run so that `fewtask-train combine` can
# pair methods trained in separate runs; the run's results record the settings that fix its
# units under extra["evaluation"] (equal settings: the same units in the same order).
CURVES_FILE = "curves.pt"


def save_curves(folder: Path, curves: Curves) -> None:
    """``curves`` ({protocol: {metric: tensor}}) as ``folder/curves.pt``, on the CPU."""
    torch.save({p: {m: v.detach().cpu() for m, v in c.items()} for p, c in curves.items()}, folder / CURVES_FILE)


def method_summary(curves: Curves) -> dict:
    """A method's summary per protocol and metric, and the paired gain of its meta-update."""
    out = {p: {m: summarize(v) for m, v in curves[p].items()} for p in PROTOCOLS if p in curves}
    if WITH in curves and WITHOUT in curves:
        out[GAIN] = {m: paired(curves[WITH][m], curves[WITHOUT][m]) for m in curves[WITHOUT]}
    return out


def default_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of methods in the given order."""
    return [(a, b) for i, a in enumerate(methods) for b in methods[i + 1 :]]


def comparisons(curves: Mapping[str, Curves], pairs: Sequence[tuple[str, str]]) -> dict:
    """Paired a - b on the same units: under each protocol both have, and ``with_minus_without``
    (a after its meta-update, b without one)."""
    out = {}
    for a, b in pairs:
        ca, cb = curves[a], curves[b]
        table = {p: {m: paired(ca[p][m], cb[p][m]) for m in ca[p]} for p in PROTOCOLS if p in ca and p in cb}
        if WITH in ca and WITHOUT in cb:
            table[AS_MEANT] = {m: paired(ca[WITH][m], cb[WITHOUT][m]) for m in ca[WITH]}
        out[f"{a}_minus_{b}"] = table
    return out


def seed_report(curves: Mapping[str, Curves], pairs: Sequence[tuple[str, str]]) -> dict:
    return {"methods": {m: method_summary(c) for m, c in curves.items()}, "comparisons": comparisons(curves, pairs)}


def _is_summary(node: Any) -> bool:
    return isinstance(node, dict) and {"mean", "ci95", "diverged"} <= set(node)


def pooled(trees: Sequence[Any]) -> Any:
    """The same tree from every seed -> one tree whose summaries are `stats.pool_seeds`."""
    first = trees[0]
    if _is_summary(first):
        return pool_seeds(trees)
    if isinstance(first, dict):
        return {k: pooled([t[k] for t in trees]) for k in first if all(k in t for t in trees)}
    return first


def json_safe(value: Any) -> Any:
    """Configs as plain JSON: dataclasses as dicts, paths as strings, tuples as lists,
    numbers kept as numbers (non-finite ones as strings, which JSON cannot hold)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def results(experiment: str, config: Any, unit: str, curves: Mapping[int, Mapping[str, Curves]],
            steps: Sequence[int] | None, train: Mapping[str, Sequence[dict]] | None = None,
            pairs: Sequence[tuple[str, str]] | None = None, extra: dict | None = None) -> dict:  # fmt: skip
    """The report (module doc) of ``curves[seed][method]``; ``train[method]``: one training
    record per seed; ``pairs``: the method comparisons (default: every pair)."""
    seeds = list(curves)
    methods = list(curves[seeds[0]])
    pairs = default_pairs(methods) if pairs is None else [p for p in pairs if p[0] in methods and p[1] in methods]
    per_seed = {seed: seed_report(curves[seed], pairs) for seed in seeds}
    over = pooled([per_seed[seed] for seed in seeds])
    train = train or {}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "experiment": experiment, "config": json_safe(config),
        "unit": unit, "seeds": seeds, "steps": None if steps is None else list(steps), "intervals": INTERVALS,
        "methods": {m: {"train": json_safe(list(train.get(m, []))), **over["methods"][m]} for m in methods},
        "comparisons": over["comparisons"],
        "per_seed": {str(seed): per_seed[seed] for seed in seeds},
        "extra": json_safe(extra or {}),
    }  # fmt: skip


def at(summary: dict, step: int | None = None, key: str = "mean") -> float:
    """One number of a summary: ``key`` at finetuning ``step`` (None for scalar summaries)."""
    value = summary[key]
    return value if step is None or not isinstance(value, list) else value[step]


def cell(summary: dict, step: int | None = None, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± ci95`` of a summary at ``step``, for tables and log lines."""
    return f"{scale * at(summary, step):.{digits}f} ± {scale * at(summary, step, 'ci95'):.{digits}f}"
