"""`fewtask-train sinusoid` and `sinusoid-maml`: the paper's section 4.1 experiment and
Finn et al.'s MAML sinusoid benchmark, end to end (train, evaluate, plot, JSON).

Defaults are the paper configuration: MLP 1-40-40-1 (ReLU); alpha=0.001,
beta=0.01, gamma=0.001; Adam eta=0.001; L=5 tasks, K=5 shots, Q=5; 10 families per
batch; 2 goal tasks per family; 70,000 outer steps; MAML's inner alpha=0.001.
Every method is evaluated with the same protocol and the same finetuning step gamma.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import typer

from fewtask_data import EpisodeShape, FamilyBatch, FewtaskError, io
from fewtask_data.sources import sinusoid
from trainer.algorithms import algorithm_class, make_algorithm
from trainer.core.functional import REDUCTIONS
from trainer.core.step_sizes import mean_step_sizes
from trainer.evaluation import plots
from trainer.evaluation import seeds as seeds_mod
from trainer.evaluation.protocol import PROTOCOLS, episode_curves, evaluate, paired, predictions, summarize
from trainer.experiments.options import parse_seeds, methods_option, option, parse_names, run_option, step_size_option, typer_command
from trainer.models import build_model, finn_init_, signature
from trainer.training import checkpoint as ckpt
from trainer.training import family_oracle
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train

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
DEFAULT_METHODS = "maltml,maml,oracle,pretrain,maml-oracle"
EVAL_SEED_OFFSET = 7_919_000  # held-out families come from a seed stream training never uses
FINN_TABLE = {1: 0.67, 5: 0.38, 10: 0.35}  # the reference 5-shot MSE after 1/5/10 steps


@dataclass(kw_only=True)
class SinusoidConfig:
    """`fewtask-train sinusoid`'s options (the paper's section 4.1 defaults)."""

    out: Path = option(Path("runs/sinusoid"), "Output folder: one subfolder per method, results.json, fig2*.png.")
    algorithms: str = methods_option(METHODS, DEFAULT_METHODS)
    steps: int = run_option("steps")
    families: int = option(10, "Families per batch (B).")
    tasks: int = run_option("tasks")
    shots: int = run_option("shots")
    queries: int = option(5, "Query examples per meta task (Q).", "--queries", "-Q")
    val: int = option(5, "Validation examples per goal task during training (V).")
    goal_tasks: int = run_option("goal_tasks")
    alpha: float = step_size_option("alpha", 0.001, "inner, on a task's support")
    beta: float = step_size_option("beta", 0.01, "meta-finetuning across the family's tasks")
    gamma: float = step_size_option("gamma", 0.001, "finetuning on a goal task")
    maml_alpha: float = option(0.001, "MAML/FOMAML (and maml-oracle) inner step size.")
    oracle_steps: int = option(5000, "maml-oracle: MAML steps on each held-out family.")
    oracle_tasks: int = option(10, "maml-oracle: tasks of the family per step.")
    lr: float = run_option("lr", help="Adam outer learning rate (eta).")
    task_steps: int = run_option("task_steps")
    meta_steps: int = run_option("meta_steps")
    goal_steps: int = run_option("goal_steps")
    order: int = run_option("order")
    # None: sum for a new run; a finished checkpoint keeps the reduction it was trained with.
    meta_reduction: Optional[str] = run_option("meta_reduction", None, "Eq. 2's meta-finetuning step over the L task "
                                               "losses: sum (as the paper) or mean (an L times smaller step). Default: "
                                               "sum; a finished checkpoint is evaluated as it was trained (mean if it "
                                               "predates this option).")  # fmt: skip
    learn_step_sizes: bool = run_option("learn_step_sizes")
    impl: str = run_option("impl")
    compile: Optional[bool] = run_option("compile")
    eval_families: int = option(500, "Held-out families for the evaluation.")
    eval_val: int = option(100, "Validation points per goal task in the evaluation.")
    finetune_steps: int = option(10, "Evaluate after 0..N finetuning steps.")
    seed: int = run_option("seed")
    seeds: str = option("", "Comma-separated training seeds, e.g. 0,1,2: each method is trained once per seed into "
                            "OUT/seed-<s>/<method>, one after another, all evaluated on the same held-out families; "
                            "results.json keeps every seed and the mean over seeds with 95% intervals over seeds and "
                            "over families. One seed: as --seed. Default: --seed.")  # fmt: skip
    eval_seed: int = run_option("eval_seed", help="Seed of the held-out evaluation families (separate from the training seed).")
    resume: bool = run_option("resume", help="Continue from checkpoints in --out (exactly); finished methods are only re-evaluated.")
    eval_only: bool = run_option("eval_only")
    quick: bool = option(False, "Short demo: MALTML vs MAML, 1,500 steps, 200 held-out families (a few minutes).")
    log_every: int = run_option("log_every")
    checkpoint_every: int = run_option("checkpoint_every")
    threads: int = run_option("threads", help="torch intra-op threads (the model is tiny; 1 is usually fastest).")
    progress: bool = run_option("progress")

    def shape(self, val: int | None = None) -> EpisodeShape:
        """Training episodes, or with ``val`` the evaluation's (more validation points)."""
        return EpisodeShape(1, self.shots, self.queries, self.val if val is None else val, self.tasks, self.goal_tasks)




