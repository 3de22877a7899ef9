"""Unsupervised (UMTRA-style) families: policies, family-fixed vs per-view-random
augmentation, the episode sampler, label collisions, and builds from image folders,
labelled shards and the real Omniglot / ImageNet sample images."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewtask_data import (
    AugmentSpace, BuildOptions, EpisodeShape, EpisodeStore, FamilyBatch, FamilyBuffer, FamilyStream,
    FamilyTransform, FewtaskError, SourceClass, UmtraSampler, build_dataset, family_loader, family_transform,
    write_episodes,
)
from fewtask_data.families.unsupervised import POLICIES, collision_rate, load_policy, plan_unsupervised, validate_policy
from fewtask_data.sampling.umtra import anchor_transform
from fewtask_data.sources.images import ImageEntry, list_images

torch.set_num_threads(1)
SHAPE = EpisodeShape(ways=5, shots=1, queries=3, val=2, meta_tasks=2, goal_tasks=1)


def build_cli(*args: str):
    from typer.testing import CliRunner

    from fewtask_data.cli import app

    return CliRunner().invoke(app, ["build", "unsupervised-families", *args])


def write_images(root: Path, count: int, size=(40, 50)) -> Path:
    """``count`` random gray images in a nested tree, PNG and JPEG mixed."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"part{i % 3}" / ("deep" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((rng.random(size) * 255).astype(np.uint8))
        img.save(folder / (f"img {i}.png" if i % 2 else f"img{i}.jpg"))
    return root


# ----------------------------------------------------------------------------- augmentation: fixed vs random

# What each dimension's transform records of the value it used for one view.
RECORDED = {
    "dropout": ("PixelZeroing", "fraction"),
    "crop": ("AreaCrop", "area"),
    "flip": ("ChanceFlip", "probability"),
    "brightness": ("ColorJitter", "brightness"),
    "contrast": ("ColorJitter", "contrast"),
    "saturation": ("ColorJitter", "saturation"),
    "hue": ("ColorJitter", "hue"),
    "rotation": ("Affine", "rotate"),
    "shift_x": ("PixelShift", "shift_x"),
    "shift_y": ("PixelShift", "shift_y"),
}


def view_values(transform: FamilyTransform, image: np.ndarray, seeds) -> list[dict]:
    """Per view: dimension -> the value its transform drew (translations: the affine matrix)."""
    out = []
    for seed in seeds:
        record: list = []
        transform(image, np.random.default_rng(seed), record)
        drawn = {r["transform"]: r for r in record}
        values = {d: drawn[t][k] for d, (t, k) in RECORDED.items() if t in drawn and k in drawn[t]}
        if "Affine" in drawn:
            values["translate"] = drawn["Affine"]["matrix"]
        out.append(values)
    return out


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_family_fixed_values_shared_exactly_random_ones_vary(policy):
    chosen = load_policy(policy)
    images = [ImageEntry(f"s{i}", i) for i in range(40)]
    plan = plan_unsupervised(images, policy=chosen, families=12, group_size=8, seed=3)
    size = chosen["image"]["size"]
    shape = (size, size) if chosen["image"]["color"] == "gray" else (size, size, 3)
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    fixed_seen: dict[str, list] = {}
    for fam in plan.families:
        transform = family_transform(chosen["space"], fam["augment"])
        fixed = fam["augment"]["fixed"]
        assert chosen["fixed_dims"][0] <= len(fixed) <= chosen["fixed_dims"][1]
        views = view_values(transform, image, range(12))
        for dim in RECORDED:
            if dim not in chosen["space"]:
                continue
            values = [v[dim] for v in views]
            if dim in fixed:  # every view of the family: exactly the fixed value
                assert values == [pytest.approx(fixed[dim], abs=1e-12)] * len(values)
                fixed_seen.setdefault(dim, []).append(fixed[dim])
            else:  # random per view, within the policy's range
                low, high = chosen["space"][dim]
                assert len(set(values)) > 1 and all(low - 1e-9 <= v <= high + 1e-9 for v in values)
        if {"translate_x", "translate_y"} <= set(fixed):
            assert all(v["translate"] == views[0]["translate"] for v in views)
        elif "translate_x" in chosen["space"]:
            assert len({json.dumps(v["translate"]) for v in views}) > 1
    # across families the fixed values differ
    assert any(len(values) > 1 for values in fixed_seen.values())
    assert all(len(set(values)) == len(values) for values in fixed_seen.values())
    assert len({json.dumps(f["augment"], sort_keys=True) for f in plan.families}) == len(plan.families)


