"""Unsupervised task families (UMTRA, Khodadadeh et al. 2019) with hierarchical augmentation.

A task draws N images of a collection, each its own class. Its support holds K views of
each image, its query (or validation) set Q (or V) augmented views. MALTML's realistic
setting adds a family level: each family fixes a sampled subset of the augmentation
dimensions at sampled values (``fewtask_data.augment``: ``{"fixed": {...}, "seed"}``) and
the remaining dimensions are random per view. The family level must notice the fixed
values; the task level must be invariant to the random ones.

Pieces, all plain JSON in the manifest:

* **policy**: a named, declarative augmentation policy (``POLICIES``) or a JSON file of the
  same shape: ``space`` (dimension -> [low, high]), ``fixed_dims`` ([low, high] how many
  dimensions a family fixes) and ``image`` (colour, size, inversion used to decode).
* **groups**: the collection, shuffled with the seed and cut into groups of
  ``group_size`` images. Groups are the manifest's classes (the unit of shards and
  pools), never task classes; when the source had labels, each group's meta keeps
  ``labels`` (sample id -> real label) for collision reports only.
* **families**: ``u0000``, ... each with a pool of groups (all of them, or a random
  fraction) and an ``augment`` spec.
* ``params.episode_sampler`` = ``{"name": "umtra", "support": ..., "avoid_collisions": ...}``
  makes every FamilyStream over the dataset use ``UmtraSampler``.

Support views: with ``support="original"`` the first support view of an image is its
family *anchor*: the family's fixed values applied and every random dimension at its
identity (the plain image when the family fixes nothing), as UMTRA uses the original
image; the other views are fully augmented. With ``"augmented"`` every view is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fewtask_data.augment import AugmentSpace, FamilyTransform, sample_family_augment
from fewtask_data.build import SourceClass
from fewtask_data.episode import EpisodeShape, FamilyEpisode
from fewtask_data.errors import FewtaskError
from fewtask_data.sampling import FamilyBuffer, Transform, episode_from_records
from fewtask_data.sources.images import COLORS, ImageEntry

SUPPORT_MODES = ("original", "augmented")

POLICIES: dict[str, dict[str, Any]] = {
    "handwritten": {
        "description": "UMTRA's Omniglot choice: random pixel zeroing and translation; "
        "grayscale, bright strokes on black",
        "space": {"dropout": [0.0, 0.3], "shift_x": [-0.2, 0.2], "shift_y": [-0.2, 0.2]},
        "fixed_dims": [1, 2],
        "image": {"color": "gray", "size": 28, "invert": True},
    },
    "natural": {
        "description": "natural images: random-resized crops, horizontal flips, colour jitter, rotation",
        "space": {
            "crop": [0.35, 1.0],
            "flip": [0.0, 1.0],
            "brightness": [0.6, 1.4],
            "contrast": [0.6, 1.4],
            "saturation": [0.6, 1.4],
            "hue": [-0.08, 0.08],
            "rotation": [-25.0, 25.0],
        },
        "fixed_dims": [1, 3],
        "image": {"color": "rgb", "size": 84, "invert": False},
    },
}
POLICY_KEYS = {"name", "description", "space", "fixed_dims", "image"}


# ----------------------------------------------------------------------------- policies


def validate_policy(policy: Any, name: str) -> dict[str, Any]:
    """Check a policy document; return it canonical. Errors name the policy and the field."""
    if not isinstance(policy, Mapping):
        raise FewtaskError(f"policy {name}: must be a JSON object with space, fixed_dims, image")
    unknown = set(policy) - POLICY_KEYS
    if unknown:
        raise FewtaskError(f"policy {name}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(POLICY_KEYS))}")
    try:
        space = AugmentSpace.from_json(policy.get("space"))
    except FewtaskError as err:
        raise FewtaskError(f"policy {name}: {err}") from None
    fixed = policy.get("fixed_dims", [1, 1])
    if (
        not isinstance(fixed, (list, tuple))
        or len(fixed) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in fixed)
        or not 0 <= fixed[0] <= fixed[1] <= len(space.dims)
    ):
        raise FewtaskError(
            f"policy {name}: fixed_dims must be [low, high] with 0 <= low <= high <= {len(space.dims)} "
            f"(the number of dimensions in its space), got {fixed!r}"
        )
    image = dict(policy.get("image", {}))
    color, size, invert = image.get("color", "rgb"), image.get("size", 84), image.get("invert", False)
    if color not in COLORS or not isinstance(size, int) or isinstance(size, bool) or size < 8 or not isinstance(invert, bool):
        raise FewtaskError(
            f"policy {name}: image must be {{color: gray|rgb, size: int >= 8, invert: bool}}, got {policy.get('image')!r}"
        )
    return {
        "name": str(policy.get("name", name)),
        "description": str(policy.get("description", "")),
        "space": space.to_json(),
        "fixed_dims": [int(fixed[0]), int(fixed[1])],
        "image": {"color": color, "size": size, "invert": invert},
    }


def load_policy(spec: str) -> dict[str, Any]:
    """A named policy (``POLICIES``) or a JSON file holding one."""
    if spec in POLICIES:
        return validate_policy({"name": spec, **POLICIES[spec]}, spec)
    path = Path(spec)
    if not path.is_file():
        raise FewtaskError(f"--policy {spec!r} is neither a named policy ({', '.join(POLICIES)}) nor a JSON file")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FewtaskError(f"--policy file {path} is not valid JSON ({err})") from None
    return validate_policy({"name": path.stem, **doc} if isinstance(doc, dict) else doc, path.name)


# ----------------------------------------------------------------------------- label collisions


def collision_rate(label_counts: Sequence[int], ways: int) -> float:
    """Chance that ``ways`` images drawn uniformly without replacement from a pool with these
    per-label counts include two of one label: 1 - e_N(counts) / C(total, N), where the
    elementary symmetric polynomial e_N counts the draws with N distinct labels (exact)."""
    total = sum(label_counts)
    if ways > total:
        raise FewtaskError(f"cannot draw {ways} images from a pool of {total}")
    e = [1] + [0] * ways
    for c in label_counts:
        for k in range(ways, 0, -1):
            e[k] += c * e[k - 1]
    return float(1 - Fraction(e[ways], math.comb(total, ways)))


# ----------------------------------------------------------------------------- planning


@dataclass
class UnsupervisedPlan:
    classes: list[SourceClass]  # groups, in shard order
    families: list[dict]
    collisions: dict  # what params.label_collisions records


def plan_unsupervised(
    images: Sequence[ImageEntry],
    *,
    policy: dict,
    families: int,
    pool_fraction: float = 1.0,
    group_size: int = 64,
    ways: int = 5,
    seed: int = 0,
    labelled: bool = False,
    avoid_collisions: bool = False,
) -> UnsupervisedPlan:
    """Groups and families for a collection (see module doc); fails early on a collection
    or pool too small for ``ways``-way tasks."""
    if families < 1:
        raise FewtaskError(f"--families must be >= 1, got {families}")
    if not 0 < pool_fraction <= 1:
        raise FewtaskError(f"--pool-fraction must be in (0, 1], got {pool_fraction}")
    if group_size < 1 or ways < 1:
        raise FewtaskError("--group-size and --ways must be >= 1")
    if avoid_collisions and not labelled:
        raise FewtaskError("--avoid-collisions needs labels; build from labelled shards (--shards) or drop it")
    if len(images) < ways:
        raise FewtaskError(
            f"the collection has {len(images)} images but {ways}-way tasks need {ways} distinct images; "
            "add images or lower --ways"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(images))
    classes = []
    for g, start in enumerate(range(0, len(images), group_size)):
        members = [images[i] for i in order[start : start + group_size]]
        meta: dict[str, Any] = {"images": len(members)}
        if labelled:
            meta["labels"] = {e.sample: e.label for e in members}
        classes.append(SourceClass(f"g{g:05d}", [(e.sample, e.item) for e in members], meta))

    space = AugmentSpace.from_json(policy["space"])
    rng = np.random.default_rng([seed, 2])
    out, rates = [], []
    for j in range(families):
        if pool_fraction < 1:
            k = max(1, round(pool_fraction * len(classes)))
            pool = [classes[i] for i in sorted(rng.choice(len(classes), k, replace=False))]
        else:
            pool = classes
        fid = f"u{j:04d}"
        size = sum(len(c.items) for c in pool)
        meta: dict[str, Any] = {"pool_groups": len(pool), "pool_images": size}
        if size < ways:
            raise FewtaskError(
                f"family {fid}'s pool has {size} images, fewer than {ways} ways; raise --pool-fraction or --group-size"
            )
        if labelled:
            counts: dict[str, int] = {}
            for c in pool:
                for label in c.meta["labels"].values():
                    counts[label] = counts.get(label, 0) + 1
            if avoid_collisions and len(counts) < ways:
                raise FewtaskError(
                    f"family {fid}'s pool has {len(counts)} distinct labels, fewer than {ways} ways; "
                    "cannot avoid collisions (raise --pool-fraction or drop --avoid-collisions)"
                )
            meta["collision_rate_without_avoidance"] = round(collision_rate(list(counts.values()), ways), 8)
            rates.append(meta["collision_rate_without_avoidance"])
        augment = sample_family_augment(space, rng, tuple(policy["fixed_dims"]))
        out.append({"id": fid, "classes": [c.id for c in pool], "meta": meta, "augment": augment})

    if labelled:
        without = round(float(np.mean(rates)), 8)
        collisions = {
            "labels": "known",
            "ways": ways,
            "avoid_collisions": avoid_collisions,
            "rate_without_avoidance": without,
            "rate": 0.0 if avoid_collisions else without,
        }
    else:
        collisions = {"labels": "unknown", "ways": ways, "avoid_collisions": False, "rate": None}
    return UnsupervisedPlan(classes, out, collisions)


# ----------------------------------------------------------------------------- the episode sampler


def anchor_transform(transform: Transform | None) -> Transform | None:
    """The family's anchor view: its fixed values, every random dimension at identity
    (None, the plain image, when nothing is fixed or the transform is not a family's)."""
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
    def from_manifest(cls, manifest) -> "UmtraSampler":
        spec = manifest.data["params"]["episode_sampler"]
        labels = {s: l for c in manifest.data["classes"] for s, l in c["meta"].get("labels", {}).items()}
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
