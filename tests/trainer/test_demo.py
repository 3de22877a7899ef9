"""The demo end to end on a tiny glyph build: shards -> train MALTML and MAML -> eval -> report."""

import json

import pytest
import torch

from trainer.commands.demo import DemoConfig, run_demo

torch.set_num_threads(1)


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    cfg = DemoConfig(
        image_size=16, glyph_alphabets=5, glyph_characters=6, glyph_drawers=6, families_per_alphabet=2,
        ways=3, queries=2, val=3, meta_tasks=2, batch=2, steps=3, hidden=4, eval_episodes=6, eval_steps=2, workers=0,
    )  # fmt: skip
    results = run_demo(tmp_path, cfg)
    assert set(results) == {"maltml", "maml"}
    report = (tmp_path / "report.md").read_text()
    assert "SYNTHETIC" in report and "| maltml |" in report and "| maml |" in report
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    for algo in ("maltml", "maml"):
        saved = json.loads((tmp_path / algo / "eval.json").read_text())
        assert saved["episodes"] == 6 and saved["batch_norm"] == "task"
        assert len(saved["with_meta_finetuning"]["accuracy"]["mean"]) == 3
    # A rerun reuses the data, the finished runs and their evaluations, and gives the same numbers.
    stamp = (tmp_path / "maml" / "eval.json").stat().st_mtime_ns
    again = run_demo(tmp_path, cfg)
    assert again["maml"]["without_meta_finetuning"] == results["maml"]["without_meta_finetuning"]
    assert (tmp_path / "maml" / "eval.json").stat().st_mtime_ns == stamp
    # More finetuning steps make the cached evaluation stale: it is recomputed.
    longer = run_demo(tmp_path, DemoConfig(**{**cfg.__dict__, "eval_steps": 3}))
    assert len(longer["maml"]["with_meta_finetuning"]["accuracy"]["mean"]) == 4
