"""`fewtask-train continual-oml` and `continual`. continual-oml: OML on incremental sines beside its baselines (Javed &
White 2019, their Figure: pretraining ~1.45, SR-NN ~0.86, OML ~0.35, oracle ~0.07 mean
MSE after 10 functions); docs/continual.md.

Defaults are the paper's: 10 functions, 40 mini-batches of 8 points each, pools of 400
meta-training and 500 evaluation functions, RLN 6 + PLN 2 layers of 300, online step
0.003, Adam 1e-4, second order through the 400 online steps. Training runs in stages
(``--curve``): after each stage every method is evaluated, so a run that cannot afford
the paper's step count still reports where it is on its learning curve.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fewtask_data import FewtaskError, io
from fewtask_data.sources.continual_sines import (
    ContinualSpec, family_batches, function_pool, load_family_definitions, problem_batches, sample_problems,
)  # fmt: skip
from trainer.domains.continual.baselines import IIDRegression
from trainer.domains.continual.net import ARCHES, build_net
from trainer.domains.continual.oml import OML, MALTMLContinual
from trainer.evaluation import continual as evaluation
from trainer.evaluation import plots
from trainer.experiments.options import methods_option, option, parse_names, run_option, step_size_option, typer_command
from trainer.training import checkpoint as ckpt
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train

METHODS = ("oml", "oracle", "pretrain", "scratch")
PUBLISHED = {"pretrain": 1.45, "sr-nn": 0.86, "oml": 0.35, "oracle": 0.07}  # read off the OML repository's plot
EVAL_SEED, VAL_SEED, TEST_SEED = 7_919_001, 7_919_002, 7_919_003  # streams training never uses


@dataclass(kw_only=True)
class ContinualProblems:
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
class ContinualTraining:
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
        if not self.inner_lr > 0:
            raise FewtaskError(f"--inner-lr must be > 0, got {self.inner_lr}; the paper uses 0.003")
        if self.problems < 1 or self.eval_problems < 2 or self.val_problems < 1:
            raise FewtaskError("need --problems >= 1, --eval-problems >= 2 and --val-problems >= 1")
        if self.threads < 1:
            raise FewtaskError(f"--threads must be >= 1, got {self.threads}")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise FewtaskError(f"--device {self.device!r} is not a torch device; use cpu or cuda") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FewtaskError("--device cuda but no CUDA device is available; use --device cpu")

    def net(self, spec: ContinualSpec):
        seed_everything(self.seed)
        return build_net(spec.in_features, self.arch, self.width or None).to(self.device)

    def on_device(self, make_batches):
        """``make_batches(start)`` with every batch moved to --device (sampled on the CPU)."""
        return lambda start: (b.to(self.device) for b in make_batches(start))


@dataclass(kw_only=True)
class ContinualOMLConfig(ContinualTraining, ContinualProblems):
    """`fewtask-train continual-oml`'s options."""

    out: Path = option(Path("runs/continual-oml"), "Output folder: one subfolder per method, results.json, figures.")
    methods: str = methods_option(METHODS)
    curve: str = option("500,1000,2000", "Meta-training steps at which every method is evaluated (the last is the total).")
    pretrain_steps: int = option(2000, "i.i.d. regression steps of the pretraining baseline.")
    pretrain_lr: float = option(1e-3, "Adam learning rate of the pretraining baseline.")
    pretrain_points: int = option(32, "Pretraining: i.i.d. points per function of each problem per step.")
    max_seconds: float = option(0.0, "Stop each method's training after this many seconds over the whole --curve (0: no "
                                     "limit); the curve stops there.")  # fmt: skip

    def stages(self) -> list[int]:
        try:
            values = [int(v) for v in self.curve.split(",") if v.strip()]
        except ValueError:
            raise FewtaskError(f"--curve must be comma-separated step counts, got {self.curve!r}") from None
        if not values or values != sorted(set(values)) or values[0] < 0:
            raise FewtaskError(f"--curve needs increasing step counts >= 0, got {self.curve!r}")
        return values




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
             max_seconds: float | None = None) -> dict:  # fmt: skip
    """Train (or resume) ``method`` to ``steps``, for at most ``max_seconds`` (default
    ``c.max_seconds``; 0: no limit); returns the training summary."""
    config = TrainConfig(steps=steps, out=c.out / method, lr=lr, seed=c.seed, log_every=10, checkpoint_every=50,
                         resume=True, progress=c.progress, max_seconds=c.max_seconds if max_seconds is None else max_seconds)  # fmt: skip
    result = train(model, algo, c.on_device(batches), config)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(result.params[k])
    return {"steps": result.step, "seconds": round(result.seconds, 1), "final_metrics": result.last_metrics}


def evaluate_method(params, depth: int, splits: list[int], grid: list[float], sets) -> dict:
    problems, test, val, val_test = sets
    lr, split, scores = evaluation.choose(params, val, val_test, depth, grid, splits)
    mse = evaluation.function_mse(params, problems, test, lr, split, depth)
    return {"inner_lr": lr, "split": split, "validation": scores, **evaluation.summarize(mse)}, mse


