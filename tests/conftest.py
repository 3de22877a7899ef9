"""Shared test fixtures: where the real data lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real data sits in ../shared/data beside the checkout (never committed).
SHARED_DATA = Path(os.environ.get("FEWTASK_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under the shared data folder, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FEWTASK_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture
def omniglot_dir() -> Path:
    return shared_path("omniglot")


@pytest.fixture
def imagenet_samples() -> Path:
    return shared_path("imagenet-samples", "imagenette-train-subset")


@pytest.fixture
def splits_dir() -> Path:
    return shared_path("splits")


@pytest.fixture(scope="session")
def wordnet():
    """WordNet 3.0 (fewtask_data.sources.wordnet), or skip with the reason and both fixes."""
    from fewtask_data.sources.wordnet import load_wordnet, wordnet_available

    ok, reason = wordnet_available()
    if not ok:
        pytest.skip(f"WordNet 3.0 unavailable: {reason}")
    return load_wordnet()
