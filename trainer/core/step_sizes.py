"""Step sizes: one positive scalar per (level, parameter tensor), stored as its log.

Levels: ``alpha`` (task steps, Eq. 1), ``beta`` (meta-finetuning steps, Eq. 2) and
``gamma`` (finetuning on a goal task). Keys are ``"<level>:<param name>"``; the log
keeps them positive when they are learned.

Per step (MAML++'s per-layer per-step learning rates, Antoniou et al. 2019; off by
default): step s >= 1 of a level gets its own keys ``"<level>@<s>:<param name>"`` beside
the step-0 keys ``"<level>:<param name>"``. `level_lrs` then returns a schedule, one dict
per step, and a step past its end uses the last one (`functional.at_step`).
"""

from __future__ import annotations

import math

import torch

from fewtask_data import FewtaskError

LEVELS = ("alpha", "beta", "gamma")


def check_step_size(label: str, value) -> None:
    """A one-line FewtaskError unless ``value`` is a positive finite number."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)):
        raise FewtaskError(f"{label} must be > 0 (a positive finite number), got {value!r}")


def check_per_step(learn: bool, per_step: bool) -> None:
    """A one-line error for per-step sizes that are not learned: fixed, each step's would be
    the same number, so the option would silently do nothing."""
    if per_step and not learn:
        raise FewtaskError("--per-step-step-sizes needs --learn-step-sizes (fixed sizes are the same at every step)")


def init_step_sizes(params: dict[str, torch.Tensor], alpha: float, beta: float, gamma: float,
                    per_step: dict[str, int] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Log step sizes, one scalar per (level, parameter tensor); with ``per_step`` ({level:
    steps}) one per (level, step, parameter tensor), all starting at the level's value."""
    values = {"alpha": alpha, "beta": beta, "gamma": gamma}
    for level, v in values.items():
        check_step_size(f"step size {level}", v)
    tags = {lv: step_tags(lv, (per_step or {}).get(lv, 1)) for lv in LEVELS}
    return {
        f"{tag}:{name}": torch.tensor(math.log(values[level]), dtype=p.dtype, device=p.device)
        for level in LEVELS
        for tag in tags[level]
        for name, p in params.items()
    }


def step_tags(level: str, steps: int = 1) -> list[str]:
    """The key tags of a level's ``steps`` step sizes: ``["alpha", "alpha@1", ...]`` (one: per tensor only)."""
    return [level] + [f"{level}@{s}" for s in range(1, steps)]


def _tag_step(tag: str) -> tuple[str, int]:
    """``"alpha@2"`` -> ("alpha", 2); ``"alpha"`` -> ("alpha", 0)."""
    level, _, step = tag.partition("@")
    return level, int(step or 0)


def level_lrs(step_sizes: dict[str, torch.Tensor], level: str):
    """{param name: positive step size} for one level, or with per-step keys a schedule:
    a list of such dicts, one per step."""
    steps: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in step_sizes.items():
        tag, _, name = key.partition(":")
        lv, s = _tag_step(tag)
        if lv == level:
            steps.setdefault(s, {})[name] = v.exp()
    if len(steps) <= 1:
        return steps.get(0, {})
    return [steps[s] for s in sorted(steps)]


def finetune_sizes(sizes: dict[str, torch.Tensor], level: str, override: float | None = None) -> dict[str, torch.Tensor]:
    """Log step sizes whose gamma level holds the goal-finetuning step: the ``level`` an
    algorithm finetunes with (gamma for MALTML, alpha for the MAML family), or ``override``.
    The evaluation protocol always finetunes with gamma."""
    out = {k: v for k, v in sizes.items() if _tag_step(k.partition(":")[0])[0] != "gamma"}
    for key, value in sizes.items():
        tag, _, name = key.partition(":")
        lv, s = _tag_step(tag)
        if lv == level:
            target = "gamma" if s == 0 else f"gamma@{s}"
            out[f"{target}:{name}"] = value if override is None else torch.full_like(value, math.log(override))
    return out


def step_size_schedules(sizes: dict[str, torch.Tensor]) -> dict[str, dict[str, list[float]]]:
    """{level: {param name: [its positive step size at step 0, 1, ...]}} (for reports; one
    entry per tensor without per-step sizes)."""
    out: dict[str, dict[str, list[float]]] = {}
    for level in LEVELS:
        schedule = level_lrs(sizes, level)
        for lrs in schedule if isinstance(schedule, list) else [schedule]:
            for name, v in lrs.items():
                out.setdefault(level, {}).setdefault(name, []).append(float(v))
    return out


def mean_step_sizes(sizes: dict[str, torch.Tensor]) -> dict[str, float]:
    """{level: mean positive step size over the parameter tensors (and over the families, for
    sizes with a family axis)} (for reports)."""
    levels: dict[str, list[float]] = {}
    for k, v in sizes.items():
        levels.setdefault(k.split(":")[0], []).append(float(v.exp().mean()))
    return {lv: sum(vs) / len(vs) for lv, vs in levels.items()}
