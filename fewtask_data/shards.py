"""Class-contiguous, byte-reproducible webdataset shards and their ``index.json``.

One sample is two tar members sharing a key: ``<key>.json`` ({"class", "sample"})
and ``<key>.png`` or ``<key>.jpg``. The key starts with the sample's position in the
shard, so members come in sorted order and a reader can skip unwanted classes from
the index's ranges without parsing them. Members carry mtime 0, uid/gid 0 and no
user names, so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

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
    """uint8 HxW (grayscale) or HxWx3 (RGB) -> PNG or JPEG bytes, deterministic."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise FewtaskError("images must be uint8 numpy arrays of shape HxW or HxWx3")
    if img.ndim == 3 and img.shape[2] not in (1, 3):
        raise FewtaskError(f"images must have 1 or 3 channels, got shape {img.shape}")
    pil = Image.fromarray(img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img)
    buf = io.BytesIO()
    if encoding == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif encoding == "jpeg":
        pil.save(buf, format="JPEG", quality=int(quality))
    else:
        raise FewtaskError(f"unknown image encoding {encoding!r}; use png (grayscale/binary) or jpeg (photos)")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as pil:
        return np.array(pil)


# ---------------------------------------------------------------- writing


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def shard_bytes(samples: Iterable[tuple[str, str, bytes]], ext: str) -> tuple[bytes, dict]:
    """Tar bytes for (class id, sample id, encoded image) in order, plus the shard's index entry
    (without name): sha256, bytes, count, classes [[id, start, stop], ...]."""
    buf = io.BytesIO()
    ranges: list[list] = []
    count = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for pos, (cls, sample, data) in enumerate(samples):
            key = sample_key(pos, cls, sample)
            meta = json.dumps({"class": cls, "sample": sample}, sort_keys=True).encode()
            _add(tar, f"{key}.json", meta)
            _add(tar, f"{key}.{ext}", data)
            if ranges and ranges[-1][0] == cls:
                ranges[-1][2] = pos + 1
            else:
                if any(r[0] == cls for r in ranges):
                    raise FewtaskError(f"class {cls!r} is not contiguous in its shard; samples must be class-contiguous")
                ranges.append([cls, pos, pos + 1])
            count = pos + 1
    data = buf.getvalue()
    return data, {"sha256": sha256_bytes(data), "bytes": len(data), "count": count, "classes": ranges}


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
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            meta: dict | None = None
            members = 0
            for member in tar:
                members += 1
                key, _, ext = member.name.partition(".")
                pos = int(key.split("_", 1)[0])
                if keep is not None and not keep(pos):
                    continue
                payload = tar.extractfile(member).read()
                if len(payload) != member.size:
                    raise ValueError(f"member {member.name} is truncated")
                if ext == "json":
                    meta = json.loads(payload)
                else:
                    if meta is None or not meta.get("class"):
                        raise ValueError(f"sample {key} has no metadata before its image")
                    yield pos, meta["class"], meta["sample"], payload
                    meta = None
            if count is not None and members != 2 * count:
                raise ValueError(f"it holds {members // 2} samples, the index says {count}")
    except (tarfile.TarError, ValueError, KeyError, EOFError) as err:
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
        for cls, start, stop in shard["classes"]:
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
        try:
            got = [(pos, cls) for pos, cls, _, _ in iter_shard_bytes(data, name, count=entry["count"])]
        except FewtaskError as err:
            problems.append(str(err))
            continue
        want = [(p, cls) for cls, start, stop in entry["classes"] for p in range(start, stop)]
        if got != want:
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
