"""Unlabelled image collections: any folder tree of images, or existing shards.

Folder trees may have any layout. Every file whose suffix is an image format
(``IMAGE_SUFFIXES``) is an image, wherever it sits; a ``.zip`` archive anywhere in the
tree is read as one more folder (so Omniglot's zips work unpacked or not). Other files
are not images: they are listed as skipped, never silently dropped. Files that have an
image suffix but do not decode fail in the build and are reported there.

Existing shards (a built dataset folder) are read through their manifest with their
class ids kept only as *labels*: the unsupervised builder may report label collisions
with them, or avoid them, but tasks never use them otherwise.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.image import decode_image
from fewtask_data.formats.manifest import load_manifest
from fewtask_data.formats.shards import ShardReader
from fewtask_data.sources.imagenet import ImageDecoder
from fewtask_data.sources.omniglot import Location, prepare, read_location

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
COLORS = ("gray", "rgb")


@dataclass(frozen=True)
class ImageEntry:
    """One image of a collection: a sample id (unique, key-safe), where it is, its label if known."""

    sample: str
    item: object  # handed to the decoder
    label: str | None = None


@dataclass
class Collection:
    """A listed collection: its images in a fixed order, what was skipped, a fingerprint."""

    images: list[ImageEntry]
    skipped: list[str]  # files that are not images (relative paths)
    fingerprint: str
    kind: str  # "images" | "shards"
    labelled: bool
    encoding: str | None = None  # the shards' encoding, for the shard source


def safe_id(text: str) -> str:
    """A sample id from a relative path: no dots, slashes, backslashes or whitespace."""
    return re.sub(r"[^A-Za-z0-9_~+-]", "_", text) or "image"


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _zip_members(path: Path, rel: str, found: list, skipped: list[str], digest) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = sorted(archive.infolist(), key=lambda i: i.filename)
    except zipfile.BadZipFile as err:
        skipped.append(f"{rel} (unreadable zip: {err})")
        return
    for info in infos:
        if info.is_dir():
            continue
        member_rel = f"{rel}/{info.filename}"
        if _is_image(info.filename):
            found.append((member_rel, Location(str(path), info.filename)))
            digest.update(f"{member_rel}:{info.file_size}:{info.CRC}\n".encode())
        else:
            skipped.append(member_rel)


def list_images(roots: Sequence[str | Path]) -> Collection:
    """Every image under the given folders or zip archives, in sorted path order. With
    several roots, paths (and so sample ids) start with each root's name."""
    if not roots:
        raise FewtaskError("no --images given; pass a folder of images (any layout) or a zip archive")
    found: list[tuple[str, Location]] = []
    skipped: list[str] = []
    digest = hashlib.sha256()
    for root in map(Path, roots):
        prefix = f"{root.name}/" if len(roots) > 1 else ""
        if root.is_file() and root.suffix.lower() == ".zip":
            _zip_members(root, root.name, found, skipped, digest)
            continue
        if not root.is_dir():
            raise FewtaskError(f"--images {root} is neither a folder nor a .zip; pass the folder holding the images (any layout)")
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                rel = prefix + path.relative_to(root).as_posix()
                if name.lower().endswith(".zip"):
                    _zip_members(path, rel, found, skipped, digest)
                elif _is_image(name):
                    found.append((rel, Location(str(path))))
                    digest.update(f"{rel}:{path.stat().st_size}\n".encode())
                else:
                    skipped.append(rel)
    images, seen = [], set()
    for rel, loc in found:
        sample = safe_id(os.path.splitext(rel)[0])
        while sample in seen:  # a.png and a.jpg, or names equal after making them safe
            sample += "+"
        seen.add(sample)
        images.append(ImageEntry(sample, loc))
    return Collection(images, skipped, digest.hexdigest(), "images", labelled=False)


def list_shards(source: str | Path) -> Collection:
    """Every image of a built dataset (all splits), its class id kept as the label
    (none when the dataset is itself an unsupervised build).

    The encoded images are read (checksums checked) and held in memory until the build
    has re-encoded them: fine for Omniglot- or mini-ImageNet-sized datasets."""
    manifest = load_manifest(source)
    # An unsupervised build's classes are groups, not labels; a materialized augmented
    # class (Omniglot --materialize-eval) has the label of its base class.
    labelled = manifest.builder != "unsupervised-families"
    label_of = {c: manifest.class_meta(c).get("base_class", c) for c in manifest.classes}
    reader = ShardReader(manifest)
    images = []
    for shard, entry in enumerate(reader.index["shards"]):
        for cls, sample, data in reader.samples(shard, [(0, entry["count"])]):
            images.append(ImageEntry(safe_id(f"{cls}~{sample}"), data, label_of[cls] if labelled else None))
    fingerprint = f"{manifest.dataset}:{manifest.build_id}"
    return Collection(images, [], fingerprint, "shards", labelled, encoding=manifest.image_encoding)


@dataclass(frozen=True)
class CollectionDecoder:
    """Picklable build decode step: a Location (or encoded bytes from shards) -> uint8 image.

    ``gray``: one channel; with ``invert`` dark-on-light becomes bright-on-dark (the
    Omniglot convention, so augmentations pad with background). ``rgb``: three channels,
    via the ImageNet decoder (CMYK, grayscale, palette and alpha images handled).
    Gray images are squashed to size x size (Lanczos); ``resize`` applies to rgb. Encoded
    bytes from shards are decoded as they are (a built dataset is already one size)."""

    size: int = 84
    color: str = "rgb"
    invert: bool = False
    resize: str = "squash"

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise FewtaskError(f"--color must be one of {', '.join(COLORS)}, got {self.color!r}")
        if not isinstance(self.size, int) or self.size < 8:
            raise FewtaskError(f"--image-size must be an integer >= 8, got {self.size!r}")

    def __call__(self, item: object) -> np.ndarray:
        if isinstance(item, bytes):  # from shards: already decoded size and colour
            return decode_image(item)
        data = io.BytesIO(read_location(item))
        try:
            if self.color == "rgb":
                return ImageDecoder(self.size, self.resize)(data)
            with Image.open(data) as img:
                bright = prepare(img, self.size)  # grayscale, resized, inverted
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            where = item.path if item.member is None else f"{item.path}:{item.member}"
            raise ValueError(f"cannot decode {where} ({type(err).__name__})") from None
        return bright if self.invert else 255 - bright
