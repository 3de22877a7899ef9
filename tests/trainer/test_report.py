"""trainer/evaluation/stats.py and report.py: intervals checked by hand, seeds pooled one
way, and the one results schema (trainer/evaluation/results.schema.json)."""

from __future__ import annotations

import copy
import math

import jsonschema
import pytest
import torch

from fewtask_data import FewtaskError
from results_schema import SCHEMA, check_results
from trainer.evaluation import report, stats
from trainer.experiments.options import parse_seeds


@pytest.mark.parametrize("df,table", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (10, 2.2281)])
def test_t_quantile_matches_the_printed_table(df, table):
    assert stats.t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)


def test_interval_over_three_seeds_by_hand():
    # values 1, 2, 4: mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3
    mean, half = stats.over_seeds([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.302653 * math.sqrt(7 / 3) / math.sqrt(3), rel=1e-6)


def test_one_seed_has_no_interval_over_seeds():
    with pytest.raises(FewtaskError, match="at least 2 seeds"):
        stats.over_seeds([1.0])


def test_summaries_by_hand():
    s = stats.summarize(torch.tensor([[1.0], [3.0]]))
    assert s["mean"] == [2.0] and s["ci95"][0] == pytest.approx(1.96 * math.sqrt(2) / math.sqrt(2)) and s["diverged"] == [0]
    d = stats.paired(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[0.5], [1.5], [2.5]]))
    assert d["mean"] == [pytest.approx(0.5)] and d["ci95"] == [pytest.approx(0.0)]
    scalar = stats.summarize(torch.tensor([2.0, 4.0, 6.0]))
    assert scalar["mean"] == pytest.approx(4.0) and scalar["ci95"] == pytest.approx(1.96 * 2.0 / math.sqrt(3))


def test_diverged_units_show_in_the_mean_and_are_counted():
    s = stats.summarize(torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 4.0]]))
    assert s["diverged"] == [0, 1] and math.isnan(s["mean"][1])
    assert s["finite_mean"] == [pytest.approx(3.0), pytest.approx(3.0)]
    assert s["finite_ci95"][1] == pytest.approx(1.96 * math.sqrt(2) / math.sqrt(2))


def test_pooling_seeds_means_the_seed_means_with_a_t_interval():
    per_seed = [{"mean": [m, m / 2], "ci95": [0.1, 0.3], "diverged": [0, 1]} for m in (1.0, 2.0, 3.0)]
    out = stats.pool_seeds(per_seed)
    assert out["mean"] == pytest.approx([2.0, 1.0]) and out["per_seed"] == [[1.0, 0.5], [2.0, 1.0], [3.0, 1.5]]
    assert out["ci95"][0] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # sd of 1, 2, 3 is 1
    assert out["unit_ci95"] == pytest.approx([0.1, 0.3]) and out["diverged"] == [0, 3]
    one = stats.pool_seeds(per_seed[:1])
    assert one["mean"] == [1.0, 0.5] and one["ci95"] == [0.1, 0.3]  # one seed: its interval over units


def _curves(offset: float) -> dict:
    gen = torch.Generator().manual_seed(int(offset))
    base = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    return {report.WITHOUT: {"loss": base + offset}, report.WITH: {"loss": base + offset - 0.5}}


def test_results_pair_methods_on_the_same_units_and_validate():
    curves = {0: {"a": _curves(1.0), "b": _curves(2.0)}, 1: {"a": _curves(3.0), "b": _curves(5.0)}}
    out = check_results(report.results("test", {"x": 1}, "unit", curves, range(3)))
    pair = out["comparisons"]["a_minus_b"]
    # seed 0: (base_a + 1) - (base_b + 2); the means over units, then over seeds
    per_seed = [(curves[s]["a"][report.WITH]["loss"] - curves[s]["b"][report.WITH]["loss"]).mean(0) for s in (0, 1)]
    assert pair[report.WITH]["loss"]["per_seed"] == [pytest.approx(p.tolist()) for p in per_seed]
    as_meant = (curves[0]["a"][report.WITH]["loss"] - curves[0]["b"][report.WITHOUT]["loss"]).mean(0)
    assert out["per_seed"]["0"]["comparisons"]["a_minus_b"][report.AS_MEANT]["loss"]["mean"] == pytest.approx(as_meant.tolist())
    assert out["methods"]["a"][report.GAIN]["loss"]["mean"] == pytest.approx([-0.5] * 3)


def test_the_schema_rejects_other_key_sets():
    curves = {0: {"a": _curves(1.0)}}
    good = report.results("test", {}, "unit", curves, range(3))
    check_results(good)
    for spoil in (lambda r: r["methods"]["a"].update(with_meta_finetuning=r["methods"]["a"].pop(report.WITH)),
                  lambda r: r["methods"]["a"][report.WITH]["loss"].pop("ci95"),
                  lambda r: r.pop("intervals"),
                  lambda r: r.update(schema_version=2)):  # fmt: skip
        bad = copy.deepcopy(good)
        spoil(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_configs_become_plain_json():
    from pathlib import Path

    assert report.json_safe({"p": Path("a/b"), "t": (1, 2), "x": float("inf"), "n": None}) == \
        {"p": "a/b", "t": [1, 2], "x": "inf", "n": None}  # fmt: skip


@pytest.mark.parametrize("text", ["", "0,x", "1,1", "-1,2"])
def test_bad_seed_lists_are_errors(text):
    with pytest.raises(FewtaskError, match="--seeds must be"):
        parse_seeds(text)


def test_seed_list_parses():
    assert parse_seeds(" 0, 1,2 ") == [0, 1, 2]
