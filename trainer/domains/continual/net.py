"""The OML network: a representation (RLN, learned only by the outer loop) under a
prediction network (PLN, learned online), as pure functions of a parameter dict.

Layers are ``layers.<i>.weight/bias``: Linear + ReLU, except the last (one output).
``split`` names how many of the first layers form the RLN; the paper's split is 6 of
8 layers of width 300 (``ARCHES["paper"]``), the repository's later one 5 layers of 400
then one linear output (``ARCHES["repo"]``). The pretraining baseline tries other
splits of the same network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewtask_data import FewtaskError

# name -> (RLN layers, PLN layers, width)
ARCHES = {"paper": (6, 2, 300), "repo": (5, 1, 400)}

Params = dict[str, torch.Tensor]


class ContinualNet(nn.Module):
    def __init__(self, in_features: int, rln: int = 6, pln: int = 2, width: int = 300, outputs: int = 1):
        super().__init__()
        if rln < 0 or pln < 1 or width < 1 or outputs < 1:
            raise FewtaskError(f"need rln >= 0, pln >= 1, width >= 1 and outputs >= 1, got {rln}, {pln}, {width}, {outputs}")
        # outputs > 1: the published pretraining baseline's multi-head network (one head per
        # group of functions, `baselines.head`); every learner online has one output
        sizes = [in_features] + [width] * (rln + pln - 1) + [outputs]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.split = rln
        for layer in self.layers:  # the OML repository's init: Kaiming-normal weights, zero biases
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_layers(dict(self.named_parameters()), x, 0, self.depth, self.depth)


def build_net(in_features: int, arch: str = "paper", width: int | None = None, outputs: int = 1) -> ContinualNet:
    if arch not in ARCHES:
        raise FewtaskError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    rln, pln, w = ARCHES[arch]
    return ContinualNet(in_features, rln, pln, width or w, outputs)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`F.linear` with the weights shared (``weight`` [out, in]) or one set per problem
    (``weight`` [P, out, in], ``bias`` [P, out], ``x`` [P, ..., in]): the online pass gives
    every problem its own prediction network, and a batched matmul runs them together."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    out = torch.baddbmm(bias.unsqueeze(-2), flat, weight.transpose(-1, -2))
    return out.reshape(*x.shape[:-1], weight.shape[-2])


def run_layers(params: Params, x: torch.Tensor, start: int, stop: int, depth: int) -> torch.Tensor:
    """Layers start..stop-1 of a ``depth``-layer net; ReLU after every layer but the last."""
    for i in range(start, stop):
        x = linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        if i < depth - 1:
            x = F.relu(x)
    return x


def layer_of(name: str) -> int:
    return int(name.split(".")[1])


def per_tensor(lr, names):
    """One step size per parameter tensor: ``lr`` itself when it already is one (learned
    sizes, {name: tensor}, or a per-step schedule of them, a list: `functional.at_step`),
    else the number ``lr`` for each of ``names``."""
    if isinstance(lr, list):
        return lr
    return dict(lr) if isinstance(lr, dict) else {k: lr for k in names}


def online_names(params: Params, split: int) -> frozenset[str]:
    """The parameters learned online (the PLN) when the first ``split`` layers are the RLN."""
    return frozenset(k for k in params if layer_of(k) >= split)


def mse_grads(params: Params, x: torch.Tensor, y: torch.Tensor, start: int, depth: int) -> tuple[torch.Tensor, Params]:
    """Per problem along the leading axis of ``x`` [P, n, in] and ``y`` [P, n, 1]: (its MSE
    [P], the gradient of its MSE w.r.t. layers start..depth-1, each [P, ...]), by
    backpropagation written out. The layers' weights are shared or per problem (`linear`).

    Plain differentiable tensor ops, so an outer derivative of the result is the exact
    second-order term (ReLU's derivative is 0 almost everywhere, as autograd has it). On
    the OML inner loop -- 400 steps on 8 points -- it avoids a nested autograd call per
    step, the dominant cost; the tests check it against torch.func.grad."""
    acts, pres = [x], []
    for i in range(start, depth):
        z = linear(acts[-1], params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        pres.append(z)
        acts.append(F.relu(z) if i < depth - 1 else z)
    err = acts[-1] - y
    delta = err * (2.0 / err[0].numel())
    grads: Params = {}
    for j in reversed(range(depth - start)):
        i = start + j
        if i < depth - 1:
            delta = delta * (pres[j] > 0).to(delta.dtype)
        grads[f"layers.{i}.weight"] = delta.transpose(-1, -2) @ acts[j]
        grads[f"layers.{i}.bias"] = delta.sum(-2)
        if j:
            delta = delta @ params[f"layers.{i}.weight"]
    return err.pow(2).mean((-2, -1)), grads
