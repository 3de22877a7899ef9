"""Rapid learning or feature reuse for navigation policies (issue 23, docs/analysis.md).

The RL version of `trainer.evaluation.analysis`, with the navigation evaluation's own
meta-update and goal steps (`trainer.evaluation.rl`: `meta_update` on the family's L
tasks, then policy-gradient steps on fresh trajectories, each method's own step sizes):

- theta: the trained policy; theta': after the meta-update on held-out family f's L tasks
  (one per family); phi: after ``steps`` goal steps from theta' on each of its C goal tasks.
- Probe inputs: per family a fixed grid of positions (``GRID`` x ``GRID``) over the
  smallest rectangle holding the start (the origin) and the family's crop, i.e. the region
  an agent walking to this family's goals passes through. A grid, not visited states:
  visited states depend on the policy (theta, theta' and phi walk different paths, and on
  the sampling noise), while the similarity needs the same inputs at all three points.
- Layers: each hidden layer's ReLU output (``hidden.<i>``) and the mean (``mean``).
- Head and body: the head is the mean's output layer and the log std
  (`GaussianMLP.head_names`), the body the hidden layers.
- The ablation grid scores the return after the goal steps (the evaluation's sampled
  return, `family_curves`) with the meta-update and the goal steps each moving all /
  head / body (`rl.family_curves(adapting=...)`); every cell draws from a sampler seeded
  as the evaluation's, and the cell (all, all) is the evaluation's with-meta-update return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fewtask_data import FewtaskError
from trainer.domains.rl.methods import RLSettings, Sampler, meta_update
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation.analysis import (
    ADAPT,
    META_ROWS,
    mean_units,
    pair_similarities,
    stack_units,
)
from trainer.evaluation.rl import _leaves, family_curves, goal_stepped

GRID = 16  # probe positions per axis and family
PROBES = ("Per held-out family, a fixed grid of 16 x 16 positions over the smallest rectangle holding the start (the "
          "origin) and the family's crop: the region the agent crosses on the way to the family's goals; the same "
          "inputs at theta, theta' and phi (visited states would differ between them).")  # fmt: skip


def check_policy_layers(policy: GaussianMLP, layers: Sequence[str]) -> list[str]:
    """``layers`` (default: every one) if each names a recorded layer; else a one-line error."""
    names = policy.layer_names()
    bad = [name for name in layers if name not in names]
    if bad:
        raise FewtaskError(f"no layer {', '.join(bad)} in this policy; use --layers with names from: {', '.join(names)}")
    return list(layers) or names


def probe_grid(crop: torch.Tensor, count: int = GRID) -> torch.Tensor:
    """[count * count, 2] positions over the box spanning the origin and ``crop`` (x0, y0, w, h)."""
    lo = torch.minimum(crop[:2], torch.zeros(2))
    hi = torch.maximum(crop[:2] + crop[2:], torch.zeros(2))
    xs, ys = (torch.linspace(float(lo[i]), float(hi[i]), count) for i in range(2))
    return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)


def subset(policy: GaussianMLP, which: str) -> frozenset[str] | None:
    """The policy tensors that adapt: all (None), the head's or the body's."""
    if which == "all":
        return None
    head = policy.head_names()
    return head if which == "head" else frozenset(k for k in policy.shapes if k not in head)


def _one(params: dict, *index: int) -> dict:
    return {k: v[index] for k, v in params.items()}


def similarities(make_env: Callable, policy: GaussianMLP, settings: RLSettings, theta: dict, goal_lr, sizes: dict,
                 crops: torch.Tensor, meta_goals: torch.Tensor, goal_goals: torch.Tensor, layers: Sequence[str],
                 measures: Sequence[str], steps: int, seed: int, max_rows: int = 4096, row_seed: int = 0,
                 chunk: int = 10) -> dict:  # fmt: skip
    """{measure: {pair: {layer: tensor [families]}}} (goal tasks averaged within a family).
    The trajectories come from one sampler seeded ``seed`` (the evaluation's)."""
    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(seed))
    per_family = []
    for start in range(0, meta_goals.shape[0], chunk):
        meta_part, goal_part = meta_goals[start : start + chunk], goal_goals[start : start + chunk]
        tuned, _ = meta_update(sampler, _leaves(theta), meta_part, True, [], sizes)
        tuned = {k: v.detach() for k, v in tuned.items()}  # [F, ...]
        phi = goal_stepped(sampler, tuned, goal_part, goal_lr, steps)  # [F, C, ...]
        for f in range(meta_part.shape[0]):
            probe = probe_grid(crops[start + f])
            base = policy.layer_outputs(theta, probe)
            prime = policy.layer_outputs(_one(tuned, f), probe)
            per_goal = []
            for c in range(goal_part.shape[1]):
                acts = {"theta": base, "theta_prime": prime, "phi": policy.layer_outputs(_one(phi, f, c), probe)}
                per_goal.append(pair_similarities(acts, layers, measures, max_rows, row_seed + 1000 * (start + f) + c))
            per_family.append(mean_units(per_goal))
    return stack_units(per_family, layers, measures)


def ablation_grid(make_env: Callable, policy: GaussianMLP, settings: RLSettings, theta: dict, goal_lr, sizes: dict,
                  meta_goals: torch.Tensor, goal_goals: torch.Tensor, steps: int, seed: int) -> dict:  # fmt: skip
    """{meta row: {goal column: {"return": tensor [families]}}}: the mean sampled return over
    the family's goal tasks after ``steps`` goal steps, the meta-update moving all / head /
    body (or none) and the goal steps all / head / body."""
    grid: dict = {}
    for row in META_ROWS:
        grid[row] = {}
        for col in ADAPT:
            sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(seed))
            adapting = (subset(policy, row if row != "none" else "all"), subset(policy, col))
            sampled, _ = family_curves(sampler, theta, meta_goals, goal_goals, goal_lr, steps, row != "none",
                                       sizes=sizes, adapting=adapting)  # fmt: skip
            grid[row][col] = {"return": sampled[:, steps].double()}
    return grid
