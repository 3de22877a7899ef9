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
  makes every FamilyStream over the dataset use ``sampling.umtra.UmtraSampler`` (support
  views: the family anchor or augmented, see there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fewtask_data.augment.space import AugmentSpace, sample_family_augment
from fewtask_data.errors import FewtaskError
from fewtask_data.io import named_or_json
from fewtask_data.sources import SourceClass
from fewtask_data.sources.images import COLORS, ImageEntry

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
    """A named policy (``POLICIES``) or a JSON file holding one (named by its file name)."""
    doc, name = named_or_json(spec, list(POLICIES), lambda n: {"name": n, **POLICIES[n]}, "policy")
    if isinstance(doc, dict) and name not in POLICIES:
        doc = {"name": Path(name).stem, **doc}
    return validate_policy(doc, name)


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
