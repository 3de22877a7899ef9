"""Vectorized environments in plain torch, batched over any leading axes
([families, tasks] or [tasks]) and a trajectory axis.

`PointEnv` is MAML's 2D navigation task (cbfinn/maml_rl ``point_env_randgoal.py`` under
rllab's ``normalize``): the observation is the 2D position, every trajectory starts at
the origin, the policy's action in [-1, 1] is scaled to a move of at most 0.1 per axis
(and clipped), the reward is minus the Euclidean distance to the goal after the move,
and a trajectory ends when both coordinates are within 0.01 of the goal or at the
horizon. Finished trajectories are masked, not reset: their position stays and their
later steps carry mask 0. ``oracle=True`` appends the goal to the observation.

`QuadraticBandit` is a one-step task with a closed-form expected return (reward
-||a - goal||^2), used to check the estimator against analytic meta-gradients.
"""

from __future__ import annotations

import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.navigation import SQUARE

MAX_MOVE = 0.1  # rllab's normalize maps [-1, 1] onto the action box [-0.1, 0.1]
GOAL_TOLERANCE = 0.01
GOAL_RANGE = SQUARE[1]  # MAML's goals: uniform in [-0.5, 0.5]^2, the square the crop families live in


def check_horizon(horizon: int) -> int:
    if horizon < 1:
        raise FewtaskError(f"horizon must be >= 1, got {horizon}; use e.g. --horizon 100")
    return horizon


class PointEnv:
    """Point agents for goals ``[*lead, 2]`` with ``trajectories`` agents per goal."""

    act_dim = 2

    def __init__(self, goals: torch.Tensor, trajectories: int, horizon: int = 100, oracle: bool = False) -> None:
        self.goals, self.trajectories, self.horizon, self.oracle = goals, trajectories, check_horizon(horizon), oracle
        self.obs_dim = 4 if oracle else 2

    def reset(self) -> torch.Tensor:
        lead = self.goals.shape[:-1]
        self.pos = self.goals.new_zeros(*lead, self.trajectories, 2)
        self.alive = torch.ones(self.pos.shape[:-1], dtype=torch.bool, device=self.pos.device)
        return self.observe()

    def observe(self) -> torch.Tensor:
        if not self.oracle:
            return self.pos.clone()
        return torch.cat([self.pos, self.goals.unsqueeze(-2).expand_as(self.pos)], -1)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next observation, reward, mask): the mask says which trajectories were still
        running when ``action`` was taken; the others neither move nor earn reward."""
        mask = self.alive
        move = (MAX_MOVE * action).clamp(-MAX_MOVE, MAX_MOVE)
        self.pos = torch.where(mask.unsqueeze(-1), self.pos + move, self.pos)
        offset = self.pos - self.goals.unsqueeze(-2)
        reward = torch.where(mask, -offset.norm(dim=-1), torch.zeros_like(offset[..., 0]))
        self.alive = mask & ~(offset.abs() < GOAL_TOLERANCE).all(-1)
        return self.observe(), reward, mask.to(reward.dtype)


class QuadraticBandit:
    """One step from a constant observation; reward offset - ||a - goal||^2 (goals
    ``[*lead, d]``). The offset changes no derivative of the expected return; near 0 mean
    reward it lowers the variance of baseline-free estimates."""

    obs_dim = 1

    def __init__(self, goals: torch.Tensor, trajectories: int, offset: float = 0.0) -> None:
        self.goals, self.trajectories, self.horizon, self.offset = goals, trajectories, 1, offset
        self.act_dim = goals.shape[-1]

    def reset(self) -> torch.Tensor:
        return self.goals.new_zeros(*self.goals.shape[:-1], self.trajectories, 1)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reward = self.offset - ((action - self.goals.unsqueeze(-2)) ** 2).sum(-1)
        return self.reset(), reward, torch.ones_like(reward)


def uniform_goals(generator: torch.Generator, count: int) -> torch.Tensor:
    """MAML's goals: uniform in [-0.5, 0.5]^2."""
    return (torch.rand(count, 2, generator=generator) * 2 - 1) * GOAL_RANGE


def env_maker(horizon: int, oracle: bool):
    """``make_env(goals, trajectories)`` for a `Sampler`: the point environment (the oracle
    observes its goal)."""
    return lambda goals, n: PointEnv(goals, n, horizon, oracle)
