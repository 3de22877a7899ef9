"""`fewtask-data build sinusoid-families`: fixed sinusoid families (MALTML section 4.1) as
procedural family definitions.

A family is a phase (params {phase}), drawn as `sources.sinusoid.sample_batch` draws one;
its tasks draw their amplitude from ``amplitude_range`` and their inputs from ``x_range``
(recorded in params). Train, validation and test phases come from disjoint generator
streams of one seed, recorded per split.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fewtask_data.builders.procedural import SPLITS, check_counts, split_seed, write_procedural
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import ProceduralManifest
from fewtask_data.sources.sinusoid import BUILDER, BUILDER_VERSION, SinusoidSpec, family_phases

COUNTS = {"train": 1000, "val": 100, "test": 500}


def check_spec(spec: SinusoidSpec) -> None:
    """Finite ranges LOW <= HIGH; amplitudes >= 0; a nonempty x range."""
    for option, (low, high) in (("--amplitude-range", spec.amplitude), ("--phase-range", spec.phase), ("--x-range", spec.x_range)):
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise FewtaskError(f"{option} needs finite LOW <= HIGH, got {low},{high}")
    if spec.amplitude[0] < 0:
        raise FewtaskError(f"--amplitude-range needs LOW >= 0, got {spec.amplitude[0]}")
    if spec.x_range[0] == spec.x_range[1]:
        raise FewtaskError(f"--x-range needs LOW < HIGH, got {spec.x_range[0]},{spec.x_range[1]}")
    if spec.per_task_phase:
        raise FewtaskError("sinusoid families share a phase; per_task_phase (a phase per task) has no families to write")


def build_sinusoid_families(out: Path, *, counts: dict[str, int] = COUNTS, spec: SinusoidSpec = SinusoidSpec(),
                            seed: int = 0) -> ProceduralManifest:  # fmt: skip
    check_counts(counts)
    check_spec(spec)
    if not isinstance(seed, int) or seed < 0:
        raise FewtaskError(f"--seed must be >= 0, got {seed!r}")
    splits = {}
    for split in SPLITS:
        phases = family_phases(torch.Generator().manual_seed(split_seed(seed, split)), counts[split], spec).tolist()
        splits[split] = {"families": [{"id": f"{split}-phase{i:04d}", "params": {"phase": p}} for i, p in enumerate(phases)]}
    return write_procedural(
        out, dataset="sinusoid", description="procedural: y = A sin(x - phase); a family is a phase, its tasks draw A",
        builder=BUILDER, version=BUILDER_VERSION,
        params={"amplitude_range": list(spec.amplitude), "phase_range": list(spec.phase), "x_range": list(spec.x_range)},
        seeds={split: split_seed(seed, split) for split in SPLITS}, splits=splits,
    )  # fmt: skip
