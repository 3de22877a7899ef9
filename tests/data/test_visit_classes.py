"""A visit to a family larger than max_visit_classes loads only that many of its classes.

Meta-Dataset subsamples 50 classes from a node spanning more; a FamilyStream does it per
visit, so a 392-class family never sits in memory whole. Families at or under the limit,
and manifests that ask for no limit, stream exactly as before.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch
from typer.testing import CliRunner

import toydata
from fewtask_data import BuildOptions, EpisodeShape, EpisodeStore, FamilyStream, FewtaskError, build_dataset, load_manifest
from fewtask_data.cli import app
from fewtask_data.formats.shards import ShardReader
from fewtask_data.stream import visit_classes

SHAPE = EpisodeShape(ways=3, shots=2, queries=3, val=4, meta_tasks=2, goal_tasks=1)
BIG = [f"c{c:02d}" for c in range(20)]  # family "big": 20 classes over 8 shards
SMALL = [f"c{c:02d}" for c in range(20, 24)]


def build(out: Path, **params) -> Path:
    build_dataset(
        out, dataset="visits", builder="toy", builder_version="1", source={"fingerprint": "visits"},
        classes=toydata.classes(24, 10), decode=toydata.decode, options=BuildOptions(shard_size=25, workers=1),
        splits={"train": [{"id": "big", "classes": BIG, "meta": {}}, {"id": "small", "classes": SMALL, "meta": {}}]},
        params=params,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build(tmp_path_factory.mktemp("visits"))


def test_visit_classes_are_a_seeded_subset_in_family_order():
    family = {"id": "f", "classes": BIG}
    drawn = visit_classes(family, 5, seed=1, epoch=0, position=3)
    assert len(drawn) == 5 and len(set(drawn)) == 5 and drawn == sorted(drawn, key=BIG.index)
    assert visit_classes(family, 5, 1, 0, 3) == drawn  # a pure function of the visit
    others = {tuple(visit_classes(family, 5, 1, epoch, position)) for epoch in range(3) for position in range(4)}
    assert len(others) > 6  # visits draw different subsets
    assert visit_classes(family, 20, 1, 0, 3) == BIG and visit_classes(family, None, 1, 0, 3) == BIG


def test_a_large_family_loads_only_the_drawn_classes(root, monkeypatch):
    loaded, shards = [], []
    real_samples, real_data = ShardReader.class_samples, ShardReader.shard_data

    def class_samples(self, shard, classes):
        for cls, sample, data in real_samples(self, shard, classes):
            loaded.append(cls)
            yield cls, sample, data

    monkeypatch.setattr(ShardReader, "class_samples", class_samples)
    monkeypatch.setattr(ShardReader, "shard_data", lambda self, shard: shards.append(shard) or real_data(self, shard))
    s = FamilyStream(root, "train", SHAPE, seed=3, episodes_per_visit=2, families=["big"], max_visit_classes=5)
    episodes = s.take(2)
    drawn = episodes[0].identity["visit_classes"]
    assert drawn == visit_classes(s.manifest.family("big"), 5, 3, 0, 0)
    assert set(loaded) == set(drawn) and len(loaded) == 5 * 10  # only the drawn classes' images are read
    assert sorted(s.buffer.images) == drawn and s.buffer.family == {**s.manifest.family("big"), "classes": drawn}
    assert sorted(set(shards)) == sorted(s.reader.shards_for(drawn)) and len(set(shards)) < 8
    for episode in episodes:
        assert episode.identity["visit_classes"] == drawn and episode.family == "big"
        for task in episode.identity["tasks"]["meta"] + episode.identity["tasks"]["goal"]:
            assert set(task["classes"]) <= set(drawn)


def test_subsampled_episodes_replay_exactly(root, tmp_path):
    s = FamilyStream(root, "train", SHAPE, seed=5, episodes_per_visit=2, max_visit_classes=5)
    episodes = s.take(8)
    assert any("visit_classes" in e.identity for e in episodes)
    whole = FamilyStream(root, "train", SHAPE, max_visit_classes=0)  # replay follows the identity, not the option
    for e in episodes:
        for stream in (s, whole):
            again = stream.replay(e.identity)
            assert again.identity == e.identity
            assert torch.equal(again.meta_x, e.meta_x) and torch.equal(again.goal_y, e.goal_y)
    forged = {**episodes[0].identity, "visit_classes": ["c21", *episodes[0].identity.get("visit_classes", BIG)[1:]]}
    with pytest.raises(FewtaskError, match="the data has changed"):
        s.replay({**forged, "family": "big"})


def test_small_families_and_unlimited_streams_are_unchanged(root):
    """At or under the limit a visit is what it always was; 0 (or a manifest without the
    parameter) means whole families, as before."""
    limited = FamilyStream(root, "train", SHAPE, seed=2, episodes_per_visit=2, epochs=2, max_visit_classes=5)
    whole = FamilyStream(root, "train", SHAPE, seed=2, episodes_per_visit=2, epochs=2)
    assert load_manifest(root).max_visit_classes is None and whole.max_visit_classes is None
    pairs = list(zip(limited, whole))
    assert len(pairs) == 8
    for a, b in pairs:
        if a.family == "small":
            assert a.identity == b.identity and torch.equal(a.meta_x, b.meta_x) and torch.equal(a.goal_x, b.goal_x)
        else:
            assert "visit_classes" in a.identity and "visit_classes" not in b.identity
    assert FamilyStream(root, "train", SHAPE, max_visit_classes=20).take(4)[0].identity.keys() == pairs[0][1].identity.keys()


def test_the_manifest_names_the_default_limit(tmp_path):
    root = build(tmp_path / "a", max_visit_classes=6)
    assert load_manifest(root).max_visit_classes == 6
    s = FamilyStream(root, "train", SHAPE, families=["big"])
    assert s.max_visit_classes == 6 and len(s.take(1)[0].identity["visit_classes"]) == 6
    assert "visit_classes" not in FamilyStream(root, "train", SHAPE, families=["big"], max_visit_classes=0).take(1)[0].identity
    assert len(FamilyStream(root, "train", SHAPE, families=["big"], max_visit_classes=4).take(1)[0].identity["visit_classes"]) == 4
    shown = CliRunner().invoke(app, ["inspect", str(root)]).output
    assert "visits    a family of more than 6 classes loads 6 of them, drawn per visit" in shown


def test_impossible_limits_fail_at_once(root, tmp_path):
    with pytest.raises(FewtaskError, match=r"a visit to family 'big' loads 2 of its 20 classes .* episodes ask for 3 ways"):
        FamilyStream(root, "train", SHAPE, max_visit_classes=2)
    with pytest.raises(FewtaskError, match="max_visit_classes must be >= 0"):
        FamilyStream(root, "train", SHAPE, max_visit_classes=-1)
    # c00..c02 have 3 images: any 5 of big's classes must still hold 3 classes with 2 + 4 images
    few = tmp_path / "few"
    classes = toydata.classes(24, 10)
    classes[:3] = [type(c)(c.id, c.items[:3], c.meta) for c in classes[:3]]
    build_dataset(few, dataset="few", builder="toy", builder_version="1", source={"fingerprint": "few"},
                  classes=classes, decode=toydata.decode, options=BuildOptions(shard_size=25, workers=1),
                  splits={"train": [{"id": "big", "classes": BIG, "meta": {}}]})
    with pytest.raises(FewtaskError, match=r"its 5 smallest do not allow the episode shape: .* only 2 of its 5 classes"):
        FamilyStream(few, "train", SHAPE, max_visit_classes=5)
    assert FamilyStream(few, "train", SHAPE, max_visit_classes=6).take(1)  # 3 small + 3 full classes still work


def test_episode_files_subsample_and_replay(root, tmp_path):
    runner = CliRunner()
    args = ["episodes", str(root), "--split", "train", "--count", "6", "--seed", "4", "--per-visit", "2",
            "--ways", "3", "--shots", "2", "--queries", "3", "--val", "4", "--meta-tasks", "2", "--goal-tasks", "1"]
    one = runner.invoke(app, [*args, "--max-visit-classes", "5", "--out", str(tmp_path / "a.h5")])
    assert one.exit_code == 0, one.output
    two = runner.invoke(app, [*args, "--max-visit-classes", "5", "--workers", "2", "--out", str(tmp_path / "b.h5")])
    assert two.exit_code == 0, two.output
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert (a["meta_x"][:] == b["meta_x"][:]).all() and list(a["identity"].asstr()[:]) == list(b["identity"].asstr()[:])
    s = FamilyStream(root, "train", SHAPE)
    with EpisodeStore(tmp_path / "a.h5") as store:
        assert store.info["max_visit_classes"] == 5
        big = [store[i] for i in range(len(store)) if store[i].family == "big"]
        assert big and all(len(e.identity["visit_classes"]) == 5 for e in big)
        for e in big:
            assert torch.equal(s.replay(e.identity).meta_x, e.meta_x)
