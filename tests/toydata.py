"""Small synthetic datasets for the data-core tests: random images, built through the real build."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fewtask_data.build import BuildOptions, SourceClass, build

BAD = -1  # an item the decoder refuses, like a corrupt file


def decode(item: tuple[int, int, int]) -> np.ndarray:
    """(class number, image number, side) -> a reproducible random grayscale image."""
    c, i, side = item
    if i == BAD:
        raise ValueError("cannot identify image file")
    rng = np.random.default_rng([c, i])
    return (rng.random((side, side)) * 255).astype(np.uint8)


def decode_rgb(item: tuple[int, int, int]) -> np.ndarray:
    gray = decode(item)
    return np.stack([gray, 255 - gray, gray // 2], axis=-1)


def classes(n_classes: int = 12, per_class: int = 10, side: int = 8, bad: tuple = ()) -> list[SourceClass]:
    """Classes c00.. with per_class images each; ``bad`` lists (class, image) pairs that fail."""
    return [
        SourceClass(
            f"c{c:02d}",
            [(f"s{i:03d}", (c, BAD if (c, i) in bad else i, side)) for i in range(per_class)],
            {"group": c // 4},
        )
        for c in range(n_classes)
    ]


def families(n_classes: int = 12) -> dict[str, list[dict]]:
    """Groups of 4 classes are families; the last group is the test split."""
    fams = [
        {"id": f"fam{g}", "classes": [f"c{c:02d}" for c in range(4 * g, min(4 * g + 4, n_classes))], "meta": {"g": g}}
        for g in range((n_classes + 3) // 4)
    ]
    return {"train": fams[:-1], "test": fams[-1:]}


def build_toy(out: Path, n_classes: int = 12, per_class: int = 10, side: int = 8, bad: tuple = (),
              rgb: bool = False, **options):
    opts = {"shard_size": 25, "workers": 1, **options}
    return build(
        out,
        dataset="toy",
        builder="toy",
        builder_version="1",
        source={"fingerprint": f"toy-{n_classes}-{per_class}-{side}"},
        classes=classes(n_classes, per_class, side, bad),
        decode=decode_rgb if rgb else decode,
        splits=families(n_classes),
        options=BuildOptions(**opts),
    )


if __name__ == "__main__":  # used by the kill-and-resume test: python toydata.py OUT N_CLASSES WORKERS
    build_toy(Path(sys.argv[1]), n_classes=int(sys.argv[2]), per_class=40, side=64, shard_size=40,
              workers=int(sys.argv[3]))
