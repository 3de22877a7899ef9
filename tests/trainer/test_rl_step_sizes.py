"""Learned step sizes in the RL methods and `fewtask-train navigation` / `navigation-maml`:
their gradients against central differences of the same DiCE objective on replayed samples
(`Sampler.rewind`), per-step sizes that are all equal against per-tensor ones, fixed sizes
unchanged, TRPO's refusal, exact resume, and a tiny end-to-end run whose evaluation takes
the learned sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from results_schema import check_results
from test_rl_train import cli
from tinynav import SMALL_BATCH, crop_families
from trainer.cli import app
from trainer.core.step_sizes import level_lrs
from trainer.domains.rl.env import PointEnv
from trainer.domains.rl.methods import RLSettings, Sampler, initial_step_sizes, maltml, maml
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation.rl import family_curves, own_step_sizes
from trainer.experiments.navigation_maml import NavigationMamlConfig, run_navigation_maml
from trainer.training.policy_loop import RLTrainConfig, train_policy

runner = CliRunner()
POLICY = GaussianMLP(2, 2, (4,))
# Powers of two whose logs exponentiate back exactly: learned sizes at these values must give
# the fixed-size numbers bit for bit.
EXACT = {"alpha": 0.5, "beta": 0.25, "gamma": 0.25}
STEPS = {"task_steps": 2, "meta_steps": 2, "goal_steps": 2}
TINY = ["--iterations", "2", "--seeds", "0", "--trajectories", "3", "--horizon", "6", "--hidden", "8", "--eval-steps", "2"]


def make_env(goals, n):
    return PointEnv(goals, n, 4)


def float64_theta(seed: int = 0) -> dict:
    return {k: v.double().requires_grad_() for k, v in POLICY.init(torch.Generator().manual_seed(seed)).items()}


def goals(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    meta = torch.rand(2, 2, 2, generator=g, dtype=torch.float64) - 0.5
    goal = torch.rand(2, 1, 2, generator=g, dtype=torch.float64) - 0.5
    return meta, goal, torch.rand(3, 2, generator=g, dtype=torch.float64) - 0.5


def objective(kind: str, sampler: Sampler, theta: dict, sizes: dict | None) -> torch.Tensor:
    """The mean DiCE objective of ``kind`` (maml or maltml) on fixed goals."""
    meta, goal, maml_goals = goals()
    if kind == "maml":
        return maml(sampler, theta, maml_goals, sizes=sizes).objective.mean()
    return maltml(sampler, theta, meta, goal, sizes=sizes).objective.mean()


def perturbed(sizes: dict, seed: int = 5) -> dict:
    """Log step sizes moved off their start, differently per key (so each tensor's matters)."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.3 * torch.rand((), generator=g, dtype=v.dtype)).detach() for k, v in sizes.items()}


def level_key(key: str) -> str:
    """A per-step key's step-0 key: "alpha@1:w0" -> "alpha:w0"."""
    tag, name = key.split(":")
    return f"{tag.split('@')[0]}:{name}"


def settings(estimator: str = "exact", **levels) -> RLSettings:
    return RLSettings(trajectories=3, estimator=estimator, **{**EXACT, **STEPS, **levels})


@pytest.mark.parametrize("kind,estimator,per_step", [
    ("maltml", "exact", True), ("maltml", "dice", False), ("maml", "exact", True), ("maml", "dice", False),
])  # fmt: skip
def test_step_size_gradients_equal_central_differences_on_replayed_samples(kind, estimator, per_step):
    """Order 3: the derivative in every log step size of the objective (its samples fixed by
    `Sampler.rewind`) is the autograd gradient of the same objective, in float64."""
    s, theta = settings(estimator), float64_theta()
    start = initial_step_sizes(s, theta, "alpha" if kind == "maml" else "gamma", per_step)
    assert any("@1:" in k for k in start) == per_step
    sizes = {k: v.requires_grad_() for k, v in perturbed(start).items()}
    sampler = Sampler(make_env, POLICY, s, torch.Generator().manual_seed(1))
    value = objective(kind, sampler, theta, sizes)
    grads = dict(zip(sizes, torch.autograd.grad(value, list(sizes.values()), allow_unused=True)))
    used = ("alpha",) if kind == "maml" else ("alpha", "beta", "gamma")  # the levels its steps take
    eps = 1e-6
    for key in sizes:
        diffs = []
        for sign in (1, -1):
            sampler.rewind()
            shifted = {k: (v + sign * eps if k == key else v).detach() for k, v in sizes.items()}
            diffs.append(objective(kind, sampler, theta, shifted).item())
        numeric = (diffs[0] - diffs[1]) / (2 * eps)
        if level_key(key).split(":")[0] in used:
            assert float(grads[key]) == pytest.approx(numeric, rel=1e-5, abs=1e-9), key
            assert abs(numeric) > 1e-8, key  # every step size of a level it takes matters
        else:  # MAML never steps with beta or gamma
            assert grads[key] is None and numeric == 0, key


@pytest.mark.parametrize("kind", ["maml", "maltml"])
def test_equal_per_step_sizes_give_exactly_the_per_tensor_objective(kind):
    s, theta = settings(), float64_theta()
    level = "alpha" if kind == "maml" else "gamma"
    per_tensor = perturbed(initial_step_sizes(s, theta, level))
    per_step = {k: per_tensor[level_key(k)] for k in initial_step_sizes(s, theta, level, True)}
    assert len(per_step) > len(per_tensor)
    outcomes = [objective(kind, Sampler(make_env, POLICY, s, torch.Generator().manual_seed(1)), theta, sizes)
                for sizes in (per_tensor, per_step)]  # fmt: skip
    assert torch.equal(*outcomes)
    grads = [torch.autograd.grad(o, list(theta.values())) for o in outcomes]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("kind", ["maml", "maltml"])
def test_fixed_sizes_as_tensors_give_the_float_objective_bit_for_bit(kind):
    """The settings' numbers (the default path) and the same values as log step sizes agree
    exactly where exp(log(x)) == x: the learned path changes nothing but the sizes' role."""
    s, theta = settings(), float64_theta()
    start = initial_step_sizes(s, theta, "alpha" if kind == "maml" else "gamma", per_step=True)
    assert all(float(v.exp()) == EXACT[level_key(k).split(":")[0]] for k, v in start.items())
    outcomes = [objective(kind, Sampler(make_env, POLICY, s, torch.Generator().manual_seed(1)), theta, sizes)
                for sizes in (None, start)]  # fmt: skip
    assert torch.equal(*outcomes)
    grads = [torch.autograd.grad(o, list(theta.values())) for o in outcomes]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_evaluation_takes_a_method_own_learned_sizes_at_both_levels():
    s, theta = settings("dice"), float64_theta()
    learned = perturbed(initial_step_sizes(s, theta, "gamma"))
    goal_lr, own = own_step_sizes(learned, "gamma", 0.5)
    assert own == learned and all(torch.equal(goal_lr[k], v) for k, v in level_lrs(learned, "gamma").items())
    maml_lr, maml_own = own_step_sizes(learned, "alpha", 0.5)  # MAML's goal steps take its alpha
    assert all(torch.equal(maml_lr[k], v) for k, v in level_lrs(learned, "alpha").items())
    assert all(torch.equal(v, learned[k.replace("gamma", "alpha")]) for k, v in maml_own.items() if k.startswith("gamma"))
    assert own_step_sizes({}, "gamma", 0.5) == (0.5, {})
    # Learned sizes at one exact value per level score exactly as the settings' numbers would.
    fixed = initial_step_sizes(s, theta, "gamma")
    meta, goal, _ = goals()

    def curves(lr, sizes):
        sampler = Sampler(make_env, POLICY, s, torch.Generator().manual_seed(2))
        return family_curves(sampler, theta, meta, goal, lr, 2, True, sizes=sizes)[0]

    assert torch.equal(curves(EXACT["gamma"], {}), curves(*own_step_sizes(fixed, "gamma", None)))
    assert not torch.equal(curves(EXACT["gamma"], {}), curves(*own_step_sizes(learned, "gamma", None)))


def test_trpo_refuses_learned_step_sizes_in_one_line(tmp_path):
    with pytest.raises(FewtaskError, match=r"^--learn-step-sizes needs --optimizer adam \(TRPO") as err:
        run_navigation_maml(NavigationMamlConfig(out=tmp_path, learn_step_sizes=True))
    assert "\n" not in str(err.value)
    r = cli("navigation", "--out", str(tmp_path), "--learn-step-sizes")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {err.value}", r.stderr
    with pytest.raises(FewtaskError, match="needs --optimizer adam"):
        RLTrainConfig(1, tmp_path, optimizer="trpo", learn_step_sizes=True)


def tiny_objective(sampler, params, gen, graph, sizes=None):
    meta, goal = torch.rand(2, 2, 2, generator=gen) - 0.5, torch.rand(2, 1, 2, generator=gen) - 0.5
    return maltml(sampler, params, meta, goal, graph, sizes)


def test_resume_with_learned_step_sizes_is_exact_and_keeps_to_its_kind(tmp_path):
    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    s = RLSettings(trajectories=3, estimator="dice", goal_steps=2)
    start = initial_step_sizes(s, theta, "gamma", per_step=True)

    def run(out, iterations, resume=False, learned=True):
        config = RLTrainConfig(iterations, out, seed=3, optimizer="adam", lr=0.05, checkpoint_every=1, resume=resume,
                               learn_step_sizes=learned)  # fmt: skip
        sampler = lambda gen: Sampler(lambda goals, n: PointEnv(goals, n, 6), policy, s, gen)  # noqa: E731
        return train_policy(theta, tiny_objective, sampler, config, "maltml", step_sizes=start if learned else None)

    straight, _, straight_sizes = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    resumed, _, resumed_sizes = run(tmp_path / "b", 3, resume=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in theta)
    assert set(resumed_sizes) == set(start) and all(torch.equal(straight_sizes[k], resumed_sizes[k]) for k in start)
    assert all(not torch.equal(resumed_sizes[k], start[k]) for k in start)  # every size learned something
    line = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    gamma = level_lrs(resumed_sizes, "gamma")[0]  # a per-step schedule: step 0's sizes
    assert line["step_size_gamma"] == pytest.approx(sum(float(v) for v in gamma.values()) / len(gamma), abs=1e-6)
    with pytest.raises(FewtaskError, match="trained with learned step sizes"):
        run(tmp_path / "b", 4, resume=True, learned=False)


def test_navigation_learns_step_sizes_end_to_end_and_scores_with_them(tmp_path, monkeypatch):
    from trainer.experiments import navigation

    args = ["navigation", "--out", str(tmp_path / "run"), "--families", str(crop_families(tmp_path)),
            "--methods", "maltml,maml,pretrain", "--optimizer", "adam", "--lr", "0.05", "--learn-step-sizes",
            *SMALL_BATCH, *TINY]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "run" / "results.json")
    assert report["config"]["learn_step_sizes"] is True and (tmp_path / "run" / "step_sizes.png").stat().st_size > 0
    start = {"alpha": 0.5, "beta": 0.1, "gamma": 0.5}  # the command's defaults
    for method, level in (("maltml", "gamma"), ("maml", "alpha")):
        record = report["methods"][method]["train"][0]["step_sizes"]
        assert record["learned"] and record["finetune_level"] == level
        learned = record["per_tensor"][level]
        assert set(learned) == {"w0", "b0", "w1", "b1", "log_std"}
        assert all(not math.isclose(v, start[level], rel_tol=1e-6) for v in learned.values()), (method, learned)
    assert "step_sizes" not in report["methods"]["pretrain"]["train"][0]  # nothing adapted in its training: fixed
    assert "learned step sizes (mean over policy tensors) alpha" in r.output
    # Re-evaluating the checkpoints hands each method's own learned sizes to the evaluation.
    seen = []
    original = navigation.family_curves

    def spy(sampler, theta, meta_goals, goal_goals, lr, steps, meta, mean_action=False, chunk=10, sizes=None):
        seen.append((lr, sizes))
        return original(sampler, theta, meta_goals, goal_goals, lr, steps, meta, mean_action, chunk, sizes)

    monkeypatch.setattr(navigation, "family_curves", spy)
    again = runner.invoke(app, [*args, "--eval-only"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["maltml"]["with_meta_update"] == \
        report["methods"]["maltml"]["with_meta_update"]  # fmt: skip
    calls = dict(zip(("maltml", "maml", "pretrain"), seen[::2]))  # two protocols per method
    for method, level in (("maltml", "gamma"), ("maml", "alpha")):
        lr, sizes = calls[method]
        recorded = report["methods"][method]["train"][0]["step_sizes"]["per_tensor"]
        assert {k: float(v) for k, v in lr.items()} == pytest.approx(recorded[level], rel=1e-12)
        assert {k.split(":")[1]: float(v.exp()) for k, v in sizes.items() if k.startswith("beta:")} == \
            pytest.approx(recorded["beta"], rel=1e-12)  # fmt: skip
    assert calls["pretrain"] == (0.5, {})


def test_navigation_maml_learns_per_step_inner_sizes(tmp_path):
    args = ["navigation-maml", "--out", str(tmp_path), "--tasks", "2", "--test-goals", "3", "--methods", "maml,random",
            "--optimizer", "adam", "--lr", "0.05", "--learn-step-sizes", "--per-step-step-sizes", "--goal-steps", "2",
            *TINY]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    record = report["methods"]["maml"]["train"][0]["step_sizes"]
    assert set(record["per_tensor"]) == {"alpha", "alpha@1", "beta", "gamma"} and record["finetune_level"] == "alpha"
    assert record["per_tensor"]["alpha"] != record["per_tensor"]["alpha@1"]
    assert "step_sizes" not in report["methods"]["random"]["train"][0]
    assert (tmp_path / "step_sizes.png").exists()
