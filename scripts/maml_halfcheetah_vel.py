"""Anchor: MAML on HalfCheetah-Vel at g = -9.81 (Finn et al. 2017; published MAML -139.0 +-
18.9 in Raghu et al. 2020, Table 2, after 500 iterations), through the same task wrapper
(trainer/domains/dynamics/env.py, velocity reward) and TRPO loop as `continual-rl`.

Meta-trains with exact resume and the run-folder lock (`--resume` continues a killed run),
then scores the policy on ``--eval-tasks`` fixed target velocities after 0..S policy-gradient
steps and writes results.json (the one schema) with the learning curve:

    PYTHONPATH=. python scripts/maml_halfcheetah_vel.py --out runs/maml-cheetah-vel --iterations 500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fewtask_data import io
from fewtask_data.sources.dynamics import TaskSpace
from trainer.domains.dynamics.env import task_env_maker
from trainer.domains.dynamics.tasks import tasks_in
from trainer.domains.rl.methods import RLSettings, Sampler, maml
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import report
from trainer.evaluation.rl import describe, finetune_curves
from trainer.training.policy_loop import RLTrainConfig, train_or_load

G = -9.81
SPACE = TaskSpace("HalfCheetah-v5", "velocity", {"gravity": [G, G], "velocity": [0.0, 2.0]}, "gravity", (G,))
BAND = torch.tensor([G, G], dtype=torch.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/maml-cheetah-vel"))
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--tasks", type=int, default=40, help="meta-batch (MAML: 40)")
    p.add_argument("--trajectories", type=int, default=20, help="per task and level (MAML: 20)")
    p.add_argument("--horizon", type=int, default=200)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--eval-steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = io.ensure_writable(a.out)
    make_env = task_env_maker(SPACE, a.horizon, False)
    policy = GaussianMLP(17, 6, (100, 100))
    settings = RLSettings(trajectories=a.trajectories, alpha=a.alpha, gamma=a.alpha, estimator="dice")

    def objective(sampler, params, gen, graph):
        return maml(sampler, params, tasks_in(SPACE, BAND, a.tasks, gen), graph)

    def show(it, line):
        print(f"maml it {it}: return {line['returns_before']:.1f} -> {line['returns_after']:.1f} ({line['elapsed_s']:.0f}s)", flush=True)

    config = RLTrainConfig(a.iterations, out / "maml" / f"seed-{a.seed}", a.seed, resume=a.resume, checkpoint_every=1,
                           max_seconds=60 * a.max_minutes)  # fmt: skip
    params, budget, _ = train_or_load(policy.init(torch.Generator().manual_seed(a.seed)), objective,
                                      lambda gen: Sampler(make_env, policy, settings, gen), config, "maml", a.eval_only, show)  # fmt: skip
    t0 = time.perf_counter()
    goals = tasks_in(SPACE, BAND, a.eval_tasks, torch.Generator().manual_seed(1234))
    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(1234 + a.seed))
    returns, _ = finetune_curves(sampler, params, goals, a.alpha, a.eval_steps)
    print(f"maml after 0..{a.eval_steps} steps on {a.eval_tasks} velocities: {describe(returns)} ({time.perf_counter() - t0:.0f}s)")
    extra = {"published": "MAML -139.0 +- 18.9 (Raghu et al. 2020, Table 2, 500 iterations)", "gravity": G,
             "settings": vars(a) | {"out": str(a.out)}}  # fmt: skip
    results = report.results("MAML on HalfCheetah-Vel at g = -9.81 (anchor)", vars(a), "test target velocity",
                             {a.seed: {"maml": {report.WITHOUT: {"return": returns}}}}, range(a.eval_steps + 1),
                             {"maml": [{"seed": a.seed, **budget}]}, [], extra)  # fmt: skip
    io.write_json(out / "results.json", results)
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
