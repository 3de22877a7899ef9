"""The --threads option the CPU benchmarks share: one torch thread count for every timed
path of a run, so their ratios compare like with like."""

from __future__ import annotations

import argparse

import torch


def parse_with_threads(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments plus ``--threads`` (default 1), with torch set to that many threads."""
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