def test_new_dimensions_act_as_declared():
    img = np.arange(64 * 64 * 3, dtype=np.uint64).reshape(64, 64, 3).astype(np.uint8)
    rng = np.random.default_rng(0)
    space = {"flip": [0.0, 1.0], "dropout": [0.0, 0.5], "crop": [0.2, 1.0]}
    flip = family_transform({"flip": [0.0, 1.0]}, {"fixed": {"flip": 1.0}, "seed": 0})
    assert np.array_equal(flip(img, rng), img[:, ::-1])
    never = family_transform({"flip": [0.0, 1.0]}, {"fixed": {"flip": 0.0}, "seed": 0})
    assert np.array_equal(never(img, rng), img)
    gray = np.full((28, 28), 200, np.uint8)
    zero = family_transform(space, {"fixed": {"dropout": 0.25, "flip": 0.0, "crop": 1.0}, "seed": 0})
    out = zero(gray, rng)
    assert out.shape == gray.shape and abs((out == 0).mean() - 0.25) < 0.08 and set(np.unique(out)) == {0, 200}
    crop = family_transform(space, {"fixed": {"crop": 0.25, "dropout": 0.0, "flip": 0.0}, "seed": 0})
    assert crop(img, rng).shape == img.shape
    shift = family_transform({"shift_x": [-0.5, 0.5], "shift_y": [-0.5, 0.5]},
                             {"fixed": {"shift_x": 0.25, "shift_y": -0.125}, "seed": 0})
    moved = shift(img, rng)  # 16 px right, 8 px up, zero-filled
    assert np.array_equal(moved[:56, 16:], img[8:, :48]) and not moved[:, :16].any() and not moved[56:].any()
    with pytest.raises(FewtaskError, match="dropout"):
        AugmentSpace.from_json({"dropout": [0.0, 0.95]})


# ----------------------------------------------------------------------------- policies


def test_policy_validation_names_the_problem(tmp_path):
    assert load_policy("handwritten")["space"]["dropout"] == [0.0, 0.3]
    with pytest.raises(FewtaskError, match=r"policy bad: augmentation space: dropout range \[0.5, 0.1\]"):
        validate_policy({"space": {"dropout": [0.5, 0.1]}}, "bad")
    with pytest.raises(FewtaskError, match="crop range .* leaves the allowed"):
        validate_policy({"space": {"crop": [0.0, 1.0]}}, "bad")
    with pytest.raises(FewtaskError, match="unknown dimension 'zoom'"):
        validate_policy({"space": {"zoom": [1, 2]}}, "bad")
    with pytest.raises(FewtaskError, match="fixed_dims must be"):
        validate_policy({"space": {"flip": [0, 1]}, "fixed_dims": [1, 3]}, "bad")
    with pytest.raises(FewtaskError, match="unknown field"):
        validate_policy({"space": {"flip": [0, 1]}, "colour": 1}, "bad")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"space": {"flip": [0, 1], "hue": [-0.1, 0.1]}, "fixed_dims": [0, 1],
                                "image": {"color": "rgb", "size": 32, "invert": False}}))
    assert load_policy(str(path))["name"] == "mine"
    with pytest.raises(FewtaskError, match="no policy named"):
        load_policy("nope")


