"""Fixed evaluation episodes in HDF5, so results are comparable across runs and projects.

Layout of one file (format "fewtask-episodes", version 1), E episodes of one shape:

    meta_x [E, L, N*(K+Q), C, H, W]   uint8 (x * 255, exact) or float32
    meta_y [E, L, N*(K+Q)]            int64 (or float32 regression targets)
    goal_x [E, C, N*(K+V), C, H, W], goal_y [E, C, N*(K+V)]
    family [E]   identity [E]          UTF-8 strings; identity is the episode's JSON replay info
    meta_info, goal_info               optional float arrays
    attrs: format, format_version, shape (JSON), x_scale (255 or 1), info (JSON: source, split, seed...)

Images from shards are k/255 floats, so they are stored as uint8 and read back to the
bit-identical float tensors. Files are written to a temp name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch
import typer

from fewtask_data import atomic
from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode
from fewtask_data.errors import FewtaskError

FORMAT = "fewtask-episodes"
ARRAYS = ("meta_x", "meta_y", "goal_x", "goal_y", "meta_info", "goal_info")


def _as_stored(x: torch.Tensor, scale: int) -> np.ndarray:
    if scale == 1:
        return x.numpy()
    u8 = x.mul(scale).round_().clamp_(0, 255).to(torch.uint8)
    if not torch.equal(u8.float().div_(scale), x):
        raise FewtaskError("episode images are not exact multiples of 1/255; cannot store them as uint8")
    return u8.numpy()


def _scale_for(x: torch.Tensor) -> int:
    if not x.is_floating_point() or x.numel() == 0:
        return 1
    u8 = x.mul(255).round_().clamp_(0, 255)
    return 255 if torch.equal(u8.div_(255), x) else 1


def write_episodes(path: str | Path, episodes: Iterable[FamilyEpisode], info: dict | None = None) -> int:
    """Write episodes (all of one shape) to ``path`` atomically; returns how many."""
    path = Path(path)
    tmp = atomic.temp_path(path)
    n = 0
    try:
        with h5py.File(tmp, "w") as f:
            strings = h5py.string_dtype("utf-8")
            for ep in episodes:
                if n == 0:
                    shape, scale = ep.shape, _scale_for(ep.meta_x if ep.meta_x.numel() else ep.goal_x)
                    f.attrs.update(
                        format=FORMAT,
                        format_version=1,
                        shape=json.dumps(shape.as_dict()),
                        x_scale=scale,
                        info=json.dumps(info or {}, sort_keys=True),
                    )
                    for name in ARRAYS:
                        value = getattr(ep, name)
                        if value is None:
                            continue
                        arr = _as_stored(value, scale) if name.endswith("_x") else value.numpy()
                        # HDF5 chunks need positive sizes: an empty part (L = 0 meta
                        # tasks) gets unlimited axes and a unit chunk instead.
                        empty = arr.size == 0
                        f.create_dataset(
                            name, (0, *arr.shape), arr.dtype,
                            maxshape=(None,) * (arr.ndim + 1) if empty else (None, *arr.shape),
                            chunks=(1, *(max(1, d) for d in arr.shape)), compression="gzip", compression_opts=1,
                        )
                    f.create_dataset("family", (0,), strings, maxshape=(None,))
                    f.create_dataset("identity", (0,), strings, maxshape=(None,))
                elif ep.shape != shape:
                    raise FewtaskError(f"episode {n} has shape {ep.shape}, the store holds {shape}")
                for name in ARRAYS:
                    value = getattr(ep, name)
                    if (value is None) != (name not in f):
                        raise FewtaskError(f"episode {n}: {name} present in some episodes and not others")
                    if value is None:
                        continue
                    arr = _as_stored(value, scale) if name.endswith("_x") else value.numpy()
                    f[name].resize(n + 1, axis=0)
                    f[name][n] = arr
                for name, text in (("family", ep.family), ("identity", json.dumps(ep.identity, sort_keys=True))):
                    f[name].resize(n + 1, axis=0)
                    f[name][n] = text
                n += 1
        if n == 0:
            raise FewtaskError("no episodes to write")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


class EpisodeStore:
    """Read side: ``store[i]`` is a FamilyEpisode, ``store.batches(b)`` yields FamilyBatch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FewtaskError(f"no episode file at {self.path}; write one with `fewtask-data episodes`")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise FewtaskError(f"{self.path} is not a readable HDF5 file ({err})") from None
        if self.file.attrs.get("format") != FORMAT:
            raise FewtaskError(f"{self.path} is not a fewtask episode file")
        self.shape = EpisodeShape(**json.loads(self.file.attrs["shape"]))
        self.scale = int(self.file.attrs["x_scale"])
        self.info = json.loads(self.file.attrs["info"])

    def __len__(self) -> int:
        return len(self.file["family"])

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "EpisodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _array(self, name: str, sl: slice) -> torch.Tensor | None:
        if name not in self.file:
            return None
        t = torch.from_numpy(self.file[name][sl])
        if name.endswith("_x") and self.scale != 1:
            t = t.float().div_(self.scale)
        return t

    def batch(self, start: int, stop: int) -> FamilyBatch:
        sl = slice(start, min(stop, len(self)))
        if sl.start >= sl.stop:
            raise FewtaskError(f"episodes {start}..{stop} are outside the store's {len(self)}")
        a = {name: self._array(name, sl) for name in ARRAYS}
        return FamilyBatch(
            shape=self.shape,
            families=[s.decode() for s in self.file["family"][sl]],
            identities=[json.loads(s) for s in self.file["identity"][sl]],
            **a,
        )

    def __getitem__(self, i: int) -> FamilyEpisode:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.batch(i, i + 1).episodes()[0]

    def batches(self, batch_size: int) -> Iterator[FamilyBatch]:
        for start in range(0, len(self), batch_size):
            yield self.batch(start, start + batch_size)


