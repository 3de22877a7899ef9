"""`fewtask-data build continual-sine-families`: frequency families of incremental sine
problems (MALTML section 4.2) written as family definitions through the manifest.

Procedural: nothing is sampled into shards. The manifest's classes are the functions
of the two pools (count 0, meta {amplitude, phase}); a family is a frequency w (meta
{frequency}) over its split's pool: meta-training families use the training pool,
held-out test families the disjoint evaluation pool. Problem settings go in params, so
another project regenerates exactly the same problems (fewtask_data.sources.continual_sines).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from fewtask_data.builders.finalize import BuildReport
from fewtask_data.builders.plan import BuildOptions, manifest_head
from fewtask_data.builders.procedural import write_procedural
from fewtask_data.errors import FewtaskError
from fewtask_data.io import ensure_writable
from fewtask_data.sources.continual_sines import BUILDER, BUILDER_VERSION, ContinualSpec, function_pool

SPLITS = {"train": "train", "test": "eval"}  # split -> its function pool


def family_frequencies(seed: int, families: int, low: float, high: float) -> list[float]:
    """``families`` distinct frequencies, U[low, high] rounded to 1e-4, sorted."""
    gen = torch.Generator().manual_seed(seed * 104_729 + 17)
    values: set[float] = set()
    while len(values) < families:
        values.add(round(float(torch.rand((), generator=gen, dtype=torch.float64)) * (high - low) + low, 4))
    return sorted(values)


def build_continual_families(
    out: Path, *, families: int = 20, test_families: int = 5, frequency_range: tuple[float, float] = (0.5, 2.0),
    seed: int = 0, spec: ContinualSpec = ContinualSpec(),
) -> BuildReport:  # fmt: skip
    low, high = frequency_range
    if not 0 < low < high:
        raise FewtaskError(f"--frequency-range needs 0 < LOW < HIGH, got {low},{high}")
    if not 1 <= test_families < families:
        raise FewtaskError(f"need 1 <= --test-families < --families, got {test_families} of {families}")
    out = ensure_writable(out)
    freqs = family_frequencies(seed, families, low, high)
    held = set(torch.randperm(families, generator=torch.Generator().manual_seed(seed)).tolist()[:test_families])
    split_freqs = {"test": [w for i, w in enumerate(freqs) if i in held], "train": [w for i, w in enumerate(freqs) if i not in held]}
    classes, records, splits = [], {}, {}
    for split, pool_name in SPLITS.items():
        pool = function_pool(seed, pool_name, spec)
        ids = [f"{split}-f{i:04d}" for i in range(pool.shape[0])]
        classes += [{"id": c, "count": 0, "meta": {"amplitude": a, "phase": p}} for c, (a, p) in zip(ids, pool.tolist())]
        records[split] = ids
        splits[split] = [{"id": f"{split}-w{round(w * 10_000):05d}", "classes": ids, "meta": {"frequency": w}} for w in split_freqs[split]]
    params = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("train_pool", "eval_pool")}
    head = manifest_head(
        dataset="continual-sines", builder=BUILDER, builder_version=BUILDER_VERSION,
        source={"fingerprint": "procedural: y = A sin(w z + phi)"}, splits=splits, records=records, options=BuildOptions(),
        params={**params, "frequency_range": [low, high], "procedural": True}, seeds={"pools": seed, "families": seed},
        synthetic=True, augment_space=None,
    )  # fmt: skip
    return write_procedural(out, head, classes)
