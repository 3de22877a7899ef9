"""Convolutional few-shot models: the 4-block conv net of Finn et al. and ResNet-12.

Both are plain ``nn.Module``s, so the functional core can run them with
``torch.func.functional_call`` and ``vmap`` over tasks and families.

Batch norm policy (``bn``), written into every results file by the callers:

- ``"task"`` (default, as in MAML): normalize with the statistics of the batch
  the model is called on, i.e. the current task's support or query set; no
  running statistics are kept (like ``track_running_stats=False``), so a forward
  pass has no side effects and works under ``vmap``; written with plain ops so
  that third derivatives (exact MALTML) are right (see ``TaskBatchNorm2d``). Evaluation also uses the
  current task's batch statistics (transductive, as MAML's reference code does).
- ``"none"``: no normalization layers at all.

Inputs are float images ``[B, C, H, W]`` (a missing channel axis is added for
grayscale ``[B, H, W]``); uint8 images are scaled to [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fewtask_data import FewtaskError
from trainer.core.stabilizers import inner_step

BN_POLICIES = ("task", "none")


def _check_bn(bn: str) -> str:
    if bn not in BN_POLICIES:
        raise FewtaskError(f"unknown batch-norm policy {bn!r}; choose one of {', '.join(BN_POLICIES)}")
    return bn


class TaskBatchNorm2d(nn.Module):
    """Batch norm with the statistics of the current batch and no running state.

    Written with plain tensor ops on purpose: ``F.batch_norm``'s backward formula is
    not differentiable again, so torch.func silently drops terms of third and higher
    derivatives through it (MALTML's exact order). Plain ops differentiate to any order.

    MAML++'s per-step batch norm (``steps`` > 0, Antoniou et al. 2019): one row of weights and
    biases per inner step, [steps + 1, channels]; a forward at the parameters after s steps of
    the innermost adaptation (`trainer.core.stabilizers.inner_step`) uses row s (the last
    row past the end). Its statistics are per step already: every forward normalizes with
    its own batch's, which is also what MAML++'s layers use (they run batch norm in
    training mode at every step, in training and at test time).
    """

    def __init__(self, channels: int, eps: float = 1e-5, steps: int = 0):
        super().__init__()
        self.eps, self.steps = eps, steps
        shape = (steps + 1, channels) if steps else (channels,)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)  # biased, as batch norm normalizes
        x = (x - mean) * torch.rsqrt(var + self.eps)
        weight, bias = self.weight, self.bias
        if self.steps:
            row = min(inner_step(), self.steps)
            weight, bias = weight[row], bias[row]
        return x * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def _norm(channels: int, bn: str, steps: int = 0) -> nn.Module:
    if bn == "none":
        return nn.Identity()
    return TaskBatchNorm2d(channels, steps=steps)


def as_image_batch(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """[B, C, H, W] float from [B, C, H, W] or [B, H, W] (grayscale), uint8 or float."""
    if x.dim() == 3 and in_channels == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise FewtaskError(
            f"model expects images [B, {in_channels}, H, W], got shape {tuple(x.shape)}; "
            "check --image-size/--channels against the data"
        )
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x


class Conv4(nn.Module):
    """Finn et al.'s conv net: 4 x (3x3 conv, batch norm, ReLU, 2x2 max-pool), then a linear head."""

    def __init__(self, ways: int, in_channels: int = 1, image_size: int = 28, hidden: int = 64, bn: str = "task",
                 bn_steps: int = 0):  # fmt: skip
        super().__init__()
        self.in_channels, self.bn = in_channels, _check_bn(bn)
        blocks, channels, side = [], in_channels, image_size
        for _ in range(4):
            blocks += [nn.Conv2d(channels, hidden, 3, padding=1), _norm(hidden, bn, bn_steps), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = hidden, side // 2
        if side < 1:
            raise FewtaskError(f"image size {image_size} is too small for 4 pooling blocks; use at least 16")
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden * side * side, ways)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(as_image_batch(x, self.in_channels)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _ResBlock(nn.Module):
    """ResNet-12 block: 3 x (3x3 conv, norm, leaky ReLU) plus a 1x1 conv shortcut, then 2x2 max-pool."""

    def __init__(self, cin: int, cout: int, bn: str, bn_steps: int = 0):
        super().__init__()
        layers, c = [], cin
        for i in range(3):
            layers += [nn.Conv2d(c, cout, 3, padding=1, bias=False), _norm(cout, bn, bn_steps)]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
            c = cout
        self.main = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _norm(cout, bn, bn_steps))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.main(x) + self.shortcut(x))


class ResNet12(nn.Module):
    """ResNet-12 (Oreshkin et al., Lee et al.): 4 residual blocks, global average pool, linear head."""

    def __init__(
        self,
        ways: int,
        in_channels: int = 3,
        image_size: int = 84,
        widths: Sequence[int] = (64, 160, 320, 640),
        bn: str = "task",
        bn_steps: int = 0,
    ):
        super().__init__()
        if len(widths) != 4:
            raise FewtaskError(f"ResNet-12 needs 4 block widths, got {list(widths)}")
        if image_size < 16:
            raise FewtaskError(f"image size {image_size} is too small for 4 pooling blocks; use at least 16")
        self.in_channels, self.bn = in_channels, _check_bn(bn)
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(_ResBlock(c, w, bn, bn_steps))
            c = w
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, ways)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(as_image_batch(x, self.in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_conv(
    name: str, ways: int, in_channels: int, image_size: int, bn: str = "task", hidden: int = 64, bn_steps: int = 0
) -> nn.Module:
    """A conv model by name: ``conv4`` or ``resnet12`` (``hidden`` sets conv4's width / ResNet's first width;
    ``bn_steps`` > 0: per-step batch-norm weights, `TaskBatchNorm2d`)."""
    if not (isinstance(bn_steps, int) and bn_steps >= 0):
        raise FewtaskError(f"bn-steps must be >= 0, got {bn_steps!r}")
    if name == "conv4":
        return Conv4(ways, in_channels, image_size, hidden, bn, bn_steps)
    if name == "resnet12":
        scale = hidden / 64
        widths = tuple(max(1, round(w * scale)) for w in (64, 160, 320, 640))
        return ResNet12(ways, in_channels, image_size, widths, bn, bn_steps)
    raise FewtaskError(f"unknown conv model {name!r}; choose conv4 or resnet12")

