"""EpisodeStore: fixed evaluation episodes written to HDF5 read back as identical FamilyBatches."""

from __future__ import annotations

import h5py
import pytest
import torch
from typer.testing import CliRunner

import toydata
from fewtask_data import (
    EpisodeShape, EpisodeStore, FamilyBatch, FamilyEpisode, FamilyStream, FewtaskError, collate, write_episodes,
)
from fewtask_data.cli import app

SHAPE = EpisodeShape(ways=3, shots=1, queries=2, val=3, meta_tasks=2, goal_tasks=2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    toydata.build_toy(out, n_classes=12, per_class=10)
    return out


def same_batch(a: FamilyBatch, b: FamilyBatch) -> bool:
    tensors = ("meta_x", "meta_y", "goal_x", "goal_y")
    return (
        all(getattr(a, t).dtype == getattr(b, t).dtype and torch.equal(getattr(a, t), getattr(b, t)) for t in tensors)
        and a.families == b.families
        and a.identities == b.identities
        and a.shape == b.shape
    )


def test_read_back_gives_identical_family_batches(root, tmp_path):
    eps = FamilyStream(root, "train", SHAPE, seed=2, episodes_per_visit=3).take(7)
    assert write_episodes(tmp_path / "e.h5", eps, {"split": "train"}) == 7
    with EpisodeStore(tmp_path / "e.h5") as store:
        assert len(store) == 7 and store.shape == SHAPE and store.info == {"split": "train"}
        assert store.file["meta_x"].dtype == "uint8"  # k/255 images stored compactly
        got = list(store.batches(3))
        assert [len(b) for b in got] == [3, 3, 1]
        for i, b in enumerate(got):
            assert same_batch(b, collate(eps[3 * i : 3 * i + 3]))
        assert same_batch(collate([store[5]]), collate([eps[5]]))
        assert same_batch(collate([store[-1]]), collate([eps[6]]))


def test_stored_identity_replays_from_the_shards(root, tmp_path):
    s = FamilyStream(root, "test", SHAPE, seed=5)
    write_episodes(tmp_path / "e.h5", s.take(3))
    with EpisodeStore(tmp_path / "e.h5") as store:
        stored = store[2]
    assert torch.equal(s.replay(stored.identity).goal_x, stored.goal_x)


def test_float_episodes_with_info_round_trip(tmp_path):
    shape = EpisodeShape(ways=1, shots=4, queries=2, val=3, meta_tasks=2, goal_tasks=1)
    g = torch.Generator().manual_seed(0)

    def episode(i):
        return FamilyEpisode(
            torch.randn(2, 6, 1, generator=g), torch.randn(2, 6, 1, generator=g),
            torch.randn(1, 7, 1, generator=g), torch.randn(1, 7, 1, generator=g),
            shape, f"sine{i}", {"phase": i}, torch.randn(2, 2, generator=g), torch.randn(1, 2, generator=g),
        )

    eps = [episode(i) for i in range(4)]
    write_episodes(tmp_path / "s.h5", eps)
    with EpisodeStore(tmp_path / "s.h5") as store:
        b = next(store.batches(10))
    want = collate(eps)
    assert same_batch(b, want) and torch.equal(b.meta_info, want.meta_info) and torch.equal(b.goal_info, want.goal_info)


def test_episodes_without_meta_tasks_round_trip(root, tmp_path):
    # L = 0 (plain few-shot evaluation) stores empty meta arrays.
    shape = EpisodeShape(ways=3, shots=1, queries=2, val=3, meta_tasks=0, goal_tasks=2)
    eps = FamilyStream(root, "train", shape, seed=1, episodes_per_visit=2).take(3)
    write_episodes(tmp_path / "g.h5", eps)
    with EpisodeStore(tmp_path / "g.h5") as store:
        b = next(store.batches(10))
    assert b.meta_x.shape[1] == 0 and same_batch(b, collate(eps))


def test_mixed_shapes_are_refused_and_leave_no_file(root, tmp_path):
    a = FamilyStream(root, "test", SHAPE).take(1)
    other = EpisodeShape(ways=2, shots=1, queries=2, val=3, meta_tasks=2, goal_tasks=2)
    b = FamilyStream(root, "test", other).take(1)
    with pytest.raises(FewtaskError, match="has shape"):
        write_episodes(tmp_path / "x.h5", a + b)
    assert list(tmp_path.iterdir()) == []


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(FewtaskError, match="no episode file"):
        EpisodeStore(tmp_path / "none.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FewtaskError, match="not a fewtask episode file"):
        EpisodeStore(tmp_path / "other.h5")


def test_episodes_cli_is_reproducible(root, tmp_path):
    args = ["episodes", str(root), "--split", "test", "--count", "12", "--seed", "0", "--ways", "3",
            "--val", "4", "--meta-tasks", "2"]
    runner = CliRunner()
    r1 = runner.invoke(app, args + ["--out", str(tmp_path / "a.h5")])
    r2 = runner.invoke(app, args + ["--out", str(tmp_path / "b.h5")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert "wrote 12 3-way 1-shot" in r1.output
    with EpisodeStore(tmp_path / "a.h5") as a, EpisodeStore(tmp_path / "b.h5") as b:
        assert same_batch(a.batch(0, 12), b.batch(0, 12))
        assert a.info["split"] == "test" and a.info["seed"] == 0
    bad = runner.invoke(app, args[:-2] + ["--ways", "9", "--out", str(tmp_path / "c.h5")])
    assert bad.exit_code != 0 and "ask for 9 ways" in str(bad.exception)
    shown = runner.invoke(app, ["inspect", str(tmp_path / "a.h5")])
    assert "episodes  12" in shown.output


def test_worker_processes_write_the_same_episodes(root, tmp_path):
    args = ["episodes", str(root), "--count", "7", "--per-visit", "3", "--ways", "3", "--val", "4"]
    runner = CliRunner()
    assert runner.invoke(app, args + ["--out", str(tmp_path / "one.h5")]).exit_code == 0
    assert runner.invoke(app, args + ["--workers", "2", "--out", str(tmp_path / "two.h5")]).exit_code == 0
    with EpisodeStore(tmp_path / "one.h5") as a, EpisodeStore(tmp_path / "two.h5") as b:
        assert len(a) == len(b) == 7
        assert same_batch(a.batch(0, 7), b.batch(0, 7))
    stream = FamilyStream(root, "test", EpisodeShape(3, 1, 5, 4, 4, 1), episodes_per_visit=3)
    with EpisodeStore(tmp_path / "one.h5") as a:
        assert same_batch(a.batch(0, 7), collate(stream.take(7)))