def episodes_command(
    source: str = typer.Argument(..., help="dataset folder, manifest.json, or URL prefix"),
    out: Path = typer.Option(..., "--out", help="HDF5 file to write (e.g. test.h5)"),
    split: str = typer.Option("test", help="split whose families the episodes come from"),
    count: int = typer.Option(600, min=1, help="number of family episodes"),
    seed: int = typer.Option(0, help="episode seed (same seed, same episodes)"),
    ways: int = typer.Option(5, help="N: classes per task"),
    shots: int = typer.Option(1, help="K: support images per class"),
    queries: int = typer.Option(5, help="Q: query images per class in meta-finetuning tasks"),
    val: int = typer.Option(15, help="V: validation images per class in goal tasks"),
    meta_tasks: int = typer.Option(4, help="L: meta-finetuning tasks per family episode"),
    goal_tasks: int = typer.Option(1, help="C: goal tasks per family episode"),
    per_visit: int = typer.Option(10, min=1, help="episodes drawn per family visit"),
    workers: int = typer.Option(0, min=0, help="processes drawing episodes (same episodes for any count)"),
) -> None:
    """Write fixed evaluation family episodes (with replay identities) to HDF5."""
    from fewtask_data.stream import FamilyStream, first_episodes

    shape = EpisodeShape(ways, shots, queries, val, meta_tasks, goal_tasks)
    stream = FamilyStream(source, split, shape, seed=seed, episodes_per_visit=per_visit)
    info = {
        "dataset": stream.manifest.data["dataset"],
        "build_id": stream.manifest.data["build_id"],
        "split": split,
        "seed": seed,
        "episodes_per_visit": per_visit,
    }
    n = write_episodes(out, first_episodes(stream, count, workers), info)
    typer.echo(f"wrote {n} {ways}-way {shots}-shot family episodes from split {split!r} to {out}")
