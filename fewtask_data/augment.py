"""Augmentation-parameterized families: a space of augmentation dimensions, families
that fix a subset of them, and per-image randomness for the rest.

Three plain-JSON objects, all stored in the manifest:

* a **space** maps dimension names to ranges, e.g.
  ``{"rotation": [-20, 20], "blur": [0.1, 1.0]}`` (see ``DIMENSIONS`` for the names
  and units). ``AugmentSpace.from_json`` validates it.
* a **family augment** fixes some dimensions of a space at values and carries a seed:
  ``{"fixed": {"rotation": 12.5}, "seed": 123}``. ``sample_family_augment`` draws one.
* ``family_transform(space, augment)`` returns a ``FamilyTransform``:
  ``transform(image: uint8 ndarray, rng: np.random.Generator) -> uint8 ndarray``.
  Fixed dimensions take exactly their value on every image of the family; every other
  dimension of the space is drawn per image from its range. The result depends only
  on the image and the rng, so episodes replay exactly.

The transforms are albumentations 2 transforms (Affine, GaussianBlur) plus two small
custom albumentations transforms (elastic distortion with a ranged strength, and
signed stroke thickness). A fixed value is simply a degenerate range ``(v, v)``.
All random draws come from the caller's rng, one after another, so dimensions never
share a draw and the same rng state gives the same image.

Other family builders (e.g. unsupervised families) reuse this module: add
dimensions with ``register_stage`` and name spaces in ``SPACES``.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import albumentations as A
import cv2
import numpy as np

from fewtask_data.errors import FewtaskError

Range = tuple[float, float]


@dataclass(frozen=True)
class Dimension:
    """One augmentation dimension: allowed bounds, the value that means "no change"."""

    name: str
    low: float  # smallest allowed value
    high: float  # largest allowed value
    identity: float
    unit: str


@dataclass(frozen=True)
class Stage:
    """A group of dimensions applied by one albumentations transform, built from ranges."""

    name: str
    dims: tuple[Dimension, ...]
    build: Callable[[dict[str, Range]], A.BasicTransform]


# ----------------------------------------------------------------------------- custom transforms


class ElasticDistortion(A.ImageOnlyTransform):
    """Smooth random displacement field whose strength is itself drawn from a range.

    ``strength`` is the RMS displacement as a fraction of the image side; the field is
    Gaussian noise smoothed with sigma = ``smoothness`` * side, then rescaled, so the
    look is the same at any image size. (albumentations' ElasticTransform takes one
    fixed alpha, so it cannot leave the strength random per image.)
    """

    def __init__(self, strength_range: Range = (0.0, 0.0), smoothness: float = 0.12, p: float = 1.0):
        super().__init__(p=p)
        self.strength_range = tuple(strength_range)
        self.smoothness = smoothness

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        strength = self.py_random.uniform(*self.strength_range)
        h, w = params["shape"][:2]
        if strength <= 0:
            return {"strength": strength, "map_x": None, "map_y": None}
        sigma = self.smoothness * max(h, w)
        fields = []
        for _ in range(2):
            noise = self.random_generator.standard_normal((h, w)).astype(np.float32)
            smooth = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            rms = float(np.sqrt(np.mean(smooth**2))) or 1.0
            fields.append(smooth * (strength * max(h, w) / rms))
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return {"strength": strength, "map_x": grid_x + fields[0], "map_y": grid_y + fields[1]}

    def apply(self, img: np.ndarray, map_x: np.ndarray | None = None, map_y: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if map_x is None:
            return img
        out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength_range", "smoothness")


class StrokeThickness(A.ImageOnlyTransform):
    """Thicken (positive radius) or thin (negative) bright strokes on a dark background.

    A radius r applies floor(|r|) 3x3 grey-level dilations (erosions) and blends in one
    more by the fractional part, so thickness changes continuously with r.
    """

    def __init__(self, radius_range: Range = (0.0, 0.0), p: float = 1.0):
        super().__init__(p=p)
        self.radius_range = tuple(radius_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"radius": self.py_random.uniform(*self.radius_range)}

    def apply(self, img: np.ndarray, radius: float = 0.0, **params: Any) -> np.ndarray:
        whole, frac = divmod(abs(radius), 1.0)
        if whole == 0 and frac < 1e-6:
            return img
        op = cv2.dilate if radius > 0 else cv2.erode
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        base = op(img, kernel, iterations=int(whole)) if whole else img
        out = base
        if frac > 1e-6:
            more = op(base, kernel).astype(np.float32)
            out = np.clip(np.rint(base + frac * (more - base)), 0, 255).astype(np.uint8)
        return out.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("radius_range",)


# ----------------------------------------------------------------------------- stage registry


def _affine(r: dict[str, Range]) -> A.BasicTransform:
    return A.Affine(
        rotate=r["rotation"],
        shear={"x": r["shear"], "y": (0.0, 0.0)},
        scale=r["scale"],
        keep_ratio=True,  # one isotropic scale factor
        translate_percent={"x": r["translate_x"], "y": r["translate_y"]},
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        p=1.0,
    )


def _blur(r: dict[str, Range]) -> A.BasicTransform:
    # blur_limit=0 lets the kernel size follow sigma.
    return A.GaussianBlur(blur_limit=0, sigma_limit=r["blur"], p=1.0)


STAGES: list[Stage] = []  # applied in this order
DIMENSIONS: dict[str, Dimension] = {}
_STAGE_OF: dict[str, Stage] = {}


def register_stage(stage: Stage) -> None:
    """Add a stage (its dimensions become valid space keys); stages apply in registration order."""
    for dim in stage.dims:
        if dim.name in DIMENSIONS:
            raise ValueError(f"augmentation dimension {dim.name!r} registered twice")
    STAGES.append(stage)
    for dim in stage.dims:
        DIMENSIONS[dim.name] = dim
        _STAGE_OF[dim.name] = stage


register_stage(
    Stage(
        "affine",
        (
            Dimension("rotation", -180.0, 180.0, 0.0, "degrees"),
            Dimension("shear", -60.0, 60.0, 0.0, "degrees (x shear)"),
            Dimension("scale", 0.2, 5.0, 1.0, "factor"),
            Dimension("translate_x", -0.5, 0.5, 0.0, "fraction of width"),
            Dimension("translate_y", -0.5, 0.5, 0.0, "fraction of height"),
        ),
        _affine,
    )
)
register_stage(
    Stage(
        "elastic",
        (Dimension("elastic", 0.0, 0.2, 0.0, "RMS displacement, fraction of side"),),
        lambda r: ElasticDistortion(strength_range=r["elastic"]),
    )
)
register_stage(
    Stage(
        "stroke",
        (Dimension("stroke", -3.0, 3.0, 0.0, "pixels (negative thins)"),),
        lambda r: StrokeThickness(radius_range=r["stroke"]),
    )
)
# GaussianBlur needs sigma > 0 (sigma 0 gives NaN kernels), so the blur bound starts above 0.
register_stage(Stage("blur", (Dimension("blur", 0.05, 5.0, 0.05, "Gaussian sigma, pixels"),), _blur))


# Stages for unsupervised (UMTRA-style) and natural-image families. Each draws its
# per-image value from its range with py_random (so a fixed value is exact) and any
# further randomness (which pixels, where to crop) from random_generator.


class PixelZeroing(A.ImageOnlyTransform):
    """Zero a random subset of pixels (all channels); the fraction is drawn from a range.
    UMTRA's Omniglot augmentation, together with translation."""

    def __init__(self, fraction_range: Range = (0.0, 0.0), p: float = 1.0):
        super().__init__(p=p)
        self.fraction_range = tuple(fraction_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        fraction = self.py_random.uniform(*self.fraction_range)
        h, w = params["shape"][:2]
        mask = self.random_generator.random((h, w)) < fraction if fraction > 0 else None
        return {"fraction": fraction, "mask": mask}

    def apply(self, img: np.ndarray, mask: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if mask is None:
            return img
        out = img.copy()
        out[mask] = 0
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction_range",)


class AreaCrop(A.ImageOnlyTransform):
    """Crop a window with the image's aspect ratio covering a fraction of its area, at a
    random position, and resize it back to the full size (a random-resized crop whose
    area fraction is the dimension)."""

    def __init__(self, area_range: Range = (1.0, 1.0), p: float = 1.0):
        super().__init__(p=p)
        self.area_range = tuple(area_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        area = self.py_random.uniform(*self.area_range)
        h, w = params["shape"][:2]
        ch, cw = max(1, round(h * math.sqrt(area))), max(1, round(w * math.sqrt(area)))
        top = int(self.random_generator.integers(0, h - ch + 1))
        left = int(self.random_generator.integers(0, w - cw + 1))
        return {"area": area, "box": (top, left, ch, cw)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        top, left, ch, cw = box
        h, w = img.shape[:2]
        if (ch, cw) == (h, w):
            return img
        window = np.ascontiguousarray(img[top : top + ch, left : left + cw])
        return cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR).reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("area_range",)


class ChanceFlip(A.ImageOnlyTransform):
    """Horizontal flip whose probability is the dimension: a family can fix it at 0
    (never flipped) or 1 (always), or leave it random per image."""

    def __init__(self, probability_range: Range = (0.0, 0.0), p: float = 1.0):
        super().__init__(p=p)
        self.probability_range = tuple(probability_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        probability = self.py_random.uniform(*self.probability_range)
        return {"probability": probability, "flipped": float(self.random_generator.random() < probability)}

    def apply(self, img: np.ndarray, flipped: float = 0.0, **params: Any) -> np.ndarray:
        return np.ascontiguousarray(img[:, ::-1]) if flipped else img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("probability_range",)


class PixelShift(A.ImageOnlyTransform):
    """Translate by whole pixels, filling with 0: UMTRA's shift, without the cost of a
    general affine warp. Values are fractions of the side, rounded to pixels."""

    def __init__(self, x_range: Range = (0.0, 0.0), y_range: Range = (0.0, 0.0), p: float = 1.0):
        super().__init__(p=p)
        self.x_range, self.y_range = tuple(x_range), tuple(y_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        x, y = self.py_random.uniform(*self.x_range), self.py_random.uniform(*self.y_range)
        h, w = params["shape"][:2]
        return {"shift_x": x, "shift_y": y, "dx": round(x * w), "dy": round(y * h)}

    def apply(self, img: np.ndarray, dx: int = 0, dy: int = 0, **params: Any) -> np.ndarray:
        if dx == 0 and dy == 0:
            return img
        h, w = img.shape[:2]
        out = np.zeros_like(img)
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("x_range", "y_range")


def _colour(r: dict[str, Range]) -> A.BasicTransform:
    return A.ColorJitter(brightness=r["brightness"], contrast=r["contrast"], saturation=r["saturation"], hue=r["hue"], p=1.0)


register_stage(Stage("crop", (Dimension("crop", 0.05, 1.0, 1.0, "area fraction kept"),), lambda r: AreaCrop(r["crop"])))
register_stage(Stage("flip", (Dimension("flip", 0.0, 1.0, 0.0, "horizontal flip probability"),), lambda r: ChanceFlip(r["flip"])))
register_stage(
    Stage(
        "colour",
        (
            Dimension("brightness", 0.1, 3.0, 1.0, "factor"),
            Dimension("contrast", 0.1, 3.0, 1.0, "factor"),
            Dimension("saturation", 0.0, 3.0, 1.0, "factor"),
            Dimension("hue", -0.5, 0.5, 0.0, "fraction of the hue circle"),
        ),
        _colour,
    )
)
register_stage(
    Stage("dropout", (Dimension("dropout", 0.0, 0.9, 0.0, "fraction of pixels zeroed"),), lambda r: PixelZeroing(r["dropout"]))
)
register_stage(
    Stage(
        "shift",
        (
            Dimension("shift_x", -0.5, 0.5, 0.0, "fraction of width, whole pixels"),
            Dimension("shift_y", -0.5, 0.5, 0.0, "fraction of height, whole pixels"),
        ),
        lambda r: PixelShift(r["shift_x"], r["shift_y"]),
    )
)


# ----------------------------------------------------------------------------- space and family specs


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


class FamilyTransform:
    """callable(image, rng) -> image for one family (see module doc). Picklable: the
    albumentations objects are rebuilt lazily in each process."""

    def __init__(self, space: AugmentSpace, augment: Mapping[str, Any]):
        self.space = space
        self.augment = validate_family_augment(space, augment)
        self._transforms: list[A.BasicTransform] | None = None

    @property
    def fixed(self) -> dict[str, float]:
        return dict(self.augment["fixed"])

    @property
    def random_dims(self) -> list[str]:
        return [d for d in self.space.dims if d not in self.augment["fixed"]]

    def ranges(self) -> dict[str, Range]:
        """Per-dimension range used per image: fixed -> (v, v), random -> space range."""
        out = {}
        for name, rng in self.space.dims.items():
            value = self.augment["fixed"].get(name)
            out[name] = (value, value) if value is not None else rng
        return out

    def _build(self) -> list[A.BasicTransform]:
        ranges = self.ranges()
        built = []
        for stage in STAGES:
            if not any(d.name in ranges for d in stage.dims):
                continue
            stage_ranges = {d.name: ranges.get(d.name, (d.identity, d.identity)) for d in stage.dims}
            built.append(stage.build(stage_ranges))
        return built

    def __call__(self, image: np.ndarray, rng: np.random.Generator, record: list | None = None) -> np.ndarray:
        """Augment one image. With ``record`` (a list), append what each transform drew
        (its scalar parameters and affine matrix), for inspection and tests."""
        if self._transforms is None:
            self._transforms = self._build()
        if image.dtype != np.uint8:
            raise FewtaskError(f"augmentation expects uint8 images, got {image.dtype}")
        out = image
        for transform in self._transforms:
            # What albumentations' set_random_seed sets, without building a new numpy
            # Generator per image: the caller's rng (draws follow one another, so no two
            # dimensions share a draw) and a python Random seeded from it.
            transform.random_generator = rng
            transform.py_random = random.Random(int(rng.integers(0, 2**63 - 1)))
            out = transform(image=out)["image"]
            if record is not None:
                record.append(_drawn(type(transform).__name__, transform.params))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self.space.to_json(), "augment": self.augment}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.space = AugmentSpace.from_json(state["space"])
        self.augment = state["augment"]
        self._transforms = None


def _drawn(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The reportable part of a transform's drawn parameters."""
    out: dict[str, Any] = {"transform": name}
    for key, value in params.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
        elif key == "matrix" or (key == "kernel" and isinstance(value, np.ndarray)):
            out[key] = np.asarray(value, dtype=np.float64).round(12).tolist()
    return out


def family_transform(space: Any, augment: Mapping[str, Any]) -> FamilyTransform:
    """The per-family transform: ``callable(image uint8 ndarray, rng) -> ndarray``."""
    return FamilyTransform(AugmentSpace.from_json(space), augment)
