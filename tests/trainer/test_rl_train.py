"""The RL training loop (exact resume, TRPO on MAML and MALTML objectives) and
`fewtask-train navigation-maml` end to end (tiny), with bad input as one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from entry_point import train_cli as cli
from results_schema import check_results
from tinynav import SMALL_BATCH, crop_families, navigation_run
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from trainer.cli import app
from trainer.domains.rl.env import PointEnv
from trainer.domains.rl.methods import RLSettings, Sampler, maltml, maml
from trainer.domains.rl.policy import GaussianMLP
from trainer.experiments.navigation_maml import NavigationMamlConfig, run_navigation_maml
from trainer.training.policy_loop import RLTrainConfig, train_policy

runner = CliRunner()
TINY = ["--iterations", "2", "--seeds", "0", "--trajectories", "3", "--horizon", "6", "--hidden", "8", "--eval-steps", "2"]



def tiny_objective(kind: str):
    def objective(sampler, params, gen, graph):
        if kind == "maml":
            return maml(sampler, params, torch.rand(3, 2, generator=gen) - 0.5, graph)
        return maltml(sampler, params, torch.rand(2, 2, 2, generator=gen) - 0.5, torch.rand(2, 1, 2, generator=gen) - 0.5, graph)

    return objective


@pytest.mark.parametrize("kind,optimizer", [("maml", "trpo"), ("maltml", "trpo"), ("maltml", "adam")])
def test_resume_is_exact(tmp_path, kind, optimizer):
    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    settings = RLSettings(trajectories=3, estimator="exact")

    def sampler(gen):
        return Sampler(lambda goals, n: PointEnv(goals, n, 6), policy, settings, gen)

    def run(out, iterations, resume=False):
        config = RLTrainConfig(iterations, out, seed=3, optimizer=optimizer, checkpoint_every=1, resume=resume)
        return train_policy(theta, tiny_objective(kind), sampler, config, kind)[0]

    straight = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 3, resume=True)
    for k in theta:
        assert torch.equal(straight[k], resumed[k]), k
        assert not torch.equal(straight[k], theta[k]) or k.startswith("b"), k
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3]
    if optimizer == "trpo":
        assert all(json.loads(x)["kl"] <= 0.01 for x in lines)


def test_navigation_training_holds_the_run_folder_lock(tmp_path):
    from fewtask_data import io

    policy = GaussianMLP(2, 2, (8,))
    config = RLTrainConfig(1, tmp_path, seed=3)
    sampler = lambda gen: Sampler(lambda goals, n: PointEnv(goals, n, 6), policy, RLSettings(trajectories=3), gen)  # noqa: E731
    with io.exclusive(tmp_path):
        with pytest.raises(FewtaskError, match="another process is training in"):
            train_policy(policy.init(torch.Generator().manual_seed(0)), tiny_objective("maml"), sampler, config, "maml")
    assert train_policy(policy.init(torch.Generator().manual_seed(0)), tiny_objective("maml"), sampler, config, "maml")[1] == 1


def test_navigation_maml_writes_results(tmp_path):
    r = runner.invoke(app, ["navigation-maml", "--out", str(tmp_path), "--tasks", "2", "--test-goals", "3", *TINY])
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    returns = {m: r["without_meta_update"]["return"] for m, r in report["methods"].items()}
    assert set(returns) == {"maml", "pretrain", "random", "oracle"}
    assert len(returns["maml"]["mean"]) == 3 and report["methods"]["maml"]["train"][0]["iterations"] == 2
    assert len(report["methods"]["maml"]["train"][0]["learning_curve"]) == 2
    assert (tmp_path / "returns_vs_steps.png").stat().st_size > 0 and (tmp_path / "learning_curves.png").exists()
    assert "return_mean_action" not in report["methods"]["maml"]["without_meta_update"]  # only with --eval-mean-action
    assert set(report["comparisons"]) == {"maml_minus_pretrain", "random_minus_pretrain", "oracle_minus_pretrain"}
    # returns are minus distances: negative, at most horizon * sqrt(2) in size
    assert all(-6 * 1.5 < v < 0 for v in returns["random"]["mean"])


@pytest.mark.parametrize("args,message", [
    ({"horizon": 0}, "--horizon must be >= 1"),
    ({"methods": "maml,bogus"}, "unknown method bogus"),
    ({"estimator": "magic"}, "unknown estimator"),
    ({"seeds": "a,b"}, "--seeds must be"),
    ({"optimizer": "sgd"}, "unknown optimizer"),
    ({"eval_alphas": "0.5,0.25"}, "--eval-alphas needs 3 positive"),
    ({"eval_alphas": "0.5,x,1"}, "--eval-alphas needs 3 positive"),
    ({"eval_trajectories": -1}, "--eval-trajectories must be >= 0"),
    ({"max_kl": 0.0}, "--max-kl must be > 0"),
    ({"tasks": 0}, "--tasks must be >= 1"),
    ({"order": 4}, "--order must be >= 1 and <= 3"),
    ({"meta_reduction": "median"}, "--meta-reduction must be sum or mean"),
])  # fmt: skip
def test_bad_input_is_a_user_error(tmp_path, args, message):
    with pytest.raises(FewtaskError, match=message):
        run_navigation_maml(NavigationMamlConfig(out=tmp_path, **args))


def test_user_errors_print_one_line(tmp_path):
    r = cli("navigation-maml", "--out", str(tmp_path), "--horizon", "0")
    assert r.returncode == 2 and "error: --horizon must be >= 1" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_navigation_on_crop_families_writes_results(tmp_path):
    navigation_run(tmp_path / "run", crop_families(tmp_path), "maltml,fo-maltml,maml", *SMALL_BATCH, *TINY)
    report = check_results(tmp_path / "run" / "results.json")
    assert report["extra"]["test_families"] == 3 and set(report["methods"]) == {"maltml", "fo-maltml", "maml"}
    m = {p: s["return"] for p, s in report["methods"]["maltml"].items() if p != "train"}
    assert len(m["with_meta_update"]["mean"]) == 3
    gain = [a - b for a, b in zip(m["with_meta_update"]["mean"], m["without_meta_update"]["mean"])]
    assert gain == pytest.approx(m["meta_update_gain"]["mean"], abs=1e-6)
    assert set(report["comparisons"]) == {"maltml_minus_maml", "fo-maltml_minus_maml", "maltml_minus_fo-maltml"}
    assert (tmp_path / "run" / "trajectories_maltml.png").stat().st_size > 0


def test_navigation_takes_the_order_and_reduction_of_every_experiment(tmp_path):
    from trainer.experiments.navigation import NavigationConfig

    navigation_run(tmp_path / "run", crop_families(tmp_path), "maltml,fo-maltml", "--order", "2", "--meta-reduction", "mean",
                   *SMALL_BATCH, *TINY)  # fmt: skip
    report = check_results(tmp_path / "run" / "results.json")
    assert report["config"]["order"] == 2 and report["config"]["meta_reduction"] == "mean"
    c = NavigationConfig(order=2, meta_reduction="mean")
    assert (c.settings().order, c.settings().meta_reduction, c.settings(order=1).order) == (2, "mean", 1)


def test_navigation_refuses_a_family_file_of_another_version(tmp_path):
    from fewtask_data.builders.navigation import build_navigation_families
    from trainer.experiments.navigation import NavigationConfig, run_navigation

    build_navigation_families(tmp_path / "fam", counts={"train": 2, "val": 1, "test": 2})
    path = tmp_path / "fam" / "manifest.json"
    path.write_text(path.read_text().replace('"version": "1"', '"version": "7"'))
    with pytest.raises(FewtaskError, match="version 7"):
        run_navigation(NavigationConfig(out=tmp_path / "run", families=str(tmp_path / "fam"), iterations=0))


def test_navigation_maml_eval_mean_action_and_step_sizes_per_step(tmp_path):
    args = ["navigation-maml", "--out", str(tmp_path), "--tasks", "2", "--test-goals", "3", "--methods", "maml,random",
            "--eval-mean-action", "--eval-alphas", "0.1,0.05", "--eval-trajectories", "4", *TINY]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    quiet = {m: r["without_meta_update"]["return_mean_action"] for m, r in report["methods"].items()}
    assert set(quiet) == {"maml", "random"}
    assert len(quiet["maml"]["mean"]) == 3 and "mean action:" in r.output
    assert report["config"]["eval_alphas"] == "0.1,0.05" and report["config"]["eval_trajectories"] == 4


def test_navigation_eval_mean_action_leaves_the_sampled_scores_unchanged(tmp_path):
    fam = crop_families(tmp_path)
    args = ["navigation", "--out", str(tmp_path / "run"), "--families", str(fam), "--methods", "maltml,maml",
            *SMALL_BATCH, *TINY]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    plain = json.loads((tmp_path / "run" / "results.json").read_text())
    r = runner.invoke(app, [*args, "--eval-only", "--eval-mean-action"])
    assert r.exit_code == 0, r.output
    quiet = json.loads((tmp_path / "run" / "results.json").read_text())
    for m in ("maltml", "maml"):
        for p in ("with_meta_update", "without_meta_update"):
            assert quiet["methods"][m][p]["return"] == plain["methods"][m][p]["return"]
            assert "return_mean_action" not in plain["methods"][m][p]
    gain = quiet["methods"]["maltml"]["meta_update_gain"]["return_mean_action"]
    assert len(gain["mean"]) == 3 and "mean action:" in r.output
    pair = quiet["comparisons"]["maltml_minus_maml"]
    assert set(pair) == {"with_meta_update", "without_meta_update", "with_minus_without"}
    assert pair["with_minus_without"]["return_mean_action"]["mean"] != pair["with_meta_update"]["return_mean_action"]["mean"]


def test_the_returns_plot_leaves_out_wrecked_curves_and_says_so():
    from trainer.experiments.navigation import on_scale_curves

    row = lambda means: {"return": {"mean": means, "ci95": [0.0] * len(means)}}  # noqa: E731
    results = {"maml": {"with_meta_update": row([-30.0, -12.0]), "without_meta_update": row([-33.0, -11.0])},
               "oracle": {"with_meta_update": row([-552.0, float("nan")]), "without_meta_update": row([-0.3, -650.0])}}
    shown, off = on_scale_curves(results)
    assert set(shown) == {"maml (meta-update)", "maml (none)"}
    assert off == ["oracle (meta-update)", "oracle (none)"]