def train_method(method: str, s: SinusoidConfig, spec: sinusoid.SinusoidSpec):
    """Train one method (or load it with --eval-only); returns (algorithm, params, step
    sizes, training summary, whether its inputs carry the task parameters)."""
    algo_name, oracle = METHODS[method]
    seed_everything(s.seed)
    model = build_model("mlp", in_features=3 if oracle else 1)
    path = s.out / method / ckpt.CHECKPOINT_NAME
    state = ckpt.load(path, signature(model)) if s.eval_only or (s.resume and path.exists()) else None
    s = replace(s, meta_reduction=_reduction(s, state))
    algo = make_algorithm(algo_name, model, label=method, **algorithm_class(algo_name).sinusoid_hparams(s))
    config = TrainConfig(
        steps=s.steps, out=s.out / method, lr=s.lr, seed=s.seed, log_every=s.log_every,
        checkpoint_every=s.checkpoint_every, resume=s.resume, progress=s.progress,
    )  # fmt: skip
    if s.eval_only:
        model.load_state_dict(state["model"])
        params = {k: v.detach() for k, v in model.named_parameters()}
        summary = {"steps": state["step"], "evaluated_from_checkpoint": True, **_logged_time(config.out)}
        return algo, params, state["step_sizes"], summary, oracle
    result = train(
        model, algo, lambda start: sinusoid.batches(s.seed, s.families, s.shape(), spec, start), config,
        transform=sinusoid.with_task_info if oracle else None,
    )  # fmt: skip
    summary = {"steps": result.step, "seconds": round(result.seconds, 1), "final_metrics": result.last_metrics}
    if s.steps > 0 and result.seconds > 0:
        summary["ms_per_step_incl_compile"] = round(1000 * result.seconds / max(s.steps, 1), 3)
    return algo, result.params, result.step_sizes, summary, oracle


def train_maml_oracle(s: SinusoidConfig, held_out: list[FamilyBatch]):
    """MAML models for each held-out family (``family_oracle``); returns (algorithm,
    params with a family axis, step sizes, training summary). A finished run in
    ``out`` is reused with --resume or --eval-only; an unfinished one starts over."""
    seed_everything(s.seed)
    model = build_model("mlp")
    init = {k: v.detach() for k, v in model.named_parameters()}
    phases = torch.cat([b.goal_info[:, 0, 1] for b in held_out]).double()
    folder = s.out / "maml-oracle"
    done = (folder / ckpt.CHECKPOINT_NAME).exists() and (s.resume or s.eval_only)
    state = family_oracle.load(folder, init, phases) if done else None
    reduction = _reduction(s, state)
    algo = make_algorithm("maml", model, label="maml-oracle", alpha=s.maml_alpha, beta=s.beta, gamma=s.gamma,
                          task_steps=s.task_steps, meta_steps=s.meta_steps, meta_reduction=reduction)  # fmt: skip
    if done:
        params, seconds, steps = state["model"], state["seconds"], state["step"]
    else:
        if s.eval_only:
            raise FewtaskError(f"no maml-oracle checkpoint in {folder}; train it first (drop --eval-only)")
        params, seconds = family_oracle.train_family_oracles(
            algo, init, phases, s.oracle_steps, s.oracle_tasks, s.shots, s.queries, s.lr, s.seed,
            compile=s.compile, progress=s.progress,
        )  # fmt: skip
        steps = s.oracle_steps
        family_oracle.save(folder, params, phases, steps, seconds, reduction)
    summary = {"steps": steps, "seconds": round(seconds, 1), "families": len(phases), "tasks_per_step": s.oracle_tasks,
               "evaluated_from_checkpoint": done}  # fmt: skip
    return algo, params, algo.init_step_sizes(init), summary


