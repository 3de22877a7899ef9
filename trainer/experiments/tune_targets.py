"""What `fewtask-train tune` trains and scores: one target per experiment kind.

A target turns a trial's option values into a training run in the trial's folder and scores
it on VALIDATION families, the method as it is meant to be used: after its meta-update when
it trains one (MALTML, FO-MALTML), without one otherwise (MAML, Reptile, pretraining), each
finetuning with its own step size (tuned in the ``step_sizes`` stage), after ``score_steps``
goal steps. Training runs in ``evals`` chunks, each resumed exactly from the last checkpoint
and scored, so the pruner sees intermediate validation scores. Its ``best_config`` is the
training command's option values (what `--config` takes).

- `ImageTarget`: `fit` on image families (a built dataset, or the demo's embedded glyphs built
  into the run folder), scored by `eval`'s protocol on fixed validation-split episodes (val.h5).
- `SinusoidTarget`: `sinusoid`'s training, scored on held-out validation families drawn with
  their own seed (``val_seed``), never the test families (``eval_seed``).
- `NavigationTarget`: `navigation`'s training and scoring (`train_and_score`), on the family
  file's **val** crops with goals drawn with ``val_seed``, never the test crops; score = the
  mean return after ``score_steps`` goal steps.
- `ContinualTarget`: `continual`'s training and scoring (`family_method`) with the test
  families replaced by validation families (`validation_families`: fresh frequencies and a
  fresh function pool, never the test ones); score = minus the mean MSE after the online pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from fewtask_data import FewtaskError
from trainer.algorithms import algorithm_class
from trainer.algorithms.maml import MAML
from trainer.evaluation.report import WITH, WITHOUT
from trainer.experiments.tune_space import Space, method_class, stage_space

Report = Callable[[int, float], None]  # (outer steps so far, validation score): may raise optuna.TrialPruned
QUIET = ("resume", "progress", "out", "config", "eval_only", "seeds", "algorithms", "algo", "data")


def protocol_of(method: str, kind: str = "image") -> str:
    """How a method is meant to be used: with its meta-update when it trains one."""
    return WITH if method_class(kind, method).trains_meta_step else WITHOUT


def chunks(steps: int, evals: int) -> list[int]:
    """Outer step counts at which a trial is scored: ``evals`` roughly equal chunks of ``steps``."""
    n = max(1, min(evals, steps))
    return sorted({max(1, round(steps * k / n)) for k in range(1, n + 1)})


def with_schedules(values: dict, steps: int) -> dict:
    """A trial's values with the multi-step loss annealed over half the trial's steps."""
    if values.get("multi_step_loss") or values.get("meta_multi_step_loss"):
        return {"msl_anneal_steps": max(1, steps // 2), **values}
    return values


def seeded(seed: int | None) -> dict:
    """The training seed as a config override: none when a trial keeps the base config's."""
    return {} if seed is None else {"seed": seed}


def changed(config: Any, default: Any) -> dict:
    """The option values of ``config`` that differ from ``default``'s (what a config file must say)."""
    return {f.name: getattr(config, f.name) for f in fields(config) if "help" in f.metadata and f.name not in QUIET
            and hasattr(default, f.name) and getattr(config, f.name) != getattr(default, f.name)}  # fmt: skip


class Target:
    """What `tune` asks of a target beside ``kind``, ``steps``, ``trial`` and ``best_config``:
    the options a stage searches (by default the kind's space). ``trial(..., seed=S)`` trains
    with seed S instead of the base config's (`tune --train-seeds`)."""

    def space(self, method: str, stage: str) -> Space:
        return stage_space(self.kind, method, stage, self.steps)

    def current(self, method: str, name: str) -> Any:
        """The value of option ``name`` that ``method`` trains with before any search (the base config's)."""
        return getattr(self.base, name, None)


