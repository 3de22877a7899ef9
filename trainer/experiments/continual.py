"""`fewtask-train continual`: MALTML (OML as the inner meta-objective) against OML across
held-out frequency families of incremental sines (paper section 4.2; docs/continual.md).

A family is a frequency w of the sines (`fewtask-data build continual-sine-families`);
MALTML meta-updates on L problems of the family (V_beta on the sum of their OML losses,
Eq. 2) before the goal problem. Both methods are scored per held-out evaluation problem
(its mean MSE over the F functions after one online pass) with and without that
meta-update, in the one results schema. `ContinualProblems` and `ContinualTraining` hold
the options shared with `continual-oml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fewtask_data import FewtaskError, io
from fewtask_data.sources.continual_sines import (
    ContinualSpec, family_batches, load_family_definitions, problem_batches, sample_problems,
)  # fmt: skip
from trainer.core.step_sizes import level_lrs, mean_step_sizes, step_size_schedules
from trainer.domains.continual.net import ARCHES, build_net
from trainer.domains.continual.oml import OML, MALTMLContinual
from trainer.evaluation import continual as evaluation
from trainer.evaluation import plots, report
from trainer.experiments.options import (
    Config, config_option, methods_option, option, parse_names, run_option, step_size_option, typer_command,
)  # fmt: skip
from trainer.training import checkpoint as ckpt
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train

EXPERIMENT = "MALTML vs OML on held-out frequency families of incremental sines (Devos & Dandi, section 4.2)"
FAMILY_METHODS = ("maltml", "oml")
EVAL_SEED, VAL_SEED, TEST_SEED = 7_919_001, 7_919_002, 7_919_003  # streams training never uses


@dataclass(kw_only=True)
class ContinualProblems(Config):
    """The incremental-sine problems of `continual-oml` (`continual` reads them from its family file)."""

    functions: int = option(10, "Functions per continual problem (F), learned one after the other.")
    steps_per_function: int = option(40, "Online mini-batches per function (S).")
    batch: int = option(8, "Points per online mini-batch (b).")
    rand_points: int = option(8, "Per function: fresh points in the meta-loss's random batch.")
    train_pool: int = option(400, "Meta-training function pool size.")
    eval_pool: int = option(500, "Evaluation function pool size (disjoint from the training pool).")
    data_seed: int = option(0, "Seed of the function pools.")

    def spec(self) -> ContinualSpec:
        return ContinualSpec(self.functions, self.steps_per_function, self.batch, self.rand_points,
                             train_pool=self.train_pool, eval_pool=self.eval_pool)  # fmt: skip


@dataclass(kw_only=True)
class ContinualTraining(Config):
    """The network, OML's settings and the evaluation: shared by both continual commands."""

    arch: str = option("paper", f"Network: {', '.join(f'{k} (RLN {v[0]} + PLN {v[1]} layers of {v[2]})' for k, v in ARCHES.items())}.")
    width: int = option(0, "Override the architecture's width (0: keep it).")
    inner_lr: float = option(0.003, "Online (inner) SGD step size during meta-training.")
    first_order: bool = option(False, "First-order OML: no derivative through the online steps.")
    lr: float = run_option("lr", 1e-4)
    problems: int = option(1, "Continual problems per outer step (meta-batch).")
    eval_problems: int = option(50, "Evaluation trajectories (per held-out family for `continual`).")
    val_problems: int = option(5, "Validation trajectories that choose the online step (and the pretraining split).")
    test_points: int = option(100, "Fresh points per function for the evaluation MSE.")
    lr_grid: str = option(",".join(map(str, evaluation.LR_GRID)), "Online step sizes tried on the validation problems.")
    learn_step_sizes: bool = run_option("learn_step_sizes", help="Learn the online step per PLN tensor (OML: alpha; "
                                        "MALTML: alpha, beta per tensor, gamma), starting at --inner-lr and --beta; each "
                                        "method is then evaluated with its learned online step instead of --lr-grid.")
    per_step_step_sizes: bool = run_option("per_step_step_sizes", help="With --learn-step-sizes (needed): one learned "
                                           "size per (level, step, tensor), MAML++'s per-step sizes; an online level's "
                                           "step s is the trajectory's s-th mini-batch (F*S steps), MALTML's beta one "
                                           "per meta step. Evaluation takes step s's size at step s.")  # fmt: skip
    impl: str = run_option("impl")
    seed: int = run_option("seed")
    resume: bool = run_option("resume")
    threads: int = run_option("threads")
    device: str = option("cpu", "Device to train and evaluate on (cpu, cuda, cuda:1, ...).")
    progress: bool = run_option("progress")

    def grid(self) -> list[float]:
        try:
            values = [float(v) for v in self.lr_grid.split(",") if v.strip()]
        except ValueError:
            raise FewtaskError(f"--lr-grid must be comma-separated numbers, got {self.lr_grid!r}") from None
        if not values or any(not v > 0 for v in values):
            raise FewtaskError(f"--lr-grid needs step sizes > 0, got {self.lr_grid!r}")
        return values

    def check(self) -> None:
        self.grid()
        if self.arch not in ARCHES:
            raise FewtaskError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHES)}")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise FewtaskError(f"--device {self.device!r} is not a torch device; use cpu or cuda") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FewtaskError("--device cuda but no CUDA device is available; use --device cpu")

    def step_size_settings(self, spec: ContinualSpec) -> dict:
        """The learned-step-size settings of OML and MALTML-continual (per step: the trajectory's F*S steps)."""
        return {"learn_step_sizes": self.learn_step_sizes, "per_step_step_sizes": self.per_step_step_sizes,
                "online_steps": spec.steps}  # fmt: skip

    def net(self, spec: ContinualSpec, outputs: int = 1):
        seed_everything(self.seed)
        return build_net(spec.in_features, self.arch, self.width or None, outputs).to(self.device)

    def on_device(self, make_batches):
        """``make_batches(start)`` with every batch moved to --device (sampled on the CPU)."""
        return lambda start: (b.to(self.device) for b in make_batches(start))


