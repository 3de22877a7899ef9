"""Benchmark: vmap vs plain-loop outer step for conv4 on CPU, by model size.

Times `Algorithm.outer_grads` on random 5-way 1-shot family batches (4 families),
both implementations in one process, and prints s/step and the ratio:

    .venv/bin/python scripts/bench_impl.py --side 20 --hidden 32 --algorithm maltml --meta-tasks 3 --goal-tasks 2
    .venv/bin/python scripts/bench_impl.py --side 28 --hidden 64 --algorithm maml --meta-tasks 7 --goal-tasks 1
"""

from __future__ import annotations

import argparse
import time

import torch

from fewtask_data import EpisodeShape, FamilyBatch
from trainer.algorithms import make_algorithm
from trainer.models import build_model
from bench_args import parse_with_threads  # scripts/ is on sys.path when a script runs


def random_batch(shape: EpisodeShape, families: int, side: int) -> FamilyBatch:
    def part(tasks: int, per_class: int):
        n = shape.ways * per_class
        return torch.rand(families, tasks, n, 1, side, side), torch.randint(0, shape.ways, (families, tasks, n))

    mx, my = part(shape.meta_tasks, shape.shots + shape.queries)
    gx, gy = part(shape.goal_tasks, shape.shots + shape.val)
    return FamilyBatch(mx, my, gx, gy, shape, [f"family-{i}" for i in range(families)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=28)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--algorithm", default="maml")
    p.add_argument("--meta-tasks", type=int, default=7)
    p.add_argument("--goal-tasks", type=int, default=1)
    p.add_argument("--families", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    args = parse_with_threads(p)
    shape = EpisodeShape(ways=5, shots=1, queries=3, val=5, meta_tasks=args.meta_tasks, goal_tasks=args.goal_tasks)
    batch = random_batch(shape, args.families, args.side)
    times = {}
    for impl in ("vmap", "loop"):
        model = build_model("conv4", ways=5, in_channels=1, image_size=args.side, hidden=args.hidden, bn="task")
        algo = make_algorithm(args.algorithm, model, alpha=0.4, beta=0.05, gamma=0.4, impl=impl)
        params = {k: v.detach() for k, v in model.named_parameters()}
        sizes = algo.init_step_sizes(params)
        algo.outer_grads(params, sizes, {}, batch)  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            algo.outer_grads(params, sizes, {}, batch)
        times[impl] = (time.perf_counter() - start) / args.steps
        print(f"{args.algorithm} {args.side}x{args.side} hidden {args.hidden}: {impl:>4} {times[impl]:.3f} s/step", flush=True)
    faster = "loop" if times["loop"] < times["vmap"] else "vmap"
    print(f"{faster} faster by {max(times.values()) / min(times.values()):.2f}x")


if __name__ == "__main__":
    main()
