"""Policy-gradient methods deployed on a stream of task families (continual RL).

At each phase of a stream (a family band and its goal task) a `PolicyLearner` updates its
current policy with its method, on fresh trajectories, through the same U and V as
training (`trainer.domains.rl.methods`):

- ``maltml``: V_beta on L tasks of the phase's family (Eq. 2, summed), then ``goal_steps``
  steps of size gamma on the goal task; from the meta-trained theta each phase.
- ``maml``: goal steps only, from the meta-trained theta (MAML meta-trained on all
  training families).
- ``maml-continual``: one TRPO step of MAML's objective on L tasks of the phase's family
  moves theta along the stream, then the goal steps from it.
- ``pg-finetune``: plain policy gradient on the goal task, carried from phase to phase
  (from the pretrained policy).
- ``oracle``: the context oracle's policy, which observes the task parameters; no update.

`single_task_reference` is Continual World's reference: a fresh policy trained with TRPO
on each task alone (one copy per task, one joint KL limit), scored before (the random
policy) and after.
"""

from __future__ import annotations

import random

import torch

from fewtask_data import FewtaskError
from trainer.core.functional import Params
from trainer.domains.dynamics.tasks import tasks_in
from trainer.domains.rl.methods import RLSettings, Sampler, adapt, direct, maml, meta_update
from trainer.domains.rl.policy import Policy
from trainer.domains.rl.rollout import rollout
from trainer.training.trpo import TrpoSettings, trpo_step

LEARNERS = ("maltml", "maml", "maml-continual", "pg-finetune", "oracle")


def _leaves(params: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def _squeeze(params: Params) -> Params:
    return {k: v.detach()[0] for k, v in params.items()}


def env_steps(sampler: Sampler) -> int:
    return int(sum(float(d.traj.mask.sum()) for d in sampler.draws))


def score(make_env, policy: Policy, params: Params, tasks: torch.Tensor, trajectories: int, seed: int) -> torch.Tensor:
    """Mean sampled return of ``params`` (no leading axes, or [T]) on each task [T, P]."""
    lead = policy.broadcast(params, tasks.shape[:-1])
    traj = rollout(make_env(tasks, trajectories), policy, lead, torch.Generator().manual_seed(seed))
    return traj.returns().mean(-1)


def trpo_on(theta: Params, objective, make_sampler, max_kl: float) -> Params:
    """One TRPO step of ``objective(sampler, params, graph)`` on one set of samples."""
    sampler = make_sampler()

    def evaluate(params: Params, differentiate: bool = True):
        outcome = objective(sampler, params, differentiate)
        sampler.rewind()
        return -outcome.objective.mean(), outcome.kl

    return trpo_step(theta, evaluate, TrpoSettings(max_kl=max_kl))[0]


class PolicyLearner:
    def __init__(self, mode: str, policy: Policy, theta: Params, make_env, settings: RLSettings, space,
                 meta_tasks: int, goal_steps: int, max_kl: float) -> None:  # fmt: skip
        if mode not in LEARNERS:
            raise FewtaskError(f"unknown stream learner {mode!r}; use one of {', '.join(LEARNERS)}")
        self.mode, self.policy, self.make_env, self.settings, self.space = mode, policy, make_env, settings, space
        self.theta, self.current, self.meta_tasks, self.goal_steps, self.max_kl = theta, theta, meta_tasks, goal_steps, max_kl

    def learn(self, phase: dict, generator: torch.Generator) -> int:
        """Update for one phase; returns the environment steps it sampled."""
        s, band = self.settings, torch.tensor([phase["band"]], dtype=torch.float64)
        goal = torch.tensor([[phase["goal"][n] for n in self.space.names]], dtype=torch.float32)
        sampler, spent = Sampler(self.make_env, self.policy, s, generator), 0
        if self.mode == "oracle":
            return 0
        if self.mode == "maml-continual":  # TRPO replays one set of samples: count them once
            tasks = tasks_in(self.space, band[0], self.meta_tasks, generator)  # [L, P]
            objective = lambda smp, p, graph: maml(smp, p, tasks, graph)  # noqa: E731
            inner = Sampler(self.make_env, self.policy, s, generator)
            self.theta = trpo_on(self.theta, objective, lambda: inner, self.max_kl)
            spent = env_steps(inner)
        start = self.current if self.mode == "pg-finetune" else self.theta
        params = self.policy.broadcast(_leaves(start), (1,))
        if self.mode == "maltml":
            meta = tasks_in(self.space, band, self.meta_tasks, generator)  # [1, L, P]
            params, _ = meta_update(sampler, _leaves(start), meta, True, [])
            params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        params, _ = adapt(sampler, params, goal, s.gamma, self.goal_steps, goal.new_zeros(1), False, [])
        self.current = _squeeze(params)
        return spent + env_steps(sampler)


def single_task_reference(make_env, policy: Policy, settings: RLSettings, tasks: torch.Tensor, iterations: int,
                          seed: int, trajectories: int, max_kl: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(return of the fresh policy, return after ``iterations`` TRPO steps) per task [T, P]."""
    theta0 = policy.init(torch.Generator().manual_seed(seed))
    theta = policy.broadcast(theta0, tasks.shape[:-1])
    theta = {k: v.clone() for k, v in theta.items()}
    for it in range(iterations):
        gen = torch.Generator().manual_seed(seed * 7919 + it)
        theta = trpo_on(theta, lambda smp, p, graph: direct(smp, p, tasks, graph),
                        lambda: Sampler(make_env, policy, settings, gen), max_kl)  # fmt: skip
    before = score(make_env, policy, theta0, tasks, trajectories, seed)
    return before, score(make_env, policy, theta, tasks, trajectories, seed)


def phase_generator(seed: int, phase: int) -> torch.Generator:
    return torch.Generator().manual_seed(random.Random(seed * 1_000_003 + phase).getrandbits(62))
