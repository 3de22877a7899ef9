"""Generic, resumable build: source classes + families -> shards, index.json, report, manifest.

Source-agnostic: a source hands over its classes in shard order (each a list of
(sample id, item)) and a picklable ``decode(item) -> uint8 image`` that does the
decoding and resizing; worker processes run it and encode the result.

Reproducibility: each class's items are permuted with ``default_rng([seed,
crc32(class id)])`` before anything is decoded, and the permuted list is cut into
shards of ``shard_size`` planned items, so every shard's content is fixed by the
plan alone (a failed image just leaves its shard one sample shorter). Each shard
is written atomically and then noted in ``OUT/.build/``; a rerun after a kill
skips noted shards and rebuilds the rest, giving the same bytes. index.json, the
report and finally manifest.json are written last, so an unfinished build never
looks complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from fewtask_data import atomic
from fewtask_data.errors import FewtaskError
from fewtask_data.manifest import FORMAT_VERSION, MANIFEST_NAME, check_id, save_manifest, validate_manifest
from fewtask_data.shards import EXTENSIONS, INDEX_NAME, index_document, sha256_bytes, shard_name, write_shard

REPORT_NAME = "build_report.json"
WORK_DIR = ".build"


@dataclass(frozen=True)
class SourceClass:
    """One class as a source sees it: id, (sample id, item for decode) pairs, free metadata."""

    id: str
    items: Sequence[tuple[str, Any]]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BuildOptions:
    encoding: str = "png"  # png for grayscale/binary, jpeg for photographs
    quality: int = 90  # JPEG quality
    shard_size: int = 2000  # planned samples per shard
    seed: int = 0  # within-class shuffle seed
    workers: int = 0  # 0 = all cores, 1 = in this process
    strict: bool = False  # a failed image stops the build

    def __post_init__(self) -> None:
        if self.encoding not in EXTENSIONS:
            raise FewtaskError(f"encoding must be png or jpeg, got {self.encoding!r}")
        if not 1 <= self.quality <= 100:
            raise FewtaskError(f"JPEG quality must be in 1..100, got {self.quality}")
        if self.shard_size < 1 or self.seed < 0 or self.workers < 0:
            raise FewtaskError("shard_size must be >= 1, seed and workers >= 0")


@dataclass
class BuildReport:
    out: str
    written: int
    shards: int
    failed: list[dict]  # {"class", "sample", "reason"}

    def summary(self) -> str:
        return f"{self.written} images in {self.shards} shards at {self.out}; {len(self.failed)} failed"


# ---------------------------------------------------------------- planning


def shuffled_items(cls: SourceClass, seed: int) -> list[tuple[str, Any]]:
    """The class's items in their recorded within-class order."""
    rng = np.random.default_rng([seed, zlib.crc32(cls.id.encode())])
    return [cls.items[i] for i in rng.permutation(len(cls.items))]


def plan_shards(classes: Sequence[SourceClass], seed: int, shard_size: int) -> list[list[tuple[str, str, Any]]]:
    """(class id, sample id, item) lists, one per shard, class-contiguous."""
    flat = [(c.id, sid, item) for c in classes for sid, item in shuffled_items(c, seed)]
    return [flat[i : i + shard_size] for i in range(0, len(flat), shard_size)] or [[]]


def _check_inputs(classes: Sequence[SourceClass], splits: Mapping[str, Sequence[dict]]) -> None:
    seen: set[str] = set()
    for c in classes:
        check_id(c.id, "class id")
        if c.id in seen:
            raise FewtaskError(f"class {c.id!r} is given twice; class ids must be unique")
        seen.add(c.id)
        samples = [sid for sid, _ in c.items]
        for sid in samples:
            check_id(sid, f"sample id in class {c.id!r}:")
        if len(set(samples)) != len(samples):
            raise FewtaskError(f"class {c.id!r} has repeated sample ids")
    if not splits:
        raise FewtaskError("a build needs at least one split with families")


