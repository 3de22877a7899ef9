"""Sampling trajectories from given (possibly batched) policy parameters."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.core.functional import Params
from trainer.domains.rl.policy import Policy, log_prob, sample


@dataclass
class Trajectories:
    """``obs`` [*lead, N, H, obs_dim], ``actions`` [*lead, N, H, act_dim], ``rewards`` and
    ``mask`` [*lead, N, H]: the mask is 1 while a trajectory runs (finished ones: 0)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor

    def log_prob(self, policy: Policy, params: Params) -> torch.Tensor:
        """log pi(a_t | s_t) under ``params`` (differentiable), 0 on masked steps."""
        mean, log_std = policy.dist(params, self.obs)
        return log_prob(mean, log_std, self.actions) * self.mask

    def returns(self) -> torch.Tensor:
        """Undiscounted return of each trajectory, [*lead, N]."""
        return (self.rewards * self.mask).sum(-1)


def rollout(env, policy: Policy, params: Params, generator: torch.Generator | None = None) -> Trajectories:
    """Run ``env`` for its horizon with actions drawn from ``policy`` at ``params`` (not
    differentiated: the estimator scores the samples afterwards). Stops early once every
    trajectory has finished; the remaining steps are masked."""
    params = {k: v.detach() for k, v in params.items()}
    obs = env.reset()
    observations, actions, rewards, masks = [], [], [], []
    with torch.no_grad():
        for _ in range(env.horizon):
            mean, log_std = policy.dist(params, obs)
            action = sample(mean, log_std, generator)
            next_obs, reward, mask = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            masks.append(mask)
            obs = next_obs
            if not bool(mask.any()):
                break
    axis = masks[0].ndim  # the time axis: right after the trajectory axis
    stacked = []
    for steps in (observations, actions, rewards, masks):
        x = torch.stack(steps, axis)
        if len(steps) < env.horizon:  # finished early: zero-padded, masked steps
            shape = list(x.shape)
            shape[axis] = env.horizon - len(steps)
            x = torch.cat([x, x.new_zeros(shape)], axis)
        stacked.append(x)
    return Trajectories(*stacked)
