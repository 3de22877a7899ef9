"""CKA / SVCCA / PWCCA on large activations (trainer/evaluation/similarity.py).

Times every measure on ``--rows`` x ``--features`` activations (default 10,000 x 512,
float64 inside), and, as the baseline measured in the same run, linear CKA through
n x n Gram matrices (Kornblith et al.'s formula as written) against the feature-space
CKA on ``--gram-rows`` rows, where the Gram matrices still fit: the printed ratio is
what computing in feature space buys. Usage: python scripts/bench_similarity.py
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_args import parse_with_threads

from trainer.evaluation import similarity as sim


def timed(f, *args, repeat: int = 3) -> tuple[float, float]:
    """(best seconds of ``repeat`` calls, the value)."""
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = f(*args)
        best = min(best, time.perf_counter() - t0)
    return best, value


def gram_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The baseline: HSIC = tr(K H L H) with n x n Gram matrices."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    kh, lh = x @ x.T @ h, y @ y.T @ h
    return float((kh * lh.T).sum() / torch.sqrt((kh * kh.T).sum() * (lh * lh.T).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--gram-rows", type=int, default=2_000)
    args = parse_with_threads(parser)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.features, generator=gen)
    y = torch.relu(x @ torch.randn(args.features, args.features, generator=gen) / args.features**0.5)
    times = {}
    for measure in sim.MEASURES:
        times[measure], value = timed(sim.similarity, x, y, measure)
        print(f"{measure:>12} on {args.rows} x {args.features}: {times[measure]:.2f} s (value {value:.4f})")
    xs, ys = x[: args.gram_rows], y[: args.gram_rows]
    slow, ref = timed(gram_cka, xs, ys, repeat=1)
    fast, ours = timed(sim.cka, xs, ys)
    assert abs(ref - ours) < 1e-9, (ref, ours)
    print(f"all four measures on {args.rows} x {args.features}: {sum(times.values()):.2f} s; "
          f"CKA on {args.gram_rows} x {args.features}: Gram-matrix baseline {slow:.2f} s vs feature space {fast:.3f} s "
          f"= {slow / fast:.0f}x ({args.rows} rows: Gram matrices of {8 * args.rows**2 / 2**20:.0f} MiB each)")  # fmt: skip


if __name__ == "__main__":
    main()
