"""`fewtask-train continual-oml` end to end (tiny), exact resume, and bad input as one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from entry_point import train_cli as cli
from results_schema import check_results
from tinycontinual import tiny_families
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import ContinualSpec, function_pool, problem_batches
from trainer.cli import app
from trainer.domains.continual.net import ContinualNet
from trainer.domains.continual.oml import OML
from trainer.experiments.continual_oml import ContinualOMLConfig, continual_oml
from trainer.training.loop import TrainConfig, train

runner = CliRunner()
TINY = ["--functions", "3", "--steps-per-function", "2", "--batch", "4", "--width", "8", "--eval-problems", "4",
        "--val-problems", "2", "--test-points", "10", "--lr-grid", "0.01,0.1", "--no-progress"]  # fmt: skip



def test_continual_oml_writes_results_curves_and_figures(tmp_path):
    r = runner.invoke(app, ["continual-oml", "--out", str(tmp_path), "--curve", "1,2", "--pretrain-steps", "2", *TINY])
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    assert set(report["methods"]) == {"oml", "oracle", "pretrain", "scratch"} and report["steps"] is None
    oml, details = report["methods"]["oml"]["without_meta_update"]["mse"], report["extra"]["methods"]
    assert len(details["oml"]["per_function"]["mean"]) == 3 and details["oml"]["split"] == 6
    assert oml["ci95"] > 0 and oml["mean"] == pytest.approx(sum(details["oml"]["per_function"]["mean"]) / 3, rel=1e-6)
    assert [p["steps"] for p in report["extra"]["learning_curves"]["oml"]] == [1, 2]
    assert details["scratch"]["split"] == 0
    assert details["pretrain"]["split"] in (0, 2, 4, 6, 7)
    pair = report["comparisons"]["oml_minus_pretrain"]["without_meta_update"]["mse"]
    assert pair["mean"] == pytest.approx(oml["mean"] - report["methods"]["pretrain"]["without_meta_update"]["mse"]["mean"], rel=1e-6)
    for name in ("per_function.png", "learning_curve.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_max_seconds_budgets_the_whole_curve_not_each_stage(tmp_path):
    # Every stage trains at least one step and any step outlasts a microsecond, so a
    # per-stage budget would still reach all three stages; a whole-run budget stops at the first.
    args = ["continual-oml", "--out", str(tmp_path), "--methods", "oml", "--curve", "1,2,3", "--max-seconds", "1e-6", *TINY]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "results.json").read_text())
    assert [p["steps"] for p in report["extra"]["learning_curves"]["oml"]] == [1]


def test_oml_training_resumes_exactly(tmp_path):
    spec = ContinualSpec(functions=2, steps_per_function=2, batch=3, rand_points=2)
    pool = function_pool(0, "train", spec)

    def run(out, steps, resume):
        torch.manual_seed(0)
        net = ContinualNet(spec.in_features, 2, 1, 6)
        config = TrainConfig(steps=steps, out=out, lr=1e-2, checkpoint_every=2, resume=resume, progress=False)
        return train(net, OML(net, lr=0.05), lambda start: problem_batches(1, pool, 2, spec, start), config).params

    straight = run(tmp_path / "a", 4, False)
    run(tmp_path / "b", 2, False)
    resumed = run(tmp_path / "b", 4, True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    from fewtask_data import io

    spec = ContinualSpec(functions=2, steps_per_function=2, batch=3, rand_points=2)
    net = ContinualNet(spec.in_features, 2, 1, 6)
    config = TrainConfig(steps=1, out=tmp_path, lr=1e-2, progress=False)
    batches = lambda start: problem_batches(1, function_pool(0, "train", spec), 2, spec, start)  # noqa: E731
    with io.exclusive(tmp_path):  # as another process training there would hold it
        with pytest.raises(FewtaskError, match="another process is training in"):
            train(net, OML(net, lr=0.05), batches, config)
        assert not (tmp_path / "checkpoint.pt").exists()
    assert train(net, OML(net, lr=0.05), batches, config).step == 1  # released: trains


@pytest.mark.parametrize(
    "args, message",
    [
        (["--functions", "0"], "--functions must be >= 1"),
        (["--inner-lr", "0"], "--inner-lr must be > 0"),
        (["--curve", "5,2"], "--curve needs increasing step counts"),
        (["--methods", "srnn", "--srnn-target", "0"], "--srnn-target must be > 0"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, args, message):
    r = cli("continual-oml", "--out", str(tmp_path), *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inner_lr": -1.0}, "--inner-lr must be > 0"),
        ({"methods": "sr-nn"}, "unknown method"),
        ({"pretrain_recipe": "javed"}, "unknown --pretrain-recipe"),
        ({"arch": "huge"}, "unknown architecture"),
        ({"lr_grid": "0.1,-1"}, "--lr-grid needs step sizes > 0"),
    ],
)
def test_bad_settings_raise_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(FewtaskError, match=message):
        continual_oml(ContinualOMLConfig(out=tmp_path, **kwargs))


def test_continual_families_compares_maltml_and_oml_with_and_without_meta_finetuning(tmp_path):
    r = runner.invoke(app, tiny_families(tmp_path, "--lr-grid", "0.01,0.1"))
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "run" / "results.json")
    assert set(report["methods"]) == {"maltml", "oml"} and len(report["extra"]["test_frequencies"]) == 2
    for m in ("maltml", "oml"):
        e, d = report["methods"][m], report["extra"]["methods"][m]
        assert len(d["without_meta_update"]["per_function"]["mean"]) == 2
        gain = e["meta_update_gain"]["mse"]["mean"]
        assert gain == pytest.approx(e["with_meta_update"]["mse"]["mean"] - e["without_meta_update"]["mse"]["mean"], rel=1e-5)
    assert set(report["comparisons"]["maltml_minus_oml"]) == {"with_meta_update", "without_meta_update", "with_minus_without"}
    assert (tmp_path / "run" / "per_function.png").read_bytes()[:4] == b"\x89PNG"


def test_learned_step_sizes_are_trained_recorded_and_used_by_the_evaluation(tmp_path):
    r = runner.invoke(app, tiny_families(tmp_path, "--lr", "0.01", "--learn-step-sizes"))
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "run" / "results.json")
    maltml, oml = (report["methods"][m]["train"][0]["step_sizes"] for m in ("maltml", "oml"))
    assert set(maltml) == {"alpha", "beta", "gamma"} and set(oml) == {"alpha"}
    assert maltml["alpha"] != pytest.approx(0.003, rel=1e-9)  # trained away from --inner-lr
    for m in ("maltml", "oml"):
        for p in ("with_meta_update", "without_meta_update"):
            assert report["extra"]["methods"][m][p]["inner_lr"] == "learned"
    r = runner.invoke(app, ["continual-oml", "--out", str(tmp_path / "oml"), "--methods", "oml", "--curve", "2",
                            "--learn-step-sizes", *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    one = check_results(tmp_path / "oml" / "results.json")
    assert one["extra"]["methods"]["oml"]["inner_lr"] == "learned" and "alpha" in one["methods"]["oml"]["train"][0]["step_sizes"]


def test_per_step_step_sizes_are_trained_recorded_and_used_by_the_evaluation(tmp_path):
    """Issue 24: one learned size per (level, step, tensor) in both continual commands: the
    online levels one per mini-batch of the trajectory, MALTML's beta one per meta step;
    results.json records each schedule, and the evaluation uses the learned ones."""
    r = runner.invoke(app, tiny_families(tmp_path, "--lr", "0.01", "--meta-steps", "2", "--learn-step-sizes",
                                         "--per-step-step-sizes"))  # fmt: skip
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "run" / "results.json")
    maltml, oml = (report["methods"][m]["train"][0]["step_size_schedules"] for m in ("maltml", "oml"))
    assert set(maltml) == {"alpha", "beta", "gamma"} and set(oml) == {"alpha"}
    steps = {"alpha": 4, "beta": 2, "gamma": 4}  # 2 functions x 2 mini-batches; --meta-steps 2
    for schedules in (maltml, oml):
        for level, tensors in schedules.items():
            assert tensors and all(len(v) == steps[level] for v in tensors.values()), level
    assert any(v != pytest.approx(0.003, rel=1e-9) for v in maltml["gamma"]["layers.7.bias"])  # trained
    assert "alpha@3" in report["methods"]["oml"]["train"][0]["step_sizes"]  # the mean over tensors, per step
    for m in ("maltml", "oml"):
        for p in ("with_meta_update", "without_meta_update"):
            assert report["extra"]["methods"][m][p]["inner_lr"] == "learned"
    r = runner.invoke(app, ["continual-oml", "--out", str(tmp_path / "oml"), "--methods", "oml", "--curve", "2",
                            "--learn-step-sizes", "--per-step-step-sizes", *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    one = check_results(tmp_path / "oml" / "results.json")
    schedules = one["methods"]["oml"]["train"][0]["step_size_schedules"]
    assert one["extra"]["methods"]["oml"]["inner_lr"] == "learned"
    assert set(schedules) == {"alpha"} and {len(v) for v in schedules["alpha"].values()} == {6}  # 3 functions x 2


@pytest.mark.parametrize("command", [["continual-oml"], ["continual", "--families", "no-such-folder"]])
def test_per_step_sizes_without_learned_ones_are_a_one_line_error(tmp_path, command):
    r = cli(*command, "--out", str(tmp_path / "run"), "--per-step-step-sizes")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--per-step-step-sizes needs --learn-step-sizes" in r.stderr
    assert not (tmp_path / "run").exists()  # before any work


def test_continual_without_families_is_a_one_line_error(tmp_path):
    r = runner.invoke(app, ["continual", "--out", str(tmp_path / "run")])
    assert r.exit_code != 0 and "--families is required" in str(r.exception)
