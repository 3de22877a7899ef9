"""Benchmark the ImageNet build: reduced-size JPEG decoding vs a naive full decode + resize.

    .venv/bin/python scripts/bench_imagenet.py [--samples DIR] [--synthetic 200] [--size 84]

Measures, in this one run (so the ratios share the machine's load):
1. per-image build work (decode + resize + JPEG encode for the shard), one process,
   reduced-size decoding (PIL draft) vs naive full decode, on the real sample JPEGs
   and on synthetic ImageNet-sized (500x375) photo-like JPEGs;
2. a whole `build imagenet-families` over the real samples with 1 and 2 workers;
3. (first) WordNet opening and hierarchy + family computation for the 1,000 classes;
and estimates the full ILSVRC-2012 train build (1,281,167 images) on 2 and 16 cores
from the synthetic rate (assumes linear scaling and a disk that keeps up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fewtask_data.shards import encode_image
from fewtask_data.sources import imagenet as src

ILSVRC_TRAIN_IMAGES = 1_281_167
DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples" / "imagenette-train-subset"


def synthetic_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Photo-like 500x375 JPEGs (smooth gradients, blobs, sensor-like noise), quality 90."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for i in range(count):
        img = np.zeros((375, 500, 3), np.float32)
        for c in range(3):
            fx, fy, ph = rng.uniform(0.002, 0.03, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] = 128 + 90 * np.sin(fx * x + fy * y + ph)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, 500), rng.uniform(0, 375), rng.uniform(20, 120)
            img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] += rng.uniform(-80, 80, 3)
        img += rng.normal(0, 8, img.shape)
        path = folder / f"n00000000_{i}.JPEG"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def rate(paths: list[Path], decode, repeat: int, encode: bool) -> float:
    """Images per second of decode (+ JPEG encode: a build's per-image work), best of repeat."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for p in paths:
            img = decode(p)
            if encode:
                encode_image(img, "jpeg", 95)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def compare(name: str, paths: list[Path], size: int, repeat: int) -> float:
    """Prints reduced vs naive rates; returns the reduced decode+encode rate of one process."""
    out = {}
    for encode in (False, True):
        fast = rate(paths, src.ImageDecoder(size), repeat, encode)
        naive = rate(paths, src.ImageDecoder(size, reduced=False), repeat, encode)
        what = "decode+resize+encode" if encode else "decode+resize"
        print(f"{name:<30} {size:>3} px {what:<20} reduced {fast:7.1f} img/s  naive {naive:7.1f} img/s  x{fast / naive:.2f}")
        out[encode] = fast
    return out[True]


def build_rate(samples: Path, workers: int) -> float:
    from fewtask_data.build import BuildOptions
    from fewtask_data.families.wordnet import FamilyRule
    from fewtask_data.imagenet_build import build_imagenet_families

    out = Path(tempfile.mkdtemp(prefix="bench-imagenet-"))
    try:
        start = time.perf_counter()
        report = build_imagenet_families(
            samples, out / "o", rule=FamilyRule(2, 50), allow_missing=True,
            options=BuildOptions(encoding="jpeg", quality=95, workers=workers),
        )
        return report.written / (time.perf_counter() - start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def hierarchy_timing() -> None:
    from fewtask_data.families import wordnet as fw
    from fewtask_data.wordnet import load_wordnet, wordnet_available

    ok, why = wordnet_available()
    if not ok:
        print(f"hierarchy: skipped ({why})")
        return
    start = time.perf_counter()
    wn = load_wordnet()
    opened = time.perf_counter() - start  # nltk's start-up index of all lemmas dominates
    timings = []
    for _ in range(2):  # first run reads the synsets from disk, second hits nltk's cache
        start = time.perf_counter()
        for name in ("meta-dataset", "tiered", "mini"):
            fw.family_definitions(name, fw.preset(name), fw.ilsvrc2012_classes(), wn)
        timings.append(time.perf_counter() - start)
    print(f"WordNet open {opened:.2f} s; hierarchy + families for 1,000 classes, 3 presets: "
          f"{timings[0]:.2f} s cold, {timings[1]:.3f} s warm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="folder with train/<wnid>/*.JPEG")
    ap.add_argument("--synthetic", type=int, default=200, help="number of synthetic 500x375 JPEGs")
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machines skew absolute rates)")

    hierarchy_timing()  # first, so WordNet opens cold and the builds below do not pay for it
    real = [p for d in src.list_classes(args.samples / "train").values() for p in src.list_images(d)]
    compare(f"real samples ({len(real)}, 224x224)", real, args.size, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        synth = synthetic_jpegs(Path(tmp), args.synthetic)
        per_core = compare(f"synthetic ({len(synth)}, 500x375)", synth, args.size, args.repeat)
        compare("synthetic 500x375", synth, 224, 1)

    for workers in (1, 2):
        print(f"build imagenet-families on the real samples, {workers} worker(s): {build_rate(args.samples, workers):.1f} img/s")
    for cores in (2, 16):
        hours = ILSVRC_TRAIN_IMAGES / (per_core * cores) / 3600
        print(f"estimated full ILSVRC-2012 build at {args.size} px on {cores} cores: {hours:.2f} h "
              f"({per_core:.0f} img/s per core x {cores}, linear scaling assumed)")


if __name__ == "__main__":
    main()
