"""2D navigation families (MALTML section 4.2): "every family constitutes of a random crop
of the unit square, and every task is randomly chosen from within that rectangle. The
crops are bounded by 25% to 75% of the original unit length."

The unit square is MAML's goal square [-0.5, 0.5]^2. A family is an axis-aligned crop
(x0, y0, width, height): width and height ~ U[low, high] (default [0.25, 0.75]) and the
crop placed uniformly inside the square; its tasks are goals uniform in the crop.
Families are written by `fewtask_data.builders.navigation` as procedural family
definitions (formats/procedural.py) and read back here with `load_navigation_families`,
which checks the builder and its version, so every project evaluates on exactly the same
held-out crops.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import load_procedural

BUILDER = "navigation-families"
BUILDER_VERSION = "1"
SQUARE = (-0.5, 0.5)  # the goal square's side on each axis; trainer/domains/rl/env.py reads it
CROP_SIZE = (0.25, 0.75)


def check_crop_size(low: float, high: float) -> tuple[float, float]:
    if not (0 < low <= high <= 1):
        raise FewtaskError(f"crop sizes must satisfy 0 < LOW <= HIGH <= 1 (fractions of the square), got {low},{high}")
    return low, high


def sample_crops(generator: torch.Generator, count: int, crop_size: tuple[float, float] = CROP_SIZE) -> torch.Tensor:
    """``count`` crops [count, 4] as (x0, y0, width, height), in float64."""
    low, high = check_crop_size(*crop_size)
    side = SQUARE[1] - SQUARE[0]
    size = (torch.rand(count, 2, generator=generator, dtype=torch.float64) * (high - low) + low) * side
    corner = SQUARE[0] + torch.rand(count, 2, generator=generator, dtype=torch.float64) * (side - size)
    return torch.cat([corner, size], -1)


def goals_in(crops: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` goals uniform in each crop: [*crops.shape[:-1], count, 2] (float32)."""
    u = torch.rand(*crops.shape[:-1], count, 2, generator=generator, dtype=torch.float64)
    return (crops[..., None, :2] + u * crops[..., None, 2:]).float()


def _is_crop(row: object) -> bool:
    return isinstance(row, list) and len(row) == 4 and all(isinstance(v, (int, float)) for v in row) and min(row[2:]) > 0


def load_navigation_families(source: str | Path) -> dict[str, torch.Tensor]:
    """The crops [n, 4] of each split of a `fewtask-data build navigation-families` folder
    (either manifest kind)."""
    manifest = load_procedural(source, BUILDER, BUILDER_VERSION)
    crops = {}
    for split in manifest.splits:
        rows = manifest.values(split, "crop")
        if not all(_is_crop(r) for r in rows):
            raise FewtaskError(f"{source}: a {split} family's crop is not (x0, y0, width, height) with positive sizes")
        crops[split] = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    return crops
