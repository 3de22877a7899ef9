"""`fewtask-data build continual-sine-families`: frequency families of incremental sine
problems (MALTML section 4.2) written as procedural family definitions.

A family is a frequency w (params {frequency}) over its split's function pool (the
split's ``pool``: {amplitude, phase} records): meta-training families use the training
pool, held-out test families the disjoint evaluation pool. Problem settings go in params,
so another project regenerates exactly the same problems (fewtask_data.sources.continual_sines).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from fewtask_data.builders.procedural import write_procedural
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import ProceduralManifest
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
) -> ProceduralManifest:  # fmt: skip
    low, high = frequency_range
    if not 0 < low < high:
        raise FewtaskError(f"--frequency-range needs 0 < LOW < HIGH, got {low},{high}")
    if not 1 <= test_families < families:
        raise FewtaskError(f"need 1 <= --test-families < --families, got {test_families} of {families}")
    freqs = family_frequencies(seed, families, low, high)
    held = set(torch.randperm(families, generator=torch.Generator().manual_seed(seed)).tolist()[:test_families])
    split_freqs = {"test": [w for i, w in enumerate(freqs) if i in held], "train": [w for i, w in enumerate(freqs) if i not in held]}
    splits = {
        split: {
            "families": [{"id": f"{split}-w{round(w * 10_000):05d}", "params": {"frequency": w}} for w in split_freqs[split]],
            "pool": [{"amplitude": a, "phase": p} for a, p in function_pool(seed, pool_name, spec).tolist()],
        }
        for split, pool_name in SPLITS.items()
    }
    params = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("train_pool", "eval_pool")}
    return write_procedural(
        out, dataset="continual-sines", description="procedural: y = A sin(w z + phi)", builder=BUILDER,
        version=BUILDER_VERSION, params={**params, "frequency_range": [low, high]}, seeds={"pools": seed, "families": seed},
        splits=splits,
    )  # fmt: skip
