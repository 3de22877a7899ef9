"""FamilyStream and FlatStream on real shards built from synthetic images."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import toydata
from fewtask_data import (
    BuildOptions, EpisodeShape, FamilyBatch, FamilyEpisode, FamilyStream, FewtaskError, FlatStream, batches,
    build_dataset, collate, decode_image, family_loader, read_shard,
)
from fewtask_data.formats import shards as shards_mod
from fewtask_data.sampling.base import episode_from_tasks

SHAPE = EpisodeShape(ways=3, shots=2, queries=3, val=4, meta_tasks=2, goal_tasks=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    toydata.build_toy(out, n_classes=16, per_class=10, bad=((5, 0),))
    return out


def stored_images(root) -> dict[tuple[str, str], np.ndarray]:
    images = {}
    for shard in sorted(root.glob("shard-*.tar")):
        for _, cls, sample, data in read_shard(str(shard)):
            images[cls, sample] = decode_image(data)
    return images


def test_episodes_hold_the_images_their_identity_names(root):
    images = stored_images(root)
    eps = FamilyStream(root, "train", SHAPE, seed=3, episodes_per_visit=2, epochs=1).take(6)
    assert len(eps) == 6 and len({e.family for e in eps}) == 3
    for ep in eps:
        assert ep.meta_x.shape == (2, 15, 1, 8, 8) and ep.goal_x.shape == (1, 18, 1, 8, 8)
        assert ep.meta_x.dtype == torch.float32 and 0 <= float(ep.meta_x.min()) <= float(ep.meta_x.max()) <= 1
        fam_classes = set(FamilyStream(root, "train", SHAPE).manifest.family(ep.family)["classes"])
        for part, x, y, extra in (("meta", ep.meta_x, ep.meta_y, 3), ("goal", ep.goal_x, ep.goal_y, 4)):
            for t, task in enumerate(ep.identity["tasks"][part]):
                assert set(task["classes"]) <= fam_classes and len(set(task["classes"])) == 3
                support = [(lbl, s) for lbl in range(3) for s in task["samples"][lbl][:2]]
                query = [(lbl, s) for lbl in range(3) for s in task["samples"][lbl][2:]]
                for i, (lbl, s) in enumerate(support + query):
                    assert int(y[t, i]) == lbl
                    want = torch.from_numpy(images[task["classes"][lbl], s]).float() / 255
                    assert torch.equal(x[t, i, 0], want)
                assert len(query) == 3 * extra


def test_same_seed_same_episodes_other_seed_others(root):
    a = FamilyStream(root, "train", SHAPE, seed=1, epochs=1).take(5)
    b = FamilyStream(root, "train", SHAPE, seed=1, epochs=1).take(5)
    c = FamilyStream(root, "train", SHAPE, seed=2, epochs=1).take(5)
    assert [e.identity for e in a] == [e.identity for e in b]
    assert all(torch.equal(x.meta_x, y.meta_x) for x, y in zip(a, b))
    assert [e.identity for e in a] != [e.identity for e in c]


def test_replay_rebuilds_an_episode_from_its_identity(root):
    s = FamilyStream(root, "train", SHAPE, seed=9, epochs=1)
    ep = s.take(4)[3]
    again = s.replay(ep.identity)
    assert torch.equal(again.meta_x, ep.meta_x) and torch.equal(again.goal_y, ep.goal_y)


def test_dataloader_workers_give_the_same_episodes(root):
    s = FamilyStream(root, "train", SHAPE, seed=4, episodes_per_visit=3, epochs=2)
    local = sorted(e.identity["seed"] for e in s)
    loader = family_loader(s, batch_size=2, num_workers=2)
    got = list(loader)
    assert all(isinstance(b, FamilyBatch) for b in got)
    assert sorted(i["seed"] for b in got for i in b.identities) == local
    assert len(local) == 2 * 3 * 3


def batch_seeds(dataset, batch_size: int, workers: int, count: int) -> list[list[int]]:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    return [[i["seed"] for i in b.identities] for b in islice(loader, count)]


@pytest.mark.parametrize("workers", [0, 2])
def test_resumable_continues_exactly_where_a_run_stopped(root, workers):
    """Resuming at step s yields the batches an uninterrupted loader yields from batch s on,
    for any number of workers and with visits cut mid-batch (3 episodes per visit, batches of 2)."""
    s = FamilyStream(root, "train", SHAPE, seed=2, episodes_per_visit=3)
    full = batch_seeds(s.resumable(2), 2, workers, 9)
    assert len({seed for b in full for seed in b}) == 18
    for start in (1, 4, 5):
        assert batch_seeds(s.resumable(2, start), 2, workers, 9 - start) == full[start:], start


def test_resumable_skips_families_with_unreadable_shards_when_asked(tmp_path, capfd):
    toydata.build_toy(tmp_path, n_classes=16, per_class=10)
    s = FamilyStream(tmp_path, "train", SHAPE, seed=0, episodes_per_visit=2, epochs=1)
    lost = s.reader.index["shards"][0]["name"]
    (tmp_path / lost).unlink()
    with pytest.raises(FewtaskError, match=lost):
        list(s.resumable(2))
    kept = list(s.resumable(2, skip_bad_shards=True))
    assert kept and "fam0" not in {e.family for e in kept}
    err = capfd.readouterr().err
    assert "warning: skipping family 'fam0'" in err and lost in err
    for shard in tmp_path.glob("shard-*.tar"):
        shard.unlink()
    with pytest.raises(FewtaskError, match="no family of the split can be read any more"):
        list(FamilyStream(tmp_path, "train", SHAPE, verify=False).resumable(2, skip_bad_shards=True))


def test_batches_helper_collates(root):
    b = next(batches(FamilyStream(root, "test", SHAPE, epochs=1), 4))
    assert b.meta_x.shape == (4, 2, 15, 1, 8, 8) and b.families == ["fam3"] * 4


def test_reads_only_the_shards_of_the_family(root, monkeypatch):
    read = []
    real = shards_mod.read_bytes
    monkeypatch.setattr(shards_mod, "read_bytes", lambda loc: read.append(loc.rsplit("/", 1)[1]) or real(loc))
    s = FamilyStream(root, "test", SHAPE, epochs=1, episodes_per_visit=1)
    s.take(1)
    wanted = {sh for c in s.manifest.family("fam3")["classes"] for sh, _, _ in s.reader.locations[c]}
    assert {r for r in read if r.endswith(".tar")} == {s.reader.index["shards"][i]["name"] for i in wanted}
    assert len(read) < len(s.manifest.data["shards"])


@pytest.mark.parametrize(
    "shape, words",
    [
        (EpisodeShape(5, 1, 1, 1, 1, 1), "family 'fam0' has 4 classes but episodes ask for 5 ways"),
        (EpisodeShape(3, 2, 9, 1, 1, 1), "2 shots + 9 queries = 11 images, but only 0 of its 4 classes"),
        (EpisodeShape(4, 2, 1, 8, 0, 1), "family 'fam1': 4-way goal tasks need 4 classes with 2 shots + 8 val"),
    ],
)
def test_impossible_requests_fail_when_the_stream_is_built(root, shape, words):
    with pytest.raises(FewtaskError) as err:
        FamilyStream(root, "train", shape)
    assert words in str(err.value)


def test_unknown_split_and_family(root):
    with pytest.raises(FewtaskError, match="split 'val' is not in the manifest"):
        FamilyStream(root, "val", SHAPE)
    with pytest.raises(FewtaskError, match="belongs to split 'test'"):
        FamilyStream(root, "train", SHAPE, families=["fam3"])


def test_altered_shard_is_named_by_the_stream(tmp_path):
    toydata.build_toy(tmp_path)
    s = FamilyStream(tmp_path, "test", SHAPE, epochs=1)
    shard = s.reader.index["shards"][-1]["name"]
    data = bytearray((tmp_path / shard).read_bytes())
    data[600] ^= 0xFF
    (tmp_path / shard).write_bytes(bytes(data))
    with pytest.raises(FewtaskError, match=f"{shard} does not match its index checksum"):
        s.take(1)


def test_urls_webdataset_accepts(root):
    eps = FamilyStream(f"file://{root}", "test", SHAPE, seed=1, epochs=1).take(2)
    local = FamilyStream(root, "test", SHAPE, seed=1, epochs=1).take(2)
    assert [e.identity for e in eps] == [e.identity for e in local]


def _augmented(tmp_path):
    fams = toydata.families(8)
    fams["train"][0]["augment"] = {"invert": True}
    build_dataset(tmp_path, dataset="toy", builder="toy", builder_version="1", source={"fingerprint": "f"},
                  classes=toydata.classes(8, 10), decode=toydata.decode, splits=fams,
                  options=BuildOptions(workers=1), augment_space={"noise": 3})
    return tmp_path


def test_family_augmentation_uses_the_transform_factory(tmp_path):
    calls = []

    def factory(space, spec):
        calls.append((space, spec))

        def transform(img, rng):
            out = 255 - img if spec["invert"] else img
            return np.clip(out.astype(int) + rng.integers(-space["noise"], space["noise"] + 1), 0, 255).astype(np.uint8)

        return transform

    root = _augmented(tmp_path)
    images = stored_images(root)
    s = FamilyStream(root, "train", SHAPE, seed=0, epochs=1, episodes_per_visit=2, transform_factory=factory)
    eps = s.take(2)
    assert calls == [({"noise": 3}, {"invert": True})]
    task = eps[0].identity["tasks"]["goal"][0]
    raw = torch.from_numpy(images[task["classes"][0], task["samples"][0][0]]).float() / 255
    diff = (eps[0].goal_x[0, 0, 0] - (1 - raw)).abs().max()
    assert 0 < float(diff) <= 3 / 255 + 1e-6
    assert torch.equal(s.replay(eps[1].identity).meta_x, eps[1].meta_x)  # random augmentation replays exactly
    assert "augment" not in s.manifest.family("fam1")
    assert s.transform_for(s.manifest.family("fam1")) is None


class EachImageItsOwnClass:
    """A minimal unsupervised-style sampler: N images, K+Q copies each (no augmentation)."""

    name = "each-image"

    def check(self, family, counts, shape):
        if sum(counts[c] for c in family["classes"]) < shape.ways:
            raise FewtaskError("too few images")

    def sample(self, buffer, shape, seed, transform):
        rng = np.random.default_rng(seed)
        pool = [img for c in buffer.classes for _, img in buffer.images[c]]

        def task(extra):
            chosen = rng.choice(len(pool), shape.ways, replace=False)
            order = [lbl for lbl in range(shape.ways) for _ in range(shape.shots)]
            order += [lbl for lbl in range(shape.ways) for _ in range(extra)]
            return np.stack([pool[chosen[lbl]] for lbl in order]), np.asarray(order)

        meta = [task(shape.queries) for _ in range(shape.meta_tasks)]
        goal = [task(shape.val) for _ in range(shape.goal_tasks)]
        return episode_from_tasks(meta, goal, shape, buffer.family["id"], {"seed": seed}, pool[0].shape)


def test_samplers_plug_in(root):
    ep = FamilyStream(root, "test", SHAPE, epochs=1, sampler=EachImageItsOwnClass()).take(1)[0]
    assert isinstance(ep, FamilyEpisode)
    assert torch.equal(ep.meta_x[0, 0], ep.meta_x[0, 1])  # K copies of one image in the support


def test_flat_stream_covers_each_image_once_with_its_label(root):
    flat = FlatStream(root, "train", batch_size=16, epochs=1, shuffle_buffer=50)
    images = stored_images(root)
    xs, ys = zip(*flat)
    x, y = torch.cat(xs), torch.cat(ys)
    want = [k for k in images if k[0] in flat.classes]
    assert len(y) == len(want) == 119  # 12 classes x 10 images, one failed at build
    assert Counter(flat.classes[i] for i in y.tolist()) == Counter(c for c, _ in want)
    assert x.shape == (119, 1, 8, 8)
    assert y[:20].tolist() != sorted(y[:20].tolist())  # shuffled


def test_flat_stream_with_dataloader_workers(root):
    loader = torch.utils.data.DataLoader(FlatStream(root, "train", 16, epochs=1), batch_size=None, num_workers=2)
    assert sum(len(y) for _, y in loader) == 119


def test_mix_spreads_families_within_a_batch(root):
    plain = FamilyStream(root, "train", SHAPE, seed=1, episodes_per_visit=4, epochs=3)
    mixed = FamilyStream(root, "train", SHAPE, seed=1, episodes_per_visit=4, epochs=3, mix=12)
    first = [b.families for b in batches(plain, 4)]
    assert all(len(set(f)) == 1 for f in first)  # one visit fills a whole batch
    got = [b.families for b in batches(mixed, 4)]
    assert any(len(set(f)) > 1 for f in got)
    assert sorted(e.identity["seed"] for e in mixed) == sorted(e.identity["seed"] for e in plain)
    assert [e.identity for e in mixed] == [e.identity for e in FamilyStream(root, "train", SHAPE, seed=1,
                                                                             episodes_per_visit=4, epochs=3, mix=12)]


def test_real_omniglot_build_stream_and_episode_file(omniglot_dir, tmp_path):
    from typer.testing import CliRunner

    from fewtask_data.cli import app
    from fewtask_data import EpisodeStore, verify

    classes, splits = toydata.omniglot_zip_classes(omniglot_dir / "images_background_small1.zip", alphabets=3)
    report = build_dataset(tmp_path / "omni", dataset="omniglot-subset", builder="test", builder_version="1",
                           source={"fingerprint": "images_background_small1.zip"}, classes=classes,
                           decode=toydata.ZipPng(), splits=splits, options=BuildOptions(workers=2, shard_size=500))
    assert report.failed == [] and report.written == 20 * len(classes)
    assert verify(tmp_path / "omni") == []
    shape = EpisodeShape(ways=5, shots=1, queries=5, val=15, meta_tasks=2, goal_tasks=1)
    eps = FamilyStream(tmp_path / "omni", "train", shape, seed=0, epochs=1, episodes_per_visit=2).take(4)
    assert {e.family for e in eps} == {f["id"] for f in splits["train"]}
    x = eps[0].goal_x
    assert x.shape == (1, 80, 1, 28, 28) and 0.02 < float(x.mean()) < 0.5  # bright strokes on black
    out = tmp_path / "test.h5"
    r = CliRunner().invoke(app, ["episodes", str(tmp_path / "omni"), "--count", "6", "--out", str(out)])
    assert r.exit_code == 0, r.output
    with EpisodeStore(out) as store:
        b = store.batch(0, 6)
    again = FamilyStream(tmp_path / "omni", "test", EpisodeShape(5, 1, 5, 15, 4, 1), seed=0, episodes_per_visit=10)
    assert torch.equal(b.meta_x, torch.stack([e.meta_x for e in again.take(6)]))


def test_streams_over_http(root):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        remote = FamilyStream(url, "test", SHAPE, seed=1, epochs=1).take(2)
        local = FamilyStream(root, "test", SHAPE, seed=1, epochs=1).take(2)
        assert [e.identity for e in remote] == [e.identity for e in local]
        assert torch.equal(remote[1].meta_x, local[1].meta_x)
        with pytest.raises(FewtaskError, match="cannot read"):
            FamilyStream(url + "/nothing-here", "test", SHAPE)
    finally:
        server.shutdown()


def test_bad_augment_spec_fails_when_the_stream_is_built(tmp_path):
    root = _augmented(tmp_path)

    def strict_factory(space, spec):
        raise FewtaskError(f"augment spec {spec} names an unknown dimension")

    with pytest.raises(FewtaskError, match="unknown dimension"):
        FamilyStream(root, "train", SHAPE, transform_factory=strict_factory)


def test_real_augmentation_module_through_the_stream(tmp_path):
    from fewtask_data import named_space, sample_family_augment

    space = named_space("handwritten")
    fams = toydata.families(8)
    fams["train"][0]["augment"] = sample_family_augment(space, np.random.default_rng(0))
    build_dataset(tmp_path, dataset="toy", builder="toy", builder_version="1", source={"fingerprint": "f"},
                  classes=toydata.classes(8, 10, side=28), decode=toydata.decode, splits=fams,
                  options=BuildOptions(workers=1), augment_space=space.to_json())
    s = FamilyStream(tmp_path, "train", SHAPE, seed=0, epochs=1, families=["fam0"], episodes_per_visit=2)
    first, second = s.take(2)
    assert first.meta_x.shape == (2, 15, 1, 28, 28)
    assert torch.equal(s.replay(second.identity).goal_x, second.goal_x)
    loader = family_loader(FamilyStream(tmp_path, "train", SHAPE, seed=0, epochs=1, families=["fam0"],
                                        episodes_per_visit=2), batch_size=2, num_workers=1)
    assert torch.equal(next(iter(loader)).meta_x[1], second.meta_x)  # transforms survive pickling to workers


def test_nodes_get_disjoint_visits_that_cover_the_epoch(root, monkeypatch):
    whole = {e.identity["seed"] for e in FamilyStream(root, "train", SHAPE, seed=6, epochs=2, episodes_per_visit=2)}
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append({e.identity["seed"] for e in FamilyStream(root, "train", SHAPE, seed=6, epochs=2,
                                                                episodes_per_visit=2)})
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert parts[0] | parts[1] == whole


def test_flat_stream_is_seeded(root):
    def labels(seed):
        return torch.cat([y for _, y in FlatStream(root, "train", 16, seed=seed, epochs=1, shuffle_buffer=40)])

    assert torch.equal(labels(3), labels(3))
    assert not torch.equal(labels(3), labels(4))
