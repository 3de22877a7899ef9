"""Omniglot build and augmentation throughput, against baselines measured in the same run.

    .venv/bin/python scripts/bench_omniglot.py --root ../shared/data/omniglot --workers 1 2

Prints, for the real Omniglot (or the synthetic glyphs without --root):
  raw      decode + resize + PNG-encode every image in a tight loop, one process
  build    `build omniglot-families` (alphabets split, 10 families per alphabet) with
           each worker count, as images/s and as a ratio to the raw loop
  augment  one family transform (handwritten space) on 28x28 images, images/s
  stream   5-way 1-shot family episodes/s from the build: augmented families vs the
           same families with augmentation switched off
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fewtask_data import (
    BuildOptions, EpisodeShape, FamilyStream, build_omniglot_families, encode_image, family_transform,
    named_space, sample_family_augment,
)
from fewtask_data.sources import glyphs, omniglot


def raw_loop(root: Path | None, size: int) -> tuple[int, float]:
    if root is None:
        chars, decode = glyphs.list_glyph_characters(), glyphs.GlyphDecoder(size)
    else:
        chars, decode = omniglot.list_characters(root), omniglot.OmniglotDecoder(size)
    start = time.perf_counter()
    n = 0
    for char in chars:
        for _, loc in char.images:
            encode_image(decode((loc, 0)), "png")
            n += 1
    return n, time.perf_counter() - start


def episodes_per_second(out: Path, augment: bool, count: int) -> float:
    shape = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=5, goal_tasks=1)
    factory = None if augment else (lambda space, spec: None)
    stream = FamilyStream(out, "train", shape, seed=0, episodes_per_visit=8, transform_factory=factory)
    it = iter(stream)
    next(it)  # first family buffer
    start = time.perf_counter()
    for _ in itertools.islice(it, count):
        pass
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="Omniglot folder (zips); default: synthetic glyphs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--episodes", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    print(f"cpus={os.cpu_count()} load(1 min)={load:.1f} source={'omniglot' if args.root else 'synthetic glyphs'}")

    n, seconds = raw_loop(args.root, args.size)
    raw = n / seconds
    print(f"raw      {n} images in {seconds:.1f}s: {raw:.0f} images/s (1 process)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_omniglot_"))
    try:
        out = None
        for workers in args.workers:
            out = tmp / f"w{workers}"
            start = time.perf_counter()
            report = build_omniglot_families(
                out, root=args.root, families_per_alphabet=10, image_size=args.size,
                options=BuildOptions(workers=workers),
            )
            seconds = time.perf_counter() - start
            rate = report.written / seconds
            print(f"build    workers={workers}: {report.written} images in {seconds:.1f}s: "
                  f"{rate:.0f} images/s = {rate / raw:.2f}x raw")

        space = named_space("handwritten")
        transform = family_transform(space.to_json(), sample_family_augment(space, np.random.default_rng(0)))
        img = np.zeros((args.size, args.size), np.uint8)
        img[args.size // 4 : -args.size // 4, args.size // 2 - 1 : args.size // 2 + 1] = 255
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(2000):
            transform(img, rng)
        print(f"augment  {2000 / (time.perf_counter() - start):.0f} images/s (one family, {args.size}px, 1 process)")

        plain = episodes_per_second(out, augment=False, count=args.episodes)
        augmented = episodes_per_second(out, augment=True, count=args.episodes)
        per_episode = 5 * (1 + 5) * 5 + 5 * (1 + 5)
        print(f"stream   5-way 1-shot, L=5 meta tasks + 1 goal task ({per_episode} images/episode), 1 process: "
              f"{augmented:.1f} episodes/s augmented vs {plain:.1f} without augmentation ({augmented / plain:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
