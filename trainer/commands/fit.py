"""`fewtask-train fit`: its options are `FitConfig`'s fields (trainer/fit.py)."""

from __future__ import annotations

import os

import typer

from trainer.fit import FitConfig, fit
from trainer.options import typer_command


def run_fit(cfg: FitConfig) -> None:
    record = fit(cfg)
    r = record["result"]
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"trained {cfg.algo} for {r['step']} steps in {r['seconds']} s; checkpoint in {cfg.out}")


fit_command = typer_command(
    FitConfig, run_fit, "Meta-train a conv net on families streamed from shards (runs under torchrun too)."
)
