"""Tiny continual frequency families (2 functions x 2 online steps) and the `fewtask-train
continual` arguments that train and score on them in seconds."""

from __future__ import annotations

from pathlib import Path


def tiny_families(root: Path, *extra: str, out: str = "run") -> list[str]:
    """`continual`'s arguments on tiny families built under ``root/fams`` (once), writing ``root/out``."""
    from fewtask_data.builders.continual_sines import build_continual_families
    from fewtask_data.sources.continual_sines import ContinualSpec

    if not (root / "fams").exists():
        build_continual_families(root / "fams", families=4, test_families=2,
                                 spec=ContinualSpec(functions=2, steps_per_function=2, batch=3, train_pool=20, eval_pool=20))  # fmt: skip
    return ["continual", "--families", str(root / "fams"), "--out", str(root / out), "--steps", "2", "--width", "8",
            "--eval-problems", "3", "--val-problems", "1", "--test-points", "10", "--no-progress", *extra]  # fmt: skip
