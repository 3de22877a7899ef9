"""MAML, MALTML, FO-MALTML and the direct (pretrain, oracle) objectives on sampled
trajectories, with every trajectory drawn from the current adapted policy.

Each objective runs once to sample (a `Sampler` records every draw in order) and can then
be re-run on the same samples at other parameters (`Sampler.rewind`): TRPO's KL
Hessian-vector products and line search need exactly that. The returned `Outcome` holds
the per-task DiCE objective (to maximize) and the mean KL of the outer policies to the
ones that sampled them.

Shapes: MAML's tasks are [T]; MALTML's meta tasks [F, L] and goal tasks [F, C], with the
meta-finetuned policy of a family copied to its tasks (`Policy.broadcast`).

The levels follow the supervised ones (`trainer.core.functional.meta_adapt`): the derivative
order gives each level's first-order flag (`trainer.algorithms.base.order_flags`: task steps
inside V_beta, V_beta's step, the goal steps, which are also MAML's), and V_beta reduces
the L query losses by ``meta_reduction`` (Eq. 2's sum, or their mean).

Step sizes are the settings' fixed numbers, or learned: log step sizes per (level, policy
tensor) keyed as in `trainer.core.step_sizes` (``"<level>:<name>"``, per step
``"<level>@<s>:<name>"``), passed as ``sizes`` to `maml`, `maltml` and `meta_update`; the
objective is then differentiable in them (`initial_step_sizes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from typing import Callable

import torch

from fewtask_data import FewtaskError
from trainer.algorithms.base import Levels
from trainer.core.functional import Params, at_step, reduce_tasks, sgd_step
from trainer.core.step_sizes import init_step_sizes, level_lrs
from trainer.domains.rl import dice, returns
from trainer.domains.rl.policy import Policy, kl
from trainer.domains.rl.rollout import Trajectories, rollout


@dataclass
class RLSettings:
    trajectories: int = 20  # per task and level
    alpha: float = 0.1  # MAML's inner step; MALTML's task step
    beta: float = 0.1  # MALTML's meta step (V_beta over the L tasks' losses, reduced by meta_reduction)
    gamma: float = 0.1  # MALTML's goal step
    task_steps: int = 1
    meta_steps: int = 1
    goal_steps: int = 1  # MAML's inner steps / MALTML's goal steps during training
    discount: float = 0.99
    gae_lambda: float = 1.0
    baseline: str = "linear"
    center: bool = True  # normalize inner-step advantages per task (maml_rl's center_adv)
    estimator: str = "exact"
    order: int = 3  # derivative order: 3 exact, 2 first-order task steps inside V_beta, 1 fully first order
    meta_reduction: str = "sum"  # Eq. 2 over the L query losses: "sum" (the paper) or "mean"
    first_order: InitVar[bool] = False  # FO-MALTML's switch from before `order`: True sets order 1

    def __post_init__(self, first_order: bool) -> None:
        if first_order and self.order == 2:
            raise FewtaskError("first_order=True means order 1; pass order=1 or order=2, not both")
        if first_order:
            self.order = 1
        if self.estimator not in dice.ESTIMATORS:
            raise FewtaskError(f"unknown estimator {self.estimator!r}; use one of {', '.join(dice.ESTIMATORS)}")
        if self.baseline not in returns.BASELINES:
            raise FewtaskError(f"unknown baseline {self.baseline!r}; use one of {', '.join(returns.BASELINES)}")
        if self.trajectories < 1:
            raise FewtaskError(f"trajectories per task must be >= 1, got {self.trajectories}")
        self.levels  # noqa: B018 -- validates the step sizes, step counts, order and reduction

    @property
    def levels(self) -> Levels:
        return Levels(self.alpha, self.beta, self.gamma, self.task_steps, self.meta_steps, self.goal_steps, self.order,
                      self.meta_reduction)  # fmt: skip


# A step size: a fixed number, one per policy tensor, or a per-step schedule of those (`at_step`)
StepSize = float | Mapping[str, torch.Tensor] | list


def level_step_size(settings: RLSettings, level: str, sizes: Params | None = None) -> StepSize:
    """A level's step size: the settings' fixed number, or with learned log step sizes
    ``sizes`` its per-tensor values (a per-step schedule when they have per-step keys)."""
    return level_lrs(sizes, level) if sizes else getattr(settings, level)


def initial_step_sizes(settings: RLSettings, theta: Params, goal_level: str, per_step: bool = False) -> Params:
    """Log step sizes per (level, policy tensor) at the settings' alpha, beta and gamma
    (`core.step_sizes.init_step_sizes`); ``per_step``: one per step as well, over the steps
    the objective takes at each level: MALTML's task (alpha), meta (beta) and goal (gamma)
    steps, or MAML's (``goal_level`` alpha) goal steps."""
    s = settings
    steps = {"alpha": s.task_steps, "beta": s.meta_steps, "gamma": s.goal_steps}
    if goal_level == "alpha":  # MAML: only its goal steps, at alpha
        steps = {"alpha": s.goal_steps}
    return init_step_sizes(theta, s.alpha, s.beta, s.gamma, steps if per_step else None)


