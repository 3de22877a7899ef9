"""Class-contiguous, byte-reproducible webdataset shards, their ``index.json``, and ``ShardReader``.

One sample is two tar members sharing a key: ``<key>.json`` ({"class", "sample"})
and ``<key>.png`` or ``<key>.jpg``. The key starts with the sample's position in the
shard, so members come in sorted order and a reader can skip unwanted classes from
the index's ranges without parsing them. Tars are written by ``formats.tar``, so the
same samples always give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from fewtask_data.errors import FewtaskError
from fewtask_data.formats import tar
from fewtask_data.formats.image import decode_image
from fewtask_data.formats.manifest import Manifest, check_id
from fewtask_data.io import join, read_bytes, sha256_bytes, write_bytes

INDEX_NAME = "index.json"


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def sample_key(position: int, class_id: str, sample_id: str) -> str:
    """Dot-free key that sorts by position in the shard."""
    check_id(class_id, "class id")
    check_id(sample_id, "sample id")
    return f"{position:06d}_{class_id}_{sample_id}"


def read_checked(location: str, sha256: str, against: str = "its index checksum") -> bytes:
    """The bytes of a shard (or index) that must hash to the checksum recorded for it."""
    data = read_bytes(location)
    if sha256_bytes(data) != sha256:
        raise FewtaskError(f"{location} does not match {against} (truncated or altered); rebuild the dataset")
    return data


# ---------------------------------------------------------------- writing


def shard_bytes(samples: Iterable[tuple[str, str, bytes]], ext: str) -> tuple[bytes, dict]:
    """Tar bytes for (class id, sample id, encoded image) in order, plus the shard's index entry
    (without name): sha256, bytes, count, classes [[id, start, stop], ...]."""
    parts: list[bytes] = []
    ranges: list[list] = []  # [class, first position, stop position, first byte, stop byte]
    count = offset = 0
    for pos, (cls, sample, data) in enumerate(samples):
        key = sample_key(pos, cls, sample)
        meta = json.dumps({"class": cls, "sample": sample}, sort_keys=True).encode()
        new = tar.member(f"{key}.json", meta) + tar.member(f"{key}.{ext}", data)
        parts += new
        start, offset = offset, offset + sum(map(len, new))
        if ranges and ranges[-1][0] == cls:
            ranges[-1][2], ranges[-1][4] = pos + 1, offset
        else:
            if any(r[0] == cls for r in ranges):
                raise FewtaskError(f"class {cls!r} is not contiguous in its shard; samples must be class-contiguous")
            ranges.append([cls, pos, pos + 1, start, offset])
        count = pos + 1
    parts.append(tar.END)
    data = b"".join(parts)
    return data, {"sha256": sha256_bytes(data), "bytes": len(data), "count": count, "classes": ranges}


def write_shard(path: Path, samples: Iterable[tuple[str, str, bytes]], ext: str) -> dict:
    """Write one shard atomically; returns its index entry."""
    data, entry = shard_bytes(samples, ext)
    write_bytes(Path(path), data)
    return {"name": Path(path).name, **entry}


def index_document(entries: list[dict], encoding: str) -> dict:
    return {"format": "fewtask-index", "format_version": 1, "encoding": encoding, "shards": entries}


# ---------------------------------------------------------------- reading


def iter_shard_bytes(
    data: bytes, name: str, keep: Callable[[int], bool] | None = None, count: int | None = None
) -> Iterator[tuple[int, str, str, bytes]]:
    """(position, class id, sample id, image bytes) from a shard's bytes; ``keep(position)``
    skips unwanted samples without decoding their metadata; ``count`` (from the index)
    catches a shard cut at a tar block boundary, which tar itself reads as a clean end."""
    try:
        meta: dict | None = None
        members = 0
        for member, start, size in tar.members(data):
            members += 1
            key, _, ext = member.partition(".")
            pos = int(key.split("_", 1)[0])
            if keep is not None and not keep(pos):
                continue
            payload = data[start : start + size]
            if ext == "json":
                meta = json.loads(payload)
            else:
                if meta is None or not meta.get("class"):
                    raise ValueError(f"sample {key} has no metadata before its image")
                yield pos, meta["class"], meta["sample"], payload
                meta = None
        if count is not None and members != 2 * count:
            raise ValueError(f"it holds {members // 2} samples, the index says {count}")
    except (ValueError, KeyError, UnicodeDecodeError) as err:
        raise FewtaskError(f"shard {name} is corrupt ({err}); rebuild it or run `fewtask-data verify`") from None


def iter_class_ranges(
    data: bytes, name: str, ranges: Iterable[Sequence], check: bool = True
) -> Iterator[tuple[int, str, str, bytes]]:
    """(position, class id, sample id, image bytes) of whole classes, parsing only their
    bytes: ``ranges`` are index entries [class, start, stop, first byte, stop byte]."""
    try:
        for cls, start, stop, first, last in ranges:
            positions = iter(range(start, stop))
            for member, offset, size in tar.members(data, first, last, check):
                key, _, ext = member.partition(".")
                if ext == "json":
                    continue
                pos = next(positions, None)
                head = f"{pos:06d}_{cls}_" if pos is not None else None
                if head is None or not key.startswith(head):
                    raise ValueError(f"member {member} is not sample {pos} of class {cls}")
                yield pos, cls, key[len(head) :], data[offset : offset + size]
            if next(positions, None) is not None:
                raise ValueError(f"class {cls} has fewer samples than the index says")
    except ValueError as err:
        raise FewtaskError(f"shard {name} is corrupt ({err}); rebuild it or run `fewtask-data verify`") from None


def read_shard(
    location: str, sha256: str | None = None, keep: Callable[[int], bool] | None = None, count: int | None = None
) -> Iterator[tuple[int, str, str, bytes]]:
    """Read a whole shard (local path or URL), check its checksum when given, then iterate its samples."""
    data = read_bytes(location) if sha256 is None else read_checked(location, sha256)
    return iter_shard_bytes(data, location, keep, count)


def load_index(root: str, sha256: str | None = None) -> dict:
    """A dataset's index.json, checked against the manifest's ``sha256`` when given."""
    location = join(root, INDEX_NAME)
    raw = read_bytes(location) if sha256 is None else read_checked(location, sha256, "the manifest's checksum")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        raise FewtaskError(f"{location} is not valid JSON ({err}); rebuild the dataset") from None
    if not isinstance(doc, dict) or doc.get("format") != "fewtask-index" or not isinstance(doc.get("shards"), list):
        raise FewtaskError(f"{location} is not a fewtask index.json")
    return doc


def class_locations(index: dict) -> dict[str, list[tuple[int, int, int]]]:
    """class id -> [(shard number, start, stop), ...] (a class may span shards)."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for i, shard in enumerate(index["shards"]):
        for cls, start, stop, *_ in shard["classes"]:
            out.setdefault(cls, []).append((i, start, stop))
    return out


