"""`fewtask-train sinusoid` / `sinusoid-maml` end to end (tiny), and bad input as one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainer.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
TINY = ["--steps", "6", "--eval-families", "6", "--eval-val", "10", "--finetune-steps", "3", "--log-every", "2", "--no-progress"]


def cli(*args: str) -> subprocess.CompletedProcess:
    """Through the real entry point, so errors pass the one-line error handler."""
    code = "from trainer.cli import main; main()"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_sinusoid_writes_results_and_figures(tmp_path):
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--oracle-steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["methods"]) == {"maltml", "maml", "oracle", "pretrain", "maml-oracle"}
    assert report["methods"]["maml-oracle"]["train"]["families"] == 6
    m = report["methods"]["maltml"]
    assert m["episodes"] == 6 and len(m["with_meta_finetuning"]["loss"]["mean"]) == 4
    assert len(m["without_meta_finetuning"]["loss"]["ci95"]) == 4 and m["train"]["steps"] == 6
    assert "accuracy" not in m["with_meta_finetuning"]  # regression
    diff = report["comparisons"]["maltml_minus_maml"]["with_meta_finetuning"]["loss"]["mean"]
    maml = report["methods"]["maml"]["with_meta_finetuning"]["loss"]["mean"]
    assert diff[0] == pytest.approx(m["with_meta_finetuning"]["loss"]["mean"][0] - maml[0], abs=1e-9)
    for name in ("fig2a_maltml.png", "fig2b_maml.png", "fig2c_error.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "maltml" / "checkpoint.pt").exists()
    # Re-evaluating the finished checkpoints gives the same numbers.
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml", "--eval-only", *TINY])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert again["with_meta_finetuning"] == m["with_meta_finetuning"]
    oracle = report["methods"]["maml-oracle"]
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maml-oracle", "--eval-only", *TINY])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maml-oracle"]
    assert again["without_meta_finetuning"] == oracle["without_meta_finetuning"] and again["train"]["evaluated_from_checkpoint"]


def test_sinusoid_maml_benchmark_runs(tmp_path):
    args = ["sinusoid-maml", "--out", str(tmp_path), "--steps", "5", "--eval-tasks", "8", "--eval-val", "10", "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["comparison_to_paper"]) == {"1", "5", "10"}
    assert len(report["mse_vs_steps"]["mean"]) == 11 and len(report["median_mse_vs_steps"]) == 11
    assert all(0 <= n <= 8 for n in report["tasks_above_mse_10"])
    assert (tmp_path / "mse_vs_steps.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--shots", "0"], "shots must be an integer >= 1"),
        (["--beta", "-0.01"], "--beta must be a positive number"),
        (["--algorithms", "maltml,mamlz"], "unknown algorithm mamlz"),
        (["--out", "/proc/fewtask-cannot-write"], "cannot write to output folder"),
        (["--meta-reduction", "median"], "--meta-reduction must be sum or mean"),
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
    assert first["train"]["meta_reduction"] == "mean"
    r = runner.invoke(app, [*args, "--eval-only"])  # not told otherwise: evaluated as trained
    again = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert r.exit_code == 0 and again["train"]["meta_reduction"] == "mean"
    assert again["with_meta_finetuning"] == first["with_meta_finetuning"]
    r = runner.invoke(app, [*args, "--eval-only", "--meta-reduction", "sum"])
    summed = json.loads((tmp_path / "results.json").read_text())["methods"]["maltml"]
    assert r.exit_code == 0 and summed["train"]["meta_reduction"] == "sum"
    assert summed["with_meta_finetuning"] != first["with_meta_finetuning"]
    assert summed["without_meta_finetuning"] == first["without_meta_finetuning"]


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
