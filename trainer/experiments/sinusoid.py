"""`fewtask-train sinusoid`: the paper's section 4.1 experiment end to end (train,
evaluate, plot, one results.json).

Defaults are the paper configuration: MLP 1-40-40-1 (ReLU); alpha=0.001, beta=0.01,
gamma=0.001; Adam eta=0.001; L=5 tasks, K=5 shots, Q=5; 10 families per batch; 2 goal
tasks per family; 70,000 outer steps; MAML's inner alpha=0.001. Every method is scored
by the one protocol (`trainer.evaluation.protocol`), with its own finetuning step sizes
(MALTML's gamma, MAML's alpha; learned ones as learned) and its own meta-update.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import typer

from fewtask_data import EpisodeShape, FamilyBatch, FewtaskError, io
from fewtask_data.sources import sinusoid
from trainer.algorithms import algorithm_class, make_algorithm
from trainer.core.functional import REDUCTIONS
from trainer.domains.regression.sinusoid import eval_batches
from trainer.evaluation import plots, report
from trainer.evaluation.protocol import episode_curves, predictions, step_size_record
from trainer.experiments.options import (
    StabilizerOptions, config_option, methods_option, option, parse_names, parse_seeds, run_option, step_size_option, typer_command,
)  # fmt: skip
from trainer.models import build_model, signature
from trainer.training import checkpoint as ckpt
from trainer.training import family_oracle
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train
from trainer.training.run_folder import RunFolder

# method -> (registered algorithm, inputs carry the true task parameters)
METHODS = {
    "maltml": ("maltml", False),
    "fo-maltml": ("fo-maltml", False),
    "maml": ("maml", False),
    "fomaml": ("fomaml", False),
    "reptile": ("reptile", False),
    "pretrain": ("pretrain", False),
    "oracle": ("pretrain", True),
    "maml-oracle": ("maml", False),  # one MAML per held-out family, trained on that family (training/family_oracle.py)
}
DEFAULT_METHODS = "maltml,maml,oracle,pretrain,maml-oracle"
EXPERIMENT = "MALTML sinusoid families (Devos & Dandi, section 4.1)"


@dataclass(kw_only=True)
class SinusoidConfig(StabilizerOptions):
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
    per_step_step_sizes: bool = run_option("per_step_step_sizes")
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
    config: str = config_option()

    def shape(self, val: int | None = None) -> EpisodeShape:
        """Training episodes, or with ``val`` the evaluation's (more validation points)."""
        return EpisodeShape(1, self.shots, self.queries, self.val if val is None else val, self.tasks, self.goal_tasks)


    def check(self) -> "SinusoidConfig":
        """The settings a run uses (--quick applied, compile decided), or a one-line error."""
        s = self
        if s.quick:
            algorithms = "maltml,maml" if s.algorithms == DEFAULT_METHODS else s.algorithms
            s = replace(s, steps=min(s.steps, 1500), eval_families=min(s.eval_families, 200), algorithms=algorithms)
        parse_names(s.algorithms, METHODS, "algorithm")
        if s.seeds.strip():
            parse_seeds(s.seeds)
        if s.impl not in ("vmap", "loop"):
            raise FewtaskError(f"--impl must be vmap or loop, got {s.impl!r}")
        if s.meta_reduction not in (None, *REDUCTIONS):
            raise FewtaskError(f"--meta-reduction must be sum or mean, got {s.meta_reduction!r}")
        s.shape(), s.shape(s.eval_val)  # shape errors before any work
        return replace(s, compile=s.steps >= 5000 if s.compile is None else s.compile)


def _reduction(s: SinusoidConfig, state: dict | None) -> str:
    """Eq. 2's reduction for a method: --meta-reduction when given; else what its finished
    checkpoint was trained with (mean before the option existed), or sum for a new run."""
    if s.meta_reduction is not None:
        return s.meta_reduction
    return "sum" if state is None else state.get("meta_reduction", "mean")


def _logged_time(folder: Path) -> dict:
    """Training time and last logged loss from a finished run's metrics.jsonl, if any."""
    last = RunFolder(folder).last_logged()
    if not last:
        return {}
    return {"seconds": last.get("elapsed_s"), "final_metrics": {k: v for k, v in last.items() if k not in ("step", "elapsed_s")}}


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
        **s.loop_settings(),
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
                          task_steps=s.task_steps, meta_steps=s.meta_steps, meta_reduction=reduction,
                          learn_step_sizes=s.learn_step_sizes, per_step_step_sizes=s.per_step_step_sizes)  # fmt: skip
    if done:
        params, sizes, seconds, steps = state["model"], state["step_sizes"], state["seconds"], state["step"]
        sizes = algo.init_step_sizes(init) if sizes is None else sizes  # saved before learned sizes: fixed ones
    else:
        if s.eval_only:
            raise FewtaskError(f"no maml-oracle checkpoint in {folder}; train it first (drop --eval-only)")
        params, sizes, seconds = family_oracle.train_family_oracles(
            algo, init, phases, s.oracle_steps, s.oracle_tasks, s.shots, s.queries, s.lr, s.seed,
            compile=s.compile, progress=s.progress,
        )  # fmt: skip
        steps = s.oracle_steps
        family_oracle.save(folder, params, sizes, phases, steps, seconds, reduction)
    summary = {"steps": steps, "seconds": round(seconds, 1), "families": len(phases), "tasks_per_step": s.oracle_tasks,
               "evaluated_from_checkpoint": done}  # fmt: skip
    return algo, params, sizes, summary