@dataclass
class Draw:
    """One level's trajectories and what the estimator needs of them, fixed at sampling."""

    traj: Trajectories
    ref: torch.Tensor  # log-probs under the sampling parameters
    adv: torch.Tensor
    old: tuple[torch.Tensor, torch.Tensor]  # the sampling policy's (mean, log std) per step
    returns0: torch.Tensor  # discounted return of each trajectory


class Sampler:
    """Draws trajectories from given parameters and records them; after `rewind` the same
    calls replay the recorded draws in order (the goals and parameters may differ)."""

    def __init__(self, make_env: Callable, policy: Policy, settings: RLSettings, generator: torch.Generator | None = None):
        self.make_env, self.policy, self.settings, self.generator = make_env, policy, settings, generator
        self.draws: list[Draw] = []
        self.replaying, self.at = False, 0

    def rewind(self) -> None:
        self.replaying, self.at = True, 0

    def draw(self, goals: torch.Tensor, params: Params, outer: bool) -> tuple[Draw, torch.Tensor]:
        """(the draw, its log-probs under ``params``, differentiable)."""
        s = self.settings
        if self.replaying:
            d = self.draws[self.at]
            self.at += 1
        else:
            traj = rollout(self.make_env(goals, s.trajectories), self.policy, params, self.generator)
            with torch.no_grad():
                old = self.policy.dist({k: v.detach() for k, v in params.items()}, traj.obs)
                adv = returns.advantages(traj, s.discount, s.gae_lambda, s.baseline, center=s.center and not outer)
                g0 = returns.discounted_returns(traj.rewards, traj.mask, s.discount)[..., 0]
            d = Draw(traj, None, adv, old, g0)  # type: ignore[arg-type]
            self.draws.append(d)
        logp = d.traj.log_prob(self.policy, params)
        if d.ref is None:
            d.ref = logp.detach()
        return d, logp


@dataclass
class Outcome:
    objective: torch.Tensor  # per outer task, to maximize
    kl: torch.Tensor  # mean KL(sampling policy || policy at these parameters) over outer steps
    returns: torch.Tensor  # mean undiscounted return per outer task
    first_returns: torch.Tensor  # mean return of the first draw (pre-update for MAML)


def _inner_loss(d: Draw, logp: torch.Tensor, estimator: str) -> torch.Tensor:
    if estimator == "dice":
        return dice.dice_pg_loss(logp, d.ref, d.adv, d.traj.mask)
    return dice.pg_loss(logp, d.adv, d.traj.mask)


def _step(params: Params, loss: torch.Tensor, lr: float | Mapping[str, torch.Tensor], graph: bool,
          first_order: bool) -> Params:  # fmt: skip
    """One gradient step on the parameters that require grad (the others are held fixed),
    of size ``lr`` (a number, or one per tensor). ``first_order`` takes the step's direction
    as a constant; with ``graph`` the loss's graph is kept all the same: the exact
    estimator's upstream log-probs share it."""
    names = [k for k, v in params.items() if v.requires_grad]
    create = graph and not first_order
    grads = torch.autograd.grad(loss.sum(), [params[k] for k in names], create_graph=create, retain_graph=graph)
    if first_order or not graph:
        grads = [g.detach() for g in grads]
    return sgd_step(params, dict(zip(names, grads)), lr if isinstance(lr, Mapping) else {k: lr for k in names})


def _upstream_of(d: Draw, logp: torch.Tensor) -> torch.Tensor:
    return (logp - d.ref).sum((-2, -1))


def adapt(sampler: Sampler, params: Params, goals: torch.Tensor, lr: StepSize, steps: int, upstream: torch.Tensor,
          graph: bool, first: list, first_order: bool = False) -> tuple[Params, torch.Tensor]:  # fmt: skip
    """U: ``steps`` policy-gradient steps of size ``lr`` (`StepSize`), each on fresh
    trajectories of the current policy; ``upstream`` accumulates their log-probs (relative
    to the sampling values)."""
    s = sampler.settings
    for step in range(steps):
        d, logp = sampler.draw(goals, params, outer=False)
        first.append(d)
        params = _step(params, _inner_loss(d, logp, s.estimator), at_step(lr, step), graph, first_order)
        upstream = upstream + _upstream_of(d, logp)
    return params, upstream