def eval_sets(c: ContinualTraining, spec: ContinualSpec, pool: torch.Tensor, frequency: float | None = None, offset: int = 0):
    """(evaluation problems, their test points, validation problems, theirs), fixed by the
    seeds (``offset``: another family's); ``frequency``: a family's w (default 1)."""

    def problems(seed: int, count: int):
        freq = None if frequency is None else [frequency] * count
        batch = sample_problems(torch.Generator().manual_seed(seed + offset), pool, count, spec, freq)
        x, y = evaluation.test_points(batch, spec, c.test_points, seed + offset + TEST_SEED)
        return batch.to(c.device), (x.to(c.device), y.to(c.device))

    return (*problems(EVAL_SEED, c.eval_problems), *problems(VAL_SEED, c.val_problems))


def train_to(c: ContinualTraining, method: str, model, algo, batches, steps: int, lr: float,
             max_seconds: float | None = None, **schedule) -> tuple[dict, dict]:  # fmt: skip
    """Train (or resume) ``method`` to ``steps``, for at most ``max_seconds`` (default
    ``c.max_seconds``; 0: no limit); ``schedule``: TrainConfig's learning-rate schedule
    fields. Returns the training summary and the (log) step sizes."""
    config = TrainConfig(steps=steps, out=c.out / method, lr=lr, seed=c.seed, log_every=10, checkpoint_every=50,
                         resume=True, progress=c.progress, max_seconds=c.max_seconds if max_seconds is None else max_seconds,
                         **schedule)  # fmt: skip
    result = train(model, algo, c.on_device(batches), config)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(result.params[k])
    summary = {"seed": c.seed, "steps": result.step, "seconds": round(result.seconds, 1), "final_metrics": result.last_metrics}
    if result.step_sizes:
        summary["step_sizes"] = mean_step_sizes(result.step_sizes)
        if c.per_step_step_sizes:  # the whole schedule: {level: {tensor: [size at step 0, 1, ...]}}
            summary["step_size_schedules"] = step_size_schedules(result.step_sizes)
    return summary, result.step_sizes


