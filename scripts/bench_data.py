"""Data-core benchmark on real Omniglot (images_background.zip), all measured in one run.

1. Build throughput (images/s) of the generic build with W workers, against the raw cost
   of decoding + resizing + PNG-encoding the same images in a tight single-process loop.
2. Streaming 5-way 1-shot family episodes from the shards (FamilyStream) against a
   per-file loader that opens one PNG per image from the extracted folder, decodes and
   resizes it (the way per-file meta-learning loaders work). Same episode shape, same
   families (alphabets), both single-process.
3. Memory of the stream: the largest family buffer, and the RSS of one streaming
   process after its first family visit and after visiting every family (one family
   buffer per worker, so it must not grow).
4. With ``--unsupervised``: UMTRA-style episodes/s with vs without augmentation, for
   Omniglot-sized and 84-px images, with the worker counts (scripts/bench_unsupervised.py).

The images are read with the library's Omniglot reader (``sources.omniglot``: class =
character, family = alphabet, 28x28, bright strokes on black) from the extracted zip, and
built with the generic build (no family planning, every alphabet a training family). Usage:

    .venv/bin/python scripts/bench_data.py [--zip PATH] [--workers 2] [--episodes 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from statistics import median
from pathlib import Path

import cv2
import numpy as np
import torch

from fewtask_data import (
    BuildOptions, EpisodeShape, FamilyStream, SourceClass, build_dataset, encode_image, family_loader,
)
from fewtask_data.families.alphabets import class_id
from fewtask_data.sampling.base import to_tensor
from fewtask_data.sources import omniglot

DEFAULT_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot" / "images_background.zip"
SHAPE = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=4, goal_tasks=1)  # 150 images per episode


def source_classes(chars: list[omniglot.Character]) -> tuple[list[SourceClass], dict[str, list[dict]]]:
    """Every character a class, every alphabet a family, all in one split."""
    classes = [SourceClass(class_id(c, 0, False), [(sid, (loc, 0)) for sid, loc in c.images], {"alphabet": c.alphabet}) for c in chars]
    alphabets = sorted({c.alphabet for c in chars})
    families = [{"id": a, "classes": [k.id for k in classes if k.meta["alphabet"] == a], "meta": {}} for a in alphabets]
    return classes, {"train": families}


def image_paths(chars: list[omniglot.Character]) -> list[list[list[str]]]:
    """alphabet -> character -> image file paths (for the per-file loaders)."""
    alphabets: dict[str, list[list[str]]] = {}
    for c in chars:
        alphabets.setdefault(c.alphabet, []).append([loc.path for _, loc in c.images])
    return [alphabets[a] for a in sorted(alphabets)]


def bench_build(chars: list[omniglot.Character], out: Path, workers: int) -> dict:
    classes, splits = source_classes(chars)
    items = [item for c in classes for _, item in c.items]
    decode = omniglot.OmniglotDecoder(28)
    t = time.perf_counter()
    for item in items:
        encode_image(decode(item), "png")
    raw = len(items) / (time.perf_counter() - t)
    rates = {}
    for w in sorted({1, workers}):
        target = out / f"w{w}"
        t = time.perf_counter()
        build_dataset(target, dataset="omniglot-bench", builder="bench-folder", builder_version="1",
                      source={"fingerprint": "images_background.zip"}, classes=classes, decode=decode, splits=splits,
                      options=BuildOptions(workers=w, shard_size=2000))
        rates[w] = len(items) / (time.perf_counter() - t)
    return {"images": len(items), "raw_loop_images_per_s": raw, "build_images_per_s": rates}


def pil_load(path: str) -> np.ndarray:
    """The library's decoder (PIL open + Lanczos resize), one file at a time."""
    return omniglot.OmniglotDecoder(28)((omniglot.Location(path), 0))


def cv2_load(path: str) -> np.ndarray:
    """The fastest per-file load we know: OpenCV read + area resize."""
    return 255 - cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), (28, 28), interpolation=cv2.INTER_AREA)


