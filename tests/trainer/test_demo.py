"""The demo end to end on a tiny glyph build: shards -> train MALTML and MAML -> eval -> report."""

import json

import pytest
import torch

from fewtask_data import FewtaskError
from results_schema import check_results
from trainer.experiments.demo import DemoConfig, run_demo

torch.set_num_threads(1)


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    cfg = DemoConfig(
        image_size=16, glyph_alphabets=5, glyph_characters=6, glyph_drawers=6, families_per_alphabet=2,
        ways=3, queries=2, val=3, meta_tasks=2, batch=2, steps=3, hidden=4, eval_episodes=6, eval_steps=2, workers=0,
        progress=False,
    )  # fmt: skip
    results = run_demo(tmp_path, cfg)
    assert check_results(tmp_path / "results.json") == json.loads(json.dumps(results))
    assert set(results["methods"]) == {"maltml", "maml"}
    report = (tmp_path / "report.md").read_text()
    assert "SYNTHETIC" in report and "| maltml |" in report and "| maml |" in report
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    for algo in ("maltml", "maml"):
        saved = check_results(tmp_path / algo / "eval.json")
        assert saved["extra"]["episodes"] == 6 and saved["extra"]["batch_norm"] == "task"
        assert len(saved["methods"][algo]["with_meta_update"]["accuracy"]["mean"]) == 3
    # The report pairs MALTML with MAML on the same episodes, under each protocol and as each is meant to be used.
    pairs = results["comparisons"]
    assert set(pairs["maltml_minus_maml"]) == {"without_meta_update", "with_meta_update", "with_minus_without"}
    assert "| MALTML − MAML |" in report
    curves = {a: torch.load(tmp_path / a / "eval-curves.pt") for a in ("maltml", "maml")}
    # paired differences are taken in float64, so the reference is too
    diff = curves["maltml"]["with_meta_update"]["accuracy"].double() - curves["maml"]["without_meta_update"]["accuracy"].double()
    assert pairs["maltml_minus_maml"]["with_minus_without"]["accuracy"]["mean"] == pytest.approx(diff.mean(0).tolist())
    # A rerun reuses the data, the finished runs and their evaluations, and gives the same numbers.
    stamp = (tmp_path / "maml" / "eval.json").stat().st_mtime_ns
    again = run_demo(tmp_path, cfg)
    assert again["methods"]["maml"]["without_meta_update"] == results["methods"]["maml"]["without_meta_update"]
    assert (tmp_path / "maml" / "eval.json").stat().st_mtime_ns == stamp
    # More finetuning steps make the cached evaluation stale: it is recomputed.
    longer = run_demo(tmp_path, DemoConfig(**{**cfg.__dict__, "eval_steps": 3}))
    assert len(longer["methods"]["maml"]["with_meta_update"]["accuracy"]["mean"]) == 4


def test_validation_runs_share_data_and_episodes_and_never_touch_test(tmp_path):
    """A step-size sweep: runs sharing one built dataset score on val.h5 beside it."""
    cfg = DemoConfig(
        image_size=16, glyph_alphabets=5, glyph_characters=6, glyph_drawers=6, families_per_alphabet=2,
        ways=3, queries=2, val=3, meta_tasks=2, batch=2, steps=1, hidden=4, eval_episodes=4, eval_steps=1, workers=0,
        progress=False, algorithms=("maltml",), eval_split="val",
    )  # fmt: skip
    data = tmp_path / "shared" / "data"
    run_demo(tmp_path / "shared", cfg)  # builds the data
    for beta in (0.01, 0.1):
        run_demo(tmp_path / f"b{beta}", DemoConfig(**{**cfg.__dict__, "data": str(data), "beta": beta}))
        saved = json.loads((tmp_path / f"b{beta}" / "maltml" / "eval-val.json").read_text())["extra"]
        assert saved["episodes_file"] == str(tmp_path / "shared" / "val.h5") and saved["algorithm"]["beta"] == beta
        assert saved["episodes_info"]["split"] == "val" and not (tmp_path / f"b{beta}" / "data").exists()
    assert not list(tmp_path.rglob("test.h5"))
    # A run that wants other episodes than the shared val.h5 holds is refused, not scored on them.
    with pytest.raises(FewtaskError, match=r"holds 4 episodes .* not the 5 .*delete it"):
        run_demo(tmp_path / "more", DemoConfig(**{**cfg.__dict__, "data": str(data), "eval_episodes": 5}))