# ----------------------------------------------------------------------------- label collisions


def test_collision_rate_is_exact():
    counts = [3, 1, 2, 4]
    pool = [label for label, c in enumerate(counts) for _ in range(c)]
    for ways in (1, 2, 3, 4):
        draws = list(itertools.combinations(range(len(pool)), ways))
        brute = sum(len({pool[i] for i in d}) < ways for d in draws) / len(draws)
        assert collision_rate(counts, ways) == pytest.approx(brute, abs=1e-12)
    # Omniglot-sized: 1,623 labels x 20 images, 5-way
    omni = collision_rate([20] * 1623, 5)
    exact_no = math.prod((32460 - 20 * i) / (32460 - i) for i in range(5))
    assert omni == pytest.approx(1 - exact_no, rel=1e-9) and 0.005 < omni < 0.007


def labelled_dataset(root: Path, labels: int = 6, per_label: int = 5) -> Path:
    """A labelled toy dataset (class c<k> = label) written by the generic build."""
    classes = [SourceClass(f"c{k}", [(f"i{j}", (k, j)) for j in range(per_label)]) for k in range(labels)]
    build_dataset(root, dataset="toy", builder="test", builder_version="1", source={"fingerprint": "toy"},
                  classes=classes, decode=_ToyDecoder(), splits={"train": [{"id": "all", "classes": [c.id for c in classes]}]},
                  options=BuildOptions(workers=1), synthetic=True)
    return root


class _ToyDecoder:
    def __call__(self, item):
        k, j = item
        return np.full((16, 16), 10 * k + j, np.uint8)


def test_labelled_shards_collision_rate_reported_and_matched_by_stream(tmp_path):
    src = labelled_dataset(tmp_path / "toy")
    out = tmp_path / "uns"
    result = build_cli("--shards", str(src), "--out", str(out), "--families", "2", "--group-size", "4",
                       "--ways", "3", "--workers", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    expected = collision_rate([5] * 6, 3)  # 1 - 5^3 C(6,3) / C(30,3)
    rec = manifest["params"]["label_collisions"]
    assert rec == {"labels": "known", "ways": 3, "avoid_collisions": False,
                   "rate_without_avoidance": round(expected, 8), "rate": round(expected, 8)}
    assert f"{expected:.4%}" in result.output
    # the stream draws collisions at that rate, and records them per task
    shape = EpisodeShape(ways=3, shots=1, queries=1, val=1, meta_tasks=50, goal_tasks=1)
    episodes = FamilyStream(out, "train", shape, seed=0, episodes_per_visit=10).take(40)
    tasks = [t for e in episodes for t in e.identity["tasks"]["meta"]]
    observed = np.mean([t["collisions"] > 0 for t in tasks])
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / len(tasks))
    # every image's label in the record is its source class
    assert all(s[0].split("~")[0] == label for t in tasks for s, label in zip(t["samples"], t["labels"]))

    avoid = tmp_path / "avoid"
    result = build_cli("--shards", str(src), "--out", str(avoid), "--families", "2", "--group-size", "4",
                       "--ways", "3", "--workers", "1", "--avoid-collisions")
    assert result.exit_code == 0, result.output
    manifest = json.loads((avoid / "manifest.json").read_text())
    assert manifest["params"]["episode_sampler"]["avoid_collisions"] is True
    assert manifest["params"]["label_collisions"]["rate"] == 0.0
    episodes = FamilyStream(avoid, "train", shape, seed=0, episodes_per_visit=10).take(20)
    assert all(t["collisions"] == 0 for e in episodes for t in e.identity["tasks"]["meta"])

    too_many = build_cli("--shards", str(src), "--out", str(tmp_path / "x"), "--ways", "7", "--avoid-collisions")
    assert too_many.exit_code != 0 and "6 distinct labels, fewer than 7 ways" in str(too_many.exception)


# ----------------------------------------------------------------------------- the sampler


