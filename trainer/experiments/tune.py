"""`fewtask-train tune EXPERIMENT`: hierarchical hyperparameter search with Optuna.

    fewtask-train tune image --method maltml,maml,pretrain --trials 8 --steps 300 --out runs/tune-demo
    fewtask-train tune sinusoid --method maltml,maml --trials 20 --steps 2000 --out runs/tune-sin
    fewtask-train tune navigation --method maltml,maml --trials 8 --steps 30 --out runs/tune-nav
    fewtask-train tune continual --families data/csf --method maltml,oml --trials 8 --steps 100 --out runs/tune-cont

Per method, the stages of `tune_space.STAGES` run in order (outer optimisation, then step
sizes, then steps per level and stabilizers), each an Optuna study of ``--trials`` trials
(the same budget for every method) with the earlier stages' best values fixed. Trials
are scored on validation families (`tune_targets`); TPE samples them (seeded) and a median
pruner stops a trial whose intermediate validation score trails the others'. Everything
lives in OUT: the studies in OUT/study.db (SQLite; a killed search resumes where it stopped,
finished trials are never rerun), each trial's run in OUT/<method>/<stage>-<trial>, and per
method OUT/<method>/best.json (what the training command's `--config` takes), plus tune.json,
report.md and the PNGs of `tune_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import typer

from fewtask_data import FewtaskError, io
from trainer.experiments.options import Config, option, parse_names, parse_seeds, read_config_file, typer_command
from trainer.experiments.tune_report import write_report
from trainer.experiments.tune_space import STAGES, distribution, suggest
from trainer.experiments.tune_targets import (
    ContinualTarget, ImageTarget, NavigationTarget, SinusoidTarget, validation_families,
)  # fmt: skip

# The methods each experiment tunes (navigation's oracle sees the goal: a reference, not a method to tune).
METHODS = {
    "image": ("maltml", "fo-maltml", "maml", "fomaml", "anil", "boil", "reptile", "pretrain"),
    "sinusoid": ("maltml", "fo-maltml", "maml", "fomaml", "reptile", "pretrain"),
    "navigation": ("maltml", "fo-maltml", "maml", "pretrain"),
    "continual": ("maltml", "oml"),
}
DB_NAME = "study.db"


@dataclass(kw_only=True)
class TuneCommon(Config):
    """The options of every `tune` experiment."""

    method: str = option("maltml", "Comma-separated methods to tune, one after another, each with the same budget.")
    out: Path = option(Path("runs/tune"), "Run folder: study.db, one folder per method with best.json, report.md, PNGs.")
    stages: str = option(",".join(STAGES), f"Comma-separated stages, in order, from: {', '.join(STAGES)}.")
    trials: int = option(8, "Trials per stage and method (finished and pruned ones count; a resumed search runs the rest).")
    steps: int = option(200, "Outer training steps per trial.", low=1)
    evals: int = option(4, "Validation scores per trial (the pruner's intermediate values).")
    seed: int = option(0, "Seed of the TPE sampler and of every trial's training.")
    train_seeds: str = option("", "Comma-separated training seeds: each trial trains once per seed and scores their "
                                  "mean (the pruner sees the first seed's scores); empty: one run, with --seed.")
    pruner: str = option("median", "median (Optuna's MedianPruner after 3 finished trials) or none.")
    config: str = option("", "JSON file of the training command's option values: the base every trial starts from.")
    kind: ClassVar[str]  # the experiment: its methods (METHODS) and search spaces
    own_config_file: ClassVar[bool] = False  # --config holds the training command's options (the trials' base)

    def check(self) -> list[str]:
        """The methods to tune; a one-line error for a bad stage, pruner or method of this experiment."""
        parse_names(self.stages, STAGES, "stage")
        training_seeds(self)
        if self.pruner not in ("median", "none"):
            raise FewtaskError(f"--pruner must be median or none, got {self.pruner!r}")
        return parse_names(self.method, METHODS[self.kind], f"{self.kind} method")


@dataclass(kw_only=True)
class TuneGoalSteps(TuneCommon):
    """The experiments scored after goal finetuning steps (every one but continual's online pass)."""

    score_steps: int = option(1, "Goal finetuning steps before a trial's validation score.")


@dataclass(kw_only=True)
class TuneImageConfig(TuneGoalSteps):
    """`tune image`: `fit` on image families scored on validation-split episodes."""

    kind: ClassVar[str] = "image"
    data: str = option("", "Built dataset with a val split (default: the demo's embedded glyphs, built into OUT/data).")
    val_episodes: int = option(100, "Fixed validation-split episodes every trial is scored on (OUT/val.h5).")
    tiny: bool = option(False, "The embedded glyphs at test size (5 scripts x 6 characters x 6 drawers, 3-way, "
                               "4 filters): a smoke test in seconds.")  # fmt: skip


@dataclass(kw_only=True)
class TuneSinusoidConfig(TuneGoalSteps):
    """`tune sinusoid`: the sinusoid experiment's training scored on validation families."""

    kind: ClassVar[str] = "sinusoid"
    val_families: int = option(200, "Held-out validation families every trial is scored on.")
    val_seed: int = option(1000, "Seed of the validation families (the test families use the sinusoid --eval-seed).")


@dataclass(kw_only=True)
class TuneNavigationConfig(TuneGoalSteps):
    """`tune navigation`: `navigation`'s training (iterations) scored on the val crops."""

    kind: ClassVar[str] = "navigation"
    families: str = option("", "Crop families with a val split (fewtask-data build navigation-families); empty: "
                               "navigation's default families, built into OUT/families.")  # fmt: skip
    val_families: int = option(50, "Validation crops every trial is scored on: the first N of the val split.")
    val_seed: int = option(1000, "Seed of the validation crops' goals (navigation's test goals use --eval-seed).")


@dataclass(kw_only=True)
class TuneContinualConfig(TuneCommon):
    """`tune continual`: `continual`'s training (outer steps) scored on validation frequency families."""

    kind: ClassVar[str] = "continual"
    families: Path = option(..., "Family definitions from `fewtask-data build continual-sine-families`.")
    val_families: int = option(5, "Validation families every trial is scored on: frequencies drawn with --val-seed in "
                                   "the training families' span, over a fresh function pool (never the test families).")
    val_seed: int = option(1000, "Seed of the validation families and their function pool (not the build's --seed).")


def image_target(cfg: TuneImageConfig, out: Path) -> ImageTarget:
    """The demo's settings (or the tiny ones), the --config file's on top, data and val.h5 in OUT."""
    from trainer.experiments.demo import DemoConfig, build_data, write_eval_episodes
    from trainer.experiments.fit import FitConfig

    tiny = dict(glyph_alphabets=5, glyph_characters=6, glyph_drawers=6, families_per_alphabet=2, ways=3, queries=2,
                val=3, meta_tasks=2, hidden=4, workers=0) if cfg.tiny else {}  # fmt: skip
    given = read_config_file(FitConfig, cfg.config) if cfg.config else {}
    data = cfg.data or given.get("data", "")
    own = {f.name for f in fields(DemoConfig)} - {"data", "steps", "seed"}
    base = DemoConfig(**{**tiny, **{k: v for k, v in given.items() if k in own}}, data=data or None, eval_split="val",
                      eval_episodes=cfg.val_episodes, progress=False, seed=cfg.seed)  # fmt: skip
    root = Path(data) if data else build_data(out, base)
    return ImageTarget(base, root, write_eval_episodes(root, out, base), cfg.steps, cfg.evals, cfg.score_steps)


def sinusoid_target(cfg: TuneSinusoidConfig) -> SinusoidTarget:
    from trainer.experiments.sinusoid import SinusoidConfig

    given = read_config_file(SinusoidConfig, cfg.config) if cfg.config else {}
    base = SinusoidConfig(**{**given, "seed": cfg.seed, "eval_families": cfg.val_families})
    return SinusoidTarget(base, cfg.steps, cfg.evals, cfg.score_steps, cfg.val_seed, cfg.val_families)


def navigation_target(cfg: TuneNavigationConfig, out: Path) -> NavigationTarget:
    """`navigation`'s settings (the --config file's on top) on the val crops' goals, drawn with --val-seed."""
    import torch

    from fewtask_data.sources.navigation import goals_in, load_navigation_families
    from trainer.experiments.navigation import NavigationConfig, family_folder

    given = read_config_file(NavigationConfig, cfg.config) if cfg.config else {}
    families = family_folder(cfg.families or given.get("families", ""), out)
    # the budget is iterations, the same for every method: no time limit
    base = NavigationConfig(**{**given, "families": str(families), "seeds": str(cfg.seed), "max_minutes": 0.0})
    base.check()
    crops = load_navigation_families(families)
    val = crops.get("val", torch.empty(0, 4))[: cfg.val_families]
    if len(val) < 2:
        raise FewtaskError(f"{families} has {len(val)} val crops; tuning needs 2 or more (build with --val-families)")
    gen = torch.Generator().manual_seed(cfg.val_seed)
    meta_goals, goal_goals = goals_in(val, base.tasks, gen), goals_in(val, base.goal_tasks, gen)
    return NavigationTarget(base, crops["train"], meta_goals, goal_goals, cfg.steps, cfg.evals, cfg.score_steps)


def continual_target(cfg: TuneContinualConfig) -> ContinualTarget:
    """`continual`'s settings (the --config file's on top) on validation families drawn with --val-seed."""
    from fewtask_data.sources.continual_sines import load_family_definitions
    from trainer.experiments.continual import ContinualFamiliesConfig

    given = read_config_file(ContinualFamiliesConfig, cfg.config) if cfg.config else {}
    base = ContinualFamiliesConfig(**{**given, "families": cfg.families, "seed": cfg.seed, "progress": False,
                                      "max_seconds": 0.0})  # fmt: skip
    base.check()
    defs = validation_families(load_family_definitions(cfg.families), cfg.val_families, cfg.val_seed)
    return ContinualTarget(base, defs, cfg.steps, cfg.evals)


def storage_url(out: Path) -> str:
    return f"sqlite:///{out / DB_NAME}"


def finished(study) -> int:
    """Trials that count toward the budget: completed or pruned (a killed one, left RUNNING or FAIL, does not)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def open_study(cfg: TuneCommon, name: str, out: Path):
    """The stage's study in OUT/study.db, created or loaded. The sampler's seed moves on with
    the finished trials, so a resumed search does not redraw the trials it already ran."""
    import optuna

    storage = optuna.storages.RDBStorage(storage_url(out))
    probe = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=cfg.seed + finished(probe))
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def training_seeds(cfg: TuneCommon) -> tuple[int | None, ...]:
    """--train-seeds as a tuple; (None,) (one run with the base config's seed) when empty."""
    text = getattr(cfg, "train_seeds", "")
    try:
        return tuple(parse_seeds(text)) if text else (None,)
    except FewtaskError:
        raise FewtaskError(f"--train-seeds must be distinct non-negative integers separated by commas, got {text!r}; "
                           "e.g. --train-seeds 0,1") from None  # fmt: skip


def objective(target, method: str, stage: str, fixed: dict, out: Path, seeds: tuple[int | None, ...] = (None,)):
    """The Optuna objective of one stage: the earlier stages' values fixed, this stage's suggested.
    With several training ``seeds`` a trial trains once per seed (``seed-<S>`` folders) and
    scores their mean; the pruner sees the first seed's intermediate scores."""
    import optuna

    space = target.space(method, stage)

    def run(trial) -> float:
        values = {**fixed, **{name: suggest(trial, name, spec) for name, spec in space.items()}}

        def finite(step: int, score: float) -> None:
            if not math.isfinite(score):
                raise optuna.TrialPruned(f"validation score {score} at step {step}")

        def report(step: int, score: float) -> None:
            finite(step, score)
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        # a trial resuming a killed one trains on in that trial's folder (`requeue_killed`)
        folder = Path(trial.user_attrs.get("folder", out / method / f"{stage}-{trial.number:03d}"))
        try:
            if seeds == (None,):
                return target.trial(method, values, folder, report)
            scores = [target.trial(method, values, folder / f"seed-{s}", report if i == 0 else finite, seed=s)
                      for i, s in enumerate(seeds)]  # fmt: skip
            trial.set_user_attr("seed_scores", dict(zip(map(str, seeds), scores)))
            return sum(scores) / len(scores)
        except FewtaskError as err:
            if "non-finite" not in str(err):
                raise
            raise optuna.TrialPruned(f"diverged: {err}") from None  # a diverging setting counts, pruned

    return run


def tune_method(cfg: TuneCommon, target, method: str, out: Path) -> dict:
    """Every stage for one method; returns its record (stages, best values) and writes best.json."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed: dict[str, Any] = {}
    record: dict[str, Any] = {"method": method, "stages": {}}
    best_so_far = None  # (study name, trial): the best trial of the latest stage that has one; it trained `fixed`
    for stage in parse_names(cfg.stages, STAGES, "stage"):
        space = target.space(method, stage)
        if not space:  # e.g. pretraining has no steps per level in navigation
            record["stages"][stage] = {"finished": 0, "best_value": None, "best_params": {}, "best_trial": None,
                                       "skipped": f"{method} has no option of this stage in {target.kind}"}  # fmt: skip
            continue
        study = open_study(cfg, f"{method}:{stage}", out)
        start = incumbent(target, method, space, fixed)
        if start and not study.trials:  # a fresh stage's first trial: the values it would otherwise keep
            if best_so_far is not None and set(start) == set(space):
                reuse_as_incumbent(study, *best_so_far, start, space)
            else:
                study.enqueue_trial(start)
        requeue_killed(study, out / method, stage)
        remaining = cfg.trials - finished(study)
        if remaining > 0:
            study.optimize(objective(target, method, stage, fixed, out, training_seeds(cfg)), n_trials=remaining)
        best = _best(study)
        if best is not None:
            fixed.update(best.params)
            best_so_far = (study.study_name, best)
        record["stages"][stage] = {"finished": finished(study), "best_value": None if best is None else best.value,
                                   "best_params": {} if best is None else best.params,
                                   "best_trial": None if best is None else best.number, "incumbent": start}  # fmt: skip
    record["best"] = target.best_config(method, fixed)
    io.write_json(io.ensure_writable(out / method) / "best.json", record["best"])
    return record


def reuse_as_incumbent(study, source_study: str, source, start: dict, space: dict) -> None:
    """Record the best trial so far as this stage's incumbent instead of training it again.

    The incumbent gives every option of the stage its current value, so it trains exactly
    what the best trial so far trained (the earlier stages' best values, the base config
    elsewhere, the same training seeds), and training is deterministic: its scores are that
    trial's (`user_attrs["reused_from"]` names it). It still counts toward the stage's trials."""
    import optuna

    attrs = {"reused_from": f"{source_study}#{source.number}"}
    if "seed_scores" in source.user_attrs:
        attrs["seed_scores"] = source.user_attrs["seed_scores"]
    study.add_trial(optuna.trial.create_trial(
        params=start, distributions={name: distribution(spec) for name, spec in space.items()}, value=source.value,
        intermediate_values=dict(source.intermediate_values), user_attrs=attrs))  # fmt: skip


def requeue_killed(study, folder: Path, stage: str) -> None:
    """A search killed mid-trial leaves that trial RUNNING (or FAIL): mark it failed and run
    its point again first, in its own folder, so its training resumes from the last chunk's
    checkpoint instead of a fresh point being drawn. One process per study: a RUNNING trial
    found here is a dead one. (A chunk already past is scored again, at the checkpoint's step.)"""
    import optuna

    state = optuna.trial.TrialState
    requeued = {t.user_attrs.get("resumes") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING, state.FAIL)):
        if t.state == state.RUNNING:
            study.tell(t.number, state=state.FAIL)
        if t.number in requeued or not t.params:
            continue
        old = t.user_attrs.get("folder", str(folder / f"{stage}-{t.number:03d}"))
        study.enqueue_trial(t.params, user_attrs={"resumes": t.number, "folder": old})
        requeued.add(t.number)


def incumbent(target, method: str, space: dict, fixed: dict) -> dict:
    """The values a stage starts from (the earlier stages' best, else the base config's), where
    its space admits them: enqueued as its first trial, so a stage keeps them unless a trial
    scores better (hierarchical search never adopts a stage's best that trails its start)."""
    start = {}
    for name, (kind, *args) in space.items():
        value = fixed.get(name, target.current(method, name))
        inside = value in args[0] if kind == "cat" else isinstance(value, (int, float)) and args[0] <= value <= args[1]
        if value is not None and inside and (kind != "int" or value == int(value)):
            start[name] = value
    return start


def _best(study):
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def run_tune(cfg: TuneCommon, target_of) -> dict:
    """Tune every method of ``cfg`` (``target_of(cfg, out)`` builds the target once); returns tune.json."""
    methods = cfg.check()
    out = io.ensure_writable(Path(cfg.out))
    target = target_of(cfg, out)
    summary = {"experiment": target.kind, "config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
               "methods": {m: tune_method(cfg, target, m, out) for m in methods}}  # fmt: skip
    io.write_json(out / "tune.json", summary)
    write_report(out, summary, storage_url(out))
    return summary


def tune_runner(target_of):
    """A subcommand's body: the search with ``target_of(cfg, out)``, then its summary lines."""

    def run(cfg: TuneCommon) -> None:
        _echo(cfg, run_tune(cfg, target_of))

    return run


def _echo(cfg: TuneCommon, summary: dict) -> None:
    for method, rec in summary["methods"].items():
        last = next((s for s in reversed(rec["stages"].values()) if not s.get("skipped")), {"best_value": None})
        typer.echo(f"{method}: best validation score {last['best_value']}; config in {Path(cfg.out) / method / 'best.json'}")
    typer.echo(f"report: {Path(cfg.out) / 'report.md'}")


tune_app = typer.Typer(help="Hierarchical hyperparameter search (Optuna) on validation families; docs/tuning.md.",
                       no_args_is_help=True)  # fmt: skip
tune_app.command("image")(typer_command(TuneImageConfig, tune_runner(image_target), "Tune methods on image families (`fit` + val episodes)."))
tune_app.command("sinusoid")(typer_command(TuneSinusoidConfig, tune_runner(lambda c, out: sinusoid_target(c)), "Tune methods on sinusoid families."))
tune_app.command("navigation")(typer_command(TuneNavigationConfig, tune_runner(navigation_target), "Tune methods on navigation crop "
                                                                                  "families (scored on the val crops)."))
tune_app.command("continual")(typer_command(TuneContinualConfig, tune_runner(lambda c, out: continual_target(c)), "Tune MALTML and OML on continual "
                                                                               "frequency families (validation families)."))
