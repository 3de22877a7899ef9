"""`fewtask-train analyze` end to end on tiny demo and sinusoid runs, and bad input as one-line errors."""

from __future__ import annotations

import json
from itertools import islice

import pytest
import torch
from entry_point import train_cli as cli
from typer.testing import CliRunner

from fewtask_data import EpisodeShape, FamilyStream, FewtaskError, write_episodes
from trainer.cli import app
from trainer.evaluation.analysis import META_ROWS, PAIRS
from trainer.evaluation.similarity import MEASURES
from trainer.experiments.analyze import AnalyzeConfig, run_analyze
from trainer.experiments.demo import DemoConfig, run_demo

torch.set_num_threads(1)
runner = CliRunner()
TINY_DEMO = dict(
    image_size=16, glyph_alphabets=5, glyph_characters=6, glyph_drawers=6, families_per_alphabet=2, ways=3, queries=2,
    val=3, meta_tasks=2, batch=2, steps=2, hidden=4, eval_episodes=4, eval_steps=1, workers=0, progress=False,
)  # fmt: skip



@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny `make demo`: MALTML and MAML fit runs and test.h5."""
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, DemoConfig(**TINY_DEMO))
    return out


@pytest.mark.slow
def test_analyze_the_demo_runs(demo, tmp_path):
    r = runner.invoke(app, ["analyze", "--checkpoint", str(demo), "--episodes", str(demo / "test.h5"), "--steps", "2",
                            "--out", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["schema"] == "fewtask-analysis" and saved["families"] == 4 and set(saved["methods"]) == {"maltml", "maml"}
    maltml = saved["methods"]["maltml"]
    assert maltml["layers"] == ["body.3", "body.7", "body.11", "body.15", "head"]
    for measure in MEASURES:
        for pair in PAIRS:
            cell = maltml["similarity"][measure][pair]["body.3"]
            assert set(cell) >= {"mean", "ci95", "diverged"}
        assert (tmp_path / f"similarity-{measure}.png").stat().st_size > 0
    assert set(maltml["ablation"]["grid"]) == set(META_ROWS) and maltml["ablation"]["metric"] == "accuracy"
    assert "| meta-update \\ goal steps | all | head | body |" in (tmp_path / "ablation.md").read_text()
    assert "maltml" in r.output


@pytest.mark.slow
def test_analyze_refuses_bad_input_in_one_line(demo, tmp_path):
    test = str(demo / "test.h5")
    r = cli("analyze", "--checkpoint", str(demo / "maltml"), "--episodes", test, "--layers", "body.99")
    assert r.returncode == 2 and "no layer body.99" in r.stderr and "Traceback" not in r.stderr
    # episodes of another shape: 2-way episodes for a 3-way model
    other = tmp_path / "two-way.h5"
    stream = FamilyStream(str(demo / "data"), "test", EpisodeShape(2, 1, 2, 3, 2, 1), seed=1)
    write_episodes(other, islice(iter(stream), 2), {"split": "test"})
    r = cli("analyze", "--checkpoint", str(demo / "maltml"), "--episodes", str(other))
    assert r.returncode == 2 and "write episodes with the same --ways" in r.stderr and "Traceback" not in r.stderr
    # a checkpoint from another model: a sinusoid MLP's, where a conv4 `fit` run is expected
    sin = tmp_path / "sin"
    runner.invoke(app, ["sinusoid", "--out", str(sin), "--algorithms", "maltml", "--steps", "2", "--eval-families", "4",
                        "--eval-val", "10", "--no-progress"])  # fmt: skip
    r = cli("analyze", "--checkpoint", str(sin / "maltml"), "--episodes", test)
    assert r.returncode == 2 and "not written by `fewtask-train fit`" in r.stderr and "Traceback" not in r.stderr
    r = cli("analyze", "--checkpoint", str(demo / "maltml"))
    assert r.returncode == 2 and "need --episodes" in r.stderr
    with pytest.raises(FewtaskError, match="no run at"):
        run_analyze(AnalyzeConfig(checkpoint=str(tmp_path / "nothing"), episodes=test))


@pytest.mark.parametrize("learned", [[], ["--learn-step-sizes"]])
def test_analyze_a_sinusoid_run_with_its_oracle(tmp_path, learned):
    """Also with learned step sizes, where every family's oracle has its own."""
    args = ["--steps", "3", "--eval-families", "5", "--eval-val", "10", "--oracle-steps", "2", "--no-progress", *learned]
    r = runner.invoke(app, ["sinusoid", "--out", str(tmp_path), "--algorithms", "maltml,maml,maml-oracle", *args])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "--checkpoint", str(tmp_path), "--steps", "2", "--max-families", "3"])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert set(saved["methods"]) == {"maltml", "maml", "maml-oracle"} and saved["families"] == 3
    assert saved["methods"]["maml-oracle"]["per_family_params"] is True
    assert saved["methods"]["maltml"]["layers"] == ["body.1", "body.3", "head"]
    assert saved["methods"]["maltml"]["ablation"]["metric"] == "loss"
    assert saved["source"]["kind"] == "sinusoid"
