"""Episode samplers: a family buffer + an episode shape + a seed -> one FamilyEpisode.

A sampler is a strategy object with two methods, so new kinds of families plug into
the stream without touching it:

    check(family, counts, shape)                 FewtaskError if the shape is impossible
    sample(buffer, shape, seed, transform)       -> FamilyEpisode

``ClassEpisodeSampler`` makes ordinary N-way K-shot tasks. Everything random in an
episode comes from ``np.random.default_rng(seed)`` in a fixed order (class choice,
image choice, then the per-image transform), so the same buffer and seed always give
the same episode: that is what replay relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from fewtask_data.episode import EpisodeShape, FamilyEpisode
from fewtask_data.errors import FewtaskError

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


class ClassEpisodeSampler:
    """N classes without replacement per task; K support + Q query (or V validation)
    images per class without replacement; labels 0..N-1 in the order classes were drawn;
    all supports first, class by class, then all queries."""

    name = "class"

    @staticmethod
    def _need(shape: EpisodeShape) -> list[tuple[str, int]]:
        parts = [("goal", shape.shots + shape.val)]
        if shape.meta_tasks:
            parts.insert(0, ("meta", shape.shots + shape.queries))
        return parts

    def check(self, family: dict, counts: dict[str, int], shape: EpisodeShape) -> None:
        classes = family["classes"]
        if shape.ways > len(classes):
            raise FewtaskError(
                f"family {family['id']!r} has {len(classes)} classes but episodes ask for {shape.ways} ways; "
                "lower --ways or drop the family"
            )
        for part, per_class in self._need(shape):
            enough = [c for c in classes if counts[c] >= per_class]
            if len(enough) < shape.ways:
                what = "queries" if part == "meta" else "val"
                raise FewtaskError(
                    f"family {family['id']!r}: {shape.ways}-way {part} tasks need {shape.ways} classes with "
                    f"{shape.shots} shots + {per_class - shape.shots} {what} = {per_class} images, but only "
                    f"{len(enough)} of its {len(classes)} classes have that many (smallest has "
                    f"{min(counts[c] for c in classes)}); lower the shots/{what}"
                )

    def _task(
        self, buffer: FamilyBuffer, shape: EpisodeShape, extra: int, rng: np.random.Generator, transform, eligible
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        per_class = shape.shots + extra
        chosen = [eligible[i] for i in rng.choice(len(eligible), shape.ways, replace=False)]
        picks = [rng.choice(len(buffer.images[c]), per_class, replace=False) for c in chosen]
        k = shape.shots
        labels = np.concatenate([np.repeat(np.arange(shape.ways), k), np.repeat(np.arange(shape.ways), extra)])
        if transform is None and all(c in buffer.arrays for c in chosen):
            gathered = [buffer.arrays[c][p] for c, p in zip(chosen, picks)]  # one fancy index per class
            x = np.concatenate([g[:k] for g in gathered] + [g[k:] for g in gathered])
        else:
            order = [(label, j) for label in range(shape.ways) for j in range(k)]
            order += [(label, j) for label in range(shape.ways) for j in range(k, per_class)]
            images = []
            for label, j in order:
                img = buffer.images[chosen[label]][picks[label][j]][1]
                images.append(transform(img, rng) if transform is not None else img)
            x = np.stack(images)
        record = {
            "classes": chosen,
            "samples": [[buffer.images[c][i][0] for i in p] for c, p in zip(chosen, picks)],
        }
        return x, labels, record

    def sample(
        self, buffer: FamilyBuffer, shape: EpisodeShape, seed: int, transform: Transform | None
    ) -> FamilyEpisode:
        rng = np.random.default_rng(seed)

        def eligible(per_class: int) -> list[str]:
            return [c for c in buffer.classes if len(buffer.images.get(c, ())) >= per_class]

        meta_ok, goal_ok = eligible(shape.shots + shape.queries), eligible(shape.shots + shape.val)
        meta = [self._task(buffer, shape, shape.queries, rng, transform, meta_ok) for _ in range(shape.meta_tasks)]
        goal = [self._task(buffer, shape, shape.val, rng, transform, goal_ok) for _ in range(shape.goal_tasks)]
        return episode_from_records(buffer, shape, self.name, seed, meta, goal)


def sampler_for(manifest) -> EpisodeSampler:
    """The sampler a dataset asks for in its manifest (``params.episode_sampler``):
    ordinary class episodes unless the builder chose another, e.g. unsupervised
    families (each image its own class), so every reader streams them the same way."""
    spec = manifest.data["params"].get("episode_sampler")
    if spec is None or spec.get("name") == ClassEpisodeSampler.name:
        return ClassEpisodeSampler()
    if spec.get("name") == "umtra":
        from fewtask_data.families.unsupervised import UmtraSampler  # imported only for such datasets

        return UmtraSampler.from_manifest(manifest)
    raise FewtaskError(f"the manifest asks for episode sampler {spec.get('name')!r}, which this fewtask does not know; upgrade fewtask")
