"""Reading an ImageNet (ILSVRC-2012 or 21k) image folder: layouts, listing, fast decoding.

Layouts recognised under ``--imagenet-root``:

- standard: ``ROOT/train/<wnid>/*.JPEG``
- Kaggle:   ``ROOT/ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG``
- flat:     ``ROOT/<wnid>/*.JPEG`` (ROOT is itself the train folder)

Decoding uses JPEG reduced-size decoding (PIL ``Image.draft``: the decoder scales by
1/2, 1/4 or 1/8 in the DCT, keeping both sides at least the target size), then an
antialiased resize. ImageNet's known oddities are handled by decoding by content, not
by name: CMYK and grayscale JPEGs are converted to RGB, and the PNG saved with a
.JPEG name (n02105855_2933.JPEG) decodes as the PNG it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fewtask_data.errors import FewtaskError

WNID = re.compile(r"^n\d{8}$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
LAYOUTS = {
    "standard": ("train",),
    "kaggle": ("ILSVRC", "Data", "CLS-LOC", "train"),
    "flat": (),
}
RESIZE_MODES = ("squash", "center-crop")


def _has_class_dirs(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() and WNID.match(p.name) for p in folder.iterdir())


def find_train_dir(root: str | Path) -> tuple[str, Path]:
    """(layout name, folder holding the <wnid>/ class folders), or a FewtaskError."""
    root = Path(root)
    if not root.is_dir():
        raise FewtaskError(f"ImageNet root {root} is not a folder; pass the folder holding train/ (or ILSVRC/ from Kaggle)")
    for layout, parts in LAYOUTS.items():
        candidate = root.joinpath(*parts)
        if _has_class_dirs(candidate):
            return layout, candidate
    raise FewtaskError(
        f"no ImageNet class folders found under {root}; expected train/<wnid>/*.JPEG, "
        "ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG (Kaggle) or <wnid>/*.JPEG"
    )


def list_classes(train_dir: Path) -> dict[str, Path]:
    """wnid -> class folder, for every <wnid> folder in train_dir."""
    return {p.name: p for p in sorted(train_dir.iterdir()) if p.is_dir() and WNID.match(p.name)}


def list_images(class_dir: Path) -> list[Path]:
    """The class's image files, sorted by name (ImageNet names: <wnid>_<n>.JPEG)."""
    return sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def sample_id(path: Path) -> str:
    """The file name without extension, made safe for webdataset keys (no dots or spaces)."""
    return re.sub(r"[.\s/\\]", "_", path.stem) or "image"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")  # L, CMYK (PIL undoes Adobe's inversion), P, I;16 ...


def _fit(img: Image.Image, size: int, mode: str) -> Image.Image:
    if mode == "center-crop":
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class ImageDecoder:
    """Picklable decode step for the build workers: path -> uint8 [size, size, 3].

    ``reduced=True`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale first (``draft``)."""

    size: int = 84
    resize: str = "squash"
    reduced: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise FewtaskError(f"--image-size must be an integer >= 8, got {self.size!r}")
        if self.resize not in RESIZE_MODES:
            raise FewtaskError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    def __call__(self, path: str | Path) -> np.ndarray:
        with Image.open(path) as img:
            if self.reduced and img.format == "JPEG":
                img.draft("RGB", (self.size, self.size))
            img.load()
            out = _fit(_to_rgb(img), self.size, self.resize)
        return np.asarray(out, dtype=np.uint8)


def naive_decode(path: str | Path, size: int = 84, resize: str = "squash") -> np.ndarray:
    """Full-resolution decode + resize: the baseline scripts/bench_imagenet.py compares against."""
    return ImageDecoder(size, resize, reduced=False)(path)
