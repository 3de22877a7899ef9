"""Small synthetic datasets for the data-core tests: random images, built through the real build."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fewtask_data import BuildOptions, SourceClass, build_dataset

BAD = -1  # an item the decoder refuses, like a corrupt file


def decode(item: tuple[int, int, int]) -> np.ndarray:
    """(class number, image number, side) -> a reproducible random grayscale image."""
    c, i, side = item
    if i == BAD:
        raise ValueError("cannot identify image file")
    rng = np.random.default_rng([c, i])
    return (rng.random((side, side)) * 255).astype(np.uint8)


class ZipPng:
    """Picklable decoder of (zip path, member) -> 28x28 uint8 strokes-bright image; each
    process opens the zip once."""

    _open: dict = {}

    def __call__(self, item: tuple[str, str]) -> np.ndarray:
        import zipfile

        import cv2

        path, member = item
        if path not in self._open:
            self._open[path] = zipfile.ZipFile(path)
        raw = np.frombuffer(self._open[path].read(member), np.uint8)
        img = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE)
        return 255 - cv2.resize(img, (28, 28), interpolation=cv2.INTER_AREA)


class PilFile:
    """Picklable decoder of an image file path -> 8x8 grayscale uint8 (PIL, as a source would)."""

    def __call__(self, path: str) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as img:
            return np.asarray(img.convert("L").resize((8, 8)))


def omniglot_zip_classes(zip_path: Path, alphabets: int) -> tuple[list[SourceClass], dict[str, list[dict]]]:
    """The first ``alphabets`` alphabets of an Omniglot zip: class = character, family = alphabet;
    the last alphabet is the test split."""
    import re
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
    chars: dict[tuple[str, str], list[str]] = {}
    for n in names:
        _, alphabet, char, _ = n.split("/")
        chars.setdefault((alphabet, char), []).append(n)
    chosen = sorted({a for a, _ in chars})[:alphabets]
    safe = lambda text: re.sub(r"[^A-Za-z0-9_-]", "-", text)  # noqa: E731
    classes = [
        SourceClass(safe(f"{a}-{c}"), [(safe(Path(m).stem), (str(zip_path), m)) for m in members], {"alphabet": a})
        for (a, c), members in chars.items()
        if a in chosen
    ]
    fams = [{"id": safe(a), "classes": [c.id for c in classes if c.meta["alphabet"] == a], "meta": {}} for a in chosen]
    return classes, {"train": fams[:-1], "test": fams[-1:]}


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
    return build_dataset(
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
