"""Episode samplers: a family buffer + an episode shape + a seed -> one FamilyEpisode.

A sampler is a strategy object with two methods, so new kinds of families plug into
the stream without touching it:

    check(family, counts, shape)                 FewtaskError if the shape is impossible
    sample(buffer, shape, seed, transform)       -> FamilyEpisode

Samplers register themselves by name (``register_sampler``); a manifest names the one
its families need in ``params.episode_sampler`` and ``sampler_for`` builds it. Everything
random in an episode must come from ``np.random.default_rng(seed)`` in a fixed order, so
the same buffer and seed always give the same episode: that is what replay relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from fewtask_data.episode import EpisodeShape, FamilyEpisode
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import Manifest

if TYPE_CHECKING:
    import torch

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class FamilyBuffer:
    """One family's images in memory: class id -> [(sample id, uint8 image)], shard order."""

    family: dict
    split: str
    images: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # class -> [n, H, W(, C)], see stack()

    @property
    def classes(self) -> list[str]:
        return list(self.family["classes"])

    def stack(self) -> "FamilyBuffer":
        """Hold each class as one array (``images`` become views of it, so no extra memory);
        lets samplers gather a task's images with one indexing operation."""
        for cls, items in self.images.items():
            if items and cls not in self.arrays:
                arr = np.stack([img for _, img in items])
                self.arrays[cls] = arr
                self.images[cls] = [(sid, arr[i]) for i, (sid, _) in enumerate(items)]
        return self

    def nbytes(self) -> int:
        return sum(img.nbytes for items in self.images.values() for _, img in items)


class EpisodeSampler(Protocol):
    name: str

    def check(self, family: dict, counts: dict[str, int], shape: EpisodeShape) -> None: ...

    def sample(
        self, buffer: FamilyBuffer, shape: EpisodeShape, seed: int, transform: Transform | None
    ) -> FamilyEpisode: ...


def to_tensor(images: np.ndarray, image_ndim: int) -> torch.Tensor:
    """uint8 [..., H, W] (image_ndim 2) or [..., H, W, C] (3) -> float32 [..., C, H, W] in [0, 1]."""
    import torch  # here, not at the top: builds and the CLI use the samplers' names without torch

    t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.unsqueeze(-3) if image_ndim == 2 else t.movedim(-1, -3)
    return t.float().div_(255)


def episode_from_tasks(
    meta: list[tuple[np.ndarray, np.ndarray]],
    goal: list[tuple[np.ndarray, np.ndarray]],
    shape: EpisodeShape,
    family: str,
    identity: dict,
    image_shape: tuple[int, ...],
) -> FamilyEpisode:
    """Stack per-task (uint8 images, labels) into a FamilyEpisode."""
    import torch

    def stack(tasks: list[tuple[np.ndarray, np.ndarray]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not tasks:
            x = np.zeros((0, size, *image_shape), np.uint8)
            return to_tensor(x, len(image_shape)), torch.zeros((0, size), dtype=torch.int64)
        x = np.stack([t[0] for t in tasks])
        y = np.stack([t[1] for t in tasks]).astype(np.int64)
        return to_tensor(x, len(image_shape)), torch.from_numpy(y)

    meta_x, meta_y = stack(meta, shape.meta_size)
    goal_x, goal_y = stack(goal, shape.goal_size)
    return FamilyEpisode(meta_x, meta_y, goal_x, goal_y, shape, family, identity)


def episode_from_records(
    buffer: FamilyBuffer, shape: EpisodeShape, sampler: str, seed: int, meta: list[tuple], goal: list[tuple]
) -> FamilyEpisode:
    """FamilyEpisode from per-task (uint8 images, labels, record) triples, with the standard
    identity {split, family, sampler, seed, shape, tasks: {meta: [records], goal: [records]}}."""
    identity = {
        "split": buffer.split,
        "family": buffer.family["id"],
        "sampler": sampler,
        "seed": int(seed),
        "shape": shape.as_dict(),
        "tasks": {"meta": [t[2] for t in meta], "goal": [t[2] for t in goal]},
    }
    image_shape = (meta or goal)[0][0].shape[1:]
    return episode_from_tasks(
        [t[:2] for t in meta], [t[:2] for t in goal], shape, buffer.family["id"], identity, image_shape
    )


# ---------------------------------------------------------------- the registry

SAMPLERS: dict[str, Callable[[Manifest], EpisodeSampler]] = {}  # name -> sampler for a manifest


def register_sampler(name: str, from_manifest: Callable[[Manifest], EpisodeSampler]) -> None:
    """Make ``params.episode_sampler.name == name`` in a manifest stream through ``from_manifest(manifest)``."""
    SAMPLERS[name] = from_manifest


def sampler_for(manifest: Manifest) -> EpisodeSampler:
    """The sampler a dataset asks for in its manifest (``params.episode_sampler``):
    ordinary class episodes unless the builder chose another, e.g. unsupervised
    families (each image its own class), so every reader streams them the same way."""
    name = (manifest.episode_sampler or {"name": "class"}).get("name")
    if name not in SAMPLERS:
        raise FewtaskError(f"the manifest asks for episode sampler {name!r}, which this fewtask does not know; upgrade fewtask")
    return SAMPLERS[name](manifest)
