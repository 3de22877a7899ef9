"""UMTRA episodes (Khodadadeh et al. 2019): each image of a family's pool is its own class.

A task draws N distinct images; its support holds K views of each, its query (or
validation) set Q (or V) augmented views. With ``support="original"`` the first support
view of an image is its family *anchor*: the family's fixed augmentation values applied
and every random dimension at its identity (the plain image when the family fixes
nothing), as UMTRA uses the original image; the other views are fully augmented. With
``"augmented"`` every view is. Unsupervised builds (``families/unsupervised.py``) name
this sampler in their manifests.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fewtask_data.augment.space import AugmentSpace
from fewtask_data.episode import EpisodeShape, FamilyEpisode
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import Manifest
from fewtask_data.sampling.base import FamilyBuffer, Transform, episode_from_records, register_sampler

SUPPORT_MODES = ("original", "augmented")


def anchor_transform(transform: Transform | None) -> Transform | None:
    """The family's anchor view: its fixed values, every random dimension at identity
    (None, the plain image, when nothing is fixed or the transform is not a family's)."""
    from fewtask_data.augment.transforms import FamilyTransform  # albumentations: only for augmented families

    if isinstance(transform, FamilyTransform) and transform.fixed:
        fixed_space = AugmentSpace({k: transform.space.dims[k] for k in transform.fixed})
        return FamilyTransform(fixed_space, transform.augment)
    return None


class UmtraSampler:
    """Each task: N distinct images of the family's pool, each its own class; K support
    views and Q query (V validation) augmented views per image; labels 0..N-1 in draw
    order; all supports first, image by image, then the rest. Replays exactly: all draws
    come from the episode rng. ``labels`` (sample id -> real label), when the source had
    them, are recorded per task (``labels``, ``collisions``) and, with
    ``avoid_collisions``, keep two images of one label out of a task."""

    name = "umtra"

    def __init__(self, support: str = "original", avoid_collisions: bool = False, labels: Mapping[str, str] | None = None):
        if support not in SUPPORT_MODES:
            raise FewtaskError(f"support must be one of {', '.join(SUPPORT_MODES)}, got {support!r}")
        if avoid_collisions and not labels:
            raise FewtaskError("avoiding label collisions needs the images' labels")
        self.support, self.avoid_collisions = support, avoid_collisions
        self.labels = dict(labels or {})
        self._pool: tuple[Any, list[tuple[str, int]], list[str | None], int] | None = None
        self._anchors: dict[int, tuple[Transform, Transform | None]] = {}

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "UmtraSampler":
        spec = manifest.episode_sampler
        labels = {s: l for c in manifest.classes for s, l in manifest.class_meta(c).get("labels", {}).items()}
        return cls(spec.get("support", "original"), bool(spec.get("avoid_collisions")), labels)

    def check(self, family: dict, counts: dict[str, int], shape: EpisodeShape) -> None:
        total = sum(counts[c] for c in family["classes"])
        if total < shape.ways:
            raise FewtaskError(
                f"family {family['id']!r} has {total} images but {shape.ways}-way unsupervised tasks need "
                f"{shape.ways} distinct images; lower --ways"
            )

    def _pool_of(self, buffer: FamilyBuffer) -> tuple[list[tuple[str, int]], list[str | None], int]:
        """(class, index) of every image in the buffer, its label, the number of distinct
        labels; cached per buffer."""
        if self._pool is None or self._pool[0] is not buffer.images:
            pool = [(c, i) for c in buffer.classes for i in range(len(buffer.images.get(c, ())))]
            labels = [self.labels.get(buffer.images[c][i][0]) for c, i in pool]
            self._pool = (buffer.images, pool, labels, len(set(labels)))
        return self._pool[1], self._pool[2], self._pool[3]

    def _anchor(self, transform: Transform | None) -> Transform | None:
        cached = self._anchors.get(id(transform))
        if cached is None or cached[0] is not transform:
            if len(self._anchors) > 256:
                self._anchors.clear()
            cached = self._anchors[id(transform)] = (transform, anchor_transform(transform))
        return cached[1]

    def _draw(self, labels: list[str | None], distinct: int, ways: int, rng: np.random.Generator) -> list[int]:
        if not self.avoid_collisions:
            return [int(i) for i in rng.choice(len(labels), ways, replace=False)]
        if distinct < ways:
            raise FewtaskError(f"this family's pool has {distinct} labels, fewer than {ways} ways")
        chosen: list[int] = []
        used: set = set()
        while len(chosen) < ways:  # uniform over images whose label is still unused
            i = int(rng.integers(len(labels)))
            if labels[i] not in used:
                chosen.append(i)
                used.add(labels[i])
        return chosen

    def _task(
        self, buffer: FamilyBuffer, shape: EpisodeShape, extra: int, rng: np.random.Generator, transform
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        pool, labels, distinct = self._pool_of(buffer)
        picks = self._draw(labels, distinct, shape.ways, rng)
        originals = [buffer.images[pool[i][0]][pool[i][1]][1] for i in picks]
        anchor = self._anchor(transform) if self.support == "original" else transform

        def view(img: np.ndarray, first: bool) -> np.ndarray:
            t = anchor if first else transform
            return t(img, rng) if t is not None else img

        views = [view(img, j == 0) for img in originals for j in range(shape.shots)]
        views += [view(img, False) for img in originals for _ in range(extra)]
        y = np.concatenate([np.repeat(np.arange(shape.ways), shape.shots), np.repeat(np.arange(shape.ways), extra)])
        record: dict[str, Any] = {
            "classes": [pool[i][0] for i in picks],
            "samples": [[buffer.images[pool[i][0]][pool[i][1]][0]] for i in picks],
        }
        if self.labels:
            real = [labels[i] for i in picks]
            record["labels"] = real
            record["collisions"] = shape.ways - len(set(real))
        return np.stack(views), y, record

    def sample(self, buffer: FamilyBuffer, shape: EpisodeShape, seed: int, transform: Transform | None) -> FamilyEpisode:
        """One family episode; its identity has the same fields as class episodes'."""
        rng = np.random.default_rng(seed)
        meta = [self._task(buffer, shape, shape.queries, rng, transform) for _ in range(shape.meta_tasks)]
        goal = [self._task(buffer, shape, shape.val, rng, transform) for _ in range(shape.goal_tasks)]
        return episode_from_records(buffer, shape, self.name, seed, meta, goal)


register_sampler(UmtraSampler.name, UmtraSampler.from_manifest)
