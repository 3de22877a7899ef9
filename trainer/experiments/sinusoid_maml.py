"""`fewtask-train sinusoid-maml`: Finn et al.'s MAML sinusoid benchmark, end to end.

Amplitude and phase per task; K=10, alpha=0.01, meta-batch 25, 70,000 iterations; the
5-shot MSE after 1/5/10 steps is compared with the published 0.67/0.38/0.35, scored over
several draws of each task's support points (`trainer.evaluation.draws`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import typer

from fewtask_data import EpisodeShape, FewtaskError, io
from fewtask_data.sources import sinusoid
from trainer.algorithms import make_algorithm
from trainer.domains.regression.sinusoid import finn_eval_tasks
from trainer.evaluation import plots, report
from trainer.evaluation.draws import DIVERGED_MSE, draw_summary, support_draw_curves
from trainer.experiments.options import Config, option, run_option, typer_command
from trainer.models import build_model, finn_init_
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train

FINN_TABLE = {1: 0.67, 5: 0.38, 10: 0.35}  # Finn et al.'s 5-shot MSE after 1/5/10 steps
EXPERIMENT = "MAML sinusoid benchmark (Finn et al. 2017)"


@dataclass(kw_only=True)
class SinusoidMamlConfig(Config):
    """`fewtask-train sinusoid-maml`'s options (Finn et al.'s configuration)."""

    out: Path = option(Path("runs/sinusoid-maml"), "Output folder.")
    steps: int = run_option("steps", help="Meta-training iterations.")
    meta_batch: int = option(25, "Tasks per meta-batch.")
    shots: int = run_option("shots", 10, "Support (and query) examples per training task.")
    alpha: float = option(0.01, "Inner step size.")
    lr: float = run_option("lr", help="Adam meta learning rate.")
    inner_steps: int = option(1, "Inner steps during meta-training.")
    eval_shots: int = option(5, "Support examples per evaluation task.")
    eval_tasks: int = option(600, "Held-out evaluation tasks.")
    eval_val: int = option(100, "Query points per evaluation task.")
    eval_steps: int = option(10, "Evaluate after 0..N gradient steps of size alpha.")
    compile: Optional[bool] = run_option("compile")
    init: str = option("torch", "Weight initialization: torch (PyTorch's default) or finn (normal std 0.01, zero "
                                "biases, as in Finn et al.'s code).")  # fmt: skip
    support_draws: int = option(10, "Support draws per evaluation task: each task is finetuned from D independent "
                                    "draws of its support points (draw 1 is the single draw of earlier versions).")
    seed: int = run_option("seed")
    eval_seed: int = run_option("eval_seed", help="Seed of the held-out evaluation tasks and their support draws.")
    resume: bool = run_option("resume", help="Continue from the checkpoint in --out (a finished run is only re-evaluated).")
    threads: int = run_option("threads")
    progress: bool = run_option("progress", help="Show a progress bar.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("torch", "finn"):
            raise FewtaskError(f"--init must be torch or finn, got {self.init!r}")


def paper_comparison(curve: dict, eval_steps: int) -> dict:
    """Per published step count: ours, its interval, the paper's and the relative difference."""
    return {
        str(k): {"ours": curve["mean"][k], "ci95": curve["ci95"][k], "paper": v,
                 "relative_difference": (curve["mean"][k] - v) / v}
        for k, v in FINN_TABLE.items() if k <= eval_steps
    }  # fmt: skip


def run_sinusoid_maml(c: SinusoidMamlConfig) -> dict:
    """Train MAML on tasks with their own amplitude and phase; evaluate K-shot adaptation."""
    torch.set_num_threads(c.threads)
    spec = sinusoid.SinusoidSpec(per_task_phase=True)
    shape = EpisodeShape(ways=1, shots=c.shots, queries=c.shots, val=c.shots, meta_tasks=0, goal_tasks=1)
    out = io.ensure_writable(c.out)
    seed_everything(c.seed)
    model = build_model("mlp")
    if c.init == "finn":
        finn_init_(model)
    algo = make_algorithm("maml", model, alpha=c.alpha, gamma=c.alpha, task_steps=c.inner_steps,
                          compile=c.steps >= 5000 if c.compile is None else c.compile)  # fmt: skip
    config = TrainConfig(steps=c.steps, out=out / "maml", lr=c.lr, seed=c.seed, resume=c.resume, progress=c.progress,
                         checkpoint_every=5000)  # fmt: skip
    result = train(model, algo, lambda start: sinusoid.batches(c.seed, c.meta_batch, shape, spec, start), config)
    held_out = finn_eval_tasks(c.eval_seed, c.eval_tasks, c.eval_shots, c.eval_val)
    mse = support_draw_curves(algo, result.params, result.step_sizes, held_out, c.eval_steps, c.support_draws,
                              c.eval_seed)  # fmt: skip
    draws = draw_summary(mse)
    compare = paper_comparison(draws["mse_vs_steps"], c.eval_steps)
    extra = {"diverged_above_mse": DIVERGED_MSE, **draws, "comparison_to_paper": compare,
             "within_25_percent": all(abs(v["relative_difference"]) <= 0.25 for v in compare.values())}  # fmt: skip
    train_record = {"seed": c.seed, "steps": result.step, "seconds": round(result.seconds, 1), "final_metrics": result.last_metrics}
    curves = {c.seed: {"maml": {report.WITHOUT: {"loss": mse.mean(0)}}}}  # per task: the mean over its support draws
    results = report.results(EXPERIMENT, {**report.json_safe(c), "torch": torch.__version__}, "held-out task", curves,
                             range(c.eval_steps + 1), {"maml": [train_record]}, extra=extra)  # fmt: skip
    io.write_json(out / "results.json", results)
    plots.curve_figure(out / "mse_vs_steps.png", {f"MAML, {c.eval_shots}-shot, mean of {c.support_draws} draws":
                                                  draws["mse_vs_steps"]}, "MAML sinusoid benchmark")  # fmt: skip
    total = draws["draws"] * draws["tasks"]
    for k, v in compare.items():
        i = int(k)
        typer.echo(f"{c.eval_shots}-shot MSE after {k:>2} steps: {v['ours']:.3f} ± {v['ci95']:.3f} (paper {v['paper']}); "
                   f"median {draws['median_mse_vs_steps'][i]:.3f}, {draws['diverging_draws'][i]} of {total} draws diverging")  # fmt: skip
    typer.echo(f"wrote {out / 'results.json'}")
    return results


sinusoid_maml_command = typer_command(SinusoidMamlConfig, run_sinusoid_maml, """Finn et al.'s MAML sinusoid benchmark, compared with the reference MSE.

    Amplitude and phase per task; K=10, alpha=0.01, meta-batch 25, 70,000
    iterations; reports 5-shot MSE after 1/5/10 steps against 0.67/0.38/0.35.""")