def per_file_episodes(alphabets: list[list[list[str]]], count: int, decode, seed: int = 0) -> float:
    """episodes/s of a loader that opens one PNG per image (same shape, families = alphabets)."""
    rng = np.random.default_rng(seed)

    def task(chars, extra):
        chosen = rng.choice(len(chars), SHAPE.ways, replace=False)
        picks = [rng.choice(len(chars[c]), SHAPE.shots + extra, replace=False) for c in chosen]
        order = [(lbl, j) for lbl in range(SHAPE.ways) for j in range(SHAPE.shots)]
        order += [(lbl, j) for lbl in range(SHAPE.ways) for j in range(SHAPE.shots, SHAPE.shots + extra)]
        x = np.stack([decode(str(chars[chosen[lbl]][picks[lbl][j]])) for lbl, j in order])
        return x, np.asarray([lbl for lbl, _ in order])

    t = time.perf_counter()
    for _ in range(count):
        chars = alphabets[rng.integers(len(alphabets))]
        meta = [task(chars, SHAPE.queries) for _ in range(SHAPE.meta_tasks)]
        goal = [task(chars, SHAPE.val) for _ in range(SHAPE.goal_tasks)]
        to_tensor(np.stack([m[0] for m in meta]), 2), to_tensor(np.stack([g[0] for g in goal]), 2)
    return count / (time.perf_counter() - t)


def stream_episodes(root: Path, count: int, per_visit: int) -> float:
    stream = FamilyStream(root, "train", SHAPE, seed=0, episodes_per_visit=per_visit)
    it = iter(stream)
    next(it)  # index loaded, first family read: steady state from here
    t = time.perf_counter()
    for _ in range(count):
        next(it)
    return count / (time.perf_counter() - t)