@dataclass
class ImageTarget(Target):
    """`fit` + validation episodes. ``base``: the training settings (a `DemoConfig`)."""

    base: Any
    data: Path
    val: Path
    steps: int
    evals: int
    score_steps: int
    kind: str = "image"

    def trial(self, method: str, values: dict, folder: Path, report: Report, seed: int | None = None) -> float:
        from trainer.experiments.eval import evaluate_checkpoint
        from trainer.experiments.fit import FitConfig, TrainSettings, fit

        settings = {f.name: getattr(self.base, f.name) for f in fields(TrainSettings)}
        settings.update(with_schedules(values, self.steps), **seeded(seed), progress=False, resume=True)
        score = math.nan
        for n in chunks(self.steps, self.evals):
            settings.update(steps=n, checkpoint_every=n, log_every=max(1, n // 4))
            fit(FitConfig(data=str(self.data), out=str(folder), algo=method, **settings))
            res = evaluate_checkpoint(folder, self.val, steps=self.score_steps, batch_size=16, impl=self.base.eval_impl,
                                      protocols=(protocol_of(method),))  # fmt: skip
            score = res["methods"][method][protocol_of(method)]["accuracy"]["mean"][self.score_steps]
            report(n, score)
        return score

    def best_config(self, method: str, values: dict) -> dict:
        """`fewtask-train fit --config` values: the data, method, trial budget and tuned options."""
        from trainer.experiments.fit import FitConfig

        default = FitConfig(data=str(self.data))
        base = changed(replace(default, **{f.name: getattr(self.base, f.name) for f in fields(self.base)
                                           if hasattr(default, f.name) and f.name != "data"}), default)  # fmt: skip
        return {"data": str(self.data), "algo": method, **base, "steps": self.steps, **with_schedules(values, self.steps)}


@dataclass
class SinusoidTarget(Target):
    """`sinusoid`'s training + validation families. ``base``: a `SinusoidConfig`."""

    base: Any
    steps: int
    evals: int
    score_steps: int
    val_seed: int
    val_families: int
    kind: str = "sinusoid"

    def options(self, method: str, values: dict) -> dict:
        """A trial's values as `sinusoid` options: the MAML family's alpha is its --maml-alpha."""
        if issubclass(algorithm_class(method), MAML) and "alpha" in values:
            values = {**{k: v for k, v in values.items() if k != "alpha"}, "maml_alpha": values["alpha"]}
        return with_schedules(values, self.steps)

    def current(self, method: str, name: str) -> Any:
        """The MAML family's alpha is the sinusoid command's --maml-alpha."""
        if name == "alpha" and issubclass(algorithm_class(method), MAML):
            return self.base.maml_alpha
        return super().current(method, name)

    def trial(self, method: str, values: dict, folder: Path, report: Report, seed: int | None = None) -> float:
        from fewtask_data.sources import sinusoid
        from trainer.domains.regression.sinusoid import eval_batches
        from trainer.evaluation.protocol import episode_curves
        from trainer.experiments.sinusoid import train_method

        base = replace(self.base, algorithms=method, out=folder, resume=True, progress=False, **self.options(method, values),
                       **seeded(seed))  # fmt: skip
        val = eval_batches(self.val_seed, self.val_families, base.shape(base.eval_val), sinusoid.SinusoidSpec())
        score = math.nan
        for n in chunks(self.steps, self.evals):
            s = replace(base, steps=n, checkpoint_every=n, log_every=max(1, n // 4)).check()
            algo, params, sizes, _, _ = train_method(method, s, sinusoid.SinusoidSpec())
            curves = episode_curves(algo, params, sizes, {}, val, self.score_steps, protocols=(protocol_of(method),))
            score = -float(curves[protocol_of(method)]["loss"][:, self.score_steps].mean())  # higher is better
            report(n, score)
        return score

    def best_config(self, method: str, values: dict) -> dict:
        """`fewtask-train sinusoid --config` values: the method, trial budget and tuned options."""
        from trainer.experiments.sinusoid import SinusoidConfig

        base = changed(self.base, SinusoidConfig())
        return {"algorithms": method, **base, "steps": self.steps, **self.options(method, values)}


@dataclass
class NavigationTarget(Target):
    """`navigation`'s training + the family file's val crops. ``base``: a `NavigationConfig`
    (families, seeds and budgets set); ``meta_goals`` [F, L, 2] and ``goal_goals`` [F, C, 2]:
    the val crops' goals."""

    base: Any
    train_crops: torch.Tensor
    meta_goals: torch.Tensor
    goal_goals: torch.Tensor
    steps: int
    evals: int
    score_steps: int
    kind: str = "navigation"

    def space(self, method: str, stage: str) -> Space:
        """The kind's space for TRPO or Adam, without options `navigation` lacks (its steps per
        level arrive with learned step sizes; a stage left empty is skipped)."""
        space = stage_space(self.kind, method, stage, self.steps, self.base.optimizer)
        return {k: v for k, v in space.items() if hasattr(self.base, k)}

    def trial(self, method: str, values: dict, folder: Path, report: Report, seed: int | None = None) -> float:
        from trainer.experiments.navigation import train_and_score

        seed = self.base.seed_list[0] if seed is None else seed
        score = math.nan
        for n in chunks(self.steps, self.evals):
            c = replace(self.base, out=folder, methods=method, iterations=n, checkpoint_every=n, resume=True,
                        eval_steps=self.score_steps, **values)  # fmt: skip
            c.check()
            # the command's own scoring on the val crops, under the one protocol the method is meant for
            protocol = protocol_of(method, self.kind)
            curves, _, _ = train_and_score(c, method, seed, self.train_crops, self.meta_goals, self.goal_goals, (protocol,))
            score = float(curves[protocol]["return"][:, self.score_steps].mean())
            report(n, score)
        return score

    def best_config(self, method: str, values: dict) -> dict:
        """`fewtask-train navigation --config` values: the families, method, trial budget and tuned options."""
        from trainer.experiments.navigation import NavigationConfig

        return {"families": self.base.families, "methods": method, **changed(self.base, NavigationConfig()),
                "iterations": self.steps, **values}  # fmt: skip


@dataclass
class ContinualTarget(Target):
    """`continual`'s training + validation families. ``base``: a `ContinualFamiliesConfig`;
    ``defs``: the family definitions with their test split replaced by `validation_families`."""

    base: Any
    defs: Any
    steps: int
    evals: int
    kind: str = "continual"

    def trial(self, method: str, values: dict, folder: Path, report: Report, seed: int | None = None) -> float:
        from trainer.experiments.continual import family_method

        score = math.nan
        for n in chunks(self.steps, self.evals):
            c = replace(self.base, out=folder, methods=method, steps=n, **values, **seeded(seed))
            c.check()
            # the command's own scoring (online step chosen on each family's validation problems), on validation families
            curves, _, _ = family_method(c, method, self.defs, c.grid())
            score = -float(curves[protocol_of(method, self.kind)]["mse"].mean())  # higher is better
            report(n, score)
        return score

    def best_config(self, method: str, values: dict) -> dict:
        """`fewtask-train continual --config` values: the families, method, trial budget and tuned options."""
        from trainer.experiments.continual import ContinualFamiliesConfig

        default = ContinualFamiliesConfig(families=self.base.families)
        return {"families": str(self.base.families), "methods": method, **changed(self.base, default),
                "steps": self.steps, **values}  # fmt: skip


def validation_families(defs: Any, count: int, seed: int) -> Any:
    """``defs`` (`FamilyDefinitions`) with its test split replaced by ``count`` validation
    families: frequencies drawn with ``seed`` uniformly in the training families' span (none a
    training or test one), over a fresh function pool drawn like the evaluation pool with
    ``seed`` (the build has no val split; the test families and their pool are never scored)."""
    from fewtask_data.builders.continual_sines import family_frequencies
    from fewtask_data.sources.continual_sines import function_pool

    train, taken = defs.frequencies["train"], {*defs.frequencies["train"], *defs.frequencies["test"]}
    if len(set(train)) < 2:
        raise FewtaskError("validation families are drawn in the training families' frequency span: need 2 or more")
    pool = function_pool(seed, "eval", defs.spec)
    if any(torch.equal(pool, p) for p in defs.pools.values()):
        raise FewtaskError(f"--val-seed {seed} draws the family build's own function pool; choose another seed")
    if (max(train) - min(train)) * 1e4 < 2 * (count + len(taken)):  # frequencies are rounded to 1e-4
        raise FewtaskError(f"the training frequencies span too little for {count} more distinct validation families")
    n, frequencies = count, []
    while len(frequencies) < count:  # more draws of the same sequence until `count` avoid every built family
        frequencies = [w for w in family_frequencies(seed, n, min(train), max(train)) if w not in taken]
        n += count - len(frequencies)
    return replace(defs, pools={**defs.pools, "test": pool}, frequencies={**defs.frequencies, "test": frequencies})