# ---------------------------------------------------------------- ShardReader


class ShardReader:
    """Reads a dataset's index once and loads classes' images from just their shards;
    with ``verify``, every read is checked against its recorded sha256."""

    def __init__(self, manifest: Manifest, verify: bool = True):
        self.manifest = manifest
        self.verify = verify
        self.index = load_index(manifest.root, manifest.index_sha256 if verify else None)
        self.locations = class_locations(self.index)

    def shards_for(self, classes: Sequence[str]) -> dict[int, list[tuple[int, int]]]:
        """shard number -> [(start, stop), ...] of the wanted classes."""
        out: dict[int, list[tuple[int, int]]] = {}
        for cls in classes:
            for shard, start, stop in self.locations.get(cls, ()):
                out.setdefault(shard, []).append((start, stop))
        return out

    def shard_data(self, shard: int) -> bytes:
        """A shard's bytes, checked against the index's sha256 (the error names the shard)."""
        entry = self.index["shards"][shard]
        location = self.manifest.location(entry["name"])
        return read_checked(location, entry["sha256"]) if self.verify else read_bytes(location)

    def samples(self, shard: int, ranges: list[tuple[int, int]]) -> Iterator[tuple[str, str, bytes]]:
        """(class, sample, image bytes) at the given position ranges of a shard."""
        entry = self.index["shards"][shard]
        keep = np.zeros(entry["count"], bool)
        for start, stop in ranges:
            keep[start:stop] = True
        data = self.shard_data(shard)
        for _, cls, sample, image in iter_shard_bytes(data, entry["name"], keep.__getitem__, entry["count"]):
            yield cls, sample, image

    def class_samples(self, shard: int, classes: set[str]) -> Iterator[tuple[str, str, bytes]]:
        """(class, sample, image bytes) of whole classes, parsing only their byte ranges."""
        entry = self.index["shards"][shard]
        ranges = [r for r in entry["classes"] if r[0] in classes]
        data = self.shard_data(shard)
        # A verified sha256 covers every header, so header checksums are skipped then.
        for _, cls, sample, image in iter_class_ranges(data, entry["name"], ranges, check=not self.verify):
            yield cls, sample, image

    def load_images(self, classes: Sequence[str]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """class -> [(sample id, decoded uint8 image)] in shard order, for the given classes."""
        images: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in classes}
        wanted = set(classes)
        for shard in sorted(self.shards_for(classes)):
            for cls, sample, data in self.class_samples(shard, wanted):
                images[cls].append((sample, decode_image(data)))
        return images
