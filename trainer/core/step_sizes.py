"""Step sizes: one positive scalar per (level, parameter tensor), stored as its log.

Levels: ``alpha`` (task steps, Eq. 1), ``beta`` (meta-finetuning steps, Eq. 2) and
``gamma`` (finetuning on a goal task). Keys are ``"<level>:<param name>"``; the log
keeps them positive when they are learned.
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


def init_step_sizes(params: dict[str, torch.Tensor], alpha: float, beta: float, gamma: float) -> dict[str, torch.Tensor]:
    """Log step sizes, one scalar per (level, parameter tensor)."""
    values = {"alpha": alpha, "beta": beta, "gamma": gamma}
    for level, v in values.items():
        check_step_size(f"step size {level}", v)
    return {
        f"{level}:{name}": torch.tensor(math.log(values[level]), dtype=p.dtype, device=p.device)
        for level in LEVELS
        for name, p in params.items()
    }


def level_lrs(step_sizes: dict[str, torch.Tensor], level: str) -> dict[str, torch.Tensor]:
    """{param name: positive step size} for one level."""
    prefix = f"{level}:"
    return {k[len(prefix):]: v.exp() for k, v in step_sizes.items() if k.startswith(prefix)}


def finetune_sizes(sizes: dict[str, torch.Tensor], level: str, override: float | None = None) -> dict[str, torch.Tensor]:
    """Log step sizes whose gamma level holds the goal-finetuning step: the ``level`` an
    algorithm finetunes with (gamma for MALTML, alpha for the MAML family), or ``override``.
    The evaluation protocol always finetunes with gamma."""
    out = dict(sizes)
    for key, value in sizes.items():
        lv, _, name = key.partition(":")
        if lv == level:
            out[f"gamma:{name}"] = value if override is None else torch.full_like(value, math.log(override))
    return out


def mean_step_sizes(sizes: dict[str, torch.Tensor]) -> dict[str, float]:
    """{level: mean positive step size over the parameter tensors} (for reports)."""
    levels: dict[str, list[float]] = {}
    for k, v in sizes.items():
        levels.setdefault(k.split(":")[0], []).append(float(v.exp()))
    return {lv: sum(vs) / len(vs) for lv, vs in levels.items()}