def test_sampler_views_labels_anchor_and_replay():
    images = {f"g{g}": [(f"s{g}_{i}", np.full((8, 8), 10 * g + i, np.uint8)) for i in range(4)] for g in range(3)}
    family = {"id": "u0", "classes": sorted(images)}
    buffer = FamilyBuffer(family, "train", images)
    shape = EpisodeShape(ways=4, shots=2, queries=3, val=2, meta_tasks=3, goal_tasks=2)
    transform = family_transform({"flip": [0.0, 1.0], "dropout": [0.0, 0.5]}, {"fixed": {"flip": 1.0}, "seed": 1})
    sampler = UmtraSampler("original")
    sampler.check(family, {g: 4 for g in images}, shape)
    episode = sampler.sample(buffer, shape, 7, transform)
    assert episode.meta_x.shape == (3, 4 * 5, 1, 8, 8) and episode.goal_x.shape == (2, 4 * 4, 1, 8, 8)
    assert episode.meta_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] + [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    anchor = anchor_transform(transform)
    for task, record in zip(episode.meta_x, episode.identity["tasks"]["meta"]):
        originals = [images[c][int(s.split("_")[1])][1] for c, (s,) in zip(record["classes"], record["samples"])]
        assert len({s[0] for s in record["samples"]}) == 4  # N distinct images
        for label, img in enumerate(originals):
            first = (task[2 * label, 0] * 255).round().to(torch.uint8).numpy()
            assert np.array_equal(first, img[:, ::-1])  # the anchor: fixed flip only, no dropout
            second = (task[2 * label + 1, 0] * 255).round().to(torch.uint8).numpy()
            assert (second == 0).any() or np.array_equal(second, img[:, ::-1])
    assert anchor is not None and anchor_transform(family_transform({"flip": [0, 1]}, {"fixed": {}, "seed": 0})) is None
    again = UmtraSampler("original").sample(buffer, shape, 7, transform)
    assert torch.equal(again.meta_x, episode.meta_x) and again.identity == episode.identity
    plain = UmtraSampler("original").sample(buffer, shape, 7, None)  # no augmentation: all views the image
    assert torch.equal(plain.meta_x[0, 0], plain.meta_x[0, 1])
    with pytest.raises(FewtaskError, match="12 images but 13-way"):
        sampler.check(family, {g: 4 for g in images}, EpisodeShape(13, 1, 1, 1, 1, 1))
    with pytest.raises(FewtaskError, match="support must be"):
        UmtraSampler("both")


# ----------------------------------------------------------------------------- builds from image folders


def test_folder_build_reports_bad_files_and_streams_like_labelled_data(tmp_path):
    root = write_images(tmp_path / "imgs", 30)
    (root / "notes.txt").write_text("not an image")
    (root / "part1" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "uns"
    result = build_cli("--images", str(root), "--out", str(out), "--families", "3", "--group-size", "8",
                       "--pool-fraction", "0.5", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "30 images in 1 shards" in result.output and "1 failed" in result.output
    assert "not an image, skipped: notes.txt" in result.output
    assert "undecodable, skipped: " in result.output and "part1_broken" in result.output and "cannot decode" in result.output
    assert "evaluate on labelled families" in result.output
    report = json.loads((out / "build_report.json").read_text())
    assert report["failed_count"] == 1 and report["failed"][0]["sample"] == "part1_broken"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["skipped_files"] == 1 and manifest["image"]["shape"] == [28, 28]
    assert manifest["params"]["label_collisions"]["labels"] == "unknown"
    fams = manifest["splits"]["train"]["families"]
    assert [f["meta"]["pool_groups"] for f in fams] == [2, 2, 2]  # half of 4 groups (31 files / 8)
    assert all(set(f["augment"]) == {"fixed", "seed"} for f in fams)

    stream = FamilyStream(out, "train", SHAPE, seed=0, episodes_per_visit=2)
    assert isinstance(stream.sampler, UmtraSampler)
    for fam in stream.families:  # the stream augments each family with its manifest spec
        transform = stream.transform_for(fam)
        assert isinstance(transform, FamilyTransform) and transform.fixed == fam["augment"]["fixed"]
        assert transform.space.to_json() == manifest["params"]["policy"]["space"] == manifest["augment_space"]
    batch = next(iter(family_loader(stream, batch_size=2)))
    assert isinstance(batch, FamilyBatch) and batch.meta_x.shape == (2, 2, 20, 1, 28, 28)
    episode = stream.take(1)[0]
    assert torch.equal(stream.replay(episode.identity).meta_x, episode.meta_x)
    h5 = tmp_path / "u.h5"
    assert write_episodes(h5, stream.take(3), {"source": "test"}) == 3
    with EpisodeStore(h5) as store:
        assert torch.equal(store[0].meta_x, episode.meta_x) and store.shape == SHAPE

    # same command again: the finished build is recognised, nothing changes
    before = (out / "manifest.json").read_bytes()
    again = build_cli("--images", str(root), "--out", str(out), "--families", "3", "--group-size", "8",
                      "--pool-fraction", "0.5", "--workers", "1")
    assert again.exit_code == 0 and (out / "manifest.json").read_bytes() == before
    # an unsupervised build's groups are not labels
    nested = build_cli("--shards", str(out), "--out", str(tmp_path / "nested"), "--families", "1", "--workers", "1")
    assert nested.exit_code == 0, nested.output
    params = json.loads((tmp_path / "nested" / "manifest.json").read_text())["params"]
    assert params["label_collisions"]["labels"] == "unknown"


def test_too_small_collection_and_bad_inputs_fail_at_build_time(tmp_path):
    root = write_images(tmp_path / "imgs", 4)
    cases = [
        (["--images", str(root)], "has 4 images but 5-way tasks need 5 distinct images"),
        (["--images", str(root), "--ways", "3", "--policy", "zoomy"], "no policy named"),
        (["--images", str(root), "--ways", "3", "--avoid-collisions"], "--avoid-collisions needs labels"),
        (["--images", str(root), "--shards", str(root)], "exactly one source"),
        (["--shards", str(root), "--image-size", "32"], "shard images are used as built"),
        (["--images", str(tmp_path / "none")], "neither a folder nor a .zip"),
        (["--images", str(root), "--ways", "3", "--pool-fraction", "0.3", "--group-size", "1"], "pool has 1 images"),
    ]
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text(json.dumps({"space": {"shift_x": [0.3, -0.3]}}))
    cases.append((["--images", str(root), "--ways", "3", "--policy", str(bad_policy)], "shift_x range [0.3, -0.3]"))
    for args, message in cases:
        result = build_cli(*args, "--out", str(tmp_path / "out"))
        assert result.exit_code != 0 and message in str(result.exception), (args, result.exception)
        assert not (tmp_path / "out" / "manifest.json").exists()


def test_listing_handles_zips_duplicates_and_multiple_roots(tmp_path):
    import zipfile

    root = write_images(tmp_path / "imgs", 3)
    with zipfile.ZipFile(root / "more.zip", "w") as z:
        z.write(root / "part0" / "img0.jpg", "inner/img0.jpg")
        z.writestr("inner/readme.md", "x")
    (root / "part0" / "img0.png").write_bytes((root / "part0" / "img0.jpg").read_bytes())
    listed = list_images([root])
    samples = [e.sample for e in listed.images]
    assert len(samples) == len(set(samples)) == 5
    assert "more_zip~inner_img0" not in samples and "more_zip_inner_img0" in samples
    assert listed.skipped == ["more.zip/inner/readme.md"]
    both = list_images([root, root / "more.zip"])
    assert len(both.images) == 6 and both.fingerprint != listed.fingerprint


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_omniglot_images_labels_ignored(omniglot_dir, tmp_path):
    out = tmp_path / "omni-uns"
    result = build_cli("--images", str(omniglot_dir / "images_background_small1.zip"), "--out", str(out),
                       "--families", "4", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "2720 images" in result.output and "0 failed" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["policy"]["name"] == "handwritten" and manifest["image"]["shape"] == [28, 28]
    assert "labels" not in manifest["classes"][0]["meta"]  # labels ignored: nothing kept
    shape = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=2, goal_tasks=1)
    stream = FamilyStream(out, "train", shape, seed=0, episodes_per_visit=2)
    batch = next(iter(family_loader(stream, batch_size=2)))
    assert batch.meta_x.shape == (2, 2, 30, 1, 28, 28)
    images = batch.meta_x[:, :, :5]
    assert images.amax() == 1.0 and images.median() == 0.0  # bright strokes on black
    result = _episodes_cli(out, tmp_path / "omni.h5", "--split", "train", "--count", "4")
    assert result.exit_code == 0, result.output
    with EpisodeStore(tmp_path / "omni.h5") as store:
        assert len(store) == 4 and store[0].identity["sampler"] == "umtra"


@pytest.mark.slow
def test_real_omniglot_shards_collision_rate(omniglot_dir, tmp_path):
    from typer.testing import CliRunner

    from fewtask_data.cli import app

    omni = tmp_path / "omni"
    result = CliRunner().invoke(app, ["build", "omniglot-families", "--root", str(omniglot_dir), "--sets",
                                      "images_background_small1", "--families-per-alphabet", "0",
                                      "--out", str(omni), "--workers", "2"])
    assert result.exit_code == 0, result.output
    classes = json.loads((omni / "manifest.json").read_text())["classes"]
    out = tmp_path / "uns"
    result = build_cli("--shards", str(omni), "--out", str(out), "--families", "2", "--workers", "2")
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "manifest.json").read_text())["params"]["label_collisions"]
    expected = collision_rate([c["count"] for c in classes], 5)
    assert rec["rate_without_avoidance"] == pytest.approx(expected, abs=1e-8) and 0.01 < expected < 0.1
    assert "label collisions (5-way tasks)" in result.output


@pytest.mark.slow
def test_real_imagenet_jpegs_natural_policy(imagenet_samples, tmp_path):
    out = tmp_path / "inet-uns"
    result = build_cli("--images", str(imagenet_samples), "--policy", "natural", "--out", str(out),
                       "--families", "4", "--pool-fraction", "0.5", "--group-size", "25", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "500 images" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"] == {"encoding": "jpeg", "quality": 90, "shape": [84, 84, 3]}
    assert all(f["meta"]["pool_images"] == 250 for f in manifest["splits"]["train"]["families"])
    stream = FamilyStream(out, "train", SHAPE, seed=0, episodes_per_visit=2)
    batch = next(iter(family_loader(stream, batch_size=2)))
    assert batch.meta_x.shape == (2, 2, 20, 3, 84, 84) and batch.goal_x.shape == (2, 1, 15, 3, 84, 84)
    result = _episodes_cli(out, tmp_path / "inet.h5", "--split", "train", "--count", "3", "--ways", "5",
                           "--shots", "1", "--queries", "3", "--val", "2", "--meta-tasks", "2", "--goal-tasks", "1")
    assert result.exit_code == 0, result.output
    with EpisodeStore(tmp_path / "inet.h5") as store:
        again = FamilyStream(out, "train", SHAPE, seed=0, episodes_per_visit=10).replay(store[0].identity)
        assert torch.equal(store[0].meta_x, again.meta_x)  # fixed HDF5 episodes replay exactly


def _episodes_cli(source: Path, out: Path, *args: str):
    from typer.testing import CliRunner

    from fewtask_data.cli import app

    return CliRunner().invoke(app, ["episodes", str(source), "--out", str(out), *args])
