"""Activations of named layers of a model evaluated as a pure function of its parameters.

`record` runs ``forward(params, buffers, x)`` (torch.func's functional_call on the model
itself) with forward hooks on the named modules, so any parameters (theta, theta', phi)
give that model's activations without copying it. `as_rows` turns one activation into
the [rows, neurons] matrix the similarity measures take, with one stated, seeded
subsampling rule that keeps memory bounded.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from fewtask_data import FewtaskError

# What ends a block of a model's body: conv4's max-pools where the body has them (its
# ReLUs sit inside the blocks), else the MLP's ReLUs; a child with children of its own
# (a ResNet block) is one block.
BLOCK_ENDS = (nn.MaxPool2d, nn.ReLU)


def default_layers(model: nn.Module) -> list[str]:
    """Each block of ``model.body`` (its output) and the head, in forward order."""
    body = getattr(model, "body", None)
    names = []
    if isinstance(body, nn.Module):
        children = list(body.named_children())
        end = next((kind for kind in BLOCK_ENDS if any(isinstance(m, kind) for _, m in children)), None)
        names = [f"body.{n}" for n, m in children if (end and isinstance(m, end)) or any(m.children())]
    return names + (["head"] if hasattr(model, "head") else [])


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """``layers`` if every one names a module of ``model``; else a one-line error listing the defaults."""
    modules = dict(model.named_modules())
    bad = [name for name in layers if name not in modules or name == ""]
    if bad or not layers:
        raise FewtaskError(f"no layer {', '.join(bad) or '(none given)'} in this {type(model).__name__}; "
                           f"use --layers with names from: {', '.join(default_layers(model))}")  # fmt: skip
    return list(layers)


def record(model: nn.Module, forward: Callable, params, buffers, x: torch.Tensor,
           layers: Sequence[str]) -> dict[str, torch.Tensor]:  # fmt: skip
    """{layer: its output} of one forward pass of ``model`` with ``params`` on ``x``, no grad."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[name].register_forward_hook(_keeper(seen, name)) for name in layers]
    try:
        with torch.no_grad():
            forward(params, buffers, x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _keeper(seen: dict, name: str) -> Callable:
    def hook(_module, _inputs, output):
        seen[name] = output.detach()

    return hook


def as_rows(activation: torch.Tensor) -> torch.Tensor:
    """[rows, neurons]: a conv map [n, C, H, W] gives one row per input and position, C
    neurons (Raghu et al.'s convention for conv layers); [n, features] stays as it is."""
    if activation.dim() == 4:
        return activation.permute(0, 2, 3, 1).reshape(-1, activation.shape[1])
    return activation.reshape(activation.shape[0], -1)


def row_subset(rows: int, limit: int, generator: torch.Generator) -> torch.Tensor | None:
    """The rows kept when a layer has more than ``limit``: a uniform draw without
    replacement from ``generator`` (None: keep all). Callers draw it once per family and
    layer and apply it to every point compared, so the rows stay paired."""
    if limit <= 0 or rows <= limit:
        return None
    return torch.randperm(rows, generator=generator)[:limit].sort().values
