"""Models and a small registry: ``build_model(name, **kw)``.

Convention shared by all models: the last layer is called ``head``, so ANIL
(adapt only ``head.*``) and BOIL (adapt everything else) need no per-model code.
Register a new model with ``MODELS["name"] = constructor``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn

from fewtask_data import FewtaskError
from trainer.models.convnets import build_conv


class MLP(nn.Module):
    """Fully connected ReLU net, e.g. 1-40-40-1 for the sinusoid experiments."""

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40), out_features: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def finn_init_(model: nn.Module) -> nn.Module:
    """Finn et al.'s MAML initialization for fully connected layers: weights from a
    normal with std 0.01 truncated at 2 std, biases 0 (PyTorch's default is
    Kaiming-uniform)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.zeros_(layer.bias)
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP}
# Conv nets for image families (trainer/models/convnets.py): build_model("conv4", ways=5, in_channels=1, image_size=28, bn="task").
MODELS.update({name: partial(build_conv, name) for name in ("conv4", "resnet12")})


def build_model(name: str, **kw) -> nn.Module:
    if name not in MODELS:
        raise FewtaskError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kw)


def image_geometry(image_shape: Sequence[int]) -> tuple[int, int]:
    """(channels, side) from a manifest's image shape [H, W] or [H, W, 3]."""
    shape = list(image_shape)
    if len(shape) not in (2, 3) or shape[0] != shape[1]:
        raise FewtaskError(f"the conv models need square images, the dataset has shape {shape}")
    return (1 if len(shape) == 2 else shape[2]), shape[0]


def model_spec(name: str, ways: int, channels: int, side: int, hidden: int, bn: str, bn_steps: int = 0) -> dict:
    """Everything `build_from_spec` needs; `fit` saves it in config.json so `eval` rebuilds the same model
    (``bn_steps`` only when per-step batch norm is on, so older specs read the same)."""
    spec = {"name": name, "ways": ways, "in_channels": channels, "image_size": side, "hidden": hidden, "bn": bn}
    return {**spec, "bn_steps": bn_steps} if bn_steps else spec


def build_from_spec(spec: dict) -> nn.Module:
    return build_model(spec["name"], **{k: v for k, v in spec.items() if k != "name"})


def head_names(model: nn.Module) -> frozenset[str]:
    """Names of the head's parameters (ANIL adapts these, BOIL the rest)."""
    return frozenset(n for n, _ in model.named_parameters() if n.startswith("head."))


def signature(model: nn.Module) -> dict[str, list[int]]:
    """Parameter and buffer names with shapes: identifies a model for checkpoints."""
    sig = {n: list(p.shape) for n, p in model.named_parameters()}
    sig.update({n: list(b.shape) for n, b in model.named_buffers()})
    return sig
