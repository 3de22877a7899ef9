"""Gymnasium MuJoCo environments whose task is a dict of named parameters, batched for
`trainer.domains.rl.methods.Sampler`.

`set_task(env, task)` writes a task's physics into a MuJoCo env: ``gravity`` (m/s^2, the
z component of ``model.opt.gravity``), ``mass_scale`` (every body mass times it) and
``friction_scale`` (every geom's sliding friction times it), then ``mujoco.mj_setConst``;
they survive ``reset()``. ``velocity`` is the target of MAML's HalfCheetah-Vel reward,
-|x velocity - target| - 0.05 ||a||^2 (task type ``velocity``); task type ``run`` keeps
gymnasium's own reward (Kaplanis et al.'s). At g = -9.81 the velocity family is MAML's
benchmark.

`BatchedTaskEnv` is the point env's interface (reset -> obs ``[*lead, N, obs_dim]``,
step(action) -> (obs, reward, mask), ``horizon``) over one gymnasium ``SyncVectorEnv`` of
prod(lead) * N copies (cached per size, so each draw reuses compiled models): task
vectors ``[*lead, P]`` in the family file's parameter order. Resets are seeded from the
task values and the draw's size, so a resumed run replays the same starts.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.dynamics import TaskSpace

PHYSICS = ("gravity", "mass_scale", "friction_scale")
CTRL_COST = 0.05  # MAML's HalfCheetah-Vel: 0.5 * 1e-1 * ||a||^2


def gym():
    """gymnasium with its MuJoCo environments, or a one-line error saying how to install them."""
    try:
        import gymnasium
        import mujoco  # noqa: F401
    except ImportError:
        raise FewtaskError("MuJoCo environments need gymnasium[mujoco]: pip install -e '.[mujoco]' (or make install)") from None
    return gymnasium


def make_raw(env_id: str):
    """One gymnasium env by id; an unknown id is a one-line error."""
    gymnasium = gym()
    try:
        env = gymnasium.make(env_id)
    except gymnasium.error.Error as e:
        raise FewtaskError(f"unknown environment id {env_id!r} ({type(e).__name__}); use a gymnasium MuJoCo id such as HalfCheetah-v5") from None
    if not hasattr(env.unwrapped, "model"):
        raise FewtaskError(f"{env_id!r} is not a MuJoCo environment; its task parameters set MuJoCo physics")
    return env


def set_task(env, task: dict) -> None:
    """Write the task's physics parameters into ``env`` (a gymnasium MuJoCo env)."""
    import mujoco

    u = env.unwrapped
    model = u.model
    if not hasattr(u, "_fewtask_base"):  # the unscaled masses and frictions, kept once
        u._fewtask_base = (model.body_mass.copy(), model.geom_friction[:, 0].copy())
    mass, friction = u._fewtask_base
    model.opt.gravity[:] = (0.0, 0.0, float(task.get("gravity", -9.81)))
    model.body_mass[:] = mass * float(task.get("mass_scale", 1.0))
    model.geom_friction[:, 0] = friction * float(task.get("friction_scale", 1.0))
    mujoco.mj_setConst(model, u.data)


def physics_state(env) -> np.ndarray:
    """Everything MuJoCo integrates from (time, positions, velocities, activations, warm
    start, controls, applied forces): with it a rebuilt env steps on exactly."""
    import mujoco

    u, spec = env.unwrapped, mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(u.model, spec))
    mujoco.mj_getState(u.model, u.data, state, spec)
    return state


def set_physics_state(env, state: np.ndarray) -> None:
    import mujoco

    u = env.unwrapped
    mujoco.mj_setState(u.model, u.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)


def task_reward(task_type: str, info: dict, action: np.ndarray, reward: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """The reward of the task type for one vector step (``action`` clipped to the action box)."""
    if task_type == "run":
        return reward
    return -np.abs(info["x_velocity"] - target) - CTRL_COST * (action**2).sum(-1)


@lru_cache(maxsize=16)
def vector_env(env_id: str, count: int):
    """A SyncVectorEnv of ``count`` copies of ``env_id``, built once per size."""
    gymnasium = gym()
    make_raw(env_id).close()  # the id check, with its one-line error
    return gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(env_id) for _ in range(count)])


def reset_seed(tasks: torch.Tensor, trajectories: int) -> int:
    return int.from_bytes(hashlib.sha256(tasks.detach().double().numpy().tobytes() + bytes([trajectories % 256])).digest()[:4], "little")


class BatchedTaskEnv:
    """Tasks ``[*lead, P]`` (P = the space's parameters), ``trajectories`` copies each."""

    def __init__(self, space: TaskSpace, tasks: torch.Tensor, trajectories: int, horizon: int, oracle: bool = False):
        self.space, self.tasks, self.trajectories, self.horizon, self.oracle = space, tasks, trajectories, horizon, oracle
        self.lead = tuple(tasks.shape[:-1])
        self.count = int(np.prod(self.lead, dtype=np.int64)) * trajectories
        self.vec = vector_env(space.env, self.count)
        single = self.vec.single_observation_space.shape[0]
        self.act_dim = self.vec.single_action_space.shape[0]
        self.obs_dim = single + (len(space.names) if oracle else 0)
        flat = tasks.reshape(-1, tasks.shape[-1]).repeat_interleave(trajectories, 0)
        self.flat = flat.double().numpy()
        self.target = self.flat[:, space.names.index("velocity")] if "velocity" in space.names else None
        for env, row in zip(self.vec.envs, self.flat):
            set_task(env, dict(zip(space.names, row.tolist())))

    def _shape(self, x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        return t.reshape(*self.lead, self.trajectories, *t.shape[1:])

    def _observe(self, obs: np.ndarray) -> torch.Tensor:
        if self.oracle:  # the context oracle sees the task's parameters, scaled to about unit size
            obs = np.concatenate([obs, self.flat / np.maximum(np.abs(self.flat).max(0, keepdims=True), 1.0)], -1)
        return self._shape(obs)

    def reset(self) -> torch.Tensor:
        obs, _ = self.vec.reset(seed=reset_seed(self.tasks, self.trajectories))
        return self._observe(obs)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = action.reshape(self.count, self.act_dim).double().clamp(-1, 1).numpy()
        obs, reward, term, trunc, info = self.vec.step(a)
        reward = task_reward(self.space.task_type, info, a, np.asarray(reward), self.target)
        mask = torch.ones(self.count)  # locomotion never ends before the horizon (< the TimeLimit's 1000)
        return self._observe(obs), self._shape(reward), mask.reshape(*self.lead, self.trajectories)


def task_env_maker(space: TaskSpace, horizon: int, oracle: bool):
    """``make_env(tasks, trajectories)`` for a `Sampler`: MuJoCo tasks, or the point env
    (its task vector (goal_x, goal_y) is the goal) for ``space.env == "point"``."""
    if space.env == "point":
        from trainer.domains.rl.env import env_maker

        return env_maker(horizon, oracle)
    if horizon >= 1000:
        raise FewtaskError(f"--horizon must be below gymnasium's time limit of 1000 steps, got {horizon}")
    return lambda tasks, n: BatchedTaskEnv(space, tasks, n, horizon, oracle)
