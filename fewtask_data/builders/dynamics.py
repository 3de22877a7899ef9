"""`fewtask-data build dynamics-families`: bands of one dynamics parameter (gravity inside
-17..-7 for MuJoCo; goal_x for the point env) written as procedural family definitions
(fewtask_data.sources.dynamics), with the task space and Kaplanis's evaluation grid in
the build settings. Train, validation and test bands come from disjoint generator
streams of one seed (recorded per split), so the test bands are held-out families."""

from __future__ import annotations

import random
from pathlib import Path

from fewtask_data.builders.procedural import SPLITS, check_counts, split_seed, write_procedural
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.procedural import ProceduralManifest
from fewtask_data.sources.dynamics import BUILDER, BUILDER_VERSION, PRESETS, TASK_TYPES, env_kind, sample_bands, space_from_params


def dynamics_params(env: str, task_type: str | None = None, ranges: dict | None = None,
                    band_width: tuple[float, float] | None = None) -> dict:  # fmt: skip
    """The build settings: the env's preset with the given changes, checked."""
    preset = PRESETS[env_kind(env)]
    task_type = task_type or preset["task_type"]
    if task_type not in TASK_TYPES or (task_type == "goal") != (env == "point"):
        allowed = "goal" if env == "point" else "velocity, run"
        raise FewtaskError(f"task type {task_type!r} does not fit env {env!r}; use {allowed}")
    merged = {**preset["ranges"], **(ranges or {})}
    if task_type == "run":  # gymnasium's own reward has no target velocity
        merged.pop("velocity", None)
    for name, (lo, hi) in merged.items():
        if not lo <= hi:
            raise FewtaskError(f"range of {name} must be LOW,HIGH with LOW <= HIGH, got {lo},{hi}")
    params = {"env": env, "task_type": task_type, "ranges": merged, "band_param": preset["band_param"],
              "band_width": list(band_width or preset["band_width"]), "grid": preset["grid"]}  # fmt: skip
    space_from_params(params).grid_tasks()  # the grid must lie inside the ranges
    return params


def build_dynamics_families(out: Path, *, counts: dict[str, int], env: str = "HalfCheetah-v5", task_type: str | None = None,
                            ranges: dict | None = None, band_width: tuple[float, float] | None = None,
                            seed: int = 0) -> ProceduralManifest:  # fmt: skip
    check_counts(counts)
    params = dynamics_params(env, task_type, ranges, band_width)
    space = space_from_params(params)
    splits = {}
    for split in SPLITS:
        bands = sample_bands(random.Random(split_seed(seed, split)), counts[split], space, tuple(params["band_width"]))
        splits[split] = {"families": [{"id": f"{split}-band{i:04d}", "params": {"band": b}} for i, b in enumerate(bands)]}
    return write_procedural(
        out, dataset=f"dynamics-{env}", description=f"procedural: bands of {space.band_param} on {env} ({TASK_TYPES[params['task_type']]})",
        builder=BUILDER, version=BUILDER_VERSION, params=params,
        seeds={split: split_seed(seed, split) for split in SPLITS}, splits=splits,
    )  # fmt: skip
