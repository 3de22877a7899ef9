"""`fewtask-data build navigation-families`: 2D navigation crop families
(fewtask_data.sources.navigation) written as procedural family definitions.

Train, validation and test crops come from disjoint generator streams of one seed (the
seeds are recorded per split). A family's ``params.crop`` is (x0, y0, width, height) in
MAML's goal square [-0.5, 0.5]^2, rounded to 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fewtask_data.builders.procedural import SPLITS, check_counts, split_seed, write_procedural
from fewtask_data.formats.procedural import ProceduralManifest
from fewtask_data.sources.navigation import BUILDER, BUILDER_VERSION, CROP_SIZE, SQUARE, check_crop_size, sample_crops


def build_navigation_families(out: Path, *, counts: dict[str, int], crop_size: tuple[float, float] = CROP_SIZE,
                              seed: int = 0) -> ProceduralManifest:  # fmt: skip
    check_crop_size(*crop_size)
    check_counts(counts)
    splits = {}
    for split in SPLITS:
        crops = sample_crops(torch.Generator().manual_seed(split_seed(seed, split)), counts[split], crop_size)
        rows = [[round(v, 6) for v in crop] for crop in crops.tolist()]
        splits[split] = {"families": [{"id": f"{split}-crop{i:04d}", "params": {"crop": r}} for i, r in enumerate(rows)]}
    return write_procedural(
        out, dataset="navigation-2d", description="procedural: goals uniform in axis-aligned crops of [-0.5, 0.5]^2",
        builder=BUILDER, version=BUILDER_VERSION, params={"crop_size": list(crop_size), "square": list(SQUARE), "crop": "x0,y0,width,height"},
        seeds={split: split_seed(seed, split) for split in SPLITS}, splits=splits,
    )  # fmt: skip