def run_seed(s: SinusoidConfig, methods: list[str], spec, held_out: list[FamilyBatch], grid) -> tuple[dict, dict, dict]:
    """Every method for one training seed (``s.seed``, checkpoints in ``s.out``), one after
    another, evaluated on ``held_out``: (curves, training records, Figure 2a/b predictions)."""
    curves, records, figures = {}, {}, {}
    for method in methods:
        if method == "maml-oracle":
            algo, params, sizes, summary = train_maml_oracle(s, held_out)
            curves[method] = episode_curves(algo, params, sizes, {}, held_out, s.finetune_steps, per_family_params=True)
        else:
            algo, params, sizes, summary, oracle = train_method(method, s, spec)
            view = [sinusoid.with_task_info(b) for b in held_out] if oracle else held_out
            curves[method] = episode_curves(algo, params, sizes, {}, view, s.finetune_steps)
        records[method] = {"seed": s.seed, **summary, "meta_reduction": algo.meta_reduction,
                           "step_sizes": step_size_record(algo, sizes)}  # fmt: skip
        if method in ("maltml", "maml"):  # the panels of Figure 2a/b
            figures[method] = predictions(algo, params, sizes, {}, held_out[0], grid, s.finetune_steps)
        summary_now = report.method_summary(curves[method])
        typer.echo(f"{method:>11} seed {s.seed}: MSE after meta-update, 0 steps {report.cell(summary_now[report.WITH]['loss'], 0)}; "
                   f"without, 0 steps {report.cell(summary_now[report.WITHOUT]['loss'], 0)}")  # fmt: skip
    return curves, records, figures


def run_sinusoid(s: SinusoidConfig) -> dict:
    """Train each method per training seed, evaluate it on the same held-out families, and
    write results.json (the one report schema) and Figure 2's panels."""
    s = s.check()
    methods = parse_names(s.algorithms, METHODS, "algorithm")
    seeds = parse_seeds(s.seeds) if s.seeds.strip() else [s.seed]
    torch.set_num_threads(s.threads)
    s = replace(s, out=io.ensure_writable(s.out))
    spec = sinusoid.SinusoidSpec()
    held_out = eval_batches(s.eval_seed, s.eval_families, s.shape(s.eval_val), spec)
    grid = torch.linspace(-5, 5, 200).unsqueeze(-1)
    curves, train_records, figures = {}, {m: [] for m in methods}, {}
    for seed in seeds:  # one seed, and within it one method, at a time: training times stay uncontended
        folder = s.out if len(seeds) == 1 else io.ensure_writable(s.out / f"seed-{seed}")
        curves[seed], records, figures[seed] = run_seed(replace(s, seed=seed, out=folder), methods, spec, held_out, grid)
        for m in methods:
            train_records[m].append(records[m])
    config = {**report.json_safe(s), "seeds": seeds, "shape": s.shape().as_dict(), "torch": torch.__version__}
    results = report.results(EXPERIMENT, config, "held-out family", curves, range(s.finetune_steps + 1), train_records)
    io.write_json(s.out / "results.json", results)
    _figures(s.out, held_out[0], grid, figures, results["methods"])
    if s.learn_step_sizes:  # the first seed's learned values, per level and parameter tensor
        plots.step_size_figure(s.out / "step_sizes.png", {m: r[0]["step_sizes"] for m, r in train_records.items()},
                               f"step sizes after training (seed {seeds[0]})")  # fmt: skip
    for method, res in results["methods"].items():
        typer.echo(f"{method:>11}: MSE after meta-update, 0 steps {report.cell(res[report.WITH]['loss'], 0)}; "
                   f"{s.finetune_steps} steps {report.cell(res[report.WITH]['loss'], s.finetune_steps)}; without, "
                   f"0 steps {report.cell(res[report.WITHOUT]['loss'], 0)}  (ci95 over {'seeds' if len(seeds) > 1 else 'families'})")  # fmt: skip
    typer.echo(f"wrote {s.out / 'results.json'} and figures in {s.out}")
    return results


def _figures(out: Path, family: FamilyBatch, grid, figures: dict[int, dict], methods: dict) -> None:
    """Figure 2a/b (predictions, one curve per seed) and 2c (MSE vs steps, 95% bands)."""
    amp, phase = (float(v) for v in family.goal_info[0, 0])
    truth = (amp * torch.sin(grid - phase)).squeeze(-1).tolist()
    sx, sy = (t[0, 0].squeeze(-1).tolist() for t in family.goal_support())
    seeds = list(figures)
    for tag, method in (("a", "maltml"), ("b", "maml")):
        if method in figures[seeds[0]]:
            preds = {k: [figures[seed][method][k] for seed in seeds] for k in figures[seeds[0]][method]}
            plots.predictions_figure(out / f"fig2{tag}_{method}.png", f"{method.upper()} on a held-out family",
                                     grid.squeeze(-1).tolist(), truth, (sx, sy), preds)  # fmt: skip
    plots.error_figure(out / "fig2c_error.png", methods, "held-out families" + (", 95% band over seeds" if len(seeds) > 1 else ""))


sinusoid_command = typer_command(SinusoidConfig, run_sinusoid, """MALTML's sinusoid experiment (paper section 4.1, Figure 2).

    Trains each method, evaluates it on held-out families with and without the
    meta-update (95% intervals), and writes results.json and fig2a/b/c PNGs.""")
