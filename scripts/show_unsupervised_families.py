"""Picture unsupervised families: one row per family, one image seen as a task sees it:
the family anchor (its fixed values only, the first support view) and then query views
(fixed values plus fresh random ones).

    .venv/bin/python scripts/show_unsupervised_families.py --out docs/figures/unsupervised_families.png

Images are synthetic (an embedded glyph for ``handwritten``, a drawn colour scene for
``natural``), so the picture is safe to commit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from strips import save_strips

from fewtask_data import family_transform
from fewtask_data.families.unsupervised import load_policy, plan_unsupervised
from fewtask_data.sampling.umtra import anchor_transform
from fewtask_data.sources import glyphs
from fewtask_data.sources.images import ImageEntry


def scene(size: int = 84) -> np.ndarray:
    """A small colour picture with an asymmetric layout, so flips, crops and hue shifts show."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = np.linspace(40, 200, size, dtype=np.uint8)[:, None, None] * np.array([0.3, 0.6, 1.0])
    cv2.circle(img, (size // 3, size // 3), size // 6, (230, 60, 40), -1)
    cv2.rectangle(img, (size // 2, size // 2), (size - 8, size - 20), (40, 200, 60), -1)
    cv2.line(img, (5, size - 5), (size // 2, size // 2 + 10), (250, 250, 80), 3)
    return img


def rows_for(policy_name: str, families: int, views: int, seed: int) -> list[tuple[str, list[np.ndarray]]]:
    policy = load_policy(policy_name)
    if policy["image"]["color"] == "gray":
        char = glyphs.list_glyph_characters(alphabets=1, characters=1, drawers=1)[0]
        image = glyphs.GlyphDecoder(policy["image"]["size"])((char.images[0][1], 0))
    else:
        image = scene(policy["image"]["size"])
    entries = [ImageEntry(f"s{i}", i) for i in range(8)]
    plan = plan_unsupervised(entries, policy=policy, families=families, group_size=8, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for fam in plan.families:
        transform = family_transform(policy["space"], fam["augment"])
        anchor = anchor_transform(transform)
        first = anchor(image, rng) if anchor is not None else image
        title = ", ".join(f"{k}={v:g}" for k, v in fam["augment"]["fixed"].items())
        rows.append((f"{policy_name}: {title}", [first] + [transform(image, rng) for _ in range(views)]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--families", type=int, default=3)
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = rows_for("handwritten", args.families, args.views, args.seed)
    rows += rows_for("natural", args.families, args.views, args.seed)
    save_strips(rows, args.out, "one family per row: anchor (fixed values only), then query views (plus random values)",
                cell=(0.9, 1.15), gap=(3, 128), fontsize=7)  # fmt: skip

if __name__ == "__main__":
    main()