def _validate_early(head: dict, classes: Sequence[SourceClass], plan: list, options: BuildOptions) -> None:
    """Check families and splits with the manifest rules before any image is decoded."""
    zero = "0" * 64
    planned = {c.id: len(c.items) for c in classes}
    validate_manifest(
        {
            **head,
            "build_id": zero,
            "image": {"encoding": options.encoding, "quality": None, "shape": [1, 1]},
            "classes": [{"id": c.id, "count": planned[c.id], "meta": c.meta} for c in classes],
            "shards": [{"name": shard_name(n), "sha256": zero, "bytes": 0, "count": len(p)} for n, p in enumerate(plan)],
            "index": {"name": INDEX_NAME, "sha256": zero},
            "report": {"name": REPORT_NAME, "failed": 0},
        }
    )


def build_id(description: dict) -> str:
    """Fingerprint of everything that determines the output bytes."""
    return sha256_bytes(atomic.json_bytes(description))


# ---------------------------------------------------------------- workers

_worker_state: dict = {}


def _init_worker(decode: Callable, encoding: str, quality: int) -> None:
    _worker_state.update(decode=decode, encoding=encoding, quality=quality)


def _encode_one(item: Any) -> tuple[bool, Any, Any]:
    """(True, bytes, shape) or (False, reason, None); never raises for a bad image."""
    from fewtask_data.shards import encode_image

    try:
        img = _worker_state["decode"](item)
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise ValueError(f"decoder returned {type(img).__name__} {getattr(img, 'dtype', '')}, not a uint8 array")
        return True, encode_image(img, _worker_state["encoding"], _worker_state["quality"]), list(img.shape)
    except Exception as err:  # noqa: BLE001 - any decode failure is reported, not fatal
        return False, f"{type(err).__name__}: {err}".splitlines()[0][:300], None


def _encoded(items: list[Any], decode: Callable, options: BuildOptions) -> Iterator[tuple[bool, Any, Any]]:
    """Encode items in order, in worker processes unless workers == 1."""
    workers = options.workers or os.cpu_count() or 1
    if workers == 1 or len(items) < 64:
        _init_worker(decode, options.encoding, options.quality)
        yield from map(_encode_one, items)
        return
    with multiprocessing.get_context("fork").Pool(
        workers, initializer=_init_worker, initargs=(decode, options.encoding, options.quality)
    ) as pool:
        yield from pool.imap(_encode_one, items, chunksize=32)


# ---------------------------------------------------------------- the build


def _finish_shard(out: Path, work: Path, number: int, planned: list, results: list, options: BuildOptions) -> dict:
    samples, failed, shape = [], [], None
    for (cls, sid, _), (ok, value, img_shape) in zip(planned, results):
        if ok and shape is not None and img_shape != shape:
            ok, value = False, f"image shape {img_shape} differs from {shape}; the decoder must resize to one size"
        if not ok:
            if options.strict:
                raise FewtaskError(f"image {cls}/{sid} failed: {value} (strict build; drop --strict to skip it)")
            failed.append({"class": cls, "sample": sid, "reason": value})
            continue
        shape = shape or img_shape
        samples.append((cls, sid, value))
    entry = write_shard(out / shard_name(number), samples, EXTENSIONS[options.encoding])
    note = {"entry": entry, "failed": failed, "shape": shape}
    atomic.write_json(work / f"{number:06d}.json", note)
    return note