def fresh_run(c, methods: list[str]) -> Path:
    """The writable output folder; without --resume, earlier checkpoints of ``methods`` are dropped."""
    out = io.ensure_writable(c.out)
    if not c.resume:
        for m in methods:
            (out / m / ckpt.CHECKPOINT_NAME).unlink(missing_ok=True)
    return out


@dataclass(kw_only=True)
class ContinualFamiliesConfig(ContinualTraining):
    """`fewtask-train continual`'s options."""

    families: str = option("", "Family definitions from `fewtask-data build continual-sine-families` (folder or "
                               "manifest.json); required, here or in --config.")  # fmt: skip
    out: Path = option(Path("runs/continual"), "Output folder: one subfolder per method, results.json, figures.")
    config: str = config_option()
    methods: str = methods_option(FAMILY_METHODS)
    steps: int = run_option("steps", 300)
    families_per_step: int = option(1, "MALTML: families per outer step (B).")
    meta_problems: int = option(2, "MALTML: continual problems of the family it meta-finetunes on (L); also the evaluation's.", "--meta-problems", "-L")
    goal_problems: int = option(1, "MALTML: goal problems per family and step (C).")
    beta: float = step_size_option("beta", 0.003, "meta-finetuning: V_beta over the L problems' OML losses")
    meta_steps: int = run_option("meta_steps", help="Meta-finetuning steps m.")
    order: int = run_option("order", help="MALTML derivative order: 3 exact, 2 first-order online steps inside V_beta, 1 fully first order.")
    meta_reduction: str = run_option("meta_reduction", help="Eq. 2 over the L problems' OML losses: sum (the paper) or mean.")
    max_seconds: float = option(0.0, "Stop each method's training after this many seconds (0: no limit).")


def family_evaluation(c: ContinualFamiliesConfig, algo: MALTMLContinual, params, spec, pool, freqs, grid,
                      meta_sizes: dict | None = None) -> dict:  # fmt: skip
    """Per protocol (without / with the meta-update on the family's L problems): (the online
    step chosen on the families' validation problems among ``grid``, every candidate's score,
    MSE [families * eval problems, F]). ``meta_sizes``: learned sizes of the meta-update."""
    per_family = []
    for j, w in enumerate(freqs):
        sets = eval_sets(c, spec, pool, w, offset=1_000 * (j + 1))
        gen = torch.Generator().manual_seed(EVAL_SEED - 1 - j)
        meta = sample_problems(gen, pool, c.meta_problems, spec, [w] * c.meta_problems).to(c.device) if c.meta_problems else None
        with torch.no_grad():
            tuned = algo.adapted(params, meta.tensors(), outer=False, sizes=meta_sizes) if meta is not None else params
        per_family.append({report.WITHOUT: (params, sets), report.WITH: (tuned, sets)})
    out = {}
    for protocol in report.PROTOCOLS:
        runs = [f[protocol] for f in per_family]

        def score(lr: float) -> float:
            return float(torch.stack([evaluation.function_mse(t, s[2], s[3], lr, algo.split, algo.depth).mean() for t, s in runs]).mean())

        scores = {i: score(lr) for i, lr in enumerate(grid)}
        lr = grid[min(scores, key=scores.get)]
        scores = {evaluation.lr_label(grid[i]): v for i, v in scores.items()}
        mse = torch.cat([evaluation.function_mse(t, s[0], s[1], lr, algo.split, algo.depth) for t, s in runs])
        out[protocol] = (lr, scores, mse)
    return out


