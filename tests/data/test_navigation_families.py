"""2D navigation crop families: sampling bounds, the family-definition file (build, load,
rebuild, version and builder checks) and `inspect`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.builders.navigation import build_navigation_families
from fewtask_data.cli import app
from fewtask_data.sources.navigation import goals_in, load_navigation_families, sample_crops

COUNTS = {"train": 6, "val": 2, "test": 3}


def test_crops_sizes_and_placement_and_goals_inside():
    crops = sample_crops(torch.Generator().manual_seed(0), 2000)
    x0, y0, w, h = crops.unbind(-1)
    assert w.min() >= 0.25 and w.max() <= 0.75 and h.min() >= 0.25 and h.max() <= 0.75
    assert w.max() > 0.7 and w.min() < 0.3  # the whole size range is used
    assert x0.min() >= -0.5 and (x0 + w).max() <= 0.5 and y0.min() >= -0.5 and (y0 + h).max() <= 0.5
    goals = goals_in(crops[:10], 50, torch.Generator().manual_seed(1))
    assert goals.shape == (10, 50, 2)
    inside = (goals >= crops[:10, None, :2] - 1e-6) & (goals <= crops[:10, None, :2] + crops[:10, None, 2:] + 1e-6)
    assert inside.all()


@pytest.mark.parametrize("size", [(0.0, 0.5), (0.5, 1.5), (0.8, 0.3)])
def test_crop_sizes_outside_the_unit_interval_are_user_errors(size, tmp_path):
    with pytest.raises(FewtaskError, match="crop sizes"):
        build_navigation_families(tmp_path / "x", counts=COUNTS, crop_size=size)


def test_build_load_round_trip_and_rebuild(tmp_path):
    build_navigation_families(tmp_path / "a", counts=COUNTS, seed=3)
    crops = load_navigation_families(tmp_path / "a")
    assert {k: len(v) for k, v in crops.items()} == COUNTS
    # exactly the crops the builder has always written: sampled from split seed 3 * 3 + i, rounded to 1e-6
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    for i, split in enumerate(("train", "val", "test")):
        assert manifest["seeds"][split] == 9 + i
        sampled = sample_crops(torch.Generator().manual_seed(9 + i), COUNTS[split]).tolist()
        assert torch.equal(crops[split], torch.tensor([[round(v, 6) for v in row] for row in sampled], dtype=torch.float64))
    first = (tmp_path / "a" / "manifest.json").read_bytes()
    build_navigation_families(tmp_path / "a", counts=COUNTS, seed=3)  # finished: a no-op
    assert (tmp_path / "a" / "manifest.json").read_bytes() == first
    with pytest.raises(FewtaskError, match="different build"):
        build_navigation_families(tmp_path / "a", counts=COUNTS, seed=4)


def test_family_file_of_another_version_or_builder_is_refused(tmp_path):
    build_navigation_families(tmp_path / "a", counts=COUNTS)
    path = tmp_path / "a" / "manifest.json"
    data = json.loads(path.read_text())
    data["builder"]["version"] = "0"
    path.write_text(json.dumps(data))
    with pytest.raises(FewtaskError, match="version 0.*rebuild"):
        load_navigation_families(tmp_path / "a")
    data["builder"]["name"] = "omniglot-families"
    path.write_text(json.dumps(data))
    with pytest.raises(FewtaskError, match="not navigation-families"):
        load_navigation_families(tmp_path / "a")


def test_cli_build_and_inspect(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["build", "navigation-families", "--out", str(tmp_path / "f"), "--train-families", "4",
                            "--val-families", "1", "--test-families", "2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "f")])
    assert r.exit_code == 0 and "navigation-families" in r.output and '"crop": [' in r.output, r.output
    assert "fewtask-procedural" in r.output and "crop [" in r.output  # the crops' ranges per split