def build(
    out_dir: str | Path,
    *,
    dataset: str,
    builder: str,
    builder_version: str,
    source: dict,
    classes: Sequence[SourceClass],
    decode: Callable[[Any], np.ndarray],
    splits: Mapping[str, Sequence[dict]],
    options: BuildOptions = BuildOptions(),
    params: dict | None = None,
    seeds: dict | None = None,
    synthetic: bool = False,
    augment_space: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a family dataset in ``out_dir``; see the module doc."""
    out = Path(out_dir)
    _check_inputs(classes, splits)
    families = {s: [dict(f, meta=dict(f.get("meta", {}))) for f in fams] for s, fams in splits.items()}
    head = {
        "format": "fewtask-manifest",
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "synthetic": bool(synthetic),
        "builder": {"name": builder, "version": str(builder_version)},
        "source": dict(source),
        "params": {**(params or {}), "shard_size": options.shard_size},
        "seeds": {**(seeds or {}), "shuffle": options.seed},
        "splits": {s: {"families": fams} for s, fams in families.items()},
        **({"augment_space": augment_space} if augment_space is not None else {}),
    }
    plan = plan_shards(classes, options.seed, options.shard_size)
    _validate_early(head, classes, plan, options)
    identity = build_id(
        {
            "head": head,
            "encoding": options.encoding,
            "quality": options.quality,
            "classes": [{"id": c.id, "meta": c.meta, "samples": [s for s, _ in c.items]} for c in classes],
        }
    )
    work = out / WORK_DIR
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing.get("build_id") != identity:
            raise FewtaskError(f"{out} already holds a different build; delete it or choose another output folder")
        shutil.rmtree(work, ignore_errors=True)
        report = json.loads((out / REPORT_NAME).read_text())
        return BuildReport(str(out), report["written"], len(existing["shards"]), report["failed"])
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "build_id"
    if stamp.exists() and stamp.read_text() != identity:
        raise FewtaskError(f"{out} holds an unfinished build with other settings; delete it or choose another folder")
    atomic.write_bytes(stamp, identity.encode())
    atomic.remove_stale_temps(out)
    atomic.remove_stale_temps(work)

    notes: dict[int, dict] = {}
    for n in range(len(plan)):
        note_path = work / f"{n:06d}.json"
        if note_path.exists() and (out / shard_name(n)).exists():
            notes[n] = json.loads(note_path.read_text())
    pending = [n for n in range(len(plan)) if n not in notes]
    items = [item for n in pending for _, _, item in plan[n]]
    results = _encoded(items, decode, options)
    done = sum(len(plan[n]) for n in notes)
    total = sum(len(p) for p in plan)
    for n in pending:
        chunk = [next(results) for _ in plan[n]]
        notes[n] = _finish_shard(out, work, n, plan[n], chunk, options)
        done += len(plan[n])
        if progress:
            progress(done, total)
    results.close()

    shapes = {tuple(notes[n]["shape"]) for n in notes if notes[n]["shape"] is not None}
    if len(shapes) > 1:
        raise FewtaskError(f"the decoder returned images of several shapes {sorted(shapes)}; it must resize to one size")
    if not shapes:
        raise FewtaskError("no image could be decoded; see the failures in the build report")
    entries = [notes[n]["entry"] for n in range(len(plan))]
    failed = [f for n in range(len(plan)) for f in notes[n]["failed"]]
    written = sum(e["count"] for e in entries)
    counts = {c.id: 0 for c in classes}
    for e in entries:
        for cls, start, stop, *_ in e["classes"]:
            counts[cls] += stop - start

    index_bytes = atomic.json_bytes(index_document(entries, options.encoding))
    atomic.write_bytes(out / INDEX_NAME, index_bytes)
    atomic.write_json(out / REPORT_NAME, {"written": written, "failed_count": len(failed), "failed": failed})
    manifest = {
        **head,
        "build_id": identity,
        "image": {
            "encoding": options.encoding,
            "quality": options.quality if options.encoding == "jpeg" else None,
            "shape": list(shapes.pop()),
        },
        "classes": [{"id": c.id, "count": counts[c.id], "meta": c.meta} for c in classes],
        "shards": [{k: e[k] for k in ("name", "sha256", "bytes", "count")} for e in entries],
        "index": {"name": INDEX_NAME, "sha256": sha256_bytes(index_bytes)},
        "report": {"name": REPORT_NAME, "failed": len(failed)},
    }
    validate_manifest(manifest)
    save_manifest(manifest, manifest_path)
    shutil.rmtree(work, ignore_errors=True)
    return BuildReport(str(out), written, len(entries), failed)


def report_dict(report: BuildReport) -> dict:
    return asdict(report)
