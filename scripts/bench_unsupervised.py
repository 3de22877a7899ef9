"""Unsupervised (UMTRA-style) episodes/s with augmentation, against the same episodes
without augmentation, measured in one run (also `scripts/bench_data.py --unsupervised`).

Two collections, both built here with `build unsupervised-families` (20 families, 1-2 or
1-3 fixed dimensions each):

* Omniglot-sized: 28x28 grayscale from images_background.zip, the ``handwritten`` policy
  (pixel zeroing + translation);
* 84-px RGB from the ImageNet sample JPEGs, the ``natural`` policy (crop, flip, colour
  jitter, rotation).

Each is streamed as 5-way, K=1, Q=5 family episodes (L=4 meta tasks, 1 goal task with
V=5: 150 views per episode) through FamilyStream / family_loader with W DataLoader
workers, with the families' augmentation and with the same sampler and seeds but no
augmentation (the views are the plain images), in alternating rounds (medians reported).
The ratio is what augmentation costs. Usage:

    .venv/bin/python scripts/bench_unsupervised.py [--workers 0 2] [--episodes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fewtask_data import BuildOptions, EpisodeShape, FamilyStream, build_unsupervised_families, family_loader

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_DIR = DATA / "imagenet-samples" / "imagenette-train-subset"
SHAPE = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=4, goal_tasks=1)


def torch_single_thread(_: int) -> None:
    """Worker init: one torch thread per worker. (OpenCV's thread count is set once in
    the parent, before any worker forks: changing it inside a forked worker can deadlock
    on the thread pool inherited from the parent.)"""
    torch.set_num_threads(1)


def no_augmentation(space: dict, family_augment: dict):
    """transform_factory giving no transform: views are the plain images."""
    return None


def episodes_per_s(root: Path, count: int, workers: int, augment: bool, per_visit: int = 8) -> float:
    stream = FamilyStream(root, "train", SHAPE, seed=0, episodes_per_visit=per_visit,
                          transform_factory=None if augment else no_augmentation)
    loader = family_loader(stream, batch_size=1, num_workers=workers, worker_init_fn=torch_single_thread if workers else None)
    it = iter(loader)
    for _ in range(max(2, workers * 2)):  # workers started, first family buffers loaded
        next(it)
    t = time.perf_counter()
    for _ in range(count):
        next(it)
    rate = count / (time.perf_counter() - t)
    del it, loader
    return rate


def bench(root: Path, label: str, count: int, workers: list[int], rounds: int = 3) -> dict:
    """Alternating rounds (plain, augmented, plain, ...) of count/rounds episodes each;
    medians of the rates and of the per-round ratios, so load from other jobs on a
    shared machine hits both sides alike."""
    out = {"collection": label, "workers": {}}
    per_round = max(10, count // rounds)
    for w in workers:
        plain, augmented = [], []
        for _ in range(rounds):
            plain.append(episodes_per_s(root, per_round, w, augment=False))
            augmented.append(episodes_per_s(root, per_round, w, augment=True))
        out["workers"][w] = {
            "augmented_eps": float(np.median(augmented)),
            "plain_eps": float(np.median(plain)),
            "augmented_vs_plain": float(np.median(np.divide(augmented, plain))),
            "rounds": rounds,
        }
    return out


def run(workers: list[int], episodes: int, omniglot_zip: Path, imagenet_dir: Path, tmp: Path) -> list[dict]:
    cv2.setNumThreads(1)  # in this process, before any DataLoader worker forks (see torch_single_thread)
    results = []
    sources = [
        ("omniglot 28x28 gray, handwritten policy", [omniglot_zip], "handwritten"),
        ("imagenet samples 84x84 RGB, natural policy", [imagenet_dir], "natural"),
    ]
    for label, images, policy in sources:
        if not all(p.exists() for p in images):
            print(f"skipping {label}: {images[0]} not found", file=sys.stderr)
            continue
        root = tmp / policy
        build_unsupervised_families(root, images=images, policy=policy, families=20,
                                    options=BuildOptions(workers=max(1, min(2, os.cpu_count() or 1))))
        results.append(bench(root, label, episodes, workers))
    return results


def report(results: list[dict]) -> None:
    print(f"unsupervised episodes: 5-way K=1 Q=5, L=4 meta tasks + 1 goal task (V=5): 150 views each; "
          f"{os.cpu_count()} cores, 1-min load {os.getloadavg()[0]:.1f}")
    for r in results:
        print(f"  {r['collection']}")
        for w, v in r["workers"].items():
            print(f"    workers={w}: augmented {v['augmented_eps']:.1f} episodes/s, without augmentation "
                  f"{v['plain_eps']:.1f} episodes/s, ratio {v['augmented_vs_plain']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts (0 = in process)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--omniglot-zip", type=Path, default=DATA / "omniglot" / "images_background.zip")
    parser.add_argument("--imagenet-dir", type=Path, default=IMAGENET_DIR)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.workers, args.episodes, args.omniglot_zip, args.imagenet_dir, Path(tmp))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
