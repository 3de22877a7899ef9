"""The training loop: exact resume, JSONL metrics, checkpoint checks."""

from __future__ import annotations

import json

import pytest
import torch

from fewtask_data import EpisodeShape, FewtaskError, io
from fewtask_data.sources import sinusoid
from trainer.algorithms import make_algorithm
from trainer.models import MLP
from trainer.training import checkpoint as ckpt
from trainer.training.loop import TrainConfig, train

torch.set_num_threads(1)

SHAPE = EpisodeShape(ways=1, shots=3, queries=3, val=3, meta_tasks=2, goal_tasks=2)


def run(out, steps, resume=False, algorithm="maltml", hidden=(8, 8), learn=True, seed=3):
    ckpt.seed_everything(seed)
    model = MLP(1, hidden, 1)
    algo = make_algorithm(algorithm, model, alpha=0.01, beta=0.05, gamma=0.01, learn_step_sizes=learn)
    config = TrainConfig(steps=steps, out=out, lr=0.01, seed=seed, log_every=2, checkpoint_every=3, resume=resume, progress=False)
    # Also draw from the global RNG each step, so restoring RNG state is exercised.
    def make_batches(start):
        for b in sinusoid.batches(seed, 2, SHAPE, start_step=start):
            b.meta_y.add_(1e-3 * torch.randn(b.meta_y.shape))
            yield b

    return train(model, algo, make_batches, config)


@pytest.mark.parametrize("algorithm,learn", [("maltml", True), ("reptile", False)])
def test_resume_is_bitwise_exact(tmp_path, algorithm, learn):
    straight = run(tmp_path / "a", 10, algorithm=algorithm, learn=learn)
    run(tmp_path / "b", 5, algorithm=algorithm, learn=learn)
    resumed = run(tmp_path / "b", 10, resume=True, algorithm=algorithm, learn=learn)
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    for k in straight.step_sizes:
        assert torch.equal(straight.step_sizes[k], resumed.step_sizes[k]), k
    if learn:  # learned step sizes really moved
        assert any(not torch.equal(v, resumed.step_sizes[k]) for k, v in make_algorithm(
            algorithm, MLP(1, (8, 8), 1), alpha=0.01, beta=0.05, gamma=0.01).init_step_sizes(straight.params).items())
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    # The interrupted run also logged its last step (5); every shared step agrees.
    assert [x["step"] for x in lines] == [2, 4, 5, 6, 8, 10]
    a_lines = {x["step"]: x["loss"] for x in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())}
    assert [x["loss"] for x in lines if x["step"] != 5] == list(a_lines.values())


def test_training_reduces_the_loss(tmp_path):
    ckpt.seed_everything(0)
    model = MLP(1, (20, 20), 1)
    algo = make_algorithm("pretrain", model)
    config = TrainConfig(steps=150, out=tmp_path, lr=0.01, log_every=10, progress=False)
    shape = EpisodeShape(ways=1, shots=5, queries=5, val=5, meta_tasks=1, goal_tasks=1)
    spec = sinusoid.SinusoidSpec(amplitude=(1.0, 1.0), phase=(0.0, 0.0))  # one fixed curve
    train(model, algo, lambda s: sinusoid.batches(0, 4, shape, spec, s), config)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0]


def test_checkpoint_from_a_different_model_is_a_clear_error(tmp_path):
    run(tmp_path, 2)
    with pytest.raises(FewtaskError, match="different model"):
        run(tmp_path, 4, resume=True, hidden=(16, 8))


def test_checkpoint_from_another_algorithm_is_a_clear_error(tmp_path):
    run(tmp_path, 2)
    with pytest.raises(FewtaskError, match="trained with maltml"):
        run(tmp_path, 4, resume=True, algorithm="maml")


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_text("not a checkpoint")
    with pytest.raises(FewtaskError, match="cannot read checkpoint"):
        ckpt.load(tmp_path / "checkpoint.pt")


def test_checkpoint_write_is_atomic(tmp_path):
    run(tmp_path, 3)
    # no temporary files left behind; the lock file stays (an OS lock is on it only while training)
    assert sorted(p.name for p in tmp_path.iterdir()) == [io.LOCK_NAME, "checkpoint.pt", "metrics.jsonl"]
    state = ckpt.load(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and state["algorithm"] == "maltml" and "rng" in state


def test_every_algorithm_the_loop_trains_satisfies_the_protocol():
    from trainer.algorithms import ALGORITHMS
    from trainer.algorithms.base import AlgorithmProtocol
    from trainer.domains.continual.baselines import IIDRegression
    from trainer.domains.continual.net import ContinualNet
    from trainer.domains.continual.oml import OML, MALTMLContinual

    net = ContinualNet(6, rln=1, pln=1, width=4)
    algorithms = [make_algorithm(name, MLP()) for name in ALGORITHMS] + [OML(net), MALTMLContinual(net), IIDRegression(net)]
    assert all(isinstance(a, AlgorithmProtocol) for a in algorithms)
    assert [a.trains_meta_step for a in algorithms[-3:]] == [False, True, False]
    assert {a.meta_reduction for a in algorithms} == {"sum"} and not any(a.learn_step_sizes for a in algorithms)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(FewtaskError, match="positive"):
        make_algorithm("maltml", MLP(), alpha=-0.1)
    with pytest.raises(FewtaskError, match="unknown algorithm"):
        make_algorithm("mamlx", MLP())
    with pytest.raises(FewtaskError, match="cannot learn step sizes"):
        make_algorithm("reptile", MLP(), learn_step_sizes=True)
    with pytest.raises(FewtaskError, match="order"):
        make_algorithm("maltml", MLP(), order=4)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FewtaskError, match="cannot write"):
        run(blocker / "sub", 1)


def test_run_folder_resumes_with_the_log_trimmed_and_the_time_added_up(tmp_path):
    from trainer.training.run_folder import RunFolder

    folder = RunFolder(tmp_path, step_key="iteration")
    with folder.locked():
        assert folder.start(resume=True, signature={}, name="x") is None  # nothing to resume yet
        with folder.metrics() as log:
            for i in (1, 2, 3):
                log({"iteration": i, "elapsed_s": float(i)})
        folder.save({"step": 2, "seconds": 5.0, "algorithm": "x", "signature": {}})
    again = RunFolder(tmp_path, step_key="iteration")
    assert again.start(resume=True, signature={}, name="x")["step"] == 2 and again.seconds() >= 5.0
    assert [json.loads(x)["iteration"] for x in again.metrics_path.read_text().splitlines()] == [1, 2]
    assert not again.over_budget(0.0) and again.over_budget(1e-9)
    with pytest.raises(FewtaskError, match="trained with x, not y"):
        RunFolder(tmp_path).start(resume=True, signature={}, name="y")
    assert RunFolder(tmp_path).start(resume=False, signature={}, name="y") is None and not again.metrics_path.exists()


def test_a_finished_run_reports_its_training_time_and_metrics_on_resume(tmp_path):
    """Resuming a finished run trains nothing but still reports the cumulative time and the last metrics."""
    torch.manual_seed(0)
    first = run(tmp_path, steps=4)
    again = run(tmp_path, steps=4, resume=True)
    assert again.step == 4 and again.seconds >= first.seconds > 0
    assert again.last_metrics.keys() == first.last_metrics.keys() and again.last_metrics["loss"] == pytest.approx(first.last_metrics["loss"])
