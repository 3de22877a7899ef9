"""Writing a build's shards so that a killed build resumes to the same bytes.

Each shard is written atomically and then noted in ``OUT/.build/`` (its index entry,
failed images, image shape); a rerun skips noted shards and rebuilds the rest. The
work folder carries the build id, so a rerun with other settings is refused instead
of mixing two builds. Images are decoded and encoded in worker processes, in plan order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from fewtask_data.builders.plan import BuildOptions, Plan
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.image import EXTENSIONS, encode_image
from fewtask_data.formats.shards import shard_name, write_shard
from fewtask_data.io import ensure_writable, remove_stale_temps, write_bytes, write_json

WORK_DIR = ".build"

# ---------------------------------------------------------------- workers

_worker_state: dict = {}


def _init_worker(decode: Callable, encoding: str, quality: int) -> None:
    _worker_state.update(decode=decode, encoding=encoding, quality=quality)


def _encode_one(item: Any) -> tuple[bool, Any, Any]:
    """(True, bytes, shape) or (False, reason, None); never raises for a bad image."""
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


# ---------------------------------------------------------------- shards and notes


def open_work_dir(out: Path, identity: str) -> Path:
    """``OUT/.build`` stamped with the build id; refuses an unfinished build with other settings."""
    work = ensure_writable(out) / WORK_DIR
    work.mkdir(exist_ok=True)
    stamp = work / "build_id"
    if stamp.exists() and stamp.read_text() != identity:
        raise FewtaskError(f"{out} holds an unfinished build with other settings; delete it or choose another folder")
    write_bytes(stamp, identity.encode())
    remove_stale_temps(out)
    remove_stale_temps(work)
    return work


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
    write_json(work / f"{number:06d}.json", note)
    return note


def write_shards(
    out: Path,
    work: Path,
    plan: Plan,
    decode: Callable[[Any], np.ndarray],
    options: BuildOptions,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Every shard of the plan written (or found noted from an earlier run); their notes in order."""
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
    return [notes[n] for n in range(len(plan))]
