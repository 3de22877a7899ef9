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
workers, once with the families' augmentation and once with the same sampler and seeds
but no augmentation (the views are the plain images). The ratio is what augmentation
costs. Usage:

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

import torch

from fewtask_data.build import BuildOptions
from fewtask_data.episode import EpisodeShape
from fewtask_data.stream import FamilyStream, family_loader
from fewtask_data.unsupervised_build import build_unsupervised_families

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_DIR = DATA / "imagenet-samples" / "imagenette-train-subset"
SHAPE = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=4, goal_tasks=1)


def no_augmentation(space: dict, family_augment: dict):
    """transform_factory giving no transform: views are the plain images."""
    return None


def episodes_per_s(root: Path, count: int, workers: int, augment: bool, per_visit: int = 8) -> float:
    stream = FamilyStream(root, "train", SHAPE, seed=0, episodes_per_visit=per_visit,
                          transform_factory=None if augment else no_augmentation)
    loader = family_loader(stream, batch_size=1, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    for _ in range(max(2, workers * 2)):  # workers started, first family buffers loaded
        next(it)
    t = time.perf_counter()
    for _ in range(count):
        next(it)
    rate = count / (time.perf_counter() - t)
    del it, loader
    return rate


def bench(root: Path, label: str, count: int, workers: list[int]) -> dict:
    out = {"collection": label, "workers": {}}
    for w in workers:
        plain = episodes_per_s(root, count, w, augment=False)
        augmented = episodes_per_s(root, count, w, augment=True)
        out["workers"][w] = {"augmented_eps": augmented, "plain_eps": plain, "augmented_vs_plain": augmented / plain}
    return out


def run(workers: list[int], episodes: int, omniglot_zip: Path, imagenet_dir: Path, tmp: Path) -> list[dict]:
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
