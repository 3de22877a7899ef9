"""Benchmark of the continual-RL MuJoCo pieces (one torch thread; ratios measured in one run):

- environment steps per second of the batched task wrapper (gymnasium SyncVectorEnv of
  HalfCheetah-v5 copies, MAML's velocity reward, torch in and out) against one raw
  gymnasium env stepped in a Python loop;
- the wall time of one MALTML meta-iteration (TRPO, DiCE) at the given sizes.

    PYTHONPATH=. python scripts/bench_continual_rl.py [--envs 40] [--steps 200] [--iteration]
"""

from __future__ import annotations

import argparse
import time

import torch

from fewtask_data.builders.dynamics import dynamics_params
from fewtask_data.sources.dynamics import space_from_params
from trainer.domains.dynamics.env import BatchedTaskEnv, make_raw, task_env_maker
from trainer.domains.dynamics.tasks import tasks_in
from trainer.domains.rl.methods import RLSettings, Sampler, maltml
from trainer.domains.rl.policy import GaussianMLP
from trainer.training.policy_loop import RLTrainConfig, train_policy


def single_env(steps: int) -> float:
    env = make_raw("HalfCheetah-v5")
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(env.action_space.sample())
    return steps / (time.perf_counter() - t0)


def batched(envs: int, steps: int) -> float:
    space = space_from_params(dynamics_params("HalfCheetah-v5"))
    env = BatchedTaskEnv(space, tasks_in(space, torch.tensor([[-17.0, -7.0]]), envs, torch.Generator().manual_seed(0))[0], 1, steps)
    env.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(torch.rand(envs, 1, 6) * 2 - 1)
    return envs * steps / (time.perf_counter() - t0)


def maltml_iteration(args) -> float:
    space = space_from_params(dynamics_params("HalfCheetah-v5"))
    make_env = task_env_maker(space, args.horizon, False)
    policy = GaussianMLP(17, 6, (100, 100))
    bands = torch.tensor([[-12.0, -9.0], [-16.0, -13.0]])

    def objective(sampler, params, gen, graph):
        return maltml(sampler, params, tasks_in(space, bands, args.tasks, gen), tasks_in(space, bands, 2, gen), graph)

    settings = RLSettings(trajectories=args.trajectories, estimator="dice")
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        train_policy(policy.init(torch.Generator().manual_seed(0)), objective, lambda g: Sampler(make_env, policy, settings, g),
                     RLTrainConfig(1, out), "maltml")  # fmt: skip
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--iteration", action="store_true", help="also time one MALTML meta-iteration")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--trajectories", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    one, many = single_env(args.envs * args.steps // 4), batched(args.envs, args.steps)
    print(f"HalfCheetah-v5 steps/s: one raw env {one:,.0f}; batched task wrapper, {args.envs} envs {many:,.0f} "
          f"({many / one:.2f}x)")  # fmt: skip
    if args.iteration:
        print(f"one MALTML meta-iteration (B=2 families, L={args.tasks}, C=2, {args.trajectories} trajectories x "
              f"{args.horizon} steps, TRPO, DiCE): {maltml_iteration(args):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
