"""Tiny navigation crop families and `fewtask-train navigation` runs on them (seconds each),
shared by the trainer tests that need a real navigation run folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from trainer.cli import app

# Each test states the rest of its settings; these are the ones every tiny run shares.
SMALL_BATCH = ["--batch-families", "2", "--tasks", "2", "--goal-tasks", "1", "--maml-tasks", "3"]


def crop_families(root: Path, train: int = 4) -> Path:
    """Build ``train`` train, 1 val and 3 test crop families under ``root/fam``."""
    from fewtask_data.builders.navigation import build_navigation_families

    build_navigation_families(root / "fam", counts={"train": train, "val": 1, "test": 3})
    return root / "fam"


def navigation_run(out: Path, families: Path, methods: str, *args: str) -> Path:
    """Run `fewtask-train navigation` in-process; fail the test with its output if it fails."""
    r = CliRunner().invoke(app, ["navigation", "--out", str(out), "--families", str(families), "--methods", methods, *args])
    assert r.exit_code == 0, r.output
    return out