def family_method(c: ContinualFamiliesConfig, method: str, defs, grid) -> tuple[dict, dict, dict]:
    """Train one method and score it on the held-out families: (curves, training record, extra)."""
    spec = defs.spec
    train_pool, train_freqs = defs.pools["train"], defs.frequencies["train"]
    model = c.net(spec)
    learned = c.step_size_settings(spec) if method == "maltml" else {}
    maltml = MALTMLContinual(model, lr=c.inner_lr, beta=c.beta, meta_steps=c.meta_steps, order=c.order, impl=c.impl,
                             name=method, meta_reduction=c.meta_reduction, **learned)  # fmt: skip
    if method == "maltml":
        algo = maltml
        batches = lambda start: family_batches(c.seed, train_pool, train_freqs, c.families_per_step, c.meta_problems,  # noqa: E731
                                               c.goal_problems, spec, start)  # fmt: skip
    else:  # OML on problems of the training families (as many problems per step as MALTML's goal problems)
        algo = OML(model, lr=c.inner_lr, first_order=c.first_order, impl=c.impl, name=method, **c.step_size_settings(spec))
        batches = lambda start: problem_batches(c.seed, train_pool, c.problems, spec, start, train_freqs)  # noqa: E731
    record, sizes = train_to(c, method, model, algo, batches, c.steps, c.lr)
    params = {k: v.detach() for k, v in model.named_parameters()}
    if c.learn_step_sizes:  # each method's own learned online step: MALTML's gamma, OML's alpha
        grid = [level_lrs(sizes, "gamma" if method == "maltml" else "alpha")]
    meta_sizes = sizes if method == "maltml" and c.learn_step_sizes else None
    evaluated = family_evaluation(c, maltml, params, spec, defs.pools["test"], defs.frequencies["test"], grid, meta_sizes)
    curves = {p: {"mse": evaluation.problem_mse(e[2])} for p, e in evaluated.items()}
    extra = {p: {"inner_lr": evaluation.lr_label(lr), "validation": {str(k): v for k, v in scores.items()},
                 "per_function": evaluation.per_function(mse)} for p, (lr, scores, mse) in evaluated.items()}  # fmt: skip
    return curves, record, extra


def continual_families(c: ContinualFamiliesConfig) -> dict:
    c.check()
    methods = parse_names(c.methods, FAMILY_METHODS)
    if not c.families:
        raise FewtaskError("--families is required: a folder from `fewtask-data build continual-sine-families` "
                           "(on the command line or in --config)")  # fmt: skip
    defs = load_family_definitions(c.families)
    grid = c.grid()
    torch.set_num_threads(c.threads)
    out = fresh_run(c, methods)
    curves, records, per_method = {}, {}, {}
    for method in methods:
        curves[method], record, per_method[method] = family_method(c, method, defs, grid)
        records[method] = [record]
        report.save_curves(io.ensure_writable(out / method / f"seed-{c.seed}"), curves[method])  # for `combine`
    # what fixes the scored problems and the meta-update's data: `combine` pairs runs only where these agree
    evaluation = {"family_build_id": defs.build_id, "eval_problems": c.eval_problems, "test_points": c.test_points,
                  "meta_problems": c.meta_problems}  # fmt: skip
    extra = {"family_build_id": defs.build_id, "train_frequencies": defs.frequencies["train"],
             "test_frequencies": defs.frequencies["test"], "methods": per_method, "evaluation": evaluation}  # fmt: skip
    results = report.results(EXPERIMENT, c, "held-out evaluation problem", {c.seed: curves}, None, records, extra=extra)
    io.write_json(out / "results.json", results)
    bars = {f"{m} ({'with' if p == report.WITH else 'without'})": {"mse": results["methods"][m][p]["mse"],
                                                                   "per_function": per_method[m][p]["per_function"]}
            for m in methods for p in report.PROTOCOLS}  # fmt: skip
    plots.function_bars_figure(out / "per_function.png", bars, {}, "held-out frequency families")
    return results


def _run_families(c: ContinualFamiliesConfig) -> None:
    results = continual_families(c)
    for m, r in results["methods"].items():
        for p in report.PROTOCOLS:
            lr = results["extra"]["methods"][m][p]["inner_lr"]
            print(f"{m:7s} {p:20s} mean MSE {report.cell(r[p]['mse'])}  (lr {lr})")
    for p, g in results["comparisons"].get("maltml_minus_oml", {}).items():
        print(f"maltml - oml, {p}: {report.cell(g['mse'])}")
    print(f"wrote {c.out / 'results.json'}")


continual_command = typer_command(
    ContinualFamiliesConfig, _run_families,
    "MALTML (OML as the inner meta-objective) vs OML across held-out frequency families of incremental sines.",
)
