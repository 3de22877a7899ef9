"""Benchmark: conv4 5-way 1-shot Omniglot-sized outer steps, MAML and MALTML.

Measured in one run, each configuration in its own subprocess (so peak memory and
torch.compile failures stay separate):

- family episodes/s for loop (plain-autograd reference) vs vmap vs compiled,
- MAML with the `higher` library on the same model and batch (install it for the
  benchmark only: `.venv/bin/pip install higher`; skipped when missing),
- trainer-only (one fixed batch) vs trainer-with-stream (`fewtask-train fit`'s
  DataLoader over glyph shards, built here first if --data is not given),
- peak memory per algorithm and derivative order (CPU: peak RSS above the
  process's RSS before the first step; CUDA: torch.cuda.max_memory_allocated).

Ratios are against the vmap path of the same algorithm, measured in the same run.

    .venv/bin/python scripts/bench_trainer_vision.py [--device cuda] [--steps 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Rows "ALGORITHM[-ORDER] IMPL": MAML's order is 2 (second order; 1 = FOMAML), the fixed-order
# ones keep theirs; impl "higher" uses the higher library, "vmap+stream" streams from shards.
LABELS = (
    "maml loop, maml vmap, maml compiled, maml higher, maml vmap+stream, fomaml vmap, maltml-3 loop, maltml-3 vmap, "
    "maltml-3 compiled, maltml-3 vmap+stream, maltml-2 vmap, maltml-1 vmap, fo-maltml vmap"
)


def parse_label(label: str) -> tuple[str, str, int, str]:
    """"maltml-3 vmap+stream" -> (label, "maltml", 3, "stream")."""
    name, impl = label.split()
    algo, _, order = name.rpartition("-") if name[-1].isdigit() else (name, "", "2")
    return label, algo, int(order), "stream" if impl == "vmap+stream" else impl


CONFIGS = [parse_label(label.strip()) for label in LABELS.split(",")]


def episode_shape(args):
    from fewtask_data import EpisodeShape

    return EpisodeShape(ways=5, shots=1, queries=args.queries, val=args.queries, meta_tasks=args.meta_tasks, goal_tasks=1)


def fixed_batch(args, device):
    """B family episodes of random 28x28 images with valid 5-way labels."""
    import torch

    from fewtask_data import FamilyBatch

    s, gen = episode_shape(args), torch.Generator().manual_seed(0)
    lab = lambda k: torch.arange(s.ways).repeat_interleave(k)  # noqa: E731
    meta_y = torch.cat([lab(s.shots), lab(s.queries)]).expand(args.families, s.meta_tasks, -1).clone()
    goal_y = torch.cat([lab(s.shots), lab(s.val)]).expand(args.families, s.goal_tasks, -1).clone()
    return FamilyBatch(
        torch.rand(args.families, s.meta_tasks, s.meta_size, 1, 28, 28, generator=gen), meta_y,
        torch.rand(args.families, s.goal_tasks, s.goal_size, 1, 28, 28, generator=gen), goal_y,
        s, [f"f{i}" for i in range(args.families)],
    ).to(device)  # fmt: skip


def higher_maml_step(model, opt, batch, alpha: float):
    """One second-order MAML outer gradient with `higher`, task by task (its usual use)."""
    import higher
    import torch.nn.functional as F
    from torch import optim

    from trainer.algorithms import batch_parts

    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = batch_parts(batch)
    tasks = [(msx, msy, mqx, mqy), (gsx, gsy, gvx, gvy)]
    inner = optim.SGD(model.parameters(), lr=alpha)
    opt.zero_grad()
    n = sum(t[0].shape[0] * t[0].shape[1] for t in tasks)
    for sx, sy, qx, qy in tasks:
        for b in range(sx.shape[0]):
            for t in range(sx.shape[1]):
                with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                    diffopt.step(F.cross_entropy(fmodel(sx[b, t]), sy[b, t]))
                    (F.cross_entropy(fmodel(qx[b, t]), qy[b, t]) / n).backward()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(args) -> dict:
    """One configuration in this process: warm-up, then timed steps; prints a JSON line."""
    import torch

    from trainer.algorithms import algorithm_class, make_algorithm
    from trainer.models import build_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("conv4", ways=5, in_channels=1, image_size=28, hidden=64).to(device)
    algo_name, order, impl = args.one
    order = int(order)
    kw = {} if algorithm_class(algo_name).fixed_order else {"order": order}
    algo = make_algorithm(
        algo_name, model, alpha=0.4, beta=0.4, gamma=0.4, impl="loop" if impl == "loop" else "vmap",
        compile=impl == "compiled", **kw,
    )  # fmt: skip
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    batch = fixed_batch(args, device)
    if impl == "stream":
        from torch.utils.data import DataLoader

        from fewtask_data import FamilyStream, collate

        stream = FamilyStream(args.data, "train", episode_shape(args), seed=0, episodes_per_visit=2)
        loader = iter(DataLoader(stream.resumable(args.families), batch_size=args.families,
                                 num_workers=args.workers, collate_fn=collate, prefetch_factor=4 if args.workers else None))
        next_batch = lambda: next(loader).to(device)  # noqa: E731
    else:
        next_batch = lambda: batch  # noqa: E731
    if impl == "higher":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = lambda b: higher_maml_step(model, opt, b, 0.4)  # noqa: E731
    else:
        step = lambda b: algo.outer_grads(params, sizes, {}, b)  # noqa: E731

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    base = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step(next_batch())
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(next_batch())
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    )
    return {"seconds_per_step": seconds, "episodes_per_s": args.families / seconds, "warmup_s": warm, "peak_mb": peak}


def ensure_data(args) -> str:
    if args.data:
        return args.data
    data = REPO / "runs" / "bench_glyphs"
    if not (data / "manifest.json").exists():
        from fewtask_data import build_omniglot_families

        build_omniglot_families(data, families_per_alphabet=4, image_size=28)
    return str(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--families", type=int, default=8, help="family episodes per outer step")
    p.add_argument("--meta-tasks", type=int, default=3, help="L; MAML sees B*(L+1) = 32 tasks by default")
    p.add_argument("--queries", type=int, default=5, help="query/validation images per class")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers for the +stream rows")
    p.add_argument("--data", default="", help="glyph/Omniglot shards for the +stream rows (built if empty)")
    p.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    if any(impl == "stream" and (not wanted or label in wanted) for label, _, _, impl in CONFIGS):
        args.data = ensure_data(args)
    rows = {}
    print(f"conv4 64 filters, 28x28, 5-way 1-shot, {args.families} families x (L={args.meta_tasks} + 1 goal) tasks, "
          f"Q=V={args.queries}, device {args.device}, {args.threads} threads, cores {os.cpu_count()}", flush=True)
    for label, algo, order, impl in CONFIGS:
        if wanted and label not in wanted:
            continue
        cmd = [sys.executable, __file__, "--one", algo, str(order), impl] + [
            f"--{k}={v}" for k, v in (("device", args.device), ("families", args.families), ("meta-tasks", args.meta_tasks),
                                      ("queries", args.queries), ("steps", args.steps), ("warmup", args.warmup),
                                      ("threads", args.threads), ("workers", args.workers), ("data", args.data))
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows[label] = {"error": last[:200]}
            else:
                rows[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            rows[label] = {"error": f"timed out after {args.timeout} s"}
        r = rows[label]
        if "error" in r:
            print(f"{label:22s} FAILED: {r['error']}", flush=True)
        else:
            print(f"{label:22s} {r['episodes_per_s']:8.2f} ep/s  {1000 * r['seconds_per_step']:9.1f} ms/step  "
                  f"peak {r['peak_mb']:8.1f} MB  warm-up {r['warmup_s']:6.1f} s", flush=True)  # fmt: skip
    print("ratios (episodes/s against the same algorithm's vmap row, this run):")
    for label, r in rows.items():
        base = rows.get(f"{label.split()[0]} vmap", {}).get("episodes_per_s")
        if "episodes_per_s" in r and base and not label.endswith(" vmap"):
            print(f"  {label:22s} {r['episodes_per_s'] / base:6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
