"""Dynamics task families (bands of gravity / goal_x) and streams as data: build, load,
inspect, reproducible streams, and bad input as one-line errors."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.builders.dynamics import build_dynamics_families
from fewtask_data.cli import app
from fewtask_data.sources.dynamics import KAPLANIS_GRID, load_dynamics_families, make_stream

COUNTS = {"train": 5, "val": 2, "test": 3}


def test_families_round_trip_with_the_grid_and_held_out_bands(tmp_path):
    build_dynamics_families(tmp_path, counts=COUNTS)
    space, fams = load_dynamics_families(tmp_path)
    assert space.env == "HalfCheetah-v5" and space.task_type == "velocity" and space.band_param == "gravity"
    assert space.grid == KAPLANIS_GRID
    assert [len(fams[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    for f in fams["train"] + fams["test"]:
        assert -17 <= f["band"][0] < f["band"][1] <= -7 and 2 <= f["band"][1] - f["band"][0] <= 4 + 1e-6
    assert {tuple(f["band"]) for f in fams["train"]}.isdisjoint(tuple(f["band"]) for f in fams["test"])
    assert [t["gravity"] for t in space.grid_tasks()] == list(KAPLANIS_GRID)
    build_dynamics_families(tmp_path, counts=COUNTS)  # the same build again: a no-op


def test_inspect_lists_the_bands(tmp_path):
    result = CliRunner().invoke(app, ["build", "dynamics-families", "--out", str(tmp_path), "--env", "point"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert "dynamics-families" in shown.output and "band" in shown.output and "goal_x" in shown.output


def test_a_stream_is_reproducible_from_its_seed(tmp_path):
    build_dynamics_families(tmp_path, counts=COUNTS)
    space, fams = load_dynamics_families(tmp_path)
    for kind in ("abrupt", "drift", "sine"):
        a, b = (make_stream(kind, space, fams["test"], 7, 1000, seed=4) for _ in range(2))
        assert a.to_json() == b.to_json()
        assert make_stream(kind, space, fams["test"], 7, 1000, seed=5).to_json() != a.to_json()
    drift = make_stream("drift", space, fams["test"], 5, 1000, seed=0)
    gravities = [p["goal"]["gravity"] for p in drift.phases]
    assert gravities == [-7.0, -9.5, -12.0, -14.5, -17.0]  # Kaplanis's linear schedule, at his grid
    assert drift.at(2500)["phase"] == 2 and drift.at(0)["start"] == 0


def test_bad_input_is_one_line(tmp_path):
    build_dynamics_families(tmp_path, counts=COUNTS)
    space, fams = load_dynamics_families(tmp_path)
    stream = make_stream("abrupt", space, fams["test"], 3, 100, seed=0)
    with pytest.raises(FewtaskError, match="longer than its schedule"):
        stream.take(301)
    with pytest.raises(FewtaskError, match="past the end of its schedule"):
        stream.at(300)
    with pytest.raises(FewtaskError, match="outside its band"):
        space.check_task({"gravity": -20.0})
    with pytest.raises(FewtaskError, match="outside its range"):
        space.task_in([-19.0, -15.0], random.Random(0))
    with pytest.raises(FewtaskError, match="unknown task parameter"):
        space.check_task({"wind": 1.0})
    with pytest.raises(FewtaskError, match="unknown stream"):
        make_stream("zigzag", space, fams["test"], 3, 100, seed=0)
    with pytest.raises(FewtaskError, match="does not fit env"):
        build_dynamics_families(tmp_path / "x", counts=COUNTS, env="point", task_type="velocity")
    with pytest.raises(FewtaskError, match="band widths"):
        build_dynamics_families(tmp_path / "y", counts=COUNTS, band_width=(2.0, 20.0))
