"""Benchmark: outer steps with glibc's default malloc settings vs `keep_freed_memory`.

mallopt settings hold for a whole process, so each (algorithm, allocator) pair runs in its
own child process, on the same random Omniglot-sized batch (28x28, conv4-32, 5-way 1-shot,
L = 5 tasks, 1 goal task); prints wall and system seconds per outer step and the ratio:

    .venv/bin/python scripts/bench_allocator.py                 # fo-maltml (5 steps per level), maltml, maml
    .venv/bin/python scripts/bench_allocator.py --algorithms fo-maltml --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# The settings each algorithm runs with: FO-MALTML as Reptile (scripts/presets/fo-maltml-omniglot.json),
# the others as the Omniglot-families preset, each on the implementation `--impl auto` picks on CPU.
SETTINGS = {
    "fo-maltml": {"impl": "vmap", "families": 5, "task_steps": 5, "meta_steps": 5, "goal_steps": 5,
                  "alpha": 0.1, "beta": 0.1, "gamma": 0.1},
    "maltml": {"impl": "loop", "families": 4, "alpha": 0.4, "beta": 0.002, "gamma": 0.4},
    "maml": {"impl": "loop", "families": 4, "alpha": 0.4, "beta": 0.002, "gamma": 0.4},
}  # fmt: skip


def child(algorithm: str, steps: int) -> None:
    import torch

    from fewtask_data import EpisodeShape
    from trainer.algorithms import make_algorithm
    from trainer.core.allocator import keep_freed_memory
    from trainer.models import build_model

    sys.path.insert(0, os.path.dirname(__file__))
    from bench_impl import random_batch

    applied = keep_freed_memory()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    hp = dict(SETTINGS[algorithm])
    families = hp.pop("families")
    shape = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=5, goal_tasks=1)
    batch = random_batch(shape, families, 28)
    model = build_model("conv4", ways=5, in_channels=1, image_size=28, hidden=32, bn="task")
    algo = make_algorithm(algorithm, model, **hp)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    algo.outer_grads(params, sizes, {}, batch)  # warm-up
    wall, cpu = time.perf_counter(), os.times()
    for _ in range(steps):
        algo.outer_grads(params, sizes, {}, batch)
    done = os.times()
    print(json.dumps({"applied": applied, "wall": (time.perf_counter() - wall) / steps,
                      "sys": (done.system - cpu.system) / steps}))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--steps", type=int, default=2, help="timed outer steps per run (after one warm-up)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.steps)
    names = args.algorithms.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or args.steps < 1:
        sys.exit(f"error: choose --algorithms from {', '.join(SETTINGS)} and --steps >= 1")
    for name in names:
        runs = {}
        for label, value in (("glibc default", "default"), ("keep_freed_memory", "")):
            env = {**os.environ, "FEWTASK_MALLOC": value, "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[label] = json.loads(out.strip().splitlines()[-1])
            r = runs[label]
            print(f"{name:>9} {label:>17}: {r['wall']:.2f} s/step ({r['sys']:.2f} s system)", flush=True)
        base, kept = runs["glibc default"]["wall"], runs["keep_freed_memory"]["wall"]
        applied = runs["keep_freed_memory"]["applied"]
        print(f"{name:>9} keep_freed_memory {base / kept:.2f}x faster (applied: {applied})")


if __name__ == "__main__":
    main()