def outer(sampler: Sampler, params: Params, goals: torch.Tensor, upstream: torch.Tensor, first: list) -> Outcome:
    """The outer objective on fresh trajectories of the adapted policies ``params``."""
    s, policy = sampler.settings, sampler.policy
    d, logp = sampler.draw(goals, params, outer=True)
    exact = s.estimator == "exact" and upstream.requires_grad
    objective = dice.outer_objective(logp, d.ref, d.adv, d.traj.mask, d.returns0, upstream if exact else None)
    mask = d.traj.mask
    divergence = (kl(d.old, policy.dist(params, d.traj.obs)) * mask).sum() / mask.sum().clamp_min(1)
    first_draw = (first or [d])[0]
    return Outcome(objective, divergence, d.traj.returns().mean(-1), first_draw.traj.returns().mean(-1))


def _zeros(goals: torch.Tensor) -> torch.Tensor:
    return goals.new_zeros(goals.shape[:-1])


def maml(sampler: Sampler, theta: Params, goals: torch.Tensor, graph: bool = True, sizes: Params | None = None) -> Outcome:
    """MAML on tasks ``goals`` [T, g]: ``goal_steps`` inner steps of size alpha per task
    (``sizes``: learned log step sizes instead of the settings' alpha)."""
    s, first = sampler.settings, []
    params = sampler.policy.broadcast(theta, goals.shape[:-1])
    alpha = level_step_size(s, "alpha", sizes)
    params, up = adapt(sampler, params, goals, alpha, s.goal_steps, _zeros(goals), graph, first, s.levels.flags.goal)
    return outer(sampler, params, goals, up, first)


def meta_update(sampler: Sampler, theta: Params, meta_goals: torch.Tensor, graph: bool, first: list,
                sizes: Params | None = None) -> tuple[Params, torch.Tensor]:  # fmt: skip
    """V_beta (Eq. 2) for families [F] (any leading axes) on their L tasks ``meta_goals``
    [F, L, g]: each meta step adapts every task (task_steps of size alpha on fresh
    trajectories), draws query trajectories from the adapted policies, and descends the
    sum (Eq. 2; or the mean, ``meta_reduction``) of the L query losses (size beta). Returns
    the family policies [F] and their upstream log-probs [F]. The task steps always keep
    their graph: the meta step's *value* differentiates through them (unless first
    order); ``graph=False`` only skips the meta step's. ``sizes``: learned log step sizes
    (their alpha and beta) instead of the settings' numbers."""
    s = sampler.settings
    flags = s.levels.flags
    alpha, beta = (level_step_size(s, level, sizes) for level in ("alpha", "beta"))
    families, tasks = meta_goals.shape[:-2], meta_goals.shape[:-1]
    params = sampler.policy.broadcast(theta, families)
    up = meta_goals.new_zeros(families)
    if tasks[-1] == 0:
        return params, up
    for step in range(s.meta_steps):
        task_params = sampler.policy.broadcast(params, tasks)
        task_params, task_up = adapt(sampler, task_params, meta_goals, alpha, s.task_steps,
                                     _zeros(meta_goals), True, first, flags.task)  # fmt: skip
        d, logp = sampler.draw(meta_goals, task_params, outer=False)
        query = reduce_tasks(_inner_loss(d, logp, s.estimator), s.meta_reduction)  # [F]
        params = _step(params, query, at_step(beta, step), graph, flags.meta)
        up = up + (task_up + _upstream_of(d, logp)).sum(-1)
    return params, up


def maltml(sampler: Sampler, theta: Params, meta_goals: torch.Tensor, goal_goals: torch.Tensor,
           graph: bool = True, sizes: Params | None = None) -> Outcome:  # fmt: skip
    """MALTML (Algorithm 1) for families [F]: V_beta on the L meta tasks, then
    ``goal_steps`` steps of size gamma on each of the C goal tasks ``goal_goals``
    [F, C, g], and the outer objective on fresh trajectories of the goal policies.
    ``sizes``: learned log step sizes (alpha, beta, gamma) instead of the settings' numbers."""
    s, first = sampler.settings, []
    params, up = meta_update(sampler, theta, meta_goals, graph, first, sizes)
    goal_lead = goal_goals.shape[:-1]
    params = sampler.policy.broadcast(params, goal_lead)
    up = up.unsqueeze(-1).expand(goal_lead)
    gamma = level_step_size(s, "gamma", sizes)
    params, up = adapt(sampler, params, goal_goals, gamma, s.goal_steps, up, graph, first, s.levels.flags.goal)
    return outer(sampler, params, goal_goals, up, first)


def direct(sampler: Sampler, theta: Params, goals: torch.Tensor, graph: bool = True) -> Outcome:
    """One policy for all tasks (pretrain; the oracle when the observation carries the goal)."""
    params = sampler.policy.broadcast(theta, goals.shape[:-1])
    return outer(sampler, params, goals, _zeros(goals), [])