def continual_oml(c: ContinualOMLConfig) -> dict:
    c.check()
    c.spec()
    methods = parse_names(c.methods, METHODS)
    stages, spec, grid = c.stages(), c.spec(), c.grid()
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    if not c.resume:
        for m in methods:
            (out / m / ckpt.CHECKPOINT_NAME).unlink(missing_ok=True)
    train_pool, eval_pool = function_pool(c.data_seed, "train", spec), function_pool(c.data_seed, "eval", spec)
    sets = eval_sets(c, spec, eval_pool)
    results: dict = {"config": {k: str(v) for k, v in vars(c).items()}, "published": PUBLISHED, "methods": {}}
    curves: dict[str, list] = {}
    mses: dict[str, torch.Tensor] = {}
    for method in methods:
        model = c.net(spec)
        depth, split = model.depth, model.split
        if method == "scratch":
            params = {k: v.detach() for k, v in model.named_parameters()}
            results["methods"][method], mses[method] = evaluate_method(params, depth, [0], grid, sets)
            io.write_json(out / "results.json", {**results, "curves": curves})
            continue
        if method == "pretrain":
            algo = IIDRegression(model)
            iid = dataclasses.replace(spec, rand_points=c.pretrain_points)
            batches = lambda start: problem_batches(c.seed, train_pool, c.problems, iid, start)  # noqa: E731
            summary = train_to(c, method, model, algo, batches, c.pretrain_steps, c.pretrain_lr)
            params = {k: v.detach() for k, v in model.named_parameters()}
            splits = sorted({0, *range(2, depth, 2), depth - 1})
            results["methods"][method], mses[method] = evaluate_method(params, depth, splits, grid, sets)
            results["methods"][method]["training"] = summary
            io.write_json(out / "results.json", {**results, "curves": curves})
            continue
        pool = train_pool if method == "oml" else eval_pool  # the oracle meta-trains on the evaluation pool
        algo = OML(model, lr=c.inner_lr, first_order=c.first_order, impl=c.impl, name=method)
        batches = lambda start, pool=pool: problem_batches(c.seed, pool, c.problems, spec, start)  # noqa: E731
        curves[method] = []
        spent = 0.0  # --max-seconds budgets the whole curve, not each stage
        for steps in stages:
            started = time.perf_counter()
            summary = train_to(c, method, model, algo, batches, steps, c.lr, c.max_seconds and c.max_seconds - spent)
            spent += time.perf_counter() - started
            params = {k: v.detach() for k, v in model.named_parameters()}
            result, mses[method] = evaluate_method(params, depth, [split], grid, sets)
            curves[method].append({"steps": summary["steps"], "mean": result["mean"], "ci95": result["ci95"],
                                   "seconds": summary["seconds"]})  # fmt: skip
            results["methods"][method] = {**result, "training": summary}
            io.write_json(out / "results.json", {**results, "curves": curves})
            if summary["steps"] < steps or (c.max_seconds and spent >= c.max_seconds):  # --max-seconds ran out
                break
    results["curves"] = curves
    if "oml" in mses and "pretrain" in mses:
        results["oml_minus_pretrain"] = evaluation.paired_gain(mses["oml"], mses["pretrain"])
    io.write_json(out / "results.json", results)
    plots.function_bars_figure(out / "per_function.png", results["methods"], PUBLISHED, "incremental sines: MSE after one online pass")
    if curves:
        plots.meta_curve_figure(out / "learning_curve.png", curves, {k: v for k, v in PUBLISHED.items() if k in curves})
    return results


def _run(c: ContinualOMLConfig) -> None:
    results = continual_oml(c)
    for m, r in results["methods"].items():
        print(f"{m:9s} mean MSE {r['mean']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  (lr {r['inner_lr']}, split {r['split']})")
    print(f"wrote {c.out / 'results.json'}")


continual_oml_command = typer_command(
    ContinualOMLConfig, _run, "OML on incremental sines beside scratch, pretraining and the oracle (Javed & White 2019)."
)


# ---------------------------------------------------------------- MALTML vs OML across frequency families

FAMILY_METHODS = ("maltml", "oml")


@dataclass(kw_only=True)
class ContinualFamiliesConfig(ContinualTraining):
    """`fewtask-train continual`'s options."""

    families: Path = option(..., "Family definitions from `fewtask-data build continual-sine-families` (folder or manifest.json).")
    out: Path = option(Path("runs/continual"), "Output folder: one subfolder per method, results.json, figures.")
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


