"""A deployment killed mid-stream resumes exactly from its per-phase checkpoint: SAC (the
long deployments) with its replay buffer, its generators and, on MuJoCo, the physics state
of the episode that runs on across phases."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.dynamics import TaskSpace
from trainer.evaluation.stream import deploy

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("gymnasium", "stable_baselines3")),
    reason="SAC needs the MuJoCo extra (gymnasium, stable-baselines3): make install",
)
SPACES = {
    "point": (TaskSpace("point", "goal", {"goal_x": [-0.5, 0.5], "goal_y": [-0.5, 0.5]}, "goal_x", ()),
              lambda i: {"goal_x": 0.1 * i, "goal_y": -0.1 * i}),
    "cheetah": (TaskSpace("HalfCheetah-v5", "velocity", {"gravity": [-17, -7], "velocity": [0, 2]}, "gravity", ()),
                lambda i: {"gravity": -7.0 - 2 * i, "velocity": 1.0}),
}  # fmt: skip


class Killed(Exception):
    pass


KILL = {"at": None}  # the phase during which the process dies (not learner state: a checkpoint would keep it)


class SacOnStream:
    """A SAC learner seen as a stream learner."""

    def __init__(self, space) -> None:
        from trainer.domains.dynamics.sac import SacLearner, SacSettings

        self.sac = SacLearner(space, "mtr", 30, 0, SacSettings(buffer=200, learning_starts=20, batch=16, hidden=16))

    def learn(self, phase: dict, generator) -> int:
        if phase["phase"] == KILL["at"]:
            self.sac.learn(phase, 25)  # half the phase, then the process dies
            raise Killed
        return self.sac.learn(phase, 50)


def run(space, phases, learner, checkpoint=None) -> dict:
    return deploy(learner, phases, lambda tasks: learner.sac.score(tasks, 1, 0), [], 0, None, checkpoint)


@pytest.mark.parametrize("env", ["point", pytest.param("cheetah", marks=pytest.mark.slow)])
def test_killed_deployment_resumes_exactly(tmp_path, env):
    if env == "cheetah" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("HalfCheetah needs mujoco")
    space, goal = SPACES[env]
    phases = [{"phase": i, "family": f"f{i}", "goal": goal(i)} for i in range(4)]
    whole = SacOnStream(space)
    expected = run(space, phases, whole)
    checkpoint = tmp_path / "stream-checkpoint.pkl"
    KILL["at"] = 2
    with pytest.raises(Killed):
        run(space, phases, SacOnStream(space), checkpoint)
    KILL["at"] = None
    resumed = SacOnStream(space)  # a fresh process: a new learner, the checkpoint of phases 0 and 1
    got = run(space, phases, resumed, checkpoint)
    assert torch.equal(got["returns"], expected["returns"]) and torch.equal(got["steps"], expected["steps"])
    params = [torch.cat([p.detach().flatten() for p in x.sac.model.policy.parameters()]) for x in (whole, resumed)]
    assert torch.equal(*params)


def test_a_checkpoint_of_another_stream_is_a_one_line_error(tmp_path):
    space, goal = SPACES["point"]
    phases = [{"phase": i, "family": f"f{i}", "goal": goal(i)} for i in range(3)]
    checkpoint = tmp_path / "stream-checkpoint.pkl"
    run(space, phases, SacOnStream(space), checkpoint)
    with pytest.raises(FewtaskError, match="another stream"):
        run(space, phases[:2], SacOnStream(space), checkpoint)
    checkpoint.write_bytes(b"not a pickle")
    with pytest.raises(FewtaskError, match="cannot read the stream checkpoint"):
        run(space, phases, SacOnStream(space), checkpoint)
