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
from typing import TYPE_CHECKING, Iterable, Iterator

import h5py
import numpy as np

from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode
from fewtask_data.errors import FewtaskError
from fewtask_data.io import temp_path

if TYPE_CHECKING:
    import torch

FORMAT = "fewtask-episodes"
ARRAYS = ("meta_x", "meta_y", "goal_x", "goal_y", "meta_info", "goal_info")


def _as_stored(x: torch.Tensor, scale: int) -> np.ndarray:
    import torch  # here, not at the top: `inspect` reads a store without torch

    if scale == 1:
        return x.numpy()
    u8 = x.mul(scale).round_().clamp_(0, 255).to(torch.uint8)
    if not torch.equal(u8.float().div_(scale), x):
        raise FewtaskError("episode images are not exact multiples of 1/255; cannot store them as uint8")
    return u8.numpy()


def _scale_for(x: torch.Tensor) -> int:
    import torch

    if not x.is_floating_point() or x.numel() == 0:
        return 1
    u8 = x.mul(255).round_().clamp_(0, 255)
    return 255 if torch.equal(u8.div_(255), x) else 1


def write_episodes(path: str | Path, episodes: Iterable[FamilyEpisode], info: dict | None = None) -> int:
    """Write episodes (all of one shape) to ``path`` atomically; returns how many."""
    path = Path(path)
    tmp = temp_path(path)
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
        import torch

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
