"""2D navigation benchmark, all measured in one run (1 thread).

1. Environment steps per second: the vectorized torch `PointEnv` (all tasks and
   trajectories in one tensor) against a per-environment Python loop over
   gymnasium-style environments (one NumPy point agent each, ``step(action) -> (obs,
   reward, terminated, truncated, info)``, the way maml_rl's samplers step
   ``point_env_randgoal``). Same agents, same horizon, random actions.
2. With ``--meta-iteration``: wall time of MAML meta-iterations with the published
   settings (20 tasks x 20 trajectories, horizon 100, one inner step, TRPO), and of its
   parts (sampling, the objective, one KL Hessian-vector product).
   With ``--maltml-iteration``: the same for MALTML at `navigation`'s defaults (4 families,
   5 meta and 2 goal tasks each, one step per level, third order), in the same run, so the
   two iterations' costs compare part by part.
3. With ``--gradient-noise``: mean pairwise cosine between meta-gradients of the
   estimators on independent samples (same tasks, same parameters), which shows the
   variance price of the exact estimator's upstream score term.

Usage: .venv/bin/python scripts/bench_navigation.py [--tasks 20] [--trajectories 20]
       [--meta-iteration] [--maltml-iteration] [--gradient-noise]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

from trainer.domains.rl.env import PointEnv
from trainer.domains.rl.methods import RLSettings, Sampler, maltml, maml
from trainer.domains.rl.policy import GaussianMLP


class GymPointEnv:
    """One point agent in NumPy with a gymnasium-style step (maml_rl's point_env_randgoal
    under rllab's normalize)."""

    def __init__(self, goal: np.ndarray, horizon: int = 100) -> None:
        self.goal, self.horizon = goal, horizon

    def reset(self):
        self.state, self.t = np.zeros(2), 0
        return self.state.copy(), {}

    def step(self, action):
        self.state = self.state + np.clip(0.1 * action, -0.1, 0.1)
        self.t += 1
        x, y = self.state - self.goal
        reward = -((x**2 + y**2) ** 0.5)
        done = abs(x) < 0.01 and abs(y) < 0.01
        return self.state.copy(), reward, done, self.t >= self.horizon, {}


def loop_steps_per_second(goals: np.ndarray, trajectories: int, horizon: int, rng) -> float:
    envs = [GymPointEnv(g, horizon) for g in goals for _ in range(trajectories)]
    for env in envs:
        env.reset()
    running = [True] * len(envs)
    steps, t0 = 0, time.perf_counter()
    for _ in range(horizon):
        actions = rng.standard_normal((len(envs), 2))
        for i, env in enumerate(envs):
            if running[i]:
                _, _, done, truncated, _ = env.step(actions[i])
                running[i] = not (done or truncated)
                steps += 1
    return steps / (time.perf_counter() - t0)


def vector_steps_per_second(goals: torch.Tensor, trajectories: int, horizon: int, gen) -> float:
    env = PointEnv(goals, trajectories, horizon)
    env.reset()
    steps, t0 = 0, time.perf_counter()
    for _ in range(horizon):
        actions = torch.randn(*goals.shape[:-1], trajectories, 2, generator=gen)
        _, _, mask = env.step(actions)
        steps += int(mask.sum())
    return steps / (time.perf_counter() - t0)


def maml_objective(tasks: int):
    """MAML's objective on ``tasks`` uniform goals, as the training loop calls it."""

    def objective(sampler, params, gen, graph=True):
        return maml(sampler, params, torch.rand(tasks, 2, generator=gen) - 0.5, graph)

    return objective


def maltml_objective(families: int, tasks: int, goal_tasks: int):
    """MALTML's objective (`navigation`'s defaults: B families, L meta and C goal tasks each;
    uniform goals stand in for the crops: the cost does not depend on where goals lie)."""

    def objective(sampler, params, gen, graph=True):
        meta = torch.rand(families, tasks, 2, generator=gen) - 0.5
        goal = torch.rand(families, goal_tasks, 2, generator=gen) - 0.5
        return maltml(sampler, params, meta, goal, graph)

    return objective


def meta_iteration(name: str, objective, settings: RLSettings, repeats: int) -> dict:
    """Seconds per TRPO iteration of ``objective`` (the training loop's), and its parts on one
    batch: the first pass with sampling, the objective's replay on the same samples, one KL
    Hessian-vector product (TRPO's conjugate gradient takes ~10 and the line search replays)."""
    from trainer.training.policy_loop import RLTrainConfig, train_policy
    import tempfile

    policy = GaussianMLP(2, 2)
    theta = policy.init(torch.Generator().manual_seed(0))

    def make_env(goals, n):
        return PointEnv(goals, n, 100)

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        train_policy(theta, objective, lambda gen: Sampler(make_env, policy, settings, gen), RLTrainConfig(repeats, out), name)
        per_iteration = (time.perf_counter() - t0) / repeats
    # parts, on one batch
    leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(2))
    t0 = time.perf_counter()
    objective(sampler, leaves, torch.Generator().manual_seed(1))
    sample_s = time.perf_counter() - t0
    sampler.rewind()
    t0 = time.perf_counter()
    out = objective(sampler, leaves, torch.Generator().manual_seed(1))
    replay_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kl_grads = torch.autograd.grad(out.kl, list(leaves.values()), create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in kl_grads])
    kl_grad_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch.autograd.grad(flat @ torch.randn_like(flat), list(leaves.values()))
    hvp_s = time.perf_counter() - t0
    return {"seconds_per_meta_iteration": round(per_iteration, 2), "first_pass_with_sampling_s": round(sample_s, 2),
            "objective_replay_s": round(replay_s, 2), "kl_gradient_s": round(kl_grad_s, 2), "kl_hvp_s": round(hvp_s, 2),
            "iterations_timed": repeats}  # fmt: skip


