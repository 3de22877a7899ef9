"""`fewtask-train sinusoid` and `sinusoid-maml`: the paper's section 4.1 experiment and
Finn et al.'s MAML sinusoid benchmark, end to end (train, evaluate, plot, JSON).

Defaults are the paper configuration: MLP 1-40-40-1 (ReLU); alpha=0.001,
beta=0.01, gamma=0.001; Adam eta=0.001; L=5 tasks, K=5 shots, Q=5; 10 families per
batch; 2 goal tasks per family; 70,000 outer steps; MAML's inner alpha=0.001.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import typer

from fewtask_data.atomic import write_json
from fewtask_data.episode import EpisodeShape, FamilyBatch
from fewtask_data.errors import FewtaskError
from fewtask_data.sources import sinusoid
from trainer import checkpoint as ckpt
from trainer import family_oracle, plots
from trainer.algorithms import make_algorithm
from trainer.checkpoint import seed_everything
from trainer.evaluate import evaluate, paired_difference, predictions
from trainer.loop import TrainConfig, ensure_writable, train
from trainer.models import build_model, finn_init_, signature

# method -> (registered algorithm, inputs carry the true task parameters)
METHODS = {
    "maltml": ("maltml", False),
    "fo-maltml": ("fo-maltml", False),
    "maml": ("maml", False),
    "fomaml": ("fomaml", False),
    "reptile": ("reptile", False),
    "pretrain": ("pretrain", False),
    "oracle": ("pretrain", True),
    "maml-oracle": ("maml", False),  # one MAML per held-out family, trained on that family (family_oracle.py)
}
EVAL_SEED_OFFSET = 7_919_000  # held-out families come from a seed stream training never uses
FINN_TABLE = {1: 0.67, 5: 0.38, 10: 0.35}  # the reference 5-shot MSE after 1/5/10 steps


@dataclass
class Settings:
    steps: int
    families: int
    shape: EpisodeShape
    alpha: float
    beta: float
    gamma: float
    maml_alpha: float
    lr: float
    task_steps: int
    meta_steps: int
    goal_steps: int
    order: int
    learn_step_sizes: bool
    impl: str
    compile: bool
    seed: int
    resume: bool
    log_every: int
    checkpoint_every: int
    threads: int
    oracle_steps: int = 5000
    oracle_tasks: int = 10


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise FewtaskError(f"unknown algorithm {', '.join(bad) or repr(text)}; choose from {', '.join(METHODS)}")
    return names


def train_method(
    method: str, s: Settings, out: Path, spec: sinusoid.SinusoidSpec, progress: bool = True, eval_only: bool = False
):
    """Train one method; returns (algorithm, params, step sizes, training summary)."""
    algo_name, oracle = METHODS[method]
    seed_everything(s.seed)
    model = build_model("mlp", in_features=3 if oracle else 1)
    alpha = s.maml_alpha if algo_name in ("maml", "fomaml") else s.alpha
    # FOMAML's preset fixes its order: passing order=3 would silently turn it into MAML.
    order = {} if algo_name == "fomaml" else {"order": s.order if algo_name == "maltml" else 3}
    algo = make_algorithm(
        algo_name, model, alpha=alpha, beta=s.beta, gamma=s.gamma, task_steps=s.task_steps,
        meta_steps=s.meta_steps, goal_steps=s.goal_steps, **order,
        learn_step_sizes=s.learn_step_sizes and algo_name in ("maltml", "maml"), impl=s.impl,
        compile=s.compile and algo_name != "pretrain",
    )  # fmt: skip
    algo.name = method  # checkpoints record the method (oracle vs pretrain)
    config = TrainConfig(
        steps=s.steps, out=out / method, lr=s.lr, seed=s.seed, log_every=s.log_every,
        checkpoint_every=s.checkpoint_every, resume=s.resume, progress=progress,
    )  # fmt: skip
    if eval_only:
        state = ckpt.load(config.out / ckpt.CHECKPOINT_NAME, signature(model))
        model.load_state_dict(state["model"])
        params = {k: v.detach() for k, v in model.named_parameters()}
        summary = {"steps": state["step"], "evaluated_from_checkpoint": True, **_logged_time(config.out)}
        return algo, params, state["step_sizes"], summary, oracle
    result = train(
        model, algo, lambda start: sinusoid.batches(s.seed, s.families, s.shape, spec, start), config,
        transform=sinusoid.with_task_info if oracle else None,
    )  # fmt: skip
    summary = {"steps": result.step, "seconds": round(result.seconds, 1), "final_metrics": result.last_metrics}
    if s.steps > 0 and result.seconds > 0:
        summary["ms_per_step_incl_compile"] = round(1000 * result.seconds / max(s.steps, 1), 3)
    return algo, result.params, result.step_sizes, summary, oracle


def train_maml_oracle(s: Settings, out: Path, held_out: list[FamilyBatch], progress: bool = True, eval_only: bool = False):
    """MAML models for each held-out family (``family_oracle``); returns (algorithm,
    params with a family axis, step sizes, training summary). A finished run in
    ``out`` is reused with --resume or --eval-only; an unfinished one starts over."""
    seed_everything(s.seed)
    model = build_model("mlp")
    algo = make_algorithm("maml", model, alpha=s.maml_alpha, beta=s.beta, gamma=s.gamma, task_steps=s.task_steps,
                          meta_steps=s.meta_steps)  # fmt: skip
    algo.name = "maml-oracle"
    init = {k: v.detach() for k, v in model.named_parameters()}
    phases = torch.cat([b.goal_info[:, 0, 1] for b in held_out]).double()
    folder = out / "maml-oracle"
    done = (folder / ckpt.CHECKPOINT_NAME).exists() and (s.resume or eval_only)
    if done:
        state = family_oracle.load(folder, init, phases)
        params, seconds, steps = state["model"], state["seconds"], state["step"]
    else:
        if eval_only:
            raise FewtaskError(f"no maml-oracle checkpoint in {folder}; train it first (drop --eval-only)")
        params, seconds = family_oracle.train_family_oracles(
            algo, init, phases, s.oracle_steps, s.oracle_tasks, s.shape.shots, s.shape.queries, s.lr, s.seed,
            compile=s.compile, progress=progress,
        )  # fmt: skip
        steps = s.oracle_steps
        family_oracle.save(folder, params, phases, steps, seconds)
    summary = {"steps": steps, "seconds": round(seconds, 1), "families": len(phases), "tasks_per_step": s.oracle_tasks,
               "evaluated_from_checkpoint": done}  # fmt: skip
    return algo, params, algo.init_step_sizes(init), summary


def _logged_time(folder: Path) -> dict:
    """Training time and last logged loss from a finished run's metrics.jsonl, if any."""
    lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").exists() else []
    if not lines:
        return {}
    last = json.loads(lines[-1])
    return {"seconds": last.get("elapsed_s"), "final_metrics": {k: v for k, v in last.items() if k not in ("step", "elapsed_s")}}


