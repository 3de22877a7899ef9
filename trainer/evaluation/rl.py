"""Evaluation on held-out goals and families: mean return after 0..S vanilla
policy-gradient steps (step size of the method's finetuning level, fresh trajectories of
the current policy at every step), with and without MALTML's meta-update on the family's
L tasks. A method that learned its step sizes is scored with its own (`own_step_sizes`:
MALTML's alpha and beta in the meta-update and gamma on the goal steps, MAML's alpha).
Summaries are `trainer.evaluation.stats`' (with the number of adaptations that diverged: a
step too large for a near-deterministic policy overflows its log-probabilities and returns
NaN, and the summary over the others)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from trainer.core.functional import Params, at_step
from trainer.core.step_sizes import finetune_sizes, level_lrs
from trainer.domains.rl.methods import Sampler, StepSize, adapt, meta_update
from trainer.domains.rl.rollout import rollout


def _leaves(params: Params, adapting: frozenset[str] | None = None) -> Params:
    """Fresh leaves; only ``adapting`` (None: every tensor) require grad, so `methods._step`
    moves only those and holds the others fixed."""
    return {k: v.detach().clone().requires_grad_(adapting is None or k in adapting) for k, v in params.items()}


def own_step_sizes(sizes: Params, finetune_level: str, fixed: StepSize | Sequence[float]) -> tuple:
    """(goal-step size, log step sizes of the meta-update) a method is scored with: with
    learned ``sizes`` its own (its ``finetune_level``'s, MALTML's gamma or MAML's alpha, per
    tensor or per step, and its alpha and beta; `core.step_sizes.finetune_sizes`, as the
    protocol on examples), else ``fixed`` and {} (the settings' numbers)."""
    if not sizes:
        return fixed, {}
    own = finetune_sizes(sizes, finetune_level)
    return level_lrs(own, "gamma"), own


def step_rates(lr: StepSize | Sequence[float], steps: int) -> list:
    """One step size per step: a number or per-tensor sizes for every step, a learned per-step
    schedule (per-tensor dicts; past its end, its last: `functional.at_step`), or one number per step."""
    if isinstance(lr, list) and lr and isinstance(lr[0], Mapping):
        return [at_step(lr, s) for s in range(steps)]
    rates = [lr] * steps if isinstance(lr, (int, float, Mapping)) else list(lr)
    if len(rates) != steps:
        raise ValueError(f"{len(rates)} step sizes for {steps} steps")
    return rates


NOISELESS_LOG_STD = -30.0  # exp(-30) ~ 1e-13: the sampled action is the mean action


def mean_action_returns(sampler: Sampler, params: Params, goals: torch.Tensor) -> torch.Tensor:
    """Return per goal of the policy's mean action (no exploration noise), [*lead]."""
    quiet = {k: v.detach() for k, v in params.items()}
    quiet["log_std"] = torch.full_like(quiet["log_std"], NOISELESS_LOG_STD)
    return rollout(sampler.make_env(goals, 1), sampler.policy, quiet, torch.Generator().manual_seed(0)).returns()[..., 0]


def finetune_curves(sampler: Sampler, params: Params, goals: torch.Tensor, lr: StepSize | Sequence[float], steps: int,
                    mean_action: bool = False,
                    adapting: frozenset[str] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """One sampled adaptation of 0..steps policy-gradient steps, scored per goal by the mean
    undiscounted return of its sampled trajectories and (``mean_action``) by the policy's
    mean action: ([*lead, steps+1], the same or None). ``params`` have leading axes that
    are a prefix of the goals' (or none); ``lr``: the step sizes (`step_rates`); ``adapting``:
    the tensors the steps move (None: all; the analysis' freezing ablations)."""
    rates = step_rates(lr, steps)
    params = _leaves(sampler.policy.broadcast(params, goals.shape[:-1]), adapting)
    sampled, quiet = [], []
    for rate in rates:
        drawn: list = []
        if mean_action:
            quiet.append(mean_action_returns(sampler, params, goals))
        params, _ = adapt(sampler, params, goals, rate, 1, goals.new_zeros(goals.shape[:-1]), False, drawn)
        sampled.append(drawn[0].traj.returns().mean(-1))
        params = _leaves(params, adapting)
    d, _ = sampler.draw(goals, params, outer=True)
    sampled.append(d.traj.returns().mean(-1))
    if mean_action:
        quiet.append(mean_action_returns(sampler, params, goals))
    return torch.stack(sampled, -1).detach(), (torch.stack(quiet, -1) if mean_action else None)


def goal_stepped(sampler: Sampler, params: Params, goals: torch.Tensor, lr: StepSize | Sequence[float],
                 steps: int) -> Params:  # fmt: skip
    """The policies after `finetune_curves`' adaptation (the same steps on fresh trajectories,
    without its scoring draws): phi per goal, [*goals' lead, ...], detached."""
    params = _leaves(sampler.policy.broadcast(params, goals.shape[:-1]))
    for rate in step_rates(lr, steps):
        params, _ = adapt(sampler, params, goals, rate, 1, goals.new_zeros(goals.shape[:-1]), False, [])
        params = _leaves(params)
    return {k: v.detach() for k, v in params.items()}


def finetune_returns(sampler: Sampler, params: Params, goals: torch.Tensor, lr: StepSize | Sequence[float],
                     steps: int, mean_action: bool = False) -> torch.Tensor:  # fmt: skip
    """`finetune_curves`' sampled scores, or with ``mean_action`` its mean-action scores."""
    sampled, quiet = finetune_curves(sampler, params, goals, lr, steps, mean_action)
    return quiet if mean_action else sampled


def family_curves(sampler: Sampler, theta: Params, meta_goals: torch.Tensor, goal_goals: torch.Tensor, lr: StepSize,
                  steps: int, meta: bool, mean_action: bool = False, chunk: int = 10,
                  sizes: Params | None = None,
                  adapting: tuple[frozenset[str] | None, frozenset[str] | None] = (None, None),
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Per family [F, steps+1], the mean over its goal tasks of `finetune_curves`' sampled
    (and with ``mean_action`` mean-action) scores, after (``meta``) or without the
    meta-update V_beta on the family's L tasks ``meta_goals`` [F, L, 2]; ``chunk``
    families at a time (the meta-update keeps a second-order graph). ``lr`` and ``sizes``:
    the goal steps' and the meta-update's step sizes (`own_step_sizes`); ``adapting``: the
    tensors the meta-update and the goal steps move (None: all)."""
    sampled, quiet = [], []
    for start in range(0, meta_goals.shape[0], chunk):
        meta_part, goal_part = meta_goals[start : start + chunk], goal_goals[start : start + chunk]
        params = theta
        if meta:
            params, _ = meta_update(sampler, _leaves(theta, adapting[0]), meta_part, True, [], sizes)
            params = {k: v.detach() for k, v in params.items()}
        drawn, still = finetune_curves(sampler, params, goal_part, lr, steps, mean_action, adapting[1])
        sampled.append(drawn.mean(-2))
        if still is not None:
            quiet.append(still.mean(-2))
    return torch.cat(sampled), (torch.cat(quiet) if mean_action else None)


def describe(values: torch.Tensor) -> str:
    """Mean returns per step for a log line, with the number of diverged adaptations."""
    means = " / ".join(f"{v:.1f}" for v in values.mean(0).tolist())
    bad = (~torch.isfinite(values)).sum(0).tolist()
    return means + (f" (diverged per step: {bad} of {values.shape[0]})" if any(bad) else "")
