"""Benchmark: one OML meta-step (the paper's problem: 10 functions x 40 mini-batches of 8
points = 400 online steps, RLN 6 + PLN 2 layers of 300, second order through the 400
steps) per continual problem, two ways in one process so the ratio shares the load:

    loop   plain-loop reference: a Python loop over problems, the whole network at every
           online step, torch.autograd.grad(create_graph=True)   (trainer/continual/reference.py)
    vmap   torch.func: RLN features once per problem, written-out online gradients of the
           PLN, vmap over the problems, one torch.func.grad     (trainer/continual/oml.py)

Prints ms per problem-meta-step for each path and the ratio loop / vmap, for each
meta-batch size. Usage:

    .venv/bin/python scripts/bench_continual.py [--problems 1,4,16] [--reps 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fewtask_data.sources.continual_sines import ContinualSpec, function_pool, sample_problems
from trainer.continual.net import build_net
from trainer.continual.oml import OML
from bench_args import parse_with_threads  # scripts/ is on sys.path when a script runs


def time_step(algo: OML, params, batch, reps: int, device: torch.device) -> float:
    """Seconds per outer gradient (after one warm-up call)."""
    algo.outer_grads(params, {}, {}, batch)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        algo.outer_grads(params, {}, {}, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="1,4", help="meta-batch sizes (problems per outer step)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=300)
    args = parse_with_threads(ap)
    device = torch.device(args.device)
    spec = ContinualSpec()
    pool = function_pool(0, "train", spec)
    torch.manual_seed(0)
    net = build_net(spec.in_features, "paper", args.width).to(device)
    params = {k: v.detach() for k, v in net.named_parameters()}
    rows = []
    for p in (int(v) for v in args.problems.split(",")):
        b = sample_problems(torch.Generator().manual_seed(p), pool, p, spec).to(device)
        loop = time_step(OML(net, impl="loop"), params, b, args.reps, device)
        fast = time_step(OML(net, impl="vmap"), params, b, args.reps, device)
        row = {"problems": p, "loop_ms_per_problem": round(1000 * loop / p, 1),
               "vmap_ms_per_problem": round(1000 * fast / p, 1), "speedup": round(loop / fast, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"device": str(device), "threads": args.threads, "width": args.width, "rows": rows}))


if __name__ == "__main__":
    main()