def eval_batches(seed: int, count: int, shape: EpisodeShape, spec: sinusoid.SinusoidSpec, chunk: int = 100):
    """``count`` held-out families, fixed by ``seed``, in chunks."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    done = []
    while sum(len(b) for b in done) < count:
        done.append(sinusoid.sample_batch(gen, min(chunk, count - sum(len(b) for b in done)), shape, spec))
    return done


def _strip(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "per_family"}


def _check_common(steps: int, eval_families: int, threads: int) -> None:
    if steps < 0:
        raise FewtaskError(f"--steps must be >= 0, got {steps}")
    if eval_families < 2:
        raise FewtaskError(f"--eval-families must be >= 2 for a confidence interval, got {eval_families}")
    if threads < 1:
        raise FewtaskError(f"--threads must be >= 1, got {threads}")


def sinusoid_command(
    out: Path = typer.Option(Path("runs/sinusoid"), help="Output folder: one subfolder per method, results.json, fig2*.png."),
    algorithms: str = typer.Option("maltml,maml,oracle,pretrain,maml-oracle", help=f"Comma-separated methods from: {', '.join(METHODS)}."),
    steps: int = typer.Option(70000, help="Outer training steps per method."),
    families: int = typer.Option(10, help="Families per batch (B)."),
    tasks: int = typer.Option(5, "--tasks", "-L", help="Meta-finetuning tasks per family (L)."),
    shots: int = typer.Option(5, "--shots", "-K", help="Support examples per task (K)."),
    queries: int = typer.Option(5, "--queries", "-Q", help="Query examples per meta task (Q)."),
    val: int = typer.Option(5, help="Validation examples per goal task during training (V)."),
    goal_tasks: int = typer.Option(2, help="Goal tasks per family (C)."),
    alpha: float = typer.Option(0.001, help="Task step size (inner, on a task's support)."),
    beta: float = typer.Option(0.01, help="Meta step size (meta-finetuning across the family's tasks)."),
    gamma: float = typer.Option(0.001, help="Finetuning step size on a goal task."),
    maml_alpha: float = typer.Option(0.001, help="MAML/FOMAML (and maml-oracle) inner step size."),
    oracle_steps: int = typer.Option(5000, help="maml-oracle: MAML steps on each held-out family."),
    oracle_tasks: int = typer.Option(10, help="maml-oracle: tasks of the family per step."),
    lr: float = typer.Option(0.001, help="Adam outer learning rate (eta)."),
    task_steps: int = typer.Option(1, help="Task steps r."),
    meta_steps: int = typer.Option(1, help="Meta steps m."),
    goal_steps: int = typer.Option(1, help="Finetuning steps on goal tasks during training."),
    order: int = typer.Option(3, help="MALTML derivative order: 3 exact, 2 first-order task steps, 1 fully first order."),
    learn_step_sizes: bool = typer.Option(False, help="Learn alpha/beta/gamma per parameter tensor (MALTML, MAML)."),
    impl: str = typer.Option("vmap", help="vmap (fast) or loop (plain-loop reference, slow)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the outer step (default: when steps >= 5000)."),
    eval_families: int = typer.Option(500, help="Held-out families for the evaluation."),
    eval_val: int = typer.Option(100, help="Validation points per goal task in the evaluation."),
    finetune_steps: int = typer.Option(10, help="Evaluate after 0..N finetuning steps."),
    seed: int = typer.Option(0, help="Seed for initialization and training batches."),
    resume: bool = typer.Option(False, help="Continue from checkpoints in --out (exactly); finished methods are only re-evaluated."),
    eval_only: bool = typer.Option(False, help="Skip training: evaluate the checkpoints already in --out."),
    quick: bool = typer.Option(False, help="Short demo: MALTML vs MAML, 1,500 steps, 200 held-out families (a few minutes)."),
    log_every: int = typer.Option(100, help="Write metrics.jsonl every N steps."),
    checkpoint_every: int = typer.Option(5000, help="Checkpoint every N steps."),
    threads: int = typer.Option(1, help="torch intra-op threads (the model is tiny; 1 is usually fastest)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """MALTML's sinusoid experiment (paper section 4.1, Figure 2).

    Trains each method, evaluates it on held-out families with and without the
    meta-update (95% intervals), and writes results.json and fig2a/b/c PNGs."""
    if quick:
        steps, eval_families = min(steps, 1500), min(eval_families, 200)
        if algorithms == "maltml,maml,oracle,pretrain,maml-oracle":
            algorithms = "maltml,maml"
    methods = parse_methods(algorithms)
    _check_common(steps, eval_families, threads)
    if impl not in ("vmap", "loop"):
        raise FewtaskError(f"--impl must be vmap or loop, got {impl!r}")
    shape = EpisodeShape(ways=1, shots=shots, queries=queries, val=val, meta_tasks=tasks, goal_tasks=goal_tasks)
    eval_shape = EpisodeShape(ways=1, shots=shots, queries=queries, val=eval_val, meta_tasks=tasks, goal_tasks=goal_tasks)
    torch.set_num_threads(threads)
    s = Settings(steps, families, shape, alpha, beta, gamma, maml_alpha, lr, task_steps, meta_steps, goal_steps, order,
                 learn_step_sizes, impl, steps >= 5000 if compile is None else compile, seed, resume, log_every,
                 checkpoint_every, threads, oracle_steps, oracle_tasks)  # fmt: skip
    for name in ("alpha", "beta", "gamma", "maml_alpha", "lr"):
        v = getattr(s, name)
        if not (v > 0 and math.isfinite(v)):
            raise FewtaskError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    out = ensure_writable(out)
    spec = sinusoid.SinusoidSpec()
    held_out = eval_batches(seed, eval_families, eval_shape, spec)
    results, summaries, figures = {}, {}, {}
    grid = torch.linspace(-5, 5, 200).unsqueeze(-1)
    for method in methods:
        if method == "maml-oracle":
            algo, params, sizes, summary = train_maml_oracle(s, out, held_out, progress, eval_only)
            results[method] = evaluate(algo, params, sizes, {}, held_out, finetune_steps, per_family_params=True)
        else:
            algo, params, sizes, summary, oracle = train_method(method, s, out, spec, progress, eval_only)
            view = [sinusoid.with_task_info(b) for b in held_out] if oracle else held_out
            results[method] = evaluate(algo, params, sizes, {}, view, finetune_steps)
        summaries[method] = {**summary, "mean_step_sizes": _mean_step_sizes(sizes)}
        if method in ("maltml", "maml"):  # the panels of Figure 2a/b
            figures[method] = predictions(algo, params, sizes, {}, held_out[0], grid, finetune_steps)
        typer.echo(_line(method, results[method]))
    report = _report(s, methods, results, summaries, eval_families, eval_val, finetune_steps)
    write_json(out / "results.json", report)
    _figures(out, held_out[0], grid, figures, results)
    typer.echo(f"wrote {out / 'results.json'} and figures in {out}")


def _mean_step_sizes(sizes: dict[str, torch.Tensor]) -> dict[str, float]:
    levels: dict[str, list[float]] = {}
    for k, v in sizes.items():
        levels.setdefault(k.split(":")[0], []).append(float(v.exp()))
    return {lv: sum(vs) / len(vs) for lv, vs in levels.items()}


def _line(method: str, res: dict) -> str:
    w, wo = res["with_meta_update"]["loss"], res["without_meta_update"]["loss"]
    return (f"{method:>9}: MSE after meta-update, 0 steps {w['mean'][0]:.3f} ± {w['ci95'][0]:.3f}; "
            f"{len(w['mean']) - 1} steps {w['mean'][-1]:.3f} ± {w['ci95'][-1]:.3f}; "
            f"without meta-update 0 steps {wo['mean'][0]:.3f} ± {wo['ci95'][0]:.3f}")  # fmt: skip


def _report(s: Settings, methods, results, summaries, eval_families, eval_val, finetune_steps) -> dict:
    report = {
        "experiment": "MALTML sinusoid families (Devos & Dandi, section 4.1)",
        "config": {
            "steps": s.steps, "families_per_batch": s.families, **s.shape.as_dict(), "alpha": s.alpha, "beta": s.beta,
            "gamma": s.gamma, "maml_alpha": s.maml_alpha, "adam_lr": s.lr, "task_steps": s.task_steps,
            "meta_steps": s.meta_steps, "goal_steps": s.goal_steps, "order": s.order,
            "learn_step_sizes": s.learn_step_sizes, "impl": s.impl, "compile": s.compile, "seed": s.seed,
            "eval_families": eval_families, "eval_val_points": eval_val, "finetune_steps": finetune_steps,
            "torch": torch.__version__, "threads": s.threads,
        },
        "methods": {m: {"train": summaries[m], **_strip(results[m])} for m in methods},
        "comparisons": {},
    }  # fmt: skip
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for key in ("with_meta_update", "without_meta_update"):
                diff = paired_difference(results[a]["per_family"][key], results[b]["per_family"][key], 0)
                report["comparisons"][f"{a}_minus_{b}_{key}_0_steps"] = diff
    return report


def _figures(out: Path, family: FamilyBatch, grid, figures: dict, results: dict) -> None:
    amp, phase = (float(v) for v in family.goal_info[0, 0])
    truth = (amp * torch.sin(grid - phase)).squeeze(-1).tolist()
    sx, sy = (t[0, 0].squeeze(-1).tolist() for t in family.goal_support())
    for tag, method in (("a", "maltml"), ("b", "maml")):
        if method in figures:
            plots.predictions_figure(out / f"fig2{tag}_{method}.png", f"{method.upper()} on a held-out family",
                                     grid.squeeze(-1).tolist(), truth, (sx, sy), figures[method])  # fmt: skip
    plots.error_figure(out / "fig2c_error.png", results)


def sinusoid_maml_command(
    out: Path = typer.Option(Path("runs/sinusoid-maml"), help="Output folder."),
    steps: int = typer.Option(70000, help="Meta-training iterations."),
    meta_batch: int = typer.Option(25, help="Tasks per meta-batch."),
    shots: int = typer.Option(10, "--shots", "-K", help="Support (and query) examples per training task."),
    alpha: float = typer.Option(0.01, help="Inner step size."),
    lr: float = typer.Option(0.001, help="Adam meta learning rate."),
    inner_steps: int = typer.Option(1, help="Inner steps during meta-training."),
    eval_shots: int = typer.Option(5, help="Support examples per evaluation task."),
    eval_tasks: int = typer.Option(600, help="Held-out evaluation tasks."),
    eval_val: int = typer.Option(100, help="Query points per evaluation task."),
    eval_steps: int = typer.Option(10, help="Evaluate after 0..N gradient steps of size alpha."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the outer step (default: when steps >= 5000)."),
    init: str = typer.Option("torch", help="Weight initialization: torch (PyTorch's default) or finn (normal std 0.01, zero biases, as in Finn et al.'s code)."),
    seed: int = typer.Option(0, help="Seed."),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in --out."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Finn et al.'s MAML sinusoid benchmark, compared with the reference MSE.

    Amplitude and phase per task; K=10, alpha=0.01, meta-batch 25, 70,000
    iterations; reports 5-shot MSE after 1/5/10 steps against 0.67/0.38/0.35."""
    _check_common(steps, eval_tasks, threads)
    if init not in ("torch", "finn"):
        raise FewtaskError(f"--init must be torch or finn, got {init!r}")
    torch.set_num_threads(threads)
    spec = sinusoid.SinusoidSpec(per_task_phase=True)
    shape = EpisodeShape(ways=1, shots=shots, queries=shots, val=shots, meta_tasks=0, goal_tasks=1)
    eval_shape = EpisodeShape(ways=1, shots=eval_shots, queries=1, val=eval_val, meta_tasks=0, goal_tasks=1)
    out = ensure_writable(out)
    seed_everything(seed)
    model = build_model("mlp")
    if init == "finn":
        finn_init_(model)
    algo = make_algorithm("maml", model, alpha=alpha, gamma=alpha, task_steps=inner_steps,
                          compile=steps >= 5000 if compile is None else compile)  # fmt: skip
    config = TrainConfig(steps=steps, out=out / "maml", lr=lr, seed=seed, resume=resume, progress=progress, checkpoint_every=5000)
    result = train(model, algo, lambda start: sinusoid.batches(seed, meta_batch, shape, spec, start), config)
    held_out = eval_batches(seed, eval_tasks, eval_shape, spec)
    res = evaluate(algo, result.params, result.step_sizes, {}, held_out, eval_steps)
    curve = res["without_meta_update"]["loss"]  # no family level here: plain K-shot adaptation
    compare = {
        str(k): {"ours": curve["mean"][k], "ci95": curve["ci95"][k], "paper": v,
                 "relative_difference": (curve["mean"][k] - v) / v}
        for k, v in FINN_TABLE.items() if k <= eval_steps
    }  # fmt: skip
    per_task = torch.tensor(res["per_family"]["without_meta_update"], dtype=torch.float64)
    tail = {  # a few tasks whose repeated steps overshoot can dominate the mean: show them
        "median_mse_vs_steps": per_task.nanmedian(0).values.tolist(),
        "tasks_above_mse_10": (~(per_task <= 10)).sum(0).tolist(),  # NaN counts as above
    }
    report = {
        "experiment": "MAML sinusoid benchmark (Finn et al. 2017)",
        "config": {"steps": steps, "meta_batch": meta_batch, "shots": shots, "alpha": alpha, "adam_lr": lr,
                   "inner_steps": inner_steps, "eval_shots": eval_shots, "eval_tasks": eval_tasks,
                   "eval_val_points": eval_val, "seed": seed, "init": init, "torch": torch.__version__},
        "train": {"seconds": round(result.seconds, 1), "final_metrics": result.last_metrics},
        "mse_vs_steps": curve,
        **tail,
        "comparison_to_paper": compare,
        "within_25_percent": all(abs(c["relative_difference"]) <= 0.25 for c in compare.values()),
    }  # fmt: skip
    write_json(out / "results.json", report)
    plots.curve_figure(out / "mse_vs_steps.png", {f"MAML, {eval_shots}-shot": curve}, "MAML sinusoid benchmark")
    for k, c in compare.items():
        i = int(k)
        typer.echo(f"{eval_shots}-shot MSE after {k:>2} steps: {c['ours']:.3f} ± {c['ci95']:.3f} (paper {c['paper']}); "
                   f"median {tail['median_mse_vs_steps'][i]:.3f}, {tail['tasks_above_mse_10'][i]} of {len(per_task)} tasks above 10")
    typer.echo(f"wrote {out / 'results.json'}")


if __name__ == "__main__":  # `python -m trainer.sinusoid ...` without the rest of the CLI's imports
    from fewtask_data.cliutil import make_app, run

    _app = make_app("Sinusoid experiments.")
    _app.command("sinusoid")(sinusoid_command)
    _app.command("sinusoid-maml")(sinusoid_maml_command)
    run(_app)
