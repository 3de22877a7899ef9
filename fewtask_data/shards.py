"""Class-contiguous, byte-reproducible webdataset shards and their ``index.json``.

One sample is two tar members sharing a key: ``<key>.json`` ({"class", "sample"})
and ``<key>.png`` or ``<key>.jpg``. The key starts with the sample's position in the
shard, so members come in sorted order and a reader can skip unwanted classes from
the index's ranges without parsing them. Members carry mtime 0, uid/gid 0 and no
user names, so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from fewtask_data import atomic
from fewtask_data.errors import FewtaskError
from fewtask_data.manifest import check_id, join, read_bytes

INDEX_NAME = "index.json"
EXTENSIONS = {"png": "png", "jpeg": "jpg"}


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def sample_key(position: int, class_id: str, sample_id: str) -> str:
    """Dot-free key that sorts by position in the shard."""
    check_id(class_id, "class id")
    check_id(sample_id, "sample id")
    return f"{position:06d}_{class_id}_{sample_id}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- images


def encode_image(img: np.ndarray, encoding: str, quality: int = 90) -> bytes:
    """uint8 HxW (grayscale) or HxWx3 (RGB) -> PNG or JPEG bytes, deterministic.
    OpenCV does the coding: several times faster than PIL on small images."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise FewtaskError("images must be uint8 numpy arrays of shape HxW or HxWx3")
    if img.ndim == 3 and img.shape[2] not in (1, 3):
        raise FewtaskError(f"images must have 1 or 3 channels, got shape {img.shape}")
    bgr = img[:, :, ::-1] if img.ndim == 3 and img.shape[2] == 3 else img
    if encoding == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    elif encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        raise FewtaskError(f"unknown image encoding {encoding!r}; use png (grayscale/binary) or jpeg (photos)")
    if not ok:
        raise ValueError(f"could not encode a {img.shape} image as {encoding}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 HxW or HxWx3 (RGB)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a decodable PNG/JPEG image")
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    return np.ascontiguousarray(img[:, :, ::-1]) if img.ndim == 3 else img


# ---------------------------------------------------------------- writing


# A minimal tar writer and reader for our own shards: tarfile costs ~100 us per member,
# these a few. The output is plain GNU tar (readable by tar, tarfile and webdataset).
BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
GNU_MAGIC = b"ustar  \0"


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _template() -> bytes:
    h = bytearray(BLOCK)
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = _octal(0, 8)  # uid, gid
    h[136:148] = _octal(0, 12)  # mtime
    h[148:156] = b" " * 8  # the checksum counts its own field as spaces
    h[257:265] = GNU_MAGIC
    return bytes(h)


TEMPLATE = _template()
TEMPLATE_SUM = sum(TEMPLATE)


