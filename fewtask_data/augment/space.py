"""Augmentation spaces and family specs: plain JSON, checked without any image code.

Three plain-JSON objects, all stored in the manifest:

* a **space** maps dimension names to ranges, e.g.
  ``{"rotation": [-20, 20], "blur": [0.1, 1.0]}`` (see ``DIMENSIONS`` for the names
  and units). ``AugmentSpace.from_json`` validates it.
* a **family augment** fixes some dimensions of a space at values and carries a seed:
  ``{"fixed": {"rotation": 12.5}, "seed": 123}``. ``sample_family_augment`` draws one.
* ``augment.transforms.family_transform(space, augment)`` turns both into the image
  transform: fixed dimensions take exactly their value on every image of the family,
  every other dimension of the space is drawn per image from its range.

Dimensions come in stages (one albumentations transform each, applied in the order
declared here); ``augment.transforms`` holds the transforms, so planning families
(builds, argument checks) never imports albumentations.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fewtask_data.errors import FewtaskError
from fewtask_data.io import named_or_json

Range = tuple[float, float]


@dataclass(frozen=True)
class Dimension:
    """One augmentation dimension: allowed bounds, the value that means "no change"."""

    name: str
    low: float  # smallest allowed value
    high: float  # largest allowed value
    identity: float
    unit: str


STAGES: dict[str, tuple[Dimension, ...]] = {}  # stage name -> its dimensions; stages apply in this order
DIMENSIONS: dict[str, Dimension] = {}


def register_dimensions(stage: str, dims: Sequence[Dimension]) -> None:
    """Declare a stage's dimensions (they become valid space keys). Its transform is
    registered beside it with ``augment.transforms.register_stage``."""
    for dim in dims:
        if dim.name in DIMENSIONS:
            raise ValueError(f"augmentation dimension {dim.name!r} registered twice")
    STAGES[stage] = tuple(dims)
    DIMENSIONS.update((dim.name, dim) for dim in dims)


register_dimensions(
    "affine",
    (
        Dimension("rotation", -180.0, 180.0, 0.0, "degrees"),
        Dimension("shear", -60.0, 60.0, 0.0, "degrees (x shear)"),
        Dimension("scale", 0.2, 5.0, 1.0, "factor"),
        Dimension("translate_x", -0.5, 0.5, 0.0, "fraction of width"),
        Dimension("translate_y", -0.5, 0.5, 0.0, "fraction of height"),
    ),
)
register_dimensions("elastic", (Dimension("elastic", 0.0, 0.2, 0.0, "RMS displacement, fraction of side"),))
register_dimensions("stroke", (Dimension("stroke", -3.0, 3.0, 0.0, "pixels (negative thins)"),))
# GaussianBlur needs sigma > 0 (sigma 0 gives NaN kernels), so the blur bound starts above 0.
register_dimensions("blur", (Dimension("blur", 0.05, 5.0, 0.05, "Gaussian sigma, pixels"),))
# Stages for unsupervised (UMTRA-style) and natural-image families.
register_dimensions("crop", (Dimension("crop", 0.05, 1.0, 1.0, "area fraction kept"),))
register_dimensions("flip", (Dimension("flip", 0.0, 1.0, 0.0, "horizontal flip probability"),))
register_dimensions(
    "colour",
    (
        Dimension("brightness", 0.1, 3.0, 1.0, "factor"),
        Dimension("contrast", 0.1, 3.0, 1.0, "factor"),
        Dimension("saturation", 0.0, 3.0, 1.0, "factor"),
        Dimension("hue", -0.5, 0.5, 0.0, "fraction of the hue circle"),
    ),
)
register_dimensions("dropout", (Dimension("dropout", 0.0, 0.9, 0.0, "fraction of pixels zeroed"),))
register_dimensions(
    "shift",
    (
        Dimension("shift_x", -0.5, 0.5, 0.0, "fraction of width, whole pixels"),
        Dimension("shift_y", -0.5, 0.5, 0.0, "fraction of height, whole pixels"),
    ),
)


@dataclass(frozen=True)
class AugmentSpace:
    """Validated augmentation space: dimension name -> (low, high)."""

    dims: Mapping[str, Range]

    @classmethod
    def from_json(cls, obj: Any) -> "AugmentSpace":
        if isinstance(obj, AugmentSpace):
            return obj
        if not isinstance(obj, Mapping) or not obj:
            raise FewtaskError(
                f"augmentation space must be a non-empty JSON object of name -> [low, high], got {obj!r}"
            )
        dims: dict[str, Range] = {}
        for name, rng in obj.items():
            dim = DIMENSIONS.get(name)
            if dim is None:
                raise FewtaskError(
                    f"augmentation space: unknown dimension {name!r}; known: {', '.join(sorted(DIMENSIONS))}"
                )
            if (
                not isinstance(rng, (list, tuple))
                or len(rng) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
            ):
                raise FewtaskError(f"augmentation space: {name} must be [low, high] numbers, got {rng!r}")
            low, high = float(rng[0]), float(rng[1])
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise FewtaskError(f"augmentation space: {name} range [{low}, {high}] needs finite low <= high")
            if low < dim.low or high > dim.high:
                raise FewtaskError(
                    f"augmentation space: {name} range [{low}, {high}] leaves the allowed "
                    f"[{dim.low}, {dim.high}] ({dim.unit})"
                )
            dims[name] = (low, high)
        return cls(dict(sorted(dims.items())))

    def to_json(self) -> dict[str, list[float]]:
        return {k: [lo, hi] for k, (lo, hi) in sorted(self.dims.items())}


# Named spaces. "handwritten" is the Omniglot default: strong enough that a family's
# fixed values are visible, mild enough that characters stay legible at 28x28.
SPACES: dict[str, dict[str, list[float]]] = {
    "handwritten": {
        "rotation": [-30.0, 30.0],
        "shear": [-20.0, 20.0],
        "scale": [0.8, 1.2],
        "translate_x": [-0.1, 0.1],
        "translate_y": [-0.1, 0.1],
        "elastic": [0.0, 0.03],
        "stroke": [-0.6, 1.5],
        "blur": [0.1, 1.0],
    },
}


def named_space(name: str) -> AugmentSpace:
    if name not in SPACES:
        raise FewtaskError(f"unknown augmentation space {name!r}; known: {', '.join(sorted(SPACES))}")
    return AugmentSpace.from_json(SPACES[name])


def load_space(spec: str | Path) -> tuple[AugmentSpace, str]:
    """(space, its name) for a named space (``SPACES``) or a JSON file of name -> [low, high]."""
    obj, name = named_or_json(spec, list(SPACES), SPACES.__getitem__, "augmentation space")
    return AugmentSpace.from_json(obj), name


def validate_family_augment(space: AugmentSpace, augment: Any) -> dict[str, Any]:
    """Check a family augment against its space; return it in canonical form."""
    if not isinstance(augment, Mapping) or not isinstance(augment.get("fixed"), Mapping):
        raise FewtaskError(f"family augment must be {{'fixed': {{dim: value}}, 'seed': int}}, got {augment!r}")
    seed = augment.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise FewtaskError(f"family augment: seed must be a non-negative integer, got {seed!r}")
    fixed = {}
    for name, value in augment["fixed"].items():
        if name not in space.dims:
            raise FewtaskError(f"family augment fixes {name!r}, which is not in the space ({', '.join(space.dims)})")
        low, high = space.dims[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            raise FewtaskError(f"family augment: {name}={value!r} lies outside the space range [{low}, {high}]")
        fixed[name] = float(value)
    return {"fixed": dict(sorted(fixed.items())), "seed": seed}


def sample_family_augment(space: AugmentSpace, rng: np.random.Generator, fixed_count: tuple[int, int] = (1, 3)) -> dict:
    """Draw one family: a subset of between fixed_count[0] and fixed_count[1] dimensions,
    each fixed at a uniform value of its range, plus a seed for materializing its images."""
    names = sorted(space.dims)
    lo, hi = fixed_count
    if not 0 <= lo <= hi:
        raise FewtaskError(f"fixed dimension count range ({lo}, {hi}) needs 0 <= low <= high")
    hi = min(hi, len(names))
    lo = min(lo, hi)
    k = int(rng.integers(lo, hi + 1))
    chosen = sorted(rng.choice(names, size=k, replace=False).tolist()) if k else []
    fixed = {}
    for name in chosen:
        low, high = space.dims[name]
        # Rounded for readable JSON (the stored value is the one used), kept inside the range.
        fixed[name] = min(max(round(float(rng.uniform(low, high)), 4), low), high)
    return {"fixed": fixed, "seed": int(rng.integers(0, 2**31 - 1))}


def image_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A generator fixed by (family seed, sample id): used to materialize a family's images."""
    digest = hashlib.sha256(sample_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
