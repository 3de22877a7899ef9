"""`fewtask-data build navigation-families`: 2D navigation crop families
(fewtask_data.sources.navigation) written as a procedural manifest.

Train, validation and test crops come from disjoint generator streams of one seed (the
seeds are recorded per split). Each family has one class, its crop (count 0), so the
manifest's split records stay disjoint; the family's ``meta.crop`` is (x0, y0, width,
height) in MAML's goal square [-0.5, 0.5]^2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fewtask_data.builders.finalize import BuildReport
from fewtask_data.builders.plan import BuildOptions, manifest_head
from fewtask_data.builders.procedural import write_procedural
from fewtask_data.errors import FewtaskError
from fewtask_data.io import ensure_writable
from fewtask_data.sources.navigation import BUILDER, BUILDER_VERSION, CROP_SIZE, SPLITS, SQUARE, check_crop_size, sample_crops


def split_seed(seed: int, split: str) -> int:
    return seed * len(SPLITS) + SPLITS.index(split)


def build_navigation_families(out: Path, *, counts: dict[str, int], crop_size: tuple[float, float] = CROP_SIZE,
                              seed: int = 0) -> BuildReport:  # fmt: skip
    check_crop_size(*crop_size)
    if set(counts) != set(SPLITS) or any(n < 1 for n in counts.values()):
        raise FewtaskError(f"need at least one family in each split {', '.join(SPLITS)}, got {counts}")
    out = ensure_writable(out)
    classes, records, splits = [], {}, {}
    for split in SPLITS:
        crops = sample_crops(torch.Generator().manual_seed(split_seed(seed, split)), counts[split], crop_size)
        rows = [[round(v, 6) for v in crop] for crop in crops.tolist()]
        ids = [f"{split}-crop{i:04d}" for i in range(len(rows))]
        classes += [{"id": c, "count": 0, "meta": {"crop": r}} for c, r in zip(ids, rows)]
        records[split] = ids
        splits[split] = [{"id": c, "classes": [c], "meta": {"crop": r}} for c, r in zip(ids, rows)]
    head = manifest_head(
        dataset="navigation-2d", builder=BUILDER, builder_version=BUILDER_VERSION,
        source={"fingerprint": "procedural: goals uniform in axis-aligned crops of [-0.5, 0.5]^2"}, splits=splits,
        records=records, options=BuildOptions(), synthetic=True, augment_space=None,
        params={"procedural": True, "crop_size": list(crop_size), "square": list(SQUARE), "crop": "x0,y0,width,height"},
        seeds={split: split_seed(seed, split) for split in SPLITS},
    )  # fmt: skip
    return write_procedural(out, head, classes)
