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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from fewtask_data import FewtaskError
from trainer.algorithms import algorithm_class
from trainer.algorithms.maml import MAML
from trainer.evaluation.report import WITH, WITHOUT

Report = Callable[[int, float], None]  # (outer steps so far, validation score): may raise optuna.TrialPruned
QUIET = ("resume", "progress", "out", "config", "eval_only", "seeds", "algorithms", "algo", "data")


def protocol_of(method: str) -> str:
    """How a method is meant to be used: with its meta-update when it trains one."""
    return WITH if algorithm_class(method).trains_meta_step else WITHOUT


def chunks(steps: int, evals: int) -> list[int]:
    """Outer step counts at which a trial is scored: ``evals`` roughly equal chunks of ``steps``."""
    n = max(1, min(evals, steps))
    return sorted({max(1, round(steps * k / n)) for k in range(1, n + 1)})


def with_schedules(values: dict, steps: int) -> dict:
    """A trial's values with the multi-step loss annealed over half the trial's steps."""
    if values.get("multi_step_loss") or values.get("meta_multi_step_loss"):
        return {"msl_anneal_steps": max(1, steps // 2), **values}
    return values


def changed(config: Any, default: Any) -> dict:
    """The option values of ``config`` that differ from ``default``'s (what a config file must say)."""
    return {f.name: getattr(config, f.name) for f in fields(config) if "help" in f.metadata and f.name not in QUIET
            and hasattr(default, f.name) and getattr(config, f.name) != getattr(default, f.name)}  # fmt: skip


@dataclass
class ImageTarget:
    """`fit` + validation episodes. ``base``: the training settings (a `DemoConfig`)."""

    base: Any
    data: Path
    val: Path
    steps: int
    evals: int
    score_steps: int
    kind: str = "image"

    def trial(self, method: str, values: dict, folder: Path, report: Report) -> float:
        from trainer.experiments.eval import evaluate_checkpoint
        from trainer.experiments.fit import FitConfig, TrainSettings, fit

        settings = {f.name: getattr(self.base, f.name) for f in fields(TrainSettings)}
        settings.update(with_schedules(values, self.steps), progress=False, resume=True)
        score = math.nan
        for n in chunks(self.steps, self.evals):
            settings.update(steps=n, checkpoint_every=n, log_every=max(1, n // 4))
            fit(FitConfig(data=str(self.data), out=str(folder), algo=method, **settings))
            res = evaluate_checkpoint(folder, self.val, steps=self.score_steps, batch_size=16, impl=self.base.eval_impl)
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
class SinusoidTarget:
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

    def trial(self, method: str, values: dict, folder: Path, report: Report) -> float:
        from fewtask_data.sources import sinusoid
        from trainer.domains.regression.sinusoid import eval_batches
        from trainer.evaluation.protocol import episode_curves
        from trainer.experiments.sinusoid import train_method

        base = replace(self.base, algorithms=method, out=folder, resume=True, progress=False, **self.options(method, values))
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


def check_method(method: str, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise FewtaskError(f"tune cannot search {method!r} here; choose from {', '.join(allowed)}")
    return method
