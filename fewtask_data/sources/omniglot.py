"""Omniglot reader (Lake et al. 2015): the official ``images_background.zip`` /
``images_evaluation.zip`` or their extracted folders.

Layout: ``<set>/<Alphabet>/characterNN/XXXX_YY.png`` (XXXX global character id,
YY drawer). The full release has 50 alphabets, 1,623 characters, 32,460 images of
105x105 binary PNGs.

Images come out as uint8 HxW with **bright strokes on a black background** (the files
are black-on-white): augmentations then pad with 0 = background. They are resized to
``size`` x ``size`` (28 by default) with Lanczos filtering, as in Finn et al.'s MAML code.

``OmniglotDecoder`` turns an item into an image inside build worker processes; it is a
small picklable object that opens zip archives lazily once per process.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fewtask_data.errors import FewtaskError

BACKGROUND = "images_background"
EVALUATION = "images_evaluation"
DEFAULT_SETS = (BACKGROUND, EVALUATION)
ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Location:
    """Where one image lives: a zip archive and member, or a plain file (member None)."""

    path: str
    member: str | None = None


@dataclass(frozen=True)
class Character:
    """One character of an Omniglot-layout source, with its images in drawer order."""

    alphabet: str
    name: str  # "character01"
    set: str  # "images_background" / "images_evaluation" (or the glyph source's equivalent)
    images: tuple[tuple[str, object], ...]  # (sample id, location handed to the decoder)

    @property
    def key(self) -> str:
        return f"{self.alphabet}/{self.name}"


def _list_zip(path: Path) -> list[tuple[str, str, str, Location]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    out = []
    for name in names:
        parts = name.split("/")
        if len(parts) == 4 and parts[3].lower().endswith(".png"):
            out.append((parts[1], parts[2], parts[3], Location(str(path), name)))
    return out


def _list_folder(path: Path) -> list[tuple[str, str, str, Location]]:
    out = []
    for alphabet in sorted(p for p in path.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            for image in sorted(character.iterdir()):
                if image.suffix.lower() == ".png":
                    out.append((alphabet.name, character.name, image.name, Location(str(image))))
    return out


def find_sets(root: Path, sets: Sequence[str] = DEFAULT_SETS) -> dict[str, Path]:
    """Each set's extracted folder (preferred) or zip under root."""
    root = Path(root)
    if not root.is_dir():
        raise FewtaskError(f"Omniglot root {root} is not a folder; pass the folder holding images_background.zip")
    found = {}
    for name in sets:
        folder, archive = root / name, root / f"{name}.zip"
        if folder.is_dir():
            found[name] = folder
        elif archive.is_file():
            found[name] = archive
        else:
            raise FewtaskError(
                f"Omniglot set {name!r} not found under {root}: expected {name}.zip or an extracted {name}/ folder"
            )
    return found


def list_characters(root: str | Path, sets: Sequence[str] = DEFAULT_SETS) -> list[Character]:
    """All characters of the given sets, sorted by (set order, alphabet, character)."""
    characters = []
    for set_name, path in find_sets(Path(root), sets).items():
        try:
            entries = _list_zip(path) if path.suffix == ".zip" else _list_folder(path)
        except zipfile.BadZipFile as err:
            raise FewtaskError(f"{path} is not a readable zip archive ({err}); re-download it") from None
        if not entries:
            raise FewtaskError(f"{path} holds no <Alphabet>/characterNN/*.png images; is it an Omniglot set?")
        grouped: dict[tuple[str, str], list[tuple[str, Location]]] = {}
        for alphabet, character, filename, loc in entries:
            grouped.setdefault((alphabet, character), []).append((filename.rsplit(".", 1)[0], loc))
        for (alphabet, character), images in sorted(grouped.items()):
            characters.append(Character(alphabet, character, set_name, tuple(sorted(images, key=lambda t: t[0]))))
    return characters


def fingerprint(root: str | Path, sets: Sequence[str] = DEFAULT_SETS) -> str:
    """sha256 over the archives' bytes, or over file names and sizes for extracted folders."""
    digest = hashlib.sha256()
    for set_name, path in find_sets(Path(root), sets).items():
        digest.update(set_name.encode())
        if path.suffix == ".zip":
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            for file in sorted(path.rglob("*.png")):
                digest.update(f"{file.relative_to(path).as_posix()}:{file.stat().st_size}\n".encode())
    return digest.hexdigest()


# Each worker process keeps its own open archives (a ZipFile must not cross a fork).
_ARCHIVES: dict[tuple[int, str], zipfile.ZipFile] = {}


def read_location(loc: Location) -> bytes:
    """The bytes of one image, from its zip member (archives opened once per process) or file."""
    if loc.member is None:
        return Path(loc.path).read_bytes()
    key = (os.getpid(), loc.path)
    archive = _ARCHIVES.get(key)
    if archive is None:
        archive = _ARCHIVES[key] = zipfile.ZipFile(loc.path)
    return archive.read(loc.member)


def prepare(img: Image.Image, size: int | None) -> np.ndarray:
    """Black-on-white PIL image -> uint8 bright-on-black, resized to size x size."""
    grey = img.convert("L")
    if size is not None and grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(grey, dtype=np.uint8)


@dataclass(frozen=True)
class OmniglotDecoder:
    """Picklable item -> image: item is (Location, rotation in degrees)."""

    size: int | None = 28

    def __call__(self, item: tuple[Location, int]) -> np.ndarray:
        loc, rotation = item
        with Image.open(io.BytesIO(read_location(loc))) as img:
            out = prepare(img, self.size)
        return np.ascontiguousarray(np.rot90(out, k=rotation // 90)) if rotation else out