def gradient_noise(tasks: int, trajectories: int, alpha: float, repeats: int) -> dict:
    policy = GaussianMLP(2, 2)
    theta = {k: v.requires_grad_() for k, v in policy.init(torch.Generator().manual_seed(0)).items()}
    goals = torch.rand(tasks, 2, generator=torch.Generator().manual_seed(5)) - 0.5
    out = {}
    for estimator in ("exact", "dice", "fixed"):
        settings = RLSettings(trajectories=trajectories, alpha=alpha, estimator=estimator)
        grads = []
        for rep in range(repeats):
            sampler = Sampler(lambda g, n: PointEnv(g, n, 100), policy, settings, torch.Generator().manual_seed(rep))
            g = torch.autograd.grad(maml(sampler, theta, goals).objective.mean(), list(theta.values()))
            grads.append(torch.cat([x.reshape(-1) for x in g]))
        cos = [float(torch.nn.functional.cosine_similarity(a, b, 0)) for a, b in itertools.combinations(grads, 2)]
        out[estimator] = {"mean_pairwise_cosine": round(sum(cos) / len(cos), 3), "repeats": repeats}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--trajectories", type=int, default=20)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--meta-iteration", action="store_true")
    p.add_argument("--maltml-iteration", action="store_true")
    p.add_argument("--families", type=int, default=4, help="MALTML's families per meta-batch (B)")
    p.add_argument("--meta-tasks", type=int, default=5, help="MALTML's meta tasks per family (L)")
    p.add_argument("--goal-tasks", type=int, default=2, help="MALTML's goal tasks per family (C)")
    p.add_argument("--gradient-noise", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    goals = torch.rand(a.tasks, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    vector = [vector_steps_per_second(goals, a.trajectories, a.horizon, torch.Generator().manual_seed(i)) for i in range(3)]
    loop = [loop_steps_per_second(goals.double().numpy(), a.trajectories, a.horizon, np.random.default_rng(i)) for i in range(3)]
    result = {
        "agents": a.tasks * a.trajectories, "horizon": a.horizon,
        "vectorized_steps_per_s": round(max(vector)), "python_loop_steps_per_s": round(max(loop)),
        "speedup": round(max(vector) / max(loop), 1),
    }  # fmt: skip
    print(f"env steps/s: vectorized {result['vectorized_steps_per_s']:,} vs per-env loop "
          f"{result['python_loop_steps_per_s']:,}: {result['speedup']}x ({result['agents']} agents)")  # fmt: skip
    if a.meta_iteration:
        maml_settings = RLSettings(trajectories=a.trajectories, alpha=0.1, estimator="dice")  # the published MAML run
        result["maml_meta_iteration"] = meta_iteration("maml", maml_objective(a.tasks), maml_settings, a.repeats)
        print("MAML meta-iteration:", result["maml_meta_iteration"])
    if a.maltml_iteration:  # beside MAML's, measured in the same run
        maltml_fn = maltml_objective(a.families, a.meta_tasks, a.goal_tasks)
        maltml_settings = RLSettings(trajectories=a.trajectories, alpha=0.5, beta=0.1, gamma=0.5, estimator="dice")
        result["maltml_meta_iteration"] = meta_iteration("maltml", maltml_fn, maltml_settings, a.repeats)
        print("MALTML meta-iteration:", result["maltml_meta_iteration"])
    if a.gradient_noise:
        result["gradient_noise"] = gradient_noise(a.tasks, a.trajectories, 0.5, 4)
        print("meta-gradient agreement across samples:", result["gradient_noise"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