def loader_episodes(root: Path, count: int, per_visit: int, workers: int) -> float:
    """episodes/s through a DataLoader with worker processes (batches of 4, mix=16)."""
    stream = FamilyStream(root, "train", SHAPE, seed=0, episodes_per_visit=per_visit, mix=16)
    it = iter(family_loader(stream, batch_size=4, num_workers=workers))
    next(it)
    t = time.perf_counter()
    for _ in range(count // 4):
        next(it)
    return (count // 4) * 4 / (time.perf_counter() - t)


MEMORY_PROBE = """
import json, resource, sys
from fewtask_data import EpisodeShape, FamilyStream
stream = FamilyStream(sys.argv[1], "train", EpisodeShape(**json.loads(sys.argv[3])), seed=0, episodes_per_visit=2)
it = iter(stream); next(it)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
largest = 0
for _ in range(int(sys.argv[2])):
    next(it)
    largest = max(largest, stream.buffer.nbytes())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before * 1024, after * 1024, largest)
"""


def stream_memory(root: Path, episodes: int) -> dict:
    """Peak RSS of one streaming process (a DataLoader worker does the same work), measured
    after the first family visit and after visiting every family several times."""
    import subprocess

    args = [sys.executable, "-c", MEMORY_PROBE, str(root), str(episodes), json.dumps(SHAPE.as_dict())]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
    before, after, largest = map(int, out)
    return {"rss_after_first_visit": before, "rss_peak": after, "largest_family_buffer_bytes": largest,
            "episodes": episodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--episodes", type=int, default=300, help="shard-stream episodes to time")
    parser.add_argument("--file-episodes", type=int, default=40, help="per-file-loader episodes to time")
    parser.add_argument("--per-visit", type=int, default=8, help="episodes drawn per family visit")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (medians reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--unsupervised", action="store_true",
                        help="also time unsupervised episodes with vs without augmentation (scripts/bench_unsupervised.py)")
    args = parser.parse_args()
    if not args.zip.exists():
        sys.exit(f"error: {args.zip} not found; pass --zip images_background.zip")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(args.zip) as z:
            z.extractall(tmp / "extracted")
        chars = omniglot.list_characters(tmp / "extracted", [omniglot.BACKGROUND])
        alphabets = image_paths(chars)
        res = {"cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "shape": SHAPE.as_dict()}
        res["build"] = bench_build(chars, tmp / "shards", args.workers)
        root = tmp / "shards" / f"w{args.workers}"
        # Alternate the contenders in rounds and keep medians: on a shared machine the
        # load drifts, and a ratio of two back-to-back timings is more stable.
        rounds = [
            {
                "stream": stream_episodes(root, args.episodes, args.per_visit),
                "pil": per_file_episodes(alphabets, args.file_episodes, pil_load, seed=r),
                "cv2": per_file_episodes(alphabets, args.file_episodes, cv2_load, seed=r),
            }
            for r in range(args.rounds)
        ]
        res["rounds"] = rounds
        res["stream_episodes_per_s"] = median(r["stream"] for r in rounds)
        res["per_file_pil_episodes_per_s"] = median(r["pil"] for r in rounds)
        res["per_file_cv2_episodes_per_s"] = median(r["cv2"] for r in rounds)
        res["stream_vs_per_file_pil"] = median(r["stream"] / r["pil"] for r in rounds)
        res["stream_vs_per_file_cv2"] = median(r["stream"] / r["cv2"] for r in rounds)
        res["stream_episodes_per_s_16_per_visit"] = stream_episodes(root, args.episodes, 16)
        res["loader_episodes_per_s"] = loader_episodes(root, args.episodes, args.per_visit, args.workers)
        res["per_visit"] = args.per_visit
        res["memory"] = stream_memory(root, episodes=200)
    b = res["build"]
    print(f"machine: {res['cpu_count']} cores, 1-min load {res['load_avg_1min']:.1f} at start")
    print(f"build: {b['images']} Omniglot images, raw decode+resize+encode loop {b['raw_loop_images_per_s']:.0f} img/s")
    for w, rate in b["build_images_per_s"].items():
        print(f"  build with {w} worker(s): {rate:.0f} img/s = {rate / b['raw_loop_images_per_s']:.2f}x the raw loop")
    print(f"stream: 5-way 1-shot family episodes (L=4 meta tasks Q=5, 1 goal task V=5; 150 images), "
          f"{args.per_visit} per family visit")
    print(f"  medians of {args.rounds} alternating rounds; ratios are per round")
    print(f"  shards  {res['stream_episodes_per_s']:.1f} episodes/s")
    print(f"  shards, 16 per visit  {res['stream_episodes_per_s_16_per_visit']:.1f} episodes/s")
    print(f"  shards through a DataLoader with {args.workers} workers (batches of 4, mix=16)  "
          f"{res['loader_episodes_per_s']:.1f} episodes/s")
    print(f"  per-file PNG loader (PIL open+Lanczos resize, the build's decoder)  {res['per_file_pil_episodes_per_s']:.1f} episodes/s"
          f"  -> shards are {res['stream_vs_per_file_pil']:.1f}x faster")
    print(f"  per-file PNG loader (OpenCV imread+resize)  {res['per_file_cv2_episodes_per_s']:.1f} episodes/s"
          f"  -> shards are {res['stream_vs_per_file_cv2']:.1f}x faster")
    m = res["memory"]
    print(f"memory: largest family buffer {m['largest_family_buffer_bytes'] / 1e6:.2f} MB; one streaming process: "
          f"RSS {m['rss_after_first_visit'] / 1e6:.0f} MB after the first visit, peak {m['rss_peak'] / 1e6:.0f} MB "
          f"after {m['episodes']} episodes (all {len(alphabets)} families visited)")
    if args.unsupervised:
        import bench_unsupervised as uns  # scripts/ is on sys.path when this file runs

        with tempfile.TemporaryDirectory() as tmp:
            res["unsupervised"] = uns.run([0, args.workers], min(args.episodes, 200), args.zip, uns.IMAGENET_DIR, Path(tmp))
        uns.report(res["unsupervised"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
