"""`fewtask-train tune`'s search spaces: what each stage searches for each method.

The search is hierarchical (Antoniou et al.'s methodology, which the paper says it follows):
stage ``outer`` first (the outer optimizer's rate, families per outer step), then
``step_sizes`` (the step sizes the method trains and is scored with), then ``steps`` (steps
per level and MAML++'s stabilizers), each stage with the earlier stages' best values fixed.
A space is ``{option name: (kind, *args)}`` with kinds ``log`` (low, high: log-uniform
float), ``int`` (low, high) and ``cat`` (choices); the names are the training command's
options. The experiment kinds (image, sinusoid, navigation, continual) differ in ranges,
in the names of their options and in which step size scores a method.
"""

from __future__ import annotations

from typing import Any

from fewtask_data import FewtaskError
from trainer.algorithms import algorithm_class
from trainer.domains.continual.oml import OML, MALTMLContinual

STAGES = ("outer", "step_sizes", "steps")
Space = dict[str, tuple]

# Ranges per experiment kind: inner step sizes, beta, outer rates (Adam's lr; TRPO's max_kl), and
# the option (with its choices) of families per outer step: ``batch`` for methods with a meta
# level, ``task_batch`` (where it differs) for the others; image pretraining trains on flat
# batches of labelled images, so its batch is ``flat_batch`` (images per step).
RANGES = {
    "image": {"inner": (0.05, 1.0), "beta": (1e-3, 0.1), "lr": (1e-4, 1e-2), "batch": ("batch", [2, 4, 8]),
              "reptile_inner": (0.01, 0.5), "flat_batch": ("flat_batch", [32, 64, 128])},
    "sinusoid": {"inner": (1e-4, 0.1), "beta": (1e-3, 0.1), "lr": (1e-4, 1e-2), "batch": ("families", [5, 10, 20]),
                 "reptile_inner": (1e-3, 0.1)},
    # the navigation defaults: alpha = gamma = 0.5, beta 0.1, TRPO's KL 0.01, 4 families (MALTML) or 20 tasks (MAML)
    "navigation": {"inner": (0.05, 1.0), "beta": (0.01, 0.5), "lr": (1e-4, 1e-2), "max_kl": (1e-3, 0.05),
                   "batch": ("batch_families", [2, 4, 8]), "task_batch": ("maml_tasks", [10, 20, 40])},
    # the continual defaults: online step 0.003, beta 0.003, Adam 1e-4, one family or problem per step
    "continual": {"inner": (3e-4, 3e-2), "beta": (3e-4, 3e-2), "lr": (1e-5, 1e-3),
                  "batch": ("families_per_step", [1, 2, 4]), "task_batch": ("problems", [1, 2, 4])},
}  # fmt: skip
PSEUDO_GRADIENT = ("Reptile", "FOMALTML")  # supervised pseudo-gradient methods: many small inner steps
CONTINUAL = {"maltml": MALTMLContinual, "oml": OML}

def method_class(kind: str, method: str) -> type:
    """The class whose traits describe ``method`` in an experiment of ``kind``: the continual
    algorithms (MALTML-continual, OML) for continual, the registry's otherwise."""
    if kind == "continual":
        if method not in CONTINUAL:
            raise FewtaskError(f"unknown continual method {method!r}; choose from {', '.join(CONTINUAL)}")
        return CONTINUAL[method]
    return algorithm_class(method)


def step_size_names(method: str, kind: str = "image") -> tuple[str, ...]:
    """The step sizes a method trains and is scored with. Images and sinusoids: MALTML-like
    alpha, beta, gamma; the MAML family and Reptile alpha (their goal step too); pretraining
    alpha, its goal-finetuning step at evaluation. Navigation scores every method with gamma,
    so it is searched beside the ones training takes (MALTML alpha, beta; MAML alpha). Continual:
    the online step of training (--inner-lr) and MALTML's beta; the evaluation's online step is
    chosen among --lr-grid on the validation families' own validation problems."""
    meta = method_class(kind, method).trains_meta_step
    if kind == "continual":
        return ("inner_lr", "beta") if meta else ("inner_lr",)
    if kind == "navigation":
        trained = ("alpha", "beta") if meta else () if algorithm_class(method).flat_training else ("alpha",)
        return (*trained, "gamma")
    return ("alpha", "beta", "gamma") if meta else ("alpha",)


def steps_space(method: str, trial_steps: int) -> Space:
    """Images and sinusoids: steps per level and the stabilizers that apply to ``method``."""
    cls = algorithm_class(method)
    space: Space = {"cosine_lr": ("cat", [False, True])}
    if cls.flat_training:
        return space
    many = 10 if cls.__name__ in PSEUDO_GRADIENT else 3  # pseudo-gradients want several steps
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


def level_steps_space(kind: str, method: str) -> Space:
    """Navigation and continual: steps per level, 1-3 (each RL step samples fresh trajectories;
    each continual one is a whole OML pass). Navigation: MALTML's task, meta and goal steps,
    MAML's inner (goal) steps; continual: MALTML's meta steps (its other levels are one online
    pass each). Pretraining and OML have none; neither command has MAML++'s stabilizers."""
    if not method_class(kind, method).trains_meta_step:
        return {} if kind == "continual" or algorithm_class(method).flat_training else {"goal_steps": ("int", 1, 3)}
    names = ("meta_steps",) if kind == "continual" else ("task_steps", "meta_steps", "goal_steps")
    return {n: ("int", 1, 3) for n in names}


def stage_space(kind: str, method: str, stage: str, trial_steps: int, optimizer: str = "adam") -> Space:
    """The options ``stage`` searches for ``method`` in an experiment of ``kind`` (image, sinusoid,
    navigation, continual) whose outer ``optimizer`` is adam (rate: lr) or trpo (rate: max_kl)."""
    if kind not in RANGES:
        raise FewtaskError(f"no search space for {kind!r}; choose from {', '.join(RANGES)}")
    r = RANGES[kind]
    if stage == "outer":
        rate = "max_kl" if optimizer == "trpo" else "lr"
        cls = method_class(kind, method)
        flat = "flat_batch" in r and getattr(cls, "flat_training", False)
        name, choices = r["flat_batch"] if flat else r["batch"] if cls.trains_meta_step else r.get("task_batch", r["batch"])
        return {rate: ("log", *r[rate]), name: ("cat", choices)}
    if stage == "step_sizes":
        pseudo = kind in ("image", "sinusoid") and algorithm_class(method).__name__ in PSEUDO_GRADIENT
        inner = r["reptile_inner"] if pseudo else r["inner"]
        return {n: ("log", *(r["beta"] if n == "beta" else inner)) for n in step_size_names(method, kind)}
    if stage == "steps":
        return steps_space(method, trial_steps) if kind in ("image", "sinusoid") else level_steps_space(kind, method)
    raise FewtaskError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def distribution(spec: tuple):
    """The Optuna distribution `suggest` draws ``spec`` from (to record a trial it did not draw)."""
    import optuna

    kind, *args = spec
    if kind == "log":
        return optuna.distributions.FloatDistribution(args[0], args[1], log=True)
    if kind == "int":
        return optuna.distributions.IntDistribution(args[0], args[1])
    return optuna.distributions.CategoricalDistribution(args[0])


def suggest(trial, name: str, spec: tuple) -> Any:
    """One value of ``spec`` from an Optuna trial."""
    kind, *args = spec
    if kind == "log":
        return trial.suggest_float(name, args[0], args[1], log=True)
    if kind == "int":
        return trial.suggest_int(name, args[0], args[1])
    return trial.suggest_categorical(name, args[0])
