"""`fewtask-train continual-oml`: OML on incremental sines beside its baselines (Javed &
White 2019, their figure: pretraining ~1.45, SR-NN ~0.86, OML ~0.35, oracle ~0.07 mean
MSE after 10 functions); docs/continual.md. Pretraining and SR-NN train by
`trainer.domains.continual.baselines` (``--pretrain-recipe``) and are scored alike.

Defaults are the paper's: 10 functions, 40 mini-batches of 8 points each, pools of 400
meta-training and 500 evaluation functions, RLN 6 + PLN 2 layers of 300, online step
0.003, Adam 1e-4, second order through the 400 online steps. Training runs in stages
(``--curve``): after each stage every method is evaluated, so a run that cannot afford
the paper's step count still reports where it is on its learning curve
(OUT/progress.json during the run, results.json at its end).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fewtask_data import FewtaskError, io
from fewtask_data.sources.continual_sines import function_pool, problem_batches
from trainer.core.step_sizes import level_lrs
from trainer.domains.continual import baselines
from trainer.domains.continual.oml import OML
from trainer.evaluation import continual as evaluation
from trainer.evaluation import plots, report
from trainer.experiments.continual import ContinualProblems, ContinualTraining, eval_sets, fresh_run, train_to
from trainer.experiments.options import methods_option, option, parse_names, typer_command

EXPERIMENT = "OML on incremental sines and its baselines (Javed & White 2019)"
METHODS = ("oml", "oracle", "pretrain", "scratch", "srnn")
PAIRS = (("oml", "pretrain"), ("oml", "scratch"), ("oracle", "oml"), ("oml", "srnn"), ("srnn", "pretrain"))
PUBLISHED = {"pretrain": 1.45, "srnn": 0.86, "oml": 0.35, "oracle": 0.07}  # read off the OML repository's plot


@dataclass(kw_only=True)
class ContinualOMLConfig(ContinualTraining, ContinualProblems):
    """`fewtask-train continual-oml`'s options."""

    out: Path = option(Path("runs/continual-oml"), "Output folder: one subfolder per method, results.json, figures.")
    methods: str = methods_option(METHODS, "oml,oracle,pretrain,scratch")
    curve: str = option("500,1000,2000", "Meta-training steps at which every method is evaluated (the last is the total).")
    pretrain_steps: int = option(2000, "Regression steps of the pretraining and SR-NN baselines.")
    pretrain_recipe: str = option("ours", "Pretraining and SR-NN data and schedule: ours (fresh points of the functions "
                                  "of --problems random problems, one output, Adam 1e-3) or published (the OML "
                                  "repository's: the training pool in fixed groups of --functions, one group per step "
                                  "and one output head per group, Adam 1e-4 x0.2 after steps 5,000 and 8,000; "
                                  "evaluated with head 0).")
    pretrain_lr: float = option(0.0, "Adam learning rate of the pretraining and SR-NN baselines (0: the recipe's).", low=0.0)
    pretrain_points: int = option(32, "Pretraining: points per function per step.")
    srnn_target: float = option(0.1, "SR-NN: Set-KL's target mean activation of a representation unit (the OML "
                                "repository's 0.1).")
    srnn_weight: float = option(1.0, "SR-NN: weight of the Set-KL penalty beside the MSE (the OML repository's 1).")
    max_seconds: float = option(0.0, "Stop each method's training after this many seconds over the whole --curve (0: no "
                                     "limit); the curve stops there.")  # fmt: skip

    def check(self) -> None:
        super().check()
        baselines.recipe(self.pretrain_recipe)

    def stages(self) -> list[int]:
        try:
            values = [int(v) for v in self.curve.split(",") if v.strip()]
        except ValueError:
            raise FewtaskError(f"--curve must be comma-separated step counts, got {self.curve!r}") from None
        if not values or values != sorted(set(values)) or values[0] < 0:
            raise FewtaskError(f"--curve needs increasing step counts >= 0, got {self.curve!r}")
        return values


def score(params, depth: int, splits: list[int], grid: list[float], sets) -> tuple[torch.Tensor, dict]:
    """Per evaluation problem its mean MSE [P], and how it was scored (the online step and
    layer split chosen on the validation problems, their scores, per-function summary)."""
    problems, test, val, val_test = sets
    lr, split, scores = evaluation.choose(params, val, val_test, depth, grid, splits)
    mse = evaluation.function_mse(params, problems, test, lr, split, depth)
    return evaluation.problem_mse(mse), {"inner_lr": evaluation.lr_label(lr), "split": split, "validation": scores,
                                         "per_function": evaluation.per_function(mse)}  # fmt: skip


