"""`fewtask-data build continual-sine-families`: frequency families as a validated,
versioned manifest with no shards, `inspect`-able, read back exactly; a file of another
builder version is a one-line error."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.builders.continual_sines import build_continual_families, family_frequencies
from fewtask_data.cli import app
from fewtask_data.sources.continual_sines import ContinualSpec, function_pool, load_family_definitions

SPEC = ContinualSpec(functions=3, steps_per_function=2, batch=4, train_pool=30, eval_pool=40)


def test_build_inspect_and_read_back(tmp_path):
    r = CliRunner().invoke(app, ["build", "continual-sine-families", "--out", str(tmp_path), "--families", "6", "--test-families", "2",
                                 "--functions", "3", "--steps-per-function", "2", "--batch", "4", "--train-pool", "30", "--eval-pool", "40"])  # fmt: skip
    assert r.exit_code == 0, r.output
    defs = load_family_definitions(tmp_path)
    assert defs.spec == ContinualSpec(functions=3, steps_per_function=2, batch=4, train_pool=30, eval_pool=40)
    assert torch.equal(defs.pools["train"], function_pool(0, "train", defs.spec))
    assert torch.equal(defs.pools["test"], function_pool(0, "eval", defs.spec))
    assert len(defs.frequencies["train"]) == 4 and len(defs.frequencies["test"]) == 2
    assert not set(defs.frequencies["train"]) & set(defs.frequencies["test"])  # held-out families
    assert all(0.5 <= w <= 2.0 for ws in defs.frequencies.values() for w in ws)
    # exactly the frequencies the builder has always written: drawn by family_frequencies, held out by randperm(seed)
    freqs = family_frequencies(0, 6, 0.5, 2.0)
    held = set(torch.randperm(6, generator=torch.Generator().manual_seed(0)).tolist()[:2])
    assert defs.frequencies == {"train": [w for i, w in enumerate(freqs) if i not in held], "test": [freqs[i] for i in sorted(held)]}
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path)]).output
    assert "continual-sine-families" in shown and "frequency" in shown and "test" in shown
    # a rebuild with the same settings is recognised; other settings in the same folder are refused
    build_continual_families(tmp_path, families=6, test_families=2, spec=SPEC)
    with pytest.raises(FewtaskError, match="different build"):
        build_continual_families(tmp_path, families=7, test_families=2, spec=SPEC)


def test_another_version_or_builder_is_a_one_line_error(tmp_path):
    build_continual_families(tmp_path, families=4, test_families=1, spec=SPEC)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["builder"]["version"] = "0"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FewtaskError, match="version 0; this fewtask reads version 1"):
        load_family_definitions(tmp_path)
    manifest["builder"]["name"] = "omniglot-families"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FewtaskError, match="not continual-sine-families"):
        load_family_definitions(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"test_families": 0}, "--test-families"), ({"frequency_range": (2.0, 1.0)}, "--frequency-range")],
)
def test_bad_build_settings(tmp_path, kwargs, message):
    with pytest.raises(FewtaskError, match=message):
        build_continual_families(tmp_path, **{"families": 4, "test_families": 1, "spec": SPEC, **kwargs})