def _header(name: bytes, size: int, typeflag: bytes = b"0") -> bytes:
    h = bytearray(TEMPLATE)
    size_field = _octal(size, 12)
    h[0 : len(name)] = name
    h[124:136] = size_field
    h[156:157] = typeflag
    checksum = TEMPLATE_SUM + sum(name) + sum(size_field) + typeflag[0]
    h[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(h)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _member(name: str, data: bytes) -> list[bytes]:
    raw = name.encode()
    parts = []
    if len(raw) > 100:  # GNU long name: a pseudo-member holding the name, then a truncated header
        long = raw + b"\0"
        parts += [_header(b"././@LongLink", len(long), b"L"), long, _padding(len(long))]
    parts += [_header(raw[:100], len(data)), data, _padding(len(data))]
    return parts


def shard_bytes(samples: Iterable[tuple[str, str, bytes]], ext: str) -> tuple[bytes, dict]:
    """Tar bytes for (class id, sample id, encoded image) in order, plus the shard's index entry
    (without name): sha256, bytes, count, classes [[id, start, stop], ...]."""
    parts: list[bytes] = []
    ranges: list[list] = []  # [class, first position, stop position, first byte, stop byte]
    count = offset = 0
    for pos, (cls, sample, data) in enumerate(samples):
        key = sample_key(pos, cls, sample)
        meta = json.dumps({"class": cls, "sample": sample}, sort_keys=True).encode()
        new = _member(f"{key}.json", meta) + _member(f"{key}.{ext}", data)
        parts += new
        start, offset = offset, offset + sum(map(len, new))
        if ranges and ranges[-1][0] == cls:
            ranges[-1][2], ranges[-1][4] = pos + 1, offset
        else:
            if any(r[0] == cls for r in ranges):
                raise FewtaskError(f"class {cls!r} is not contiguous in its shard; samples must be class-contiguous")
            ranges.append([cls, pos, pos + 1, start, offset])
        count = pos + 1
    parts.append(ZERO_BLOCK * 2)
    data = b"".join(parts)
    return data, {"sha256": sha256_bytes(data), "bytes": len(data), "count": count, "classes": ranges}


def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def tar_members(
    data: bytes, off: int = 0, stop: int | None = None, check: bool = True
) -> Iterator[tuple[str, int, int]]:
    """(member name, payload offset, size) of the regular files in tar bytes from byte
    ``off`` to ``stop`` (default: the end-of-archive block). ``check`` verifies each header's
    checksum (skip it when the whole shard's sha256 was checked). Raises ValueError on a
    bad header or data cut short."""
    longname = None
    stop = len(data) if stop is None else stop
    while off < stop:
        if off + BLOCK > len(data):
            raise ValueError("unexpected end of data")
        hdr = data[off : off + BLOCK]
        if hdr == ZERO_BLOCK:
            return
        try:
            size = int(_field(hdr[124:136]).strip() or b"0", 8)
            if check and sum(hdr[:148]) + 256 + sum(hdr[156:]) != int(_field(hdr[148:156]).strip() or b"0", 8):
                raise ValueError
        except ValueError:
            raise ValueError(f"bad tar header checksum at byte {off}") from None
        start = off + BLOCK
        if start + size > len(data):
            raise ValueError("unexpected end of data")
        kind = hdr[156:157]
        if kind == b"L":
            longname = _field(data[start : start + size]).decode()
        elif kind in (b"0", b"\0"):
            name = _field(hdr[:100]).decode()
            prefix = _field(hdr[345:500]) if hdr[257:263] == b"ustar\0" else b""
            yield longname or (f"{prefix.decode()}/{name}" if prefix else name), start, size
            longname = None
        off = start + size + (-size % BLOCK)


def write_shard(path: Path, samples: Iterable[tuple[str, str, bytes]], ext: str) -> dict:
    """Write one shard atomically; returns its index entry."""
    data, entry = shard_bytes(samples, ext)
    atomic.write_bytes(Path(path), data)
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
        for member, start, size in tar_members(data):
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
            for member, offset, size in tar_members(data, first, last, check):
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
    """Read a whole shard (local path or URL), check its checksum, then iterate its samples."""
    data = read_bytes(location)
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise FewtaskError(
            f"shard {location} does not match its index checksum (truncated or altered); rebuild the dataset"
        )
    return iter_shard_bytes(data, location, keep, count)


def load_index(root: str) -> dict:
    location = join(root, INDEX_NAME)
    try:
        doc = json.loads(read_bytes(location))
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


# ---------------------------------------------------------------- verification


def verify(root: str | Path) -> list[str]:
    """Re-check the index against the manifest and every shard against the index.
    Returns human-readable problems (empty when everything matches)."""
    from fewtask_data.manifest import load_manifest

    root = str(root)
    problems: list[str] = []
    manifest = load_manifest(root)
    index_raw = read_bytes(join(root, INDEX_NAME))
    if sha256_bytes(index_raw) != manifest.data["index"]["sha256"]:
        problems.append(f"{INDEX_NAME}: checksum differs from the manifest's")
    index = load_index(root)
    listed = [(s["name"], s["sha256"]) for s in manifest.data["shards"]]
    if listed != [(s["name"], s["sha256"]) for s in index["shards"]]:
        problems.append(f"{INDEX_NAME}: shard list differs from the manifest's")
    for entry in index["shards"]:
        name = entry["name"]
        try:
            data = read_bytes(join(root, name))
        except FewtaskError as err:
            problems.append(f"{name}: {err}")
            continue
        if sha256_bytes(data) != entry["sha256"] or len(data) != entry["bytes"]:
            problems.append(f"{name}: checksum mismatch (truncated or altered)")
            continue
        want = [(p, r[0]) for r in entry["classes"] for p in range(r[1], r[2])]
        try:
            got = [(pos, cls) for pos, cls, _, _ in iter_shard_bytes(data, name, count=entry["count"])]
            by_range = [(pos, cls) for pos, cls, _, _ in iter_class_ranges(data, name, entry["classes"])]
        except FewtaskError as err:
            problems.append(str(err))
            continue
        if got != want or by_range != want:
            problems.append(f"{name}: samples do not match the index's class ranges")
    return problems


def verify_command(path: str) -> None:
    """Re-check every shard's checksum and contents against index.json and the manifest."""
    import typer

    problems = verify(path)
    for p in problems:
        typer.echo(f"FAIL {p}", err=True)
    if problems:
        raise FewtaskError(f"{len(problems)} problem(s) in {path}; rebuild the dataset (a rerun of the build resumes)")
    typer.echo(f"ok: every shard in {path} matches index.json and the manifest")
