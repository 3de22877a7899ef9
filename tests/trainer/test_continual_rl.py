"""Continual RL end to end: the MuJoCo task wrapper changes the physics (free fall), the
policy-gradient estimator runs on the new task type, `fewtask-train continual-rl` on the
point-navigation variant (every method, results schema, resume, lock), bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewtask_data import FewtaskError, io
from fewtask_data.builders.dynamics import build_dynamics_families
from fewtask_data.sources.dynamics import load_dynamics_families
from results_schema import check_results

REPO = Path(__file__).resolve().parents[2]
needs_mujoco = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import gymnasium, mujoco, stable_baselines3"], capture_output=True).returncode != 0,
    reason="gymnasium[mujoco] or stable-baselines3 is not installed (pip install -e '.[mujoco]', which `make test` does)",
)
TINY = ["--seeds", "0", "--iterations", "2", "--trajectories", "3", "--horizon", "8", "--hidden", "8", "--phases", "3",
        "--phase-steps", "40", "--sac-learning-starts", "20", "--sac-batch", "16", "--sac-hidden", "16", "--sac-buffer",
        "30", "--reference-iterations", "1", "--eval-trajectories", "2", "--eval-steps", "2"]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "trainer.cli", *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)  # fmt: skip


@needs_mujoco
def test_free_fall_gives_g_times_the_step_for_three_gravities():
    from trainer.domains.dynamics.env import make_raw, set_task

    env = make_raw("HalfCheetah-v5")
    u = env.unwrapped
    for g in (-7.0, -9.81, -17.0):
        set_task(env, {"gravity": g})
        env.reset(seed=0)
        q = u.init_qpos.copy()
        q[1] = 5.0  # lifted clear of the floor, at rest
        u.set_state(q, np.zeros_like(u.init_qvel))
        env.step(np.zeros(env.action_space.shape))
        assert u.dt == pytest.approx(0.05)
        assert u.data.qvel[1] == pytest.approx(g * 0.05, abs=1e-12)  # vertical velocity of the root
    mass, friction = u.model.body_mass.copy(), u.model.geom_friction[:, 0].copy()
    set_task(env, {"gravity": -9.81, "mass_scale": 2.0, "friction_scale": 0.5})
    set_task(env, {"gravity": -9.81, "mass_scale": 2.0, "friction_scale": 0.5})  # scales the originals, never compounds
    assert np.allclose(u.model.body_mass, 2 * mass) and np.allclose(u.model.geom_friction[:, 0], 0.5 * friction)
    env.reset(seed=1)
    assert np.allclose(u.model.body_mass, 2 * mass) and u.model.opt.gravity[2] == -9.81  # survives reset()


@needs_mujoco
def test_the_estimator_replays_exactly_on_the_mujoco_velocity_task(tmp_path):
    from fewtask_data.sources.dynamics import space_from_params
    from fewtask_data.builders.dynamics import dynamics_params
    from trainer.domains.dynamics.env import task_env_maker
    from trainer.domains.rl.methods import RLSettings, Sampler, maltml, maml
    from trainer.domains.rl.policy import GaussianMLP

    space = space_from_params(dynamics_params("HalfCheetah-v5"))
    make_env = task_env_maker(space, 5, False)
    policy = GaussianMLP(17, 6, (8,))
    theta = {k: v.requires_grad_() for k, v in policy.init(torch.Generator().manual_seed(0)).items()}
    tasks = torch.tensor([[-9.81, 1.0], [-12.0, 0.5]])
    for run in (lambda s: maml(s, theta, tasks), lambda s: maltml(s, theta, tasks[None], tasks[None, :1])):
        sampler = Sampler(make_env, policy, RLSettings(trajectories=2, estimator="dice"), torch.Generator().manual_seed(1))
        first = run(sampler)
        sampler.rewind()
        again = run(sampler)
        assert torch.equal(first.objective, again.objective)
        grads = torch.autograd.grad(first.objective.sum(), list(theta.values()), allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads) and any(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(FewtaskError, match="outside its band"):
        space.check_task({"gravity": -30.0})


@needs_mujoco
def test_unknown_env_id_is_one_line(tmp_path):
    from trainer.domains.dynamics.env import make_raw

    with pytest.raises(FewtaskError, match="unknown environment id"):
        make_raw("NoSuchCheetah-v9")
    build_dynamics_families(tmp_path / "f", counts={"train": 2, "val": 1, "test": 2}, env="NoSuchCheetah-v9")
    result = cli("continual-rl", "--families", str(tmp_path / "f"), "--out", str(tmp_path / "o"), *TINY)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: unknown environment id"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@needs_mujoco
@pytest.mark.slow
def test_continual_rl_on_point_families_end_to_end_with_resume_and_lock(tmp_path):
    fams = tmp_path / "fams"
    build_dynamics_families(fams, counts={"train": 4, "val": 1, "test": 2}, env="point")
    out = tmp_path / "run"
    first = cli("continual-rl", "--families", str(fams), "--out", str(out), "--stream", "drift", *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "sac-mtr seed 0 phase 2" in first.stdout and "maltml seed 0 it 2" in first.stdout
    results = check_results(out / "results.json")
    assert set(results["methods"]) == {"maltml", "maml", "pretrain", "oracle", "sac-fifo", "sac-reservoir", "sac-half", "sac-mtr",
                                       "sac-oracle"}  # fmt: skip
    assert len(results["extra"]["per_seed_stream"]["0"]["grid_returns"]["sac-mtr"]) == 4
    streams = results["extra"]["stream_results"]
    assert set(streams["methods"]) == {"maltml", "maml", "maml-continual", "pg-finetune", "oracle", "sac-fifo",
                                       "sac-reservoir", "sac-half", "sac-mtr", "sac-oracle"}  # fmt: skip
    assert len(streams["methods"]["maltml"]["grid_return"]["mean"]) == 4  # before + after each of 3 phases
    assert "maltml_minus_sac-mtr" in streams["comparisons"]
    stream = json.loads((out / "stream-seed-0.json").read_text())
    assert stream["kind"] == "drift" and len(stream["phases"]) == 3
    # resume: the finished training and deployments are loaded, the results are the same
    again = cli("continual-rl", "--families", str(fams), "--out", str(out), "--stream", "drift", "--resume", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert check_results(out / "results.json")["extra"]["stream_results"] == streams
    with io.exclusive(out / "maltml" / "seed-0"):
        locked = cli("continual-rl", "--families", str(fams), "--out", str(out), *TINY, "--methods", "maltml")
        assert locked.returncode == 2 and "another process is training in" in locked.stderr, locked.stderr[-500:]
    too_long = cli("continual-rl", "--families", str(fams), "--out", str(tmp_path / "y"), *TINY, "--stream-steps", "999")
    assert too_long.returncode == 2 and "longer than its schedule" in too_long.stderr


def test_point_families_load_without_mujoco(tmp_path):
    build_dynamics_families(tmp_path, counts={"train": 2, "val": 1, "test": 2}, env="point")
    space, fams = load_dynamics_families(tmp_path)
    assert space.names == ["goal_x", "goal_y"] and len(fams["test"]) == 2


@needs_mujoco
def test_sac_context_oracle_observes_the_task_parameters():
    from fewtask_data.sources.dynamics import TaskSpace
    from trainer.domains.dynamics.sac import task_gym_env

    space = TaskSpace("HalfCheetah-v5", "velocity", {"gravity": [-17.0, -7.0], "velocity": [0.0, 2.0]}, "gravity", ())
    plain, oracle = task_gym_env(space, 5), task_gym_env(space, 5, context=True)
    for env in (plain, oracle):
        env.set_task({"gravity": -12.0, "velocity": 1.0})
    obs, ctx = plain.reset(seed=0)[0], oracle.reset(seed=0)[0]
    assert oracle.observation_space.shape[0] == plain.observation_space.shape[0] + 2
    assert np.array_equal(ctx[:-2], obs) and np.allclose(ctx[-2:], [-12 / 17, 1 / 2])  # each over its range's magnitude
    action = np.full(6, 0.3)
    stepped = oracle.step(action)[0]
    assert np.array_equal(stepped[:-2], plain.step(action)[0]) and np.allclose(stepped[-2:], ctx[-2:])
