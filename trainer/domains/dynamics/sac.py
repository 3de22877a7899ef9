"""SAC on a stream of tasks: stable-baselines3's SAC (not one of our own) with a replay
buffer whose slots a Kaplanis et al. strategy allocates (`replay.strategy_buffer_class`).

One environment, as Kaplanis et al.: its task (gravity, ...) is set at each phase of the
stream while the episode runs on. `TaskGymEnv` gives a single gymnasium env the task's
reward (MAML's velocity reward or gymnasium's own) and a horizon; for the point family
file it is a small gymnasium version of the point environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.dynamics import TaskSpace
from trainer.domains.dynamics.env import gym, make_raw, physics_state, set_physics_state, set_task, task_reward
from trainer.domains.dynamics.replay import strategy_buffer_class


def _sb3():
    try:
        import stable_baselines3
    except ImportError:
        raise FewtaskError("SAC needs stable-baselines3: pip install -e '.[mujoco]' (or make install)") from None
    return stable_baselines3


def context_of(space: TaskSpace, task: dict) -> np.ndarray:
    """The task's parameters as the context oracle observes them: each divided by the largest
    magnitude of its range (at least 1), so every component is about unit size."""
    return np.array([task[n] / max(abs(lo), abs(hi), 1.0) for n, (lo, hi) in space.ranges.items()], dtype=np.float32)


def task_gym_env(space: TaskSpace, horizon: int, context: bool = False):
    """A gymnasium env with ``set_task(dict)``: MuJoCo by id, or the point env. ``context``:
    the task's parameters are appended to every observation (`context_of`; the SAC oracle)."""
    gymnasium = gym()

    class TaskGymEnv(gymnasium.Env):
        def __init__(self) -> None:
            self.point = space.env == "point"
            self.inner = None if self.point else make_raw(space.env)
            box = gymnasium.spaces.Box
            dim = (2 if self.point else self.inner.observation_space.shape[0]) + (len(space.names) if context else 0)
            dtype = np.float32 if self.point else self.inner.observation_space.dtype
            self.observation_space = box(-np.inf, np.inf, (dim,), dtype=dtype)
            self.action_space = box(-1.0, 1.0, (2,)) if self.point else self.inner.action_space
            self.task, self.t = {}, 0

        def _observe(self, obs: np.ndarray) -> np.ndarray:
            return np.concatenate([obs, context_of(space, self.task)]) if context else obs

        # Pickling (an exact resume mid-stream): gymnasium's MuJoCo envs pickle as their
        # constructor arguments, so the physics state, the task and the env's generator are
        # saved beside them and written back into a rebuilt env.
        def __getstate__(self) -> dict:
            state = {k: v for k, v in self.__dict__.items() if k != "inner"}
            if not self.point:
                state["inner_state"] = (physics_state(self.inner), self.inner.unwrapped.np_random)
            return state

        def __setstate__(self, state: dict) -> None:
            physics, rng = state.pop("inner_state", (None, None))
            self.__dict__.update(state)
            self.inner = None
            if not self.point:
                self.inner = make_raw(space.env)
                self.inner.reset()  # the wrappers' reset-before-step check
                if self.task:
                    set_task(self.inner, self.task)
                set_physics_state(self.inner, physics)
                self.inner.unwrapped.np_random = rng

        def set_task(self, task: dict) -> None:
            self.task = space.check_task(dict(task))
            if not self.point:
                set_task(self.inner, self.task)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            if self.point:
                self.pos = np.zeros(2, dtype=np.float32)
                return self._observe(self.pos.copy()), {}
            return self._observe(self.inner.reset(seed=seed)[0]), {}

        def step(self, action):
            self.t += 1
            a = np.clip(np.asarray(action, dtype=np.float64), -1, 1)
            if self.point:  # PointEnv's dynamics: move clip(0.1 a), reward -distance
                self.pos = (self.pos + np.clip(0.1 * a, -0.1, 0.1)).astype(np.float32)
                dist = np.linalg.norm(self.pos - np.array([self.task["goal_x"], self.task["goal_y"]]))
                return self._observe(self.pos.copy()), -float(dist), bool(dist < 0.01), self.t >= horizon, {}
            obs, reward, term, _, info = self.inner.step(a)
            target = np.array([self.task.get("velocity", 0.0)])
            r = task_reward(space.task_type, {"x_velocity": np.array([info["x_velocity"]])}, a[None], np.array([reward]), target)
            return self._observe(obs), float(r[0]), bool(term), self.t >= horizon, info

    return TaskGymEnv()


@dataclass
class SacSettings:
    buffer: int = 10000
    learning_starts: int = 1000
    batch: int = 256
    hidden: int = 256
    lr: float = 3e-4
    levels: int = 20  # MTR sub-buffers
    keep: float = 0.85  # MTR: probability that an item moves on to the next sub-buffer


class SacLearner:
    """stable-baselines3 SAC learning the stream's goal tasks one phase after another;
    ``context``: observing each task's parameters (the context oracle)."""

    def __init__(self, space: TaskSpace, strategy: str, horizon: int, seed: int, settings: SacSettings,
                 context: bool = False) -> None:  # fmt: skip
        sb3 = _sb3()
        self.space, self.horizon = space, horizon
        self.env, self.eval_env = task_gym_env(space, horizon, context), task_gym_env(space, horizon, context)
        kwargs = {"strategy": strategy, "seed": seed, **({"levels": settings.levels, "keep": settings.keep} if strategy == "mtr" else {})}
        self.model = sb3.SAC("MlpPolicy", self.env, learning_rate=settings.lr, buffer_size=settings.buffer,
                             learning_starts=settings.learning_starts, batch_size=settings.batch, seed=seed, device="cpu",
                             replay_buffer_class=strategy_buffer_class(), replay_buffer_kwargs=kwargs,
                             policy_kwargs={"net_arch": [settings.hidden, settings.hidden]}, verbose=0)  # fmt: skip

    def learn(self, phase: dict, steps: int) -> int:
        self.env.set_task(phase["goal"])
        self.model.learn(steps, reset_num_timesteps=False)
        return steps

    def score(self, tasks: list[dict], episodes: int = 1, seed: int = 0) -> torch.Tensor:
        """Mean return of the deterministic policy on each task, [len(tasks)]."""
        out = []
        for task in tasks:
            self.eval_env.set_task(task)
            total = 0.0
            for e in range(episodes):
                obs, _ = self.eval_env.reset(seed=seed + e)
                for _ in range(self.horizon):
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, r, term, trunc, _ = self.eval_env.step(action)
                    total += r
                    if term or trunc:
                        break
            out.append(total / episodes)
        return torch.tensor(out)
