"""Returns, the linear feature baseline (Duan et al. 2016, rllab's LinearFeatureBaseline)
and generalized advantage estimation, as MAML computes them (gamma 0.99, lambda 1).

All inputs are [*lead, N, H] (rewards, mask) with observations [*lead, N, H, d]; the
baseline is fitted per task (per lead index) on that task's own trajectories. Everything
here is a function of sampled trajectories only (no parameters), so it is computed
without gradients.
"""

from __future__ import annotations

import torch

from trainer.domains.rl.rollout import Trajectories

BASELINES = ("linear", "none")
RIDGE = 1e-5  # rllab's reg_coeff


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = sum_{t' >= t} gamma^(t'-t) r_t' over each trajectory's running steps."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] * mask[..., t] + gamma * running * mask[..., t]
        out[..., t] = running
    return out


def baseline_features(obs: torch.Tensor) -> torch.Tensor:
    """rllab's features: [o, o^2, t/100, (t/100)^2, (t/100)^3, 1], o clipped to [-10, 10]."""
    o = obs.clamp(-10, 10)
    t = torch.arange(obs.shape[-2], dtype=obs.dtype, device=obs.device) / 100.0
    t = t.reshape(*(1,) * (obs.ndim - 2), -1, 1).expand(*obs.shape[:-1], 1)
    return torch.cat([o, o**2, t, t**2, t**3, torch.ones_like(t)], -1)


def linear_baseline(obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per task, ridge least squares of the returns on `baseline_features` over the
    running steps; the fitted values [*lead, N, H] (0 on masked steps)."""
    x = baseline_features(obs) * mask.unsqueeze(-1)
    lead = obs.shape[:-3]
    xf = x.reshape(*lead, -1, x.shape[-1]).double()
    yf = (returns * mask).reshape(*lead, -1, 1).double()
    gram = xf.transpose(-1, -2) @ xf
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    coeffs = torch.linalg.solve(gram + RIDGE * eye, xf.transpose(-1, -2) @ yf)
    return (xf @ coeffs).reshape(returns.shape).to(returns.dtype) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with
    V = 0 past a trajectory's end (rllab pads the baseline with 0). With lam = 1 this is
    G_t - V(s_t)."""
    next_values = torch.cat([values[..., 1:] * mask[..., 1:], torch.zeros_like(values[..., :1])], -1)
    deltas = (rewards + gamma * next_values - values) * mask
    return discounted_returns(deltas, mask, gamma * lam)


def normalize(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per task: zero mean, unit standard deviation over the running steps (rllab's center_adv)."""
    dims = (-2, -1)
    count = mask.sum(dims, keepdim=True).clamp_min(1)
    mean = (adv * mask).sum(dims, keepdim=True) / count
    var = (((adv - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return (adv - mean) / (var.sqrt() + 1e-8) * mask


def advantages(traj: Trajectories, gamma: float = 0.99, lam: float = 1.0, baseline: str = "linear",
               center: bool = False) -> torch.Tensor:  # fmt: skip
    """GAE advantages of every step, [*lead, N, H], with the per-task baseline fitted on the
    trajectories' discounted returns (``baseline="none"``: V = 0)."""
    with torch.no_grad():
        if baseline == "linear":
            values = linear_baseline(traj.obs, discounted_returns(traj.rewards, traj.mask, gamma), traj.mask)
        else:
            values = torch.zeros_like(traj.rewards)
        adv = gae(traj.rewards, values, traj.mask, gamma, lam)
        return normalize(adv, traj.mask) if center else adv