def pretrain(c: ContinualOMLConfig, method: str, spec, pool) -> tuple[dict, dict]:
    """Pretraining or SR-NN (the same, plus the sparsity penalty) by --pretrain-recipe;
    returns (the training record, the one-output parameters the evaluation finetunes)."""
    r = baselines.recipe(c.pretrain_recipe)
    if r.grouped:
        heads = baselines.groups(pool, spec)
        batches = lambda start: baselines.grouped_batches(c.seed, pool, spec, c.pretrain_points, start)  # noqa: E731
    else:
        heads, iid = 1, dataclasses.replace(spec, rand_points=c.pretrain_points)
        batches = lambda start: baselines.iid_batches(c.seed, pool, c.problems, iid, start)  # noqa: E731
    model = c.net(spec, outputs=heads)
    weight = c.srnn_weight if method == "srnn" else 0.0
    algo = baselines.IIDRegression(model, name=method, sparsity_weight=weight, sparsity_target=c.srnn_target)
    record, _ = train_to(c, method, model, algo, batches, c.pretrain_steps, c.pretrain_lr or r.lr,
                         lr_milestones=r.milestones, lr_gamma=r.gamma)  # fmt: skip
    record["recipe"] = c.pretrain_recipe
    return record, baselines.head({k: v.detach() for k, v in model.named_parameters()}, model.depth)


def meta_train_in_stages(c: ContinualOMLConfig, method: str, model, pool, sets, stages, spec, grid, progress):
    """OML (or the oracle, on the evaluation pool) trained stage by stage, scored after each;
    --max-seconds budgets the whole curve, not each stage. Returns (mse, record, details, curve)."""
    algo = OML(model, lr=c.inner_lr, first_order=c.first_order, impl=c.impl, name=method, **c.step_size_settings(spec))
    batches = lambda start: problem_batches(c.seed, pool, c.problems, spec, start)  # noqa: E731
    curve, spent = [], 0.0
    for steps in stages:
        started = time.perf_counter()
        record, sizes = train_to(c, method, model, algo, batches, steps, c.lr, c.max_seconds and c.max_seconds - spent)
        spent += time.perf_counter() - started
        params = {k: v.detach() for k, v in model.named_parameters()}
        own = [level_lrs(sizes, "alpha")] if c.learn_step_sizes else grid  # learned: its own online step
        mse, details = score(params, model.depth, [model.split], own, sets)
        point = report.method_summary({report.WITHOUT: {"mse": mse}})[report.WITHOUT]["mse"]
        curve.append({"steps": record["steps"], "mean": point["mean"], "ci95": point["ci95"], "seconds": record["seconds"]})
        progress(method, curve)
        if record["steps"] < steps or (c.max_seconds and spent >= c.max_seconds):  # --max-seconds ran out
            break
    return mse, record, details, curve


def continual_oml(c: ContinualOMLConfig) -> dict:
    c.check()
    methods = parse_names(c.methods, METHODS)
    stages, spec, grid = c.stages(), c.spec(), c.grid()
    torch.set_num_threads(c.threads)
    out = fresh_run(c, methods)
    train_pool, eval_pool = function_pool(c.data_seed, "train", spec), function_pool(c.data_seed, "eval", spec)
    sets = eval_sets(c, spec, eval_pool)
    curves, records, details, learning = {}, {}, {}, {}

    def progress(method: str, curve: list) -> None:  # where a long run is, before results.json exists
        io.write_json(out / "progress.json", {"learning_curves": {**learning, method: curve}})

    for method in methods:
        model = c.net(spec)
        params = {k: v.detach() for k, v in model.named_parameters()}
        if method == "scratch":
            mse, details[method] = score(params, model.depth, [0], grid, sets)
            records[method] = [{"seed": c.seed, "steps": 0}]
        elif method in ("pretrain", "srnn"):  # the same training and the same best-split evaluation
            record, params = pretrain(c, method, spec, train_pool)
            records[method] = [record]
            splits = sorted({0, *range(2, model.depth, 2), model.depth - 1})
            mse, details[method] = score(params, model.depth, splits, grid, sets)
        else:  # the oracle meta-trains on the evaluation pool
            pool = train_pool if method == "oml" else eval_pool
            mse, record, details[method], learning[method] = meta_train_in_stages(c, method, model, pool, sets, stages,
                                                                                  spec, grid, progress)  # fmt: skip
            records[method] = [record]
        curves[method] = {report.WITHOUT: {"mse": mse}}
    extra = {"published": PUBLISHED, "methods": details, "learning_curves": learning}
    results = report.results(EXPERIMENT, c, "evaluation problem", {c.seed: curves}, None, records, PAIRS, extra)
    io.write_json(out / "results.json", results)
    bars = {m: {"mse": r[report.WITHOUT]["mse"], "per_function": details[m]["per_function"]} for m, r in results["methods"].items()}
    plots.function_bars_figure(out / "per_function.png", bars, PUBLISHED, "incremental sines: MSE after one online pass")
    if learning:
        plots.meta_curve_figure(out / "learning_curve.png", learning, {k: v for k, v in PUBLISHED.items() if k in learning})
    return results


def _run(c: ContinualOMLConfig) -> None:
    results = continual_oml(c)
    for m, r in results["methods"].items():
        d = results["extra"]["methods"][m]
        print(f"{m:9s} mean MSE {report.cell(r[report.WITHOUT]['mse'])}  (lr {d['inner_lr']}, split {d['split']})")
    print(f"wrote {c.out / 'results.json'}")


continual_oml_command = typer_command(
    ContinualOMLConfig, _run, "OML on incremental sines beside scratch, pretraining, SR-NN and the oracle (Javed & White 2019)."
)
