"""Augmentation transforms: a family's augment spec -> ``callable(image, rng) -> image``.

``family_transform(space, augment)`` returns a ``FamilyTransform``:
``transform(image: uint8 ndarray, rng: np.random.Generator) -> uint8 ndarray``.
Fixed dimensions take exactly their value on every image of the family; every other
dimension of the space is drawn per image from its range. The result depends only
on the image and the rng, so episodes replay exactly.

The transforms are albumentations 2 transforms (Affine, GaussianBlur, ColorJitter) plus
small custom albumentations transforms (elastic distortion with a ranged strength,
signed stroke thickness, pixel zeroing, area crops, flips with a probability, whole-pixel
shifts). A fixed value is simply a degenerate range ``(v, v)``. All random draws come
from the caller's rng, one after another, so dimensions never share a draw and the same
rng state gives the same image.

Spaces and dimensions live in ``augment.space`` (no albumentations); add a stage with
``register_stage`` (its dimensions and its builder).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np

from fewtask_data.augment.space import STAGES, AugmentSpace, Dimension, Range, register_dimensions, validate_family_augment
from fewtask_data.errors import FewtaskError

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


# Transforms for unsupervised (UMTRA-style) and natural-image families. Each draws its
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


# ----------------------------------------------------------------------------- stage builders


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


def _colour(r: dict[str, Range]) -> A.BasicTransform:
    return A.ColorJitter(brightness=r["brightness"], contrast=r["contrast"], saturation=r["saturation"], hue=r["hue"], p=1.0)


Builder = Callable[[dict[str, Range]], A.BasicTransform]

# stage name (augment.space.STAGES) -> its transform, built from per-dimension ranges
BUILDERS: dict[str, Builder] = {
    "affine": _affine,
    "elastic": lambda r: ElasticDistortion(strength_range=r["elastic"]),
    "stroke": lambda r: StrokeThickness(radius_range=r["stroke"]),
    "blur": _blur,
    "crop": lambda r: AreaCrop(r["crop"]),
    "flip": lambda r: ChanceFlip(r["flip"]),
    "colour": _colour,
    "dropout": lambda r: PixelZeroing(r["dropout"]),
    "shift": lambda r: PixelShift(r["shift_x"], r["shift_y"]),
}


def register_stage(name: str, dims: Sequence[Dimension], build: Builder) -> None:
    """Add a stage: its dimensions become valid space keys; stages apply in registration order."""
    register_dimensions(name, dims)
    BUILDERS[name] = build


# ----------------------------------------------------------------------------- the family transform


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
        for stage, dims in STAGES.items():
            if not any(d.name in ranges for d in dims):
                continue
            stage_ranges = {d.name: ranges.get(d.name, (d.identity, d.identity)) for d in dims}
            built.append(BUILDERS[stage](stage_ranges))
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
