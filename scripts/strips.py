"""Shared figure helper of the show_*_families scripts: one titled strip of images per row."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_strips(
    rows: list[tuple[str, list[np.ndarray]]],
    out: Path,
    title: str,
    cell: tuple[float, float],
    gap: tuple[int, int],
    fontsize: int,
) -> None:
    """Draw each (title, images) row as one strip, the images separated by ``gap``
    = (width in pixels, grey value); ``cell`` = figure inches per image and per row."""
    width = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width * cell[0], len(rows) * cell[1]))
    for ax, (row_title, images) in zip(axes, rows):
        gray = images[0].ndim == 2
        spacer = np.full((images[0].shape[0], gap[0], *images[0].shape[2:]), gap[1], np.uint8)
        strip = np.concatenate([x for img in images for x in (img, spacer)][:-1], axis=1)
        ax.imshow(strip, cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(row_title, fontsize=fontsize)
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
