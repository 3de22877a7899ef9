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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fewtask_data.augment import family_transform, named_space, sample_family_augment  # noqa: E402
from fewtask_data.sources import glyphs, omniglot  # noqa: E402


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
    rows = [("base images", None)]
    for _ in range(args.families):
        spec = sample_family_augment(space, rng, (2, 3))
        rows.append((", ".join(f"{k}={v:g}" for k, v in spec["fixed"].items()), family_transform(space.to_json(), spec)))
    fig, axes = plt.subplots(len(rows), 1, figsize=(len(bases) * 0.75, len(rows) * 1.0))
    for ax, (title, transform) in zip(axes, rows):
        strip = [img if transform is None else transform(img, rng) for img in bases]
        gap = np.full((bases[0].shape[0], 2), 96, np.uint8)
        ax.imshow(np.concatenate([x for img in strip for x in (img, gap)][:-1], axis=1), cmap="gray", vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8)
    fig.suptitle("one family per row: fixed values in the title, other dimensions random per image", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