def _reduction(s: SinusoidConfig, state: dict | None) -> str:
    """Eq. 2's reduction for a method: --meta-reduction when given; else what its finished
    checkpoint was trained with (mean before the option existed), or sum for a new run."""
    if s.meta_reduction is not None:
        return s.meta_reduction
    return "sum" if state is None else state.get("meta_reduction", "mean")


def _logged_time(folder: Path) -> dict:
    """Training time and last logged loss from a finished run's metrics.jsonl, if any."""
    lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").exists() else []
    if not lines:
        return {}
    last = json.loads(lines[-1])
    return {"seconds": last.get("elapsed_s"), "final_metrics": {k: v for k, v in last.items() if k not in ("step", "elapsed_s")}}


def eval_batches(seed: int, count: int, shape: EpisodeShape, spec: sinusoid.SinusoidSpec, chunk: int = 100,
                 dtype: torch.dtype = torch.float32):
    """``count`` held-out families, fixed by ``seed``, in chunks."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    done = []
    while sum(len(b) for b in done) < count:
        done.append(sinusoid.sample_batch(gen, min(chunk, count - sum(len(b) for b in done)), shape, spec, dtype))
    return done


def _check_common(steps: int, eval_families: int, threads: int) -> None:
    if steps < 0:
        raise FewtaskError(f"--steps must be >= 0, got {steps}")
    if eval_families < 2:
        raise FewtaskError(f"--eval-families must be >= 2 for a confidence interval, got {eval_families}")
    if threads < 1:
        raise FewtaskError(f"--threads must be >= 1, got {threads}")


def run_sinusoid(s: SinusoidConfig) -> None:
    """Train each method (per training seed), evaluate it on the same held-out families,
    write results.json and figures."""
    if s.quick:
        algorithms = "maltml,maml" if s.algorithms == DEFAULT_METHODS else s.algorithms
        s = replace(s, steps=min(s.steps, 1500), eval_families=min(s.eval_families, 200), algorithms=algorithms)
    methods = parse_names(s.algorithms, METHODS, "algorithm")
    seeds = parse_seeds(s.seeds) if s.seeds.strip() else [s.seed]
    _check_common(s.steps, s.eval_families, s.threads)
    if s.impl not in ("vmap", "loop"):
        raise FewtaskError(f"--impl must be vmap or loop, got {s.impl!r}")
    if s.meta_reduction not in (None, *REDUCTIONS):
        raise FewtaskError(f"--meta-reduction must be sum or mean, got {s.meta_reduction!r}")
    if s.eval_seed < 0:
        raise FewtaskError(f"--eval-seed must be >= 0, got {s.eval_seed}")
    s.shape(), s.shape(s.eval_val)  # shape errors before any work
    torch.set_num_threads(s.threads)
    s = replace(s, compile=s.steps >= 5000 if s.compile is None else s.compile)
    for name in ("alpha", "beta", "gamma", "maml_alpha", "lr"):
        v = getattr(s, name)
        if not (v > 0 and math.isfinite(v)):
            raise FewtaskError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    s = replace(s, out=io.ensure_writable(s.out))
    spec = sinusoid.SinusoidSpec()
    held_out = eval_batches(s.eval_seed, s.eval_families, s.shape(s.eval_val), spec)
    grid = torch.linspace(-5, 5, 200).unsqueeze(-1)
    if len(seeds) == 1:
        report, figures = _run_seed(replace(s, seed=seeds[0]), methods, spec, held_out, grid)
        io.write_json(s.out / "results.json", report)
        _figures(s.out, held_out[0], grid, figures, report["methods"])
    else:
        reports, figures = {}, {}
        for seed in seeds:  # one seed, and within it one method, at a time: training times stay uncontended
            typer.echo(f"training seed {seed}")
            seed_s = replace(s, seed=seed, out=io.ensure_writable(s.out / f"seed-{seed}"))
            reports[seed], figures[seed] = _run_seed(seed_s, methods, spec, held_out, grid)
            io.write_json(seed_s.out / "results.json", reports[seed])
        report = _over_seeds(s, seeds, methods, reports)
        io.write_json(s.out / "results.json", report)
        per_seed_figures = {m: {k: [figures[sd][m][k] for sd in seeds] for k in figures[seeds[0]][m]}
                            for m in figures[seeds[0]]}  # fmt: skip
        _figures(s.out, held_out[0], grid, per_seed_figures, report["over_seeds"]["methods"], band="seed_ci95")
        for line in _seed_lines(report):
            typer.echo(line)
    typer.echo(f"wrote {s.out / 'results.json'} and figures in {s.out}")


def _run_seed(s: SinusoidConfig, methods: list[str], spec, held_out: list[FamilyBatch], grid) -> tuple[dict, dict]:
    """Every method for one training seed (``s.seed``, checkpoints in ``s.out``), one after
    another, evaluated on ``held_out``: (the report, Figure 2a/b predictions)."""
    results, curves, summaries, figures = {}, {}, {}, {}
    for method in methods:
        if method == "maml-oracle":
            algo, params, sizes, summary = train_maml_oracle(s, held_out)
            results[method], curves[method] = evaluate(algo, params, sizes, {}, held_out, s.finetune_steps,
                                                       per_family_params=True)  # fmt: skip
        else:
            algo, params, sizes, summary, oracle = train_method(method, s, spec)
            view = [sinusoid.with_task_info(b) for b in held_out] if oracle else held_out
            results[method], curves[method] = evaluate(algo, params, sizes, {}, view, s.finetune_steps)
        summaries[method] = {**summary, "mean_step_sizes": mean_step_sizes(sizes), "meta_reduction": algo.meta_reduction}
        if method in ("maltml", "maml"):  # the panels of Figure 2a/b
            figures[method] = predictions(algo, params, sizes, {}, held_out[0], grid, s.finetune_steps)
        typer.echo(_line(method, results[method]))
    return _report(s, methods, results, curves, summaries), figures


def _over_seeds(s: SinusoidConfig, seeds: list[int], methods: list[str], reports: dict[int, dict]) -> dict:
    """The per-seed reports and their aggregate (`trainer.evaluation.seeds`)."""
    per_seed = [reports[seed] for seed in seeds]
    over = {
        "methods": {m: seeds_mod.aggregate_tree([r["methods"][m] for r in per_seed]) for m in methods},
        "comparisons": seeds_mod.aggregate_tree([r["comparisons"] for r in per_seed]),
    }
    if "maltml" in methods and "maml" in methods:  # the paper's claim: MALTML beats MAML right after the meta-update
        pair = [r["comparisons"]["maltml_minus_maml"]["with_meta_finetuning"]["loss"] for r in per_seed]
        over["maltml_minus_maml_after_meta_update_0_steps"] = seeds_mod.paired_at(seeds, pair, 0)
    config = {**per_seed[0]["config"], "seeds": seeds}
    config.pop("seed")
    return {
        "experiment": per_seed[0]["experiment"],
        "config": config,
        "intervals": "over_seeds: mean over training seeds; seed_ci95 = t(0.975, n-1) * sd / sqrt(n) over seeds; "
                     "family_ci95 = the mean over seeds of each seed's 1.96-standard-error interval over held-out "
                     "families. seeds: each seed's full report (the same held-out families for all).",
        "over_seeds": over,
        "seeds": {str(seed): {k: v for k, v in reports[seed].items() if k != "experiment"} for seed in seeds},
    }  # fmt: skip


def _seed_lines(report: dict) -> list[str]:
    lines = []
    for method, res in report["over_seeds"]["methods"].items():
        w = res["with_meta_finetuning"]["loss"]
        lines.append(f"{method:>11} over seeds: MSE after meta-update, 0 steps {w['mean'][0]:.3f} "
                     f"± {w['seed_ci95'][0]:.3f} (seeds) ± {w['family_ci95'][0]:.3f} (families)")  # fmt: skip
    pair = report["over_seeds"].get("maltml_minus_maml_after_meta_update_0_steps")
    if pair:
        each = ", ".join(f"seed {r['seed']}: {r['mean']:+.3f} ± {r['family_ci95']:.3f}" for r in pair["per_seed"])
        lines.append(f"MALTML - MAML after meta-update, 0 steps: {pair['mean']:+.3f} ± {pair['seed_ci95']:.3f} "
                     f"over seeds ({each})")  # fmt: skip
    return lines


def _line(method: str, res: dict) -> str:
    w, wo = res["with_meta_finetuning"]["loss"], res["without_meta_finetuning"]["loss"]
    return (f"{method:>9}: MSE after meta-update, 0 steps {w['mean'][0]:.3f} ± {w['ci95'][0]:.3f}; "
            f"{len(w['mean']) - 1} steps {w['mean'][-1]:.3f} ± {w['ci95'][-1]:.3f}; "
            f"without meta-update 0 steps {wo['mean'][0]:.3f} ± {wo['ci95'][0]:.3f}")  # fmt: skip


def _report(s: SinusoidConfig, methods, results, curves, summaries) -> dict:
    report = {
        "experiment": "MALTML sinusoid families (Devos & Dandi, section 4.1)",
        "config": {
            "steps": s.steps, "families_per_batch": s.families, **s.shape().as_dict(), "alpha": s.alpha, "beta": s.beta,
            "gamma": s.gamma, "maml_alpha": s.maml_alpha, "adam_lr": s.lr, "task_steps": s.task_steps,
            "meta_steps": s.meta_steps, "goal_steps": s.goal_steps, "order": s.order,
            "meta_reduction": s.meta_reduction or "sum (finished checkpoints: as trained)",
            "learn_step_sizes": s.learn_step_sizes, "impl": s.impl, "compile": s.compile, "seed": s.seed,
            "eval_seed": s.eval_seed, "eval_families": s.eval_families, "eval_val_points": s.eval_val,
            "finetune_steps": s.finetune_steps, "torch": torch.__version__, "threads": s.threads,
        },
        "methods": {m: {"train": summaries[m], **results[m]} for m in methods},
        "comparisons": {},  # paired differences over the same held-out families
    }  # fmt: skip
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            report["comparisons"][f"{a}_minus_{b}"] = {p: {"loss": paired(curves[a][p]["loss"], curves[b][p]["loss"])}
                                                       for p in PROTOCOLS}  # fmt: skip
    return report


def _figures(out: Path, family: FamilyBatch, grid, figures: dict, results: dict, band: str = "ci95") -> None:
    """Figure 2a/b (predictions: one list per seed gives a seed band) and 2c (``band``:
    the results' interval to shade, over families or over seeds)."""
    amp, phase = (float(v) for v in family.goal_info[0, 0])
    truth = (amp * torch.sin(grid - phase)).squeeze(-1).tolist()
    sx, sy = (t[0, 0].squeeze(-1).tolist() for t in family.goal_support())
    for tag, method in (("a", "maltml"), ("b", "maml")):
        if method in figures:
            plots.predictions_figure(out / f"fig2{tag}_{method}.png", f"{method.upper()} on a held-out family",
                                     grid.squeeze(-1).tolist(), truth, (sx, sy), figures[method])  # fmt: skip
    title = "held-out families" if band == "ci95" else "held-out families, 95% band over seeds"
    plots.error_figure(out / "fig2c_error.png", results, title, band=band)


@dataclass(kw_only=True)
class SinusoidMamlConfig:
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


DIVERGED_MSE = 10.0  # a draw whose MSE exceeds this (or is not finite) counts as diverging: the data's variance is ~4


def support_draw_curves(algo, params, step_sizes, held_out: list[FamilyBatch], steps: int, draws: int,
                        seed: int) -> torch.Tensor:
    """Plain K-shot adaptation MSE after 0..steps steps, [draws, tasks, steps+1]: draw 0 is
    the tasks' own support points, draws 1.. redraw them (fixed by ``seed``)."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + 1)
    out = []
    for d in range(draws):
        view = held_out if d == 0 else [sinusoid.redraw_support(b, gen) for b in held_out]
        curves = episode_curves(algo, params, step_sizes, {}, view, steps, protocols=("without_meta_finetuning",))
        out.append(curves["without_meta_finetuning"]["loss"].double())
    return torch.stack(out)


def draw_summary(mse: torch.Tensor) -> dict:
    """What [draws, tasks, steps+1] MSEs say: the mean over draws and tasks (interval over
    tasks, each task's mean over its draws), the median draw, the diverging draws, and
    for comparison the first draw alone."""
    diverged = ~(mse <= DIVERGED_MSE)  # NaN counts as diverged
    flat = mse.flatten(0, 1)
    kept = torch.where(diverged, torch.nan, mse).flatten(0, 1)
    return {
        "draws": mse.shape[0], "tasks": mse.shape[1],
        "mse_vs_steps": summarize(mse.mean(0)),
        "median_mse_vs_steps": flat.nanquantile(0.5, dim=0).tolist(),  # the usual median (torch.median takes the lower middle)
        "diverging_draws": diverged.flatten(0, 1).sum(0).tolist(),
        "tasks_with_a_diverging_draw": diverged.any(0).sum(0).tolist(),
        "mean_mse_without_diverging_draws": kept.nanmean(0).tolist(),
        "first_draw_mse_vs_steps": summarize(mse[0]),
    }  # fmt: skip


def run_sinusoid_maml(c: SinusoidMamlConfig) -> None:
    """Train MAML on tasks with their own amplitude and phase; evaluate K-shot adaptation."""
    _check_common(c.steps, c.eval_tasks, c.threads)
    if c.init not in ("torch", "finn"):
        raise FewtaskError(f"--init must be torch or finn, got {c.init!r}")
    if c.support_draws < 1:
        raise FewtaskError(f"--support-draws must be >= 1, got {c.support_draws}")
    if c.eval_seed < 0:
        raise FewtaskError(f"--eval-seed must be >= 0, got {c.eval_seed}")
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
    summary = draw_summary(mse)
    curve = summary["mse_vs_steps"]
    compare = {
        str(k): {"ours": curve["mean"][k], "ci95": curve["ci95"][k], "paper": v,
                 "relative_difference": (curve["mean"][k] - v) / v}
        for k, v in FINN_TABLE.items() if k <= c.eval_steps
    }  # fmt: skip
    report = {
        "experiment": "MAML sinusoid benchmark (Finn et al. 2017)",
        "config": {"steps": c.steps, "meta_batch": c.meta_batch, "shots": c.shots, "alpha": c.alpha, "adam_lr": c.lr,
                   "inner_steps": c.inner_steps, "eval_shots": c.eval_shots, "eval_tasks": c.eval_tasks,
                   "eval_val_points": c.eval_val, "support_draws": c.support_draws, "seed": c.seed,
                   "eval_seed": c.eval_seed, "init": c.init, "torch": torch.__version__},
        "train": {"seconds": round(result.seconds, 1), "final_metrics": result.last_metrics},
        "diverged_above_mse": DIVERGED_MSE,
        **summary,
        "comparison_to_paper": compare,
        "within_25_percent": all(abs(v["relative_difference"]) <= 0.25 for v in compare.values()),
    }  # fmt: skip
    io.write_json(out / "results.json", report)
    plots.curve_figure(out / "mse_vs_steps.png", {f"MAML, {c.eval_shots}-shot, mean of {c.support_draws} draws": curve},
                       "MAML sinusoid benchmark")  # fmt: skip
    total = summary["draws"] * summary["tasks"]
    for k, v in compare.items():
        i = int(k)
        typer.echo(f"{c.eval_shots}-shot MSE after {k:>2} steps: {v['ours']:.3f} ± {v['ci95']:.3f} (paper {v['paper']}); "
                   f"median {summary['median_mse_vs_steps'][i]:.3f}, {summary['diverging_draws'][i]} of {total} draws "
                   f"diverging")  # fmt: skip
    typer.echo(f"wrote {out / 'results.json'}")


def finn_eval_tasks(eval_seed: int, tasks: int, shots: int, val: int, dtype: torch.dtype = torch.float32):
    """The benchmark's held-out tasks: own amplitude and phase, ``shots`` support and ``val`` query points."""
    shape = EpisodeShape(ways=1, shots=shots, queries=1, val=val, meta_tasks=0, goal_tasks=1)
    return eval_batches(eval_seed, tasks, shape, sinusoid.SinusoidSpec(per_task_phase=True), dtype=dtype)


sinusoid_command = typer_command(SinusoidConfig, run_sinusoid, """MALTML's sinusoid experiment (paper section 4.1, Figure 2).

    Trains each method, evaluates it on held-out families with and without the
    meta-update (95% intervals), and writes results.json and fig2a/b/c PNGs.""")
sinusoid_maml_command = typer_command(SinusoidMamlConfig, run_sinusoid_maml, """Finn et al.'s MAML sinusoid benchmark, compared with the reference MSE.

    Amplitude and phase per task; K=10, alpha=0.01, meta-batch 25, 70,000
    iterations; reports 5-shot MSE after 1/5/10 steps against 0.67/0.38/0.35.""")


if __name__ == "__main__":  # `python -m trainer.experiments.sinusoid ...` without the rest of the CLI's imports
    from fewtask_data.cli.common import make_app, run

    _app = make_app("Sinusoid experiments.")
    _app.command("sinusoid")(sinusoid_command)
    _app.command("sinusoid-maml")(sinusoid_maml_command)
    run(_app)
