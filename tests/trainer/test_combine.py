"""`fewtask-train combine`: methods trained in separate runs (as tuned methods are, each with
its own best.json) give the same joint report as one run that trained them together."""

from __future__ import annotations

import json

import pytest
from results_schema import check_results
from tinynav import SMALL_BATCH, crop_families, navigation_run
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from trainer.cli import app
from trainer.experiments.combine import CombineConfig, combine

runner = CliRunner()
TINY = ["--iterations", "2", "--seeds", "0,1", "--trajectories", "3", "--horizon", "6", "--hidden", "8",
        "--eval-steps", "2", *SMALL_BATCH]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("combine")
    fam = crop_families(root)

    def navigation(out, methods, *more):
        return navigation_run(root / out, fam, methods, *TINY, *more)

    return root, navigation("joint", "maltml,maml"), navigation("a", "maltml"), navigation("b", "maml"), navigation


def test_combined_runs_equal_one_joint_run(runs):
    root, joint, a, b, _ = runs
    r = runner.invoke(app, ["combine", "--runs", f"{a},{b}", "--out", str(root / "combined")])
    assert r.exit_code == 0, r.output
    combined = check_results(root / "combined" / "results.json")
    together = json.loads((joint / "results.json").read_text())
    assert combined["seeds"] == together["seeds"] == [0, 1]
    for m in ("maltml", "maml"):
        for p in ("with_meta_update", "without_meta_update", "meta_update_gain"):
            assert combined["methods"][m][p] == together["methods"][m][p]
    assert combined["comparisons"]["maltml_minus_maml"] == together["comparisons"]["maltml_minus_maml"]
    assert "with_minus_without" in combined["comparisons"]["maltml_minus_maml"]  # MALTML as meant minus MAML as meant
    assert combined["config"]["methods"]["maltml"][0]["run"] == str(a)
    assert "maltml_minus_maml" in r.output


def test_runs_that_scored_other_units_are_refused(runs):
    root, joint, a, _, navigation = runs
    other = navigation("other-goals", "maml", "--eval-seed", "99")
    first = json.loads((a / "results.json").read_text())["extra"]["evaluation"]
    with pytest.raises(FewtaskError, match="eval_seed differ"):
        combine(CombineConfig(runs=f"{a},{other}", out=str(root / "x")))
    with pytest.raises(FewtaskError, match="in two of the runs"):
        combine(CombineConfig(runs=f"{a},{joint}", out=str(root / "x")))
    with pytest.raises(FewtaskError, match="two or more"):
        combine(CombineConfig(runs=str(a), out=str(root / "x")))
    with pytest.raises(FewtaskError, match="neither eval.json nor results.json"):
        combine(CombineConfig(runs=f"{a},{root / 'fam'}", out=str(root / "x")))
    results = json.loads((other / "results.json").read_text())
    del results["extra"]["evaluation"]
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(FewtaskError, match="records no evaluation settings"):
        combine(CombineConfig(runs=f"{other},{a}", out=str(root / "x")))
    (other / "results.json").write_text(json.dumps({**results, "extra": {**results["extra"], "evaluation": first}}))
    (other / "maml" / "seed-1" / "curves.pt").unlink()
    with pytest.raises(FewtaskError, match="curves.pt is missing"):
        combine(CombineConfig(runs=f"{other},{a}", out=str(root / "x")))


def test_continual_runs_of_one_method_each_combine_into_the_joint_report(tmp_path):
    """`continual` trains one seed per run; tuned MALTML and OML each train alone and are paired by `combine`."""
    from tinycontinual import tiny_families

    def continual(out, methods, *more):
        r = runner.invoke(app, tiny_families(tmp_path, "--methods", methods, "--lr-grid", "0.01,0.1", *more, out=out))
        assert r.exit_code == 0, r.output
        return tmp_path / out

    joint, a, b = continual("joint", "maltml,oml"), continual("a", "maltml"), continual("b", "oml")
    assert (a / "maltml" / "seed-0" / "curves.pt").is_file()
    r = runner.invoke(app, ["combine", "--runs", f"{a},{b}", "--out", str(tmp_path / "combined")])
    assert r.exit_code == 0, r.output
    combined = check_results(tmp_path / "combined" / "results.json")
    together = json.loads((joint / "results.json").read_text())
    assert combined["steps"] is None and combined["seeds"] == [0]
    for m in ("maltml", "oml"):
        assert combined["methods"][m]["with_meta_update"] == together["methods"][m]["with_meta_update"]
    assert combined["comparisons"]["maltml_minus_oml"] == together["comparisons"]["maltml_minus_oml"]
    assert "maltml_minus_oml" in r.output and "with_minus_without" in r.output
    other = continual("other", "oml", "--eval-problems", "4")
    with pytest.raises(FewtaskError, match="eval_problems differ"):
        combine(CombineConfig(runs=f"{a},{other}", out=str(tmp_path / "x")))
