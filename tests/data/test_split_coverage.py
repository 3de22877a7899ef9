"""Every class of a published split is reachable: the manifest records each split whole,
the meta-dataset preset follows Meta-Dataset's 5..392 rule, and `inspect` names the gaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import toydata
from fewtask_data import (
    BuildOptions, EpisodeShape, FamilyStream, FewtaskError, build_dataset, build_imagenet_families, load_manifest,
    validate_manifest,
)
from fewtask_data.cli import app
from fewtask_data.families import hierarchy as fw
from fewtask_data.families.definitions import unreached_classes

SIZES = {"train": 712, "val": 158, "test": 130}


def unreached_counts(defs: dict) -> list[int]:
    return [len(unreached_classes(defs, s)) for s in fw.SPLITS]


# ------------------------------------------------------------------ the hierarchy over the 1,000 wnids


def test_meta_dataset_preset_reaches_every_class_by_default(wordnet):
    defs = fw.family_definitions("md", fw.preset("meta-dataset"), fw.ilsvrc2012_classes(), wordnet)
    assert defs["params"] == {"min_classes": 5, "max_classes": 392, "disjoint": False, "families": "wordnet"}
    for split, size in SIZES.items():
        body = defs["splits"][split]
        reached = {c for fam in body["families"] for c in fam["classes"]}
        assert reached == set(body["classes"]) and len(reached) == size, split
    # 392 is the smallest upper bound that does (Meta-Dataset's MAX_SPANNING_LEAVES_ELIGIBLE)
    narrower = fw.family_definitions("md", fw.preset("meta-dataset"), fw.ilsvrc2012_classes(), wordnet, fw.FamilyRule(5, 391))
    assert unreached_counts(narrower) == [4, 0, 0]


def test_other_presets_keep_the_5_to_50_default():
    assert [fw.FamilyRule.for_preset(fw.preset(p)).max_classes for p in ("tiered", "mini")] == [50, 50]
    assert fw.FamilyRule.for_preset(fw.preset("meta-dataset"), max_classes=50) == fw.FamilyRule(5, 50)


@pytest.mark.parametrize(
    "preset, rule, families, unreached",
    [  # the coverage table of docs/imagenet.md
        ("meta-dataset", fw.FamilyRule(5, 392), [113, 18, 15], [0, 0, 0]),
        ("meta-dataset", fw.FamilyRule(5, 392, disjoint=True), [5, 1, 1], [23, 0, 0]),
        ("meta-dataset", fw.FamilyRule(5, 391), [112, 18, 15], [4, 0, 0]),
        ("meta-dataset", fw.FamilyRule(5, 391, disjoint=True), [10, 1, 1], [88, 0, 0]),
        ("meta-dataset", fw.FamilyRule(5, 50), [97, 14, 14], [111, 38, 36]),
        ("meta-dataset", fw.FamilyRule(5, 50, disjoint=True), [30, 7, 5], [180, 38, 36]),
        ("meta-dataset", fw.FamilyRule(10, 100), [60, 7, 7], [43, 52, 36]),
        ("meta-dataset", fw.FamilyRule(10, 100, disjoint=True), [17, 3, 5], [149, 52, 36]),
        ("meta-dataset", fw.FamilyRule(2, 1000), [298, 42, 50], [0, 0, 0]),
        ("meta-dataset", fw.FamilyRule(2, 1000, disjoint=True), [1, 1, 1], [0, 0, 0]),
        ("tiered", fw.FamilyRule(5, 50), [47, 16, 21], [0, 0, 0]),
        ("tiered", fw.FamilyRule(5, 50, disjoint=True), [20, 6, 8], [0, 0, 0]),
        ("tiered", fw.FamilyRule(kind="tiered"), [20, 6, 8], [0, 0, 0]),
        ("mini", fw.FamilyRule(5, 50), [11, 5, 6], [6, 0, 0]),
        ("mini", fw.FamilyRule(5, 50, disjoint=True), [2, 1, 1], [6, 0, 0]),
        ("mini", fw.FamilyRule(5, 64), [15, 5, 6], [0, 0, 0]),  # street_sign sits only under the 64-class root
        ("mini", fw.FamilyRule(5, 64, disjoint=True), [1, 1, 1], [0, 0, 0]),
    ],
)
def test_coverage_per_preset_and_bound(wordnet, preset, rule, families, unreached):
    defs = fw.family_definitions(preset, fw.preset(preset), fw.ilsvrc2012_classes(), wordnet, rule)
    assert [len(defs["splits"][s]["families"]) for s in fw.SPLITS] == families
    assert unreached_counts(defs) == unreached


# ------------------------------------------------------------------ the manifest's record of each split


def test_every_build_records_each_split_whole(tmp_path):
    """Builders whose families cover their splits record the union; a build may also name
    classes no family holds, and the manifest keeps them (in shard order)."""
    toydata.build_toy(tmp_path / "toy")
    m = load_manifest(tmp_path / "toy")
    assert m.recorded_classes("test") == m.split_classes("test") == ["c08", "c09", "c10", "c11"]
    assert m.unreached_classes("train") == []
    spec = dict(dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"}, classes=toydata.classes(8, 2),
                decode=toydata.decode, options=BuildOptions(workers=1))
    build_dataset(tmp_path / "gap", splits={"train": [{"id": "f", "classes": ["c01", "c02"]}], "test": []},
                  split_classes={"train": ["c04", "c02", "c01", "c00"], "test": ["c07"]}, **spec)
    gap = load_manifest(tmp_path / "gap")
    assert gap.recorded_classes("train") == ["c00", "c01", "c02", "c04"] and gap.unreached_classes("train") == ["c00", "c04"]
    assert gap.recorded_classes("test") == gap.unreached_classes("test") == ["c07"]
    with pytest.raises(FewtaskError, match="split 'train' lists 1 class.* no images for: zz"):
        build_dataset(tmp_path / "bad", splits={"train": []}, split_classes={"train": ["zz"]}, **spec)
    with pytest.raises(FewtaskError, match="split classes are given for val, which the splits do not name"):
        build_dataset(tmp_path / "bad", splits={"train": []}, split_classes={"val": ["c00"]}, **spec)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s["train"]["classes"].remove("c00"), "split 'train' has families with classes its class list lacks: c00"),
        (lambda s: s["test"]["classes"].append("c00"), "class 'c00' is in splits 'train' and 'test'"),
        (lambda s: s["test"]["classes"].append("c08"), "splits.test.classes lists a class twice"),
        (lambda s: s["test"]["classes"].append("nope"), "split 'test' lists class 'nope', which is not in manifest.classes"),
        (lambda s: s["test"].update(classes="c08"), "manifest.splits.test.classes must be array"),
    ],
)
def test_bad_split_records_name_the_problem(tmp_path, edit, words):
    toydata.build_toy(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    edit(data["splits"])
    with pytest.raises(FewtaskError) as err:
        validate_manifest(data)
    assert words in str(err.value)


def test_a_manifest_without_split_records_still_loads_and_says_so(tmp_path):
    """Format version 1 manifests written before the record load; inspect says it is absent."""
    toydata.build_toy(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    for body in data["splits"].values():
        del body["classes"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    m = load_manifest(tmp_path)
    assert m.recorded_classes("train") is None and m.unreached_classes("train") is None
    assert m.split_classes("train") == [f"c{i:02d}" for i in range(8)]
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path), "--unreached"])
    assert shown.exit_code == 0, shown.output
    assert "train               2        8       80  no record" in shown.output
    assert "does not record each split's whole class list" in shown.output
    assert FamilyStream(tmp_path, "train", EpisodeShape(2, 1, 1, 1, 1, 1)).take(1)


# ------------------------------------------------------------------ end to end over the 1,000 ILSVRC classes


def tiny_imagenet(root: Path, per_class: int = 2) -> Path:
    """One folder per ILSVRC-2012 wnid with ``per_class`` 8x8 JPEGs (flat colours)."""
    for i, wnid in enumerate(fw.ilsvrc2012_classes()):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(np.full((8, 8, 3), (7 * i + 50 * j) % 256, np.uint8)).save(folder / f"{wnid}_{j}.JPEG")
    return root


def test_meta_dataset_build_over_1000_classes_reaches_every_split_class(wordnet, tmp_path):
    torch.set_num_threads(1)
    imagenet = tiny_imagenet(tmp_path / "imagenet")
    options = BuildOptions(encoding="jpeg", quality=90, workers=1)
    out = tmp_path / "md"
    build_imagenet_families(imagenet, out, image_size=8, options=options)
    m = load_manifest(out)
    assert m.max_visit_classes == 50 and m.params["family_params"]["max_classes"] == 392
    for split, size in SIZES.items():
        assert len(m.recorded_classes(split)) == size and m.unreached_classes(split) == []
        assert set(m.split_classes(split)) == set(m.recorded_classes(split))
    shown = CliRunner().invoke(app, ["inspect", str(out), "--unreached"]).output
    assert "train             113      712     1424          0  5-392" in shown
    assert "every class of every split is in a family" in shown

    # a visit to the 392-class family loads 50 of its classes
    largest = max(m.families("train"), key=lambda f: len(f["classes"]))
    assert len(largest["classes"]) == 392
    shape = EpisodeShape(ways=5, shots=1, queries=1, val=1, meta_tasks=2, goal_tasks=1)
    stream = FamilyStream(out, "train", shape, seed=0, episodes_per_visit=2, families=[largest["id"]])
    episode = stream.take(1)[0]
    assert len(episode.identity["visit_classes"]) == 50 and len(stream.buffer.images) == 50
    assert torch.equal(stream.replay(episode.identity).meta_x, episode.meta_x)

    # the old bounds stay available, and inspect names what they leave out
    narrow = tmp_path / "narrow"
    build_imagenet_families(imagenet, narrow, image_size=8, rule=fw.FamilyRule(5, 50), options=options)
    n = load_manifest(narrow)
    assert [len(n.recorded_classes(s)) for s in fw.SPLITS] == [712, 158, 130]
    assert [len(n.unreached_classes(s)) for s in fw.SPLITS] == [111, 38, 36]
    assert [len(n.split_classes(s)) for s in fw.SPLITS] == [601, 120, 94]
    named = CliRunner().invoke(app, ["inspect", str(narrow), "--unreached"]).output
    assert "train              97      712     1424        111" in named
    assert "unreached in val (38 of 158 classes, in no family):" in named
    first = n.unreached_classes("val")[0]
    assert f"  {first}  {n.class_meta(first)['lemma']}" in named.splitlines()
    assert "unreached in" not in CliRunner().invoke(app, ["inspect", str(narrow)]).output
