"""Dynamics task families (continual RL, MALTML section 4.2 after Kaplanis et al. 2020).

A task is a dict of named parameters (``{"gravity": -9.81, "velocity": 1.2}``); each
parameter has a range. A family is a band ``[lo, hi]`` of one parameter (the *banded*
one, gravity by default) inside its range; the family's tasks draw the banded parameter
uniformly in the band and every other parameter uniformly in its range. Families are
written by `fewtask_data.builders.dynamics` as procedural definitions and read back with
`load_dynamics_families`, which checks the builder and its version.

Two environments carry these tasks: a gymnasium MuJoCo locomotion env by id
(HalfCheetah-v5: gravity, target velocity, optional mass and friction scales) and the
point-navigation env (``point``: goal_x banded, goal_y free; a band of goal_x is a crop of
MAML's goal square), the cheap variant the tests run.

A *stream* (`make_stream`) is data too: a schedule of phases over environment steps,
each phase a family band and its goal task, reproducible from a seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import load_procedural

BUILDER = "dynamics-families"
BUILDER_VERSION = "1"
KAPLANIS_GRID = (-7.0, -9.5, -12.0, -14.5, -17.0)  # Kaplanis et al.'s evaluation gravities
STREAM_KINDS = ("abrupt", "drift", "sine")

# Per environment kind: its task type, parameter ranges, banded parameter, band widths,
# evaluation grid (of the banded parameter; the others at their `GRID_DEFAULTS`).
PRESETS = {
    "mujoco": {"task_type": "velocity", "ranges": {"gravity": [-17.0, -7.0], "velocity": [0.0, 2.0]},
               "band_param": "gravity", "band_width": [2.0, 4.0], "grid": list(KAPLANIS_GRID)},
    "point": {"task_type": "goal", "ranges": {"goal_x": [-0.5, 0.5], "goal_y": [-0.5, 0.5]},
              "band_param": "goal_x", "band_width": [0.25, 0.75], "grid": [-0.45, -0.225, 0.0, 0.225, 0.45]},
}  # fmt: skip
TASK_TYPES = {"velocity": "MAML's HalfCheetah-Vel: -|x velocity - target| - 0.05 ||a||^2",
              "run": "gymnasium's own reward (forward velocity - 0.1 ||a||^2), Kaplanis et al.'s task",
              "goal": "point navigation: -distance to (goal_x, goal_y)"}  # fmt: skip


def env_kind(env: str) -> str:
    return "point" if env == "point" else "mujoco"


@dataclass(frozen=True)
class TaskSpace:
    """What a file's tasks are: the env, the task type, each parameter's range (in a fixed
    order: the task vector's components), the banded parameter and the evaluation grid."""

    env: str
    task_type: str
    ranges: dict
    band_param: str
    grid: tuple

    @property
    def names(self) -> list[str]:
        return list(self.ranges)

    @property
    def band_index(self) -> int:
        return self.names.index(self.band_param)

    def check_task(self, task: dict) -> dict:
        """A task dict whose every parameter is known and inside its range; else one line."""
        for name, value in task.items():
            if name not in self.ranges:
                raise FewtaskError(f"unknown task parameter {name!r}; this family file has {', '.join(self.names)}")
            lo, hi = self.ranges[name]
            if not lo - 1e-9 <= value <= hi + 1e-9:
                raise FewtaskError(f"task parameter {name}={value} is outside its band [{lo}, {hi}]")
        return task

    def check_band(self, band) -> list[float]:
        lo, hi = self.ranges[self.band_param]
        if not (lo - 1e-9 <= band[0] <= band[1] <= hi + 1e-9):
            raise FewtaskError(f"{self.band_param} band {list(band)} is outside its range [{lo}, {hi}]")
        return [float(band[0]), float(band[1])]

    def task_in(self, band, rng: random.Random) -> dict:
        """One task of a family: the banded parameter uniform in ``band``, the others in their ranges."""
        self.check_band(band)
        task = {n: rng.uniform(*r) for n, r in self.ranges.items()}
        task[self.band_param] = rng.uniform(*band)
        return task

    def grid_tasks(self) -> list[dict]:
        """The evaluation grid: the banded parameter's grid values, the others at their range's middle."""
        mid = {n: (r[0] + r[1]) / 2 for n, r in self.ranges.items()}
        return [self.check_task({**mid, self.band_param: g}) for g in self.grid]

    def vector(self, task: dict) -> list[float]:
        return [float(task[n]) for n in self.names]


def space_from_params(params: dict) -> TaskSpace:
    return TaskSpace(params["env"], params["task_type"], {k: list(v) for k, v in params["ranges"].items()},
                     params["band_param"], tuple(params["grid"]))  # fmt: skip


def sample_bands(rng: random.Random, count: int, space: TaskSpace, width: tuple[float, float]) -> list[list[float]]:
    """``count`` bands of the banded parameter: width ~ U[width], placed uniformly in its range."""
    lo, hi = space.ranges[space.band_param]
    if not 0 < width[0] <= width[1] <= hi - lo:
        raise FewtaskError(f"band widths must satisfy 0 < LOW <= HIGH <= {hi - lo:g} (the range), got {width[0]},{width[1]}")
    bands = []
    for _ in range(count):
        w = rng.uniform(*width)
        start = rng.uniform(lo, hi - w)
        bands.append([round(start, 6), round(start + w, 6)])
    return bands


def load_dynamics_families(source: str | Path) -> tuple[TaskSpace, dict[str, list[dict]]]:
    """(the task space, per split its families ``{id, band}``) of a `fewtask-data build dynamics-families` folder."""
    manifest = load_procedural(source, BUILDER, BUILDER_VERSION)
    space = space_from_params(manifest.params)
    families = {}
    for split in manifest.splits:
        families[split] = [{"id": f["id"], "band": space.check_band(f["params"]["band"])} for f in manifest.families(split)]
    return space, families


# ---------------------------------------------------------------- streams


@dataclass(frozen=True)
class Stream:
    """Phases over environment steps: phase k runs from ``k * phase_steps`` for ``phase_steps``
    steps on its family (a band) and goal task (a dict of parameters)."""

    kind: str
    seed: int
    phase_steps: int
    phases: tuple  # of {"phase", "start", "family", "band", "goal"}

    @property
    def total_steps(self) -> int:
        return self.phase_steps * len(self.phases)

    def at(self, step: int) -> dict:
        """The phase running at environment step ``step``."""
        if not 0 <= step < self.total_steps:
            raise FewtaskError(f"stream step {step} is past the end of its schedule ({self.total_steps} steps = "
                               f"{len(self.phases)} phases x {self.phase_steps}); use more --phases or fewer steps")  # fmt: skip
        return self.phases[step // self.phase_steps]

    def take(self, steps: int) -> "Stream":
        """The first ``steps`` environment steps (whole phases); longer than the schedule is an error."""
        if steps > self.total_steps:
            raise FewtaskError(f"a stream of {steps} steps is longer than its schedule ({self.total_steps} steps); "
                               "use more --phases or a shorter --stream-steps")  # fmt: skip
        self.at(max(steps - 1, 0))
        return Stream(self.kind, self.seed, self.phase_steps, self.phases[: math.ceil(steps / self.phase_steps)])

    def to_json(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "phase_steps": self.phase_steps, "phases": list(self.phases)}


def _centres(kind: str, count: int, lo: float, hi: float) -> list[float]:
    """Band centres along the stream: drift goes linearly from the range's top to its bottom
    (Kaplanis's -7 -> -17), sine oscillates between them (one period over the stream)."""
    if kind == "drift":
        return [hi - (hi - lo) * k / max(count - 1, 1) for k in range(count)]
    return [(hi + lo) / 2 + (hi - lo) / 2 * math.cos(2 * math.pi * k / max(count, 2)) for k in range(count)]


def make_stream(kind: str, space: TaskSpace, families: list[dict], phases: int, phase_steps: int, seed: int) -> Stream:
    """A stream of ``phases`` phases. abrupt: the given families in a seeded order (cycled),
    each goal drawn in its band; drift / sine: bands of the families' mean width (clipped
    to the range) whose centres move over the whole range (`_centres`) with the goal's
    banded parameter at the centre, so the goal follows Kaplanis's schedule exactly
    (5 drift phases on gravity: -7, -9.5, -12, -14.5, -17)."""
    if kind not in STREAM_KINDS:
        raise FewtaskError(f"unknown stream {kind!r}; use one of {', '.join(STREAM_KINDS)}")
    if phases < 1 or phase_steps < 1 or not families:
        raise FewtaskError("a stream needs >= 1 phase of >= 1 step and at least one family")
    rng = random.Random(seed)
    out = []
    if kind == "abrupt":
        order = list(families)
        rng.shuffle(order)
        for k in range(phases):
            fam = order[k % len(order)]
            out.append({"family": fam["id"], "band": list(fam["band"]), "goal": space.task_in(fam["band"], rng)})
    else:
        lo, hi = space.ranges[space.band_param]
        width = sum(f["band"][1] - f["band"][0] for f in families) / len(families)
        for k, c in enumerate(_centres(kind, phases, lo, hi)):
            band = [max(lo, c - width / 2), min(hi, c + width / 2)]  # clipped at the range's ends
            out.append({"family": f"{kind}-{k:03d}", "band": band, "goal": {**space.task_in(band, rng), space.band_param: c}})
    phases_out = tuple({"phase": k, "start": k * phase_steps, **p} for k, p in enumerate(out))
    return Stream(kind, seed, phase_steps, phases_out)
