"""trainer/evaluation/seeds.py: results over training seeds, checked against hand computations."""

from __future__ import annotations

import math

import pytest

from fewtask_data import FewtaskError
from trainer.evaluation import seeds
from trainer.experiments.options import parse_seeds


@pytest.mark.parametrize("df,table", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (10, 2.2281)])
def test_t_quantile_matches_the_printed_table(df, table):
    assert seeds.t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)


def test_interval_over_three_seeds_by_hand():
    # values 1, 2, 4: mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3
    mean, half = seeds.over_seeds([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.302653 * math.sqrt(7 / 3) / math.sqrt(3), rel=1e-6)


def test_one_seed_has_no_interval():
    with pytest.raises(FewtaskError, match="at least 2 seeds"):
        seeds.over_seeds([1.0])


def test_aggregate_summaries_means_over_seeds_and_keeps_both_intervals():
    per_seed = [{"mean": [1.0, 10.0], "ci95": [0.2, 2.0]}, {"mean": [3.0, 10.0], "ci95": [0.4, 4.0]}]
    agg = seeds.aggregate_summaries(per_seed)
    assert agg["mean"] == pytest.approx([2.0, 10.0])
    # two seeds: sd of (1, 3) is sqrt(2); t(0.975, 1) = 12.706
    assert agg["seed_ci95"] == pytest.approx([12.706205 * math.sqrt(2) / math.sqrt(2), 0.0], rel=1e-6)
    assert agg["family_ci95"] == pytest.approx([0.3, 3.0])
    assert agg["per_seed"] == [[1.0, 10.0], [3.0, 10.0]]


def test_aggregate_tree_walks_the_evaluation_schema():
    def result(m):
        return {"episodes": 500, "steps": [0, 1], "train": {"seconds": m * 10},
                "with_meta_finetuning": {"loss": {"mean": [m, m / 2], "ci95": [0.1, 0.1]}}}  # fmt: skip

    tree = seeds.aggregate_tree([result(1.0), result(2.0), result(3.0)])
    assert tree["episodes"] == 500 and tree["steps"] == [0, 1]  # the same for every seed: kept once
    assert tree["train"]["seconds"] == [10.0, 20.0, 30.0]  # differs: listed per seed
    loss = tree["with_meta_finetuning"]["loss"]
    assert loss["mean"] == pytest.approx([2.0, 1.0])
    assert loss["seed_ci95"][0] == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)  # sd of 1, 2, 3 is 1


def test_paired_difference_per_seed_and_over_seeds():
    per_seed = [{"mean": [-0.5, 0.0], "ci95": [0.1, 0.1]}, {"mean": [-0.3, 0.0], "ci95": [0.4, 0.1]},
                {"mean": [-0.4, 0.0], "ci95": [0.2, 0.1]}]  # fmt: skip
    out = seeds.paired_at([0, 1, 2], per_seed, 0)
    assert [r["seed"] for r in out["per_seed"]] == [0, 1, 2]
    assert out["mean"] == pytest.approx(-0.4)
    assert out["seed_ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert out["seeds_with_family_interval_below_zero"] == 2  # seed 1's interval reaches above zero


@pytest.mark.parametrize("text", ["", "0,x", "1,1", "-1,2"])
def test_bad_seed_lists_are_errors(text):
    with pytest.raises(FewtaskError, match="--seeds must be"):
        parse_seeds(text)


def test_seed_list_parses():
    assert parse_seeds(" 0, 1,2 ") == [0, 1, 2]
