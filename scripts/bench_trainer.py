"""Benchmark: ms per MALTML training step on the paper's sinusoid configuration.

Runs the real training loop (batch sampling + outer gradient + Adam) three ways in
one process, so the ratios share the machine's load:

    loop      plain-loop reference (Python loops over families and tasks, autograd)
    vmap      torch.func, vmapped over tasks and families
    compiled  the vmapped outer step under torch.compile

Per-step times exclude the first logged block (warm-up and compilation, whose
time is printed separately). Usage:

    .venv/bin/python scripts/bench_trainer.py [--algorithm maltml] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from fewtask_data import EpisodeShape
from fewtask_data.sources import sinusoid
from trainer.algorithms import make_algorithm
from trainer.models import build_model
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train
from bench_args import parse_with_threads  # scripts/ is on sys.path when a script runs

PAPER_SHAPE = EpisodeShape(ways=1, shots=5, queries=5, val=5, meta_tasks=5, goal_tasks=2)


def time_path(algorithm: str, impl: str, compile_: bool, steps: int, log_every: int) -> dict:
    seed_everything(0)
    model = build_model("mlp")
    algo = make_algorithm(algorithm, model, alpha=0.001, beta=0.01, gamma=0.001, impl=impl, compile=compile_)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(steps=steps, out=out, log_every=log_every, checkpoint_every=10**9, progress=False)
        t0 = time.perf_counter()
        train(model, algo, lambda s: sinusoid.batches(0, 10, PAPER_SHAPE, start_step=s), config)
        total = time.perf_counter() - t0
        lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    first, last = lines[0], lines[-1]
    ms = 1000 * (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
    warmup = max(0.0, first["elapsed_s"] - ms * first["step"] / 1000)  # time beyond steady-state steps
    return {"ms_per_step": ms, "warmup_s": warmup, "total_s": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithm", default="maltml")
    ap.add_argument("--loop-steps", type=int, default=40)
    ap.add_argument("--vmap-steps", type=int, default=300)
    ap.add_argument("--compiled-steps", type=int, default=3000)
    args = parse_with_threads(ap)
    print(f"{args.algorithm}, paper config (MLP 1-40-40-1, B=10 families, L=5, K=Q=V=5, C=2), "
          f"{args.threads} thread(s), load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    paths = [
        ("loop", "loop", False, args.loop_steps),
        ("vmap", "vmap", False, args.vmap_steps),
        ("compiled", "vmap", True, args.compiled_steps),
    ]
    results = {}
    for label, impl, comp, steps in paths:
        results[label] = r = time_path(args.algorithm, impl, comp, steps, max(steps // 10, 1))
        print(f"{label:>9}: {r['ms_per_step']:8.3f} ms/step   (warm-up/compile {r['warmup_s']:.1f} s, {steps} steps)", flush=True)
    base = results["loop"]["ms_per_step"]
    for label in ("vmap", "compiled"):
        print(f"speed-up {label:>8} vs loop: {base / results[label]['ms_per_step']:6.1f}x")
    c = results["compiled"]
    print(f"projected 70,000 steps compiled: {(70000 * c['ms_per_step'] / 1000 + c['warmup_s']) / 60:.1f} min")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