def family_evaluation(c: ContinualFamiliesConfig, algo: MALTMLContinual, params, spec, pool, freqs, grid) -> dict:
    """Per protocol (without / with meta-finetuning on the family's L problems): MSE
    [families * eval problems, F]; the online step is chosen per protocol on the families'
    validation problems."""
    per_family = []
    for j, w in enumerate(freqs):
        sets = eval_sets(c, spec, pool, w, offset=1_000 * (j + 1))
        gen = torch.Generator().manual_seed(EVAL_SEED - 1 - j)
        meta = sample_problems(gen, pool, c.meta_problems, spec, [w] * c.meta_problems).to(c.device) if c.meta_problems else None
        with torch.no_grad():
            tuned = algo.adapted(params, meta.tensors(), outer=False) if meta is not None else params
        per_family.append({"without_meta_finetuning": (params, sets), "with_meta_finetuning": (tuned, sets)})
    out = {}
    for protocol in ("without_meta_finetuning", "with_meta_finetuning"):
        runs = [f[protocol] for f in per_family]

        def score(lr: float) -> float:
            return float(torch.stack([evaluation.function_mse(t, s[2], s[3], lr, algo.split, algo.depth).mean() for t, s in runs]).mean())

        scores = {lr: score(lr) for lr in grid}
        lr = min(scores, key=scores.get)
        mse = torch.cat([evaluation.function_mse(t, s[0], s[1], lr, algo.split, algo.depth) for t, s in runs])
        out[protocol] = (lr, scores, mse)
    return out


def continual_families(c: ContinualFamiliesConfig) -> dict:
    c.check()
    methods = parse_names(c.methods, FAMILY_METHODS)
    defs = load_family_definitions(c.families)
    spec, grid = defs.spec, c.grid()
    if c.steps < 0 or c.families_per_step < 1 or c.meta_problems < 0 or c.goal_problems < 1:
        raise FewtaskError("need --steps >= 0, --families-per-step >= 1, --meta-problems >= 0 and --goal-problems >= 1")
    torch.set_num_threads(c.threads)
    out = io.ensure_writable(c.out)
    if not c.resume:
        for m in methods:
            (out / m / ckpt.CHECKPOINT_NAME).unlink(missing_ok=True)
    train_pool, test_pool = defs.pools["train"], defs.pools["test"]
    train_freqs, test_freqs = defs.frequencies["train"], defs.frequencies["test"]
    results: dict = {"config": {k: str(v) for k, v in vars(c).items()}, "family_build_id": defs.build_id,
                     "train_frequencies": train_freqs, "test_frequencies": test_freqs, "methods": {}}  # fmt: skip
    mses: dict[str, dict[str, torch.Tensor]] = {}
    for method in methods:
        model = c.net(spec)
        maltml = MALTMLContinual(model, lr=c.inner_lr, beta=c.beta, meta_steps=c.meta_steps, order=c.order, impl=c.impl,
                                 name=method, meta_reduction=c.meta_reduction)  # fmt: skip
        if method == "maltml":
            algo = maltml
            batches = lambda start: family_batches(c.seed, train_pool, train_freqs, c.families_per_step, c.meta_problems,  # noqa: E731
                                                   c.goal_problems, spec, start)  # fmt: skip
        else:  # OML on problems of the training families (as many problems per step as MALTML's goal problems)
            algo = OML(model, lr=c.inner_lr, first_order=c.first_order, impl=c.impl, name=method)
            batches = lambda start: problem_batches(c.seed, train_pool, c.problems, spec, start, train_freqs)  # noqa: E731
        summary = train_to(c, method, model, algo, batches, c.steps, c.lr)
        params = {k: v.detach() for k, v in model.named_parameters()}
        evaluated = family_evaluation(c, maltml, params, spec, test_pool, test_freqs, grid)
        mses[method] = {p: e[2] for p, e in evaluated.items()}
        entry: dict = {"training": summary}
        for protocol, (lr, scores, mse) in evaluated.items():
            entry[protocol] = {"inner_lr": lr, "validation": {str(k): v for k, v in scores.items()}, **evaluation.summarize(mse)}
        entry["meta_finetuning_gain"] = evaluation.paired_gain(mses[method]["with_meta_finetuning"], mses[method]["without_meta_finetuning"])
        results["methods"][method] = entry
        io.write_json(out / "results.json", results)
    if set(mses) == set(FAMILY_METHODS):
        results["maltml_minus_oml"] = {p: evaluation.paired_gain(mses["maltml"][p], mses["oml"][p]) for p in mses["oml"]}
    io.write_json(out / "results.json", results)
    bars = {f"{m} ({'with' if p.startswith('with_') else 'without'})": r[p] for m, r in results["methods"].items()
            for p in ("without_meta_finetuning", "with_meta_finetuning")}  # fmt: skip
    plots.function_bars_figure(out / "per_function.png", bars, {}, "held-out frequency families")
    return results


def _run_families(c: ContinualFamiliesConfig) -> None:
    results = continual_families(c)
    for m, r in results["methods"].items():
        for p in ("without_meta_finetuning", "with_meta_finetuning"):
            e = r[p]
            print(f"{m:7s} {p:24s} mean MSE {e['mean']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]  (lr {e['inner_lr']})")
    for p, g in results.get("maltml_minus_oml", {}).items():
        print(f"maltml - oml, {p}: {g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]")
    print(f"wrote {c.out / 'results.json'}")


continual_command = typer_command(
    ContinualFamiliesConfig, _run_families,
    "MALTML (OML as the inner meta-objective) vs OML across held-out frequency families of incremental sines.",
)
