"""Gaussian policies as pure functions of parameter dicts.

A parameter tensor may carry leading axes in front of its own shape (one policy per
family, per task): ``dist(params, obs)`` takes observations ``[*lead, ..., obs_dim]``
whose first axes match those leading axes, so every task's adapted policy acts on its own
trajectories in one batched matmul. `broadcast` gives parameters more leading axes (a
family's policy copied to each of its tasks) while keeping them differentiable.
"""

from __future__ import annotations

import math

import torch

from trainer.core.functional import Params


def log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log density of a diagonal Gaussian, summed over the action axis."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def kl(old: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over the action axis."""
    (m0, s0), (m1, s1) = old, new
    return (s1 - s0 + (torch.exp(2 * s0) + (m0 - m1) ** 2) / (2 * torch.exp(2 * s1)) - 0.5).sum(-1)


def sample(mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(log_std) * noise


class Policy:
    """A Gaussian policy family: parameter shapes, initialization, and ``dist``."""

    shapes: dict[str, tuple[int, ...]]
    act_dim: int

    def lead_dims(self, params: Params) -> int:
        name = next(iter(self.shapes))
        return params[name].ndim - len(self.shapes[name])

    def broadcast(self, params: Params, lead: tuple[int, ...]) -> Params:
        """``params`` with leading axes ``lead``; the axes they already have must be a prefix."""
        out = {}
        for k, p in params.items():
            base = self.shapes[k]
            have = p.ndim - len(base)
            p = p.reshape(*p.shape[:have], *(1,) * (len(lead) - have), *base)
            out[k] = p.expand(*lead, *base)
        return out

    def log_std_like(self, params: Params, mean: torch.Tensor) -> torch.Tensor:
        log_std = params["log_std"]
        lead = log_std.ndim - 1
        return log_std.reshape(*log_std.shape[:-1], *(1,) * (mean.ndim - lead - 1), self.act_dim).expand_as(mean)


class GaussianMLP(Policy):
    """MAML's policy: an MLP (ReLU hidden layers, 2 x 100 by default) for the mean and a
    learned state-independent log standard deviation (initial std 1, as rllab's)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (100, 100)) -> None:
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        sizes = (obs_dim, *self.hidden, act_dim)
        self.layers = len(sizes) - 1
        self.shapes = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.shapes[f"w{i}"], self.shapes[f"b{i}"] = (a, b), (b,)
        self.shapes["log_std"] = (act_dim,)

    def init(self, generator: torch.Generator | None = None) -> Params:
        """Glorot-uniform weights and zero biases (Lasagne's defaults, which rllab uses)."""
        params = {}
        for k, shape in self.shapes.items():
            if k.startswith("w"):
                bound = math.sqrt(6.0 / (shape[0] + shape[1]))
                params[k] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
            else:
                params[k] = torch.zeros(shape)
        return params

    def dist(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = self.lead_dims(params)
        rest = obs.shape[lead:-1]
        h = obs.reshape(*obs.shape[:lead], -1, obs.shape[-1])
        for i in range(self.layers):
            h = h @ params[f"w{i}"] + params[f"b{i}"].unsqueeze(-2)
            if i < self.layers - 1:
                h = torch.relu(h)
        mean = h.reshape(*obs.shape[:lead], *rest, self.act_dim)
        return mean, self.log_std_like(params, mean)


    def layer_names(self) -> list[str]:
        """The recorded layers, in forward order: each hidden layer's ReLU output, and the mean."""
        return [f"hidden.{i}" for i in range(self.layers - 1)] + ["mean"]

    def layer_outputs(self, params: Params, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: its output [n, width]} for one policy (no leading axes) on ``obs`` [n,
        obs_dim]: the same computation as ``dist``'s mean, kept layer by layer."""
        out, h = {}, obs
        for i in range(self.layers):
            h = h @ params[f"w{i}"] + params[f"b{i}"]
            if i < self.layers - 1:
                h = torch.relu(h)
                out[f"hidden.{i}"] = h
        out["mean"] = h
        return out

    def head_names(self) -> frozenset[str]:
        """The head: the mean's output layer and the log standard deviation (what maps the
        features to the action distribution); the body is the hidden layers."""
        last = self.layers - 1
        return frozenset({f"w{last}", f"b{last}", "log_std"})

class ConstantGaussian(Policy):
    """A Gaussian whose mean and log std are the parameters themselves (no observation):
    the bandit policy of the estimator tests, whose meta-objectives have closed forms."""

    def __init__(self, act_dim: int) -> None:
        self.act_dim = act_dim
        self.shapes = {"mean": (act_dim,), "log_std": (act_dim,)}

    def init(self, generator: torch.Generator | None = None) -> Params:
        return {"mean": torch.zeros(self.act_dim), "log_std": torch.zeros(self.act_dim)}

    def dist(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = params["mean"]
        lead = mean.ndim - 1
        shape = (*obs.shape[:-1], self.act_dim)
        mean = mean.reshape(*mean.shape[:-1], *(1,) * (len(shape) - lead - 1), self.act_dim).expand(shape)
        return mean, self.log_std_like(params, mean)
