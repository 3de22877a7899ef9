"""`fewtask-train tune`'s search spaces: what each stage searches for each method.

The search is hierarchical (Antoniou et al.'s methodology, which the paper says it follows):
stage ``outer`` first (Adam's rate, families per outer step), then ``step_sizes`` (alpha,
beta, gamma: the ones the method has), then ``steps`` (steps per level and MAML++'s
stabilizers), each stage with the earlier stages' best values fixed. A space is
``{option name: (kind, *args)}`` with kinds ``log`` (low, high: log-uniform float),
``int`` (low, high) and ``cat`` (choices); the names are the training command's options.
The image and sinusoid spaces differ only in ranges and the outer batch's name.
"""

from __future__ import annotations

from typing import Any

from fewtask_data import FewtaskError
from trainer.algorithms import algorithm_class

STAGES = ("outer", "step_sizes", "steps")
Space = dict[str, tuple]

# Ranges per experiment kind: (inner step sizes, beta, outer rates, batch option and choices).
RANGES = {
    "image": {"inner": (0.05, 1.0), "beta": (1e-3, 0.1), "lr": (1e-4, 1e-2), "batch": ("batch", [2, 4, 8]),
              "reptile_inner": (0.01, 0.5)},
    "sinusoid": {"inner": (1e-4, 0.1), "beta": (1e-3, 0.1), "lr": (1e-4, 1e-2), "batch": ("families", [5, 10, 20]),
                 "reptile_inner": (1e-3, 0.1)},
}  # fmt: skip

# Nichol et al.'s Omniglot settings for Reptile, as FO-MALTML's preset: several inner steps at every
# level (they took 5 Adam steps of 0.001 per task, 10 at test; here plain SGD steps, so alpha is
# an SGD step size), 5 families per outer step; docs/tuning.md.
FO_MALTML_OMNIGLOT = {"task_steps": 5, "meta_steps": 5, "goal_steps": 5, "alpha": 0.1, "beta": 0.1, "gamma": 0.1,
                      "batch": 5, "lr": 0.001}  # fmt: skip


def step_size_names(method: str) -> tuple[str, ...]:
    """The step sizes a method trains and is scored with: MALTML-like alpha, beta, gamma; the
    MAML family and Reptile alpha (their goal step too); pretraining alpha, its goal-finetuning
    step at evaluation (chosen on validation like every other method's)."""
    cls = algorithm_class(method)
    return ("alpha", "beta", "gamma") if cls.trains_meta_step else ("alpha",)


def steps_space(method: str, trial_steps: int) -> Space:
    """Steps per level and the stabilizers that apply to ``method``."""
    cls = algorithm_class(method)
    space: Space = {"cosine_lr": ("cat", [False, True])}
    if cls.flat_training:
        return space
    many = 10 if cls.__name__ in ("Reptile", "FOMALTML") else 3  # pseudo-gradients want several steps
    space["task_steps"] = ("int", 1, many)
    if cls.trains_meta_step:
        space.update(meta_steps=("int", 1, many), goal_steps=("int", 1, many))
    if cls.takes_multi_step_loss:
        space["multi_step_loss"] = ("cat", [False, True])
    if cls.takes_meta_multi_step_loss:
        space["meta_multi_step_loss"] = ("cat", [False, True])
    if cls.takes_multi_step_loss and cls.fixed_order is None:
        space["first_order_steps"] = ("cat", sorted({0, trial_steps // 2}))
    return space


def stage_space(kind: str, method: str, stage: str, trial_steps: int) -> Space:
    """The options ``stage`` searches for ``method`` in an experiment of ``kind`` (image, sinusoid)."""
    if kind not in RANGES:
        raise FewtaskError(f"no search space for {kind!r}; choose from {', '.join(RANGES)}")
    r = RANGES[kind]
    if stage == "outer":
        name, choices = r["batch"]
        return {"lr": ("log", *r["lr"]), name: ("cat", choices)}
    if stage == "step_sizes":
        pseudo = algorithm_class(method).__name__ in ("Reptile", "FOMALTML")
        inner = r["reptile_inner"] if pseudo else r["inner"]
        return {n: ("log", *(r["beta"] if n == "beta" else inner)) for n in step_size_names(method)}
    if stage == "steps":
        return steps_space(method, trial_steps)
    raise FewtaskError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def suggest(trial, name: str, spec: tuple) -> Any:
    """One value of ``spec`` from an Optuna trial."""
    kind, *args = spec
    if kind == "log":
        return trial.suggest_float(name, args[0], args[1], log=True)
    if kind == "int":
        return trial.suggest_int(name, args[0], args[1])
    return trial.suggest_categorical(name, args[0])
