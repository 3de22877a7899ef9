"""`fewtask-train sinusoid` / `sinusoid-maml` end to end (tiny), and bad input as one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from entry_point import train_cli as cli
from results_schema import check_results
from typer.testing import CliRunner

from trainer.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
TINY = ["--steps", "6", "--eval-families", "6", "--eval-val", "10", "--finetune-steps", "3", "--log-every", "2", "--no-progress"]



def test_sinusoid_writes_results_and_figures(tmp_path):
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--oracle-steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    assert set(report["methods"]) == {"maltml", "maml", "oracle", "pretrain", "maml-oracle"}
    assert report["methods"]["maml-oracle"]["train"][0]["families"] == 6
    m = report["methods"]["maltml"]
    assert report["seeds"] == [0] and report["steps"] == [0, 1, 2, 3] and len(m["with_meta_update"]["loss"]["mean"]) == 4
    assert len(m["without_meta_update"]["loss"]["ci95"]) == 4 and m["train"][0]["steps"] == 6
    assert "accuracy" not in m["with_meta_update"]  # regression
    diff = report["comparisons"]["maltml_minus_maml"]["with_meta_update"]["loss"]["mean"]
    maml = report["methods"]["maml"]["with_meta_update"]["loss"]["mean"]
    assert diff[0] == pytest.approx(m["with_meta_update"]["loss"]["mean"][0] - maml[0], abs=1e-9)
    as_meant = report["comparisons"]["maltml_minus_maml"]["with_minus_without"]["loss"]["mean"]
    assert as_meant[1] == pytest.approx(m["with_meta_update"]["loss"]["mean"][1] - report["methods"]["maml"]["without_meta_update"]["loss"]["mean"][1], abs=1e-9)
    assert m["train"][0]["step_sizes"]["finetune_level"] == "gamma" and report["methods"]["maml"]["train"][0]["step_sizes"]["finetune_level"] == "alpha"
    for name in ("fig2a_maltml.png", "fig2b_maml.png", "fig2c_error.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "maltml" / "checkpoint.pt").exists()
    # Re-evaluating the finished checkpoints gives the same numbers.
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml", "--eval-only", *TINY])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert again["with_meta_update"] == m["with_meta_update"]
    oracle = report["methods"]["maml-oracle"]
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maml-oracle", "--eval-only", *TINY])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maml-oracle"]
    assert again["without_meta_update"] == oracle["without_meta_update"] and again["train"][0]["evaluated_from_checkpoint"]


def test_sinusoid_maml_benchmark_runs(tmp_path):
    args = ["sinusoid-maml", "--out", str(tmp_path), "--steps", "5", "--eval-tasks", "8", "--eval-val", "10", "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    results = check_results(tmp_path / "results.json")
    report = results["extra"]
    assert set(report["comparison_to_paper"]) == {"1", "5", "10"}
    assert len(report["mse_vs_steps"]["mean"]) == 11 and len(report["median_mse_vs_steps"]) == 11
    assert report["draws"] == 10 and report["tasks"] == 8  # 10 support draws by default
    assert all(0 <= n <= 80 for n in report["diverging_draws"])
    assert results["methods"]["maml"]["without_meta_update"]["loss"]["mean"] == pytest.approx(report["mse_vs_steps"]["mean"])
    assert (tmp_path / "mse_vs_steps.png").exists()
    # scripts/finn_diagnostics.py re-evaluates the checkpoint: as run it reproduces the command's numbers.
    script = subprocess.run([sys.executable, "scripts/finn_diagnostics.py", str(tmp_path), "--draws", "10", "--json",
                             str(tmp_path / "diag.json")], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert script.returncode == 0, script.stderr
    diag = json.loads((tmp_path / "diag.json").read_text())["variants"]
    assert diag["as run"]["mse_vs_steps"]["mean"] == pytest.approx(report["mse_vs_steps"]["mean"], rel=1e-9)
    assert diag["float64"]["mse_vs_steps"]["mean"] == pytest.approx(report["mse_vs_steps"]["mean"], rel=1e-3)
    assert diag["10 shots"]["mse_vs_steps"]["mean"] != report["mse_vs_steps"]["mean"]


def test_sinusoid_seeds_trains_each_seed_and_aggregates(tmp_path):
    args = ["sinusoid", "--algorithms", "maltml,maml", *TINY]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "s"), "--seeds", "0,1"])
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "s" / "results.json")
    assert report["config"]["seeds"] == [0, 1] and report["seeds"] == [0, 1] and set(report["per_seed"]) == {"0", "1"}
    for seed in (0, 1):
        assert (tmp_path / "s" / f"seed-{seed}" / "maltml" / "checkpoint.pt").exists()
    per_seed = [report["per_seed"][k]["methods"]["maltml"]["with_meta_update"]["loss"] for k in ("0", "1")]
    over = report["methods"]["maltml"]["with_meta_update"]["loss"]
    assert over["mean"][0] == pytest.approx((per_seed[0]["mean"][0] + per_seed[1]["mean"][0]) / 2)
    assert over["unit_ci95"][0] == pytest.approx((per_seed[0]["ci95"][0] + per_seed[1]["ci95"][0]) / 2)
    assert over["per_seed"] == [per_seed[0]["mean"], per_seed[1]["mean"]]
    assert per_seed[0]["mean"] != per_seed[1]["mean"]  # different training seeds, different models
    pair = report["comparisons"]["maltml_minus_maml"]["with_meta_update"]["loss"]
    assert len(pair["per_seed"]) == 2 and pair["ci95"][0] > 0  # t interval over the two seeds
    # The training seed does not move the held-out families: one seed alone, as --seed, gives seed 1's numbers.
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "one"), "--seeds", "1"])
    assert r.exit_code == 0, r.output
    alone = check_results(tmp_path / "one" / "results.json")
    assert alone["per_seed"]["1"]["methods"]["maltml"]["with_meta_update"]["loss"] == per_seed[1]
    assert alone["methods"]["maltml"]["with_meta_update"]["loss"]["ci95"] == per_seed[1]["ci95"]  # one seed: over families
    assert alone["config"]["seeds"] == [1] and alone["config"]["eval_seed"] == 0
    for name in ("fig2a_maltml.png", "fig2c_error.png"):
        assert (tmp_path / "s" / name).read_bytes()[:4] == b"\x89PNG"
    # Resume per seed: finished checkpoints are only re-evaluated, to the same numbers.
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "s"), "--seeds", "0,1", "--eval-only"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "s" / "results.json").read_text())
    for method in ("maltml", "maml"):
        for protocol in ("with_meta_update", "without_meta_update"):
            assert again["methods"][method][protocol] == report["methods"][method][protocol]
        assert again["methods"][method]["train"][1]["evaluated_from_checkpoint"]


def test_support_draws_count_diverging_draws():
    import torch

    from trainer.evaluation.draws import draw_summary

    # 2 draws x 3 tasks x 2 steps: draw 1 of task 2 blows up (NaN), draw 0 of task 0 exceeds 10 at step 1
    mse = torch.tensor([[[1.0, 11.0], [2.0, 2.0], [3.0, 1.0]],
                        [[1.0, 1.0], [4.0, 4.0], [5.0, float("nan")]]], dtype=torch.float64)  # fmt: skip
    out = draw_summary(mse)
    assert out["draws"] == 2 and out["tasks"] == 3
    assert out["diverging_draws"] == [0, 2] and out["tasks_with_a_diverging_draw"] == [0, 2]
    assert out["median_mse_vs_steps"][0] == pytest.approx(2.5)  # median of 1, 2, 3, 1, 4, 5
    assert out["mse_vs_steps"]["mean"][0] == pytest.approx((1 + 2 + 3 + 1 + 4 + 5) / 6)
    assert math.isnan(out["mse_vs_steps"]["mean"][1])  # the mean shows the divergence, it does not hide it
    assert out["mean_mse_without_diverging_draws"][1] == pytest.approx((2 + 1 + 1 + 4) / 4)
    assert out["first_draw_mse_vs_steps"]["mean"] == pytest.approx([2.0, 14 / 3])


def test_redrawn_support_keeps_the_task_and_its_validation_points():
    import torch

    from fewtask_data import EpisodeShape
    from fewtask_data.sources import sinusoid

    shape = EpisodeShape(ways=1, shots=5, queries=1, val=20, meta_tasks=0, goal_tasks=1)
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(0), 4, shape, sinusoid.SinusoidSpec(per_task_phase=True))
    new = sinusoid.redraw_support(batch, torch.Generator().manual_seed(1))
    assert torch.equal(new.goal_val()[0], batch.goal_val()[0]) and torch.equal(new.goal_val()[1], batch.goal_val()[1])
    assert not torch.equal(new.goal_support()[0], batch.goal_support()[0])
    x, y = new.goal_support()
    amp, phase = new.goal_info[:, 0, 0], new.goal_info[:, 0, 1]
    assert torch.allclose(y[:, 0, :, 0], amp[:, None] * torch.sin(x[:, 0, :, 0] - phase[:, None]), atol=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--shots", "0"], "--shots must be >= 1"),
        (["--beta", "-0.01"], "--beta must be > 0"),
        (["--algorithms", "maltml,mamlz"], "unknown algorithm mamlz"),
        (["--out", "/proc/fewtask-cannot-write"], "cannot write to output folder"),
        (["--meta-reduction", "median"], "--meta-reduction must be sum or mean"),
        (["--seeds", "0,0"], "--seeds must be distinct non-negative integers"),
        (["--eval-seed", "-1"], "--eval-seed must be >= 0"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, args, message):
    base = ["sinusoid", "--out", str(tmp_path / "o"), *TINY]
    r = cli(*base, *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr


def test_meta_reduction_is_recorded_and_finished_checkpoints_keep_theirs(tmp_path):
    args = ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml", *TINY]
    r = runner.invoke(app, [*args, "--meta-reduction", "mean"])
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert first["train"][0]["meta_reduction"] == "mean"
    r = runner.invoke(app, [*args, "--eval-only"])  # not told otherwise: evaluated as trained
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert r.exit_code == 0 and again["train"][0]["meta_reduction"] == "mean"
    assert again["with_meta_update"] == first["with_meta_update"]
    r = runner.invoke(app, [*args, "--eval-only", "--meta-reduction", "sum"])
    summed = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert r.exit_code == 0 and summed["train"][0]["meta_reduction"] == "sum"
    assert summed["with_meta_update"] != first["with_meta_update"]
    assert summed["without_meta_update"] == first["without_meta_update"]


def test_checkpoint_from_a_different_model_is_one_line_error(tmp_path):
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml", *TINY])
    assert r.exit_code == 0, r.output
    # The oracle's model has 3 inputs: pointing it at MALTML's checkpoint folder must fail clearly.
    (tmp_path / "oracle").mkdir()
    (tmp_path / "oracle" / "checkpoint.pt").write_bytes((tmp_path / "maltml" / "checkpoint.pt").read_bytes())
    r = cli("sinusoid", "--out", str(tmp_path), "--algorithms", "oracle", "--resume", *TINY)
    assert r.returncode == 2 and r.stderr.startswith("error: checkpoint") and "different model" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_sinusoid_maml_finn_init_and_bad_init(tmp_path):
    args = ["sinusoid-maml", "--out", str(tmp_path), "--steps", "2", "--eval-tasks", "4", "--eval-val", "5", "--no-progress"]
    r = runner.invoke(app, [*args, "--init", "finn"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "results.json").read_text())["config"]["init"] == "finn"
    bad = cli(*args, "--init", "xavier")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --init must be torch or finn"), bad.stderr


def test_finn_init_is_small_normal_weights_and_zero_biases():
    from trainer.models import build_model, finn_init_

    model = finn_init_(build_model("mlp"))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.any(), name
        else:
            assert p.abs().max() <= 0.02 and 0.005 < float(p.std()) < 0.012, name


def test_learned_step_sizes_are_saved_plotted_and_used_by_the_evaluation(tmp_path):
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml,maml", "--learn-step-sizes",
                            "--lr", "0.01", *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    for method, level in (("maltml", "gamma"), ("maml", "alpha")):
        sizes = report["methods"][method]["train"][0]["step_sizes"]
        assert sizes["learned"] and sizes["finetune_level"] == level
        assert any(abs(v - 0.001) > 1e-6 for v in sizes["per_tensor"][level].values()), sizes  # trained away from 0.001
    assert (tmp_path / "step_sizes.png").read_bytes()[:4] == b"\x89PNG"
