"""Picture augmentation-parameterized families: one row per family, the same characters
augmented with the family's fixed values and fresh random ones per image.

    .venv/bin/python scripts/show_augmented_families.py --out docs/figures/augmented_families.png
    .venv/bin/python scripts/show_augmented_families.py --root ../shared/data/omniglot --out /tmp/omniglot_families.png

Without --root it draws the embedded synthetic glyphs (safe to commit); with --root, real
Omniglot characters (keep that picture out of the repository).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from strips import save_strips

from fewtask_data import family_transform, named_space, sample_family_augment
from fewtask_data.sources import glyphs, omniglot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--families", type=int, default=5)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.root is None:
        chars, decode = glyphs.list_glyph_characters(alphabets=1, characters=args.images, drawers=1), glyphs.GlyphDecoder(28)
    else:
        chars, decode = omniglot.list_characters(args.root, ("images_background",))[: args.images], omniglot.OmniglotDecoder(28)
    bases = [decode((c.images[0][1], 0)) for c in chars[: args.images]]
    space = named_space("handwritten")
    rng = np.random.default_rng(args.seed)
    specs = [sample_family_augment(space, rng, (2, 3)) for _ in range(args.families)]  # all drawn before any image
    rows = [("base images", bases)]
    for spec in specs:
        transform = family_transform(space.to_json(), spec)
        rows.append((", ".join(f"{k}={v:g}" for k, v in spec["fixed"].items()), [transform(img, rng) for img in bases]))
    save_strips(rows, args.out, "one family per row: fixed values in the title, other dimensions random per image",
                cell=(0.75, 1.0), gap=(2, 96), fontsize=8)  # fmt: skip

if __name__ == "__main__":
    main()
