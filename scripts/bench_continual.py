"""Benchmark: one OML meta-step (the paper's problem: 10 functions x 40 mini-batches of 8
points = 400 online steps, RLN 6 + PLN 2 layers of 300, second order through the 400
steps) per continual problem, three ways in one process so the ratios share the load:

    loop     plain-loop reference: a Python loop over problems, the whole network at every
             online step, torch.autograd.grad(create_graph=True)   (trainer/domains/continual/reference.py)
    vmap     torch.func: RLN features once per problem, written-out online gradients of the
             PLN, torch.func.vmap over the problems, one torch.func.grad   (oml.problems_loss_vmap)
    batched  the trainer's path: the same math with the problems on a leading axis of
             batched matmuls and one plain autograd pass   (oml.problems_loss, OML's default)

Prints ms per problem-meta-step for each path and the ratios loop / vmap and loop /
batched, for each meta-batch size. With ``--maltml-families B`` (e.g. 1,2), also one
MALTML-continual outer step (L = 2 meta problems and one goal problem per family, order 3)
two ways: torch.func.vmap over the B families under torch.func.grad (the trainer's path
before 2026-12-08) against the trainer's Python loop over families with plain autograd.
Usage:

    .venv/bin/python scripts/bench_continual.py [--problems 1,4,16] [--reps 3] [--threads 1] [--device cpu]
        [--maltml-families 1,2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.func import grad, vmap

from fewtask_data.sources.continual_sines import ContinualSpec, family_batches, function_pool, sample_problems
from trainer.domains.continual.net import build_net
from trainer.domains.continual.oml import OML, MALTMLContinual, problems_loss_vmap
from bench_args import parse_with_threads  # scripts/ is on sys.path when a script runs


def func_vmap_grads(algo: OML, params, batch):
    """OML's outer gradient through torch.func: vmap over problems, torch.func.grad."""
    loss = lambda p: problems_loss_vmap(p, batch.tensors(), algo.lr, algo.split, algo.depth).mean()  # noqa: E731
    return grad(loss)(params)


def maltml_vmap_grads(algo: MALTMLContinual, params, fams):
    """MALTML-continual's outer gradient as torch.func.vmap over the families under torch.func.grad."""
    meta, goal = fams.meta.tensors(), fams.goal.tensors()
    loss = lambda p: vmap(lambda m, g: algo.family_loss(p, m, g))(meta, goal).mean()  # noqa: E731
    return grad(loss)(params)


def time_step(outer_grads, params, batch, reps: int, device: torch.device) -> float:
    """Seconds per outer gradient (after one warm-up call)."""
    outer_grads(params, batch)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        outer_grads(params, batch)
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
    ap.add_argument("--maltml-families", default="", help="MALTML-continual families per outer step to time (e.g. 1,2)")
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
        fast_algo, loop_algo = OML(net), OML(net, impl="loop")
        loop = time_step(lambda q, x: loop_algo.outer_grads(q, {}, {}, x), params, b, args.reps, device)
        vmapped = time_step(lambda q, x: func_vmap_grads(fast_algo, q, x), params, b, args.reps, device)
        batched = time_step(lambda q, x: fast_algo.outer_grads(q, {}, {}, x), params, b, args.reps, device)
        row = {"problems": p, "loop_ms_per_problem": round(1000 * loop / p, 1),
               "vmap_ms_per_problem": round(1000 * vmapped / p, 1), "batched_ms_per_problem": round(1000 * batched / p, 1),
               "speedup_vmap": round(loop / vmapped, 2), "speedup_batched": round(loop / batched, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    for f in (int(v) for v in args.maltml_families.split(",") if v):
        fams = next(family_batches(f, pool, [0.5, 1.0, 1.5], f, 2, 1, spec)).to(device)
        algo = MALTMLContinual(net)
        vmapped = time_step(lambda q, x: maltml_vmap_grads(algo, q, x), params, fams, args.reps, device)
        looped = time_step(lambda q, x: algo.outer_grads(q, {}, {}, x), params, fams, args.reps, device)
        row = {"maltml_families": f, "vmap_families_s": round(vmapped, 2), "loop_families_s": round(looped, 2),
               "speedup_loop": round(vmapped / looped, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"device": str(device), "threads": args.threads, "width": args.width, "rows": rows}))


if __name__ == "__main__":
    main()
