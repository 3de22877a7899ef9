"""`fewtask-data build sinusoid-families`: fixed sinusoid families (a phase each) as
procedural family definitions, read back exactly, driving `sample_batch`; every numeric
option's bad value is a one-line error."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.builders.sinusoid import build_sinusoid_families
from fewtask_data.cli import app
from fewtask_data.sources.sinusoid import SinusoidSpec, family_phases, load_sinusoid_families, sample_batch

COUNTS = {"train": 7, "val": 2, "test": 4}


def test_build_load_round_trip(tmp_path):
    spec = SinusoidSpec(amplitude=(0.5, 2.0), phase=(0.0, 1.0), x_range=(-2.0, 3.0))
    build_sinusoid_families(tmp_path, counts=COUNTS, spec=spec, seed=5)
    defs = load_sinusoid_families(tmp_path)
    assert defs.spec == spec
    for i, split in enumerate(("train", "val", "test")):  # disjoint streams of seed 5, recorded per split
        assert torch.equal(defs.phases[split], family_phases(torch.Generator().manual_seed(15 + i), COUNTS[split], spec))
        assert defs.phases[split].dtype == torch.float64 and 0 <= defs.phases[split].min() <= defs.phases[split].max() <= 1
    assert not set(defs.phases["train"].tolist()) & set(defs.phases["test"].tolist())


def test_default_families_follow_the_experiments_phase_distribution(tmp_path):
    build_sinusoid_families(tmp_path)
    defs = load_sinusoid_families(tmp_path)
    assert defs.spec == SinusoidSpec()  # amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]
    assert {s: len(p) for s, p in defs.phases.items()} == {"train": 1000, "val": 100, "test": 500}
    assert 0 <= defs.phases["train"].min() and defs.phases["train"].max() <= math.pi


def test_families_fix_the_phase_of_sampled_tasks(tmp_path):
    build_sinusoid_families(tmp_path, counts=COUNTS)
    defs = load_sinusoid_families(tmp_path)
    shape = EpisodeShape(ways=1, shots=5, queries=5, val=5, meta_tasks=3, goal_tasks=2)
    batch = sample_batch(torch.Generator().manual_seed(0), 4, shape, defs.spec, dtype=torch.float64, phases=defs.phases["test"])
    assert torch.equal(batch.meta_info[:, :, 1], defs.phases["test"][:, None].expand(4, 3))
    assert not torch.all(batch.meta_info[:, :, 0] == batch.meta_info[:, :1, 0])  # each task its own amplitude


def test_cli_build_inspect_verify(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["build", "sinusoid-families", "--out", str(tmp_path), "--train-families", "3", "--val-families", "1",
                            "--test-families", "2", "--x-range", "-1,1", "--seed", "4"])  # fmt: skip
    assert r.exit_code == 0 and "3 train, 1 val and 2 test" in r.output, r.output
    assert load_sinusoid_families(tmp_path).spec.x_range == (-1.0, 1.0)
    shown = runner.invoke(app, ["inspect", str(tmp_path)]).output
    assert "sinusoid-families 1" in shown and "phase 0." in shown and '"x_range": [-1.0, 1.0]' in shown, shown
    assert "no shards to verify" in runner.invoke(app, ["verify", str(tmp_path)]).output


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--train-families", "0", "--train-families must be >= 1, got 0"),
        ("--val-families", "-1", "--val-families must be >= 1"),
        ("--test-families", "0", "--test-families must be >= 1"),
        ("--amplitude-range", "-1,2", "--amplitude-range needs LOW >= 0"),
        ("--amplitude-range", "3,1", "--amplitude-range needs finite LOW <= HIGH"),
        ("--amplitude-range", "0.1,inf", "--amplitude-range needs finite"),
        ("--phase-range", "2,1", "--phase-range needs finite LOW <= HIGH"),
        ("--phase-range", "nan,1", "--phase-range needs finite"),
        ("--phase-range", "1", "--phase-range must be LOW,HIGH"),
        ("--x-range", "1,1", "--x-range needs LOW < HIGH"),
        ("--x-range", "5,-5", "--x-range needs finite LOW <= HIGH"),
        ("--seed", "-1", "--seed must be >= 0"),
    ],
)
def test_bad_numbers_are_one_line_errors(tmp_path, option, value, message):
    r = CliRunner().invoke(app, ["build", "sinusoid-families", "--out", str(tmp_path / "x"), option, value])
    assert isinstance(r.exception, FewtaskError) and message in str(r.exception) and "\n" not in str(r.exception)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_a_phase_per_task_has_no_families(tmp_path):
    with pytest.raises(FewtaskError, match="per_task_phase"):
        build_sinusoid_families(tmp_path, counts=COUNTS, spec=SinusoidSpec(per_task_phase=True))
