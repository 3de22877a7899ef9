"""Manifest: schema validation naming the bad field, split hygiene, deterministic save, inspect."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

import toydata
from fewtask_data import FewtaskError, load_manifest, save_manifest, validate_manifest
from fewtask_data.cli import app
from fewtask_data.formats.manifest import SCHEMA_PATH


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    toydata.build_toy(out)
    return out


@pytest.fixture
def data(built):
    return json.loads((built / "manifest.json").read_text())


def test_schema_file_lists_every_top_level_field(data):
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["required"]) <= set(data)
    assert set(data) <= set(schema["properties"])


def test_loads_from_folder_and_file(built):
    a = load_manifest(built)
    b = load_manifest(built / "manifest.json")
    assert a.data == b.data
    assert a.splits == ["test", "train"]
    assert [f["id"] for f in a.families("train")] == ["fam0", "fam1"]
    assert a.split_classes("test") == ["c08", "c09", "c10", "c11"]
    assert a.class_count("c00") == 10
    assert a.split_of("fam2") == "test"


def test_typed_accessors_read_the_document(built, data):
    m = load_manifest(built)
    assert (m.dataset, m.builder, m.synthetic, m.build_id) == ("toy", "toy", False, data["build_id"])
    assert m.image_shape == (8, 8) and m.image_encoding == "png"
    assert m.shards == data["shards"] and m.index_sha256 == data["index"]["sha256"]
    assert m.classes == [c["id"] for c in data["classes"]] and m.class_meta("c05") == {"group": 1}
    assert m.params["shard_size"] == 25 and m.episode_sampler is None and m.augment_space == {}


def test_pooled_merges_each_split_into_one_family(built):
    m = load_manifest(built)
    pooled = m.pooled()
    assert [f["id"] for f in pooled.families("train")] == ["all-train"]
    assert pooled.families("train")[0]["classes"] == m.split_classes("train")
    assert pooled.split_classes("test") == m.split_classes("test") and pooled.shards == m.shards
    assert [f["id"] for f in m.families("train")] == ["fam0", "fam1"]  # the original is untouched


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.pop("dataset"), "manifest.dataset is missing"),
        (lambda d: d["image"].update(encoding="gif"), "manifest.image.encoding"),
        (lambda d: d["classes"][0].update(count=-1), "manifest.classes[0].count"),
        (lambda d: d["classes"][1].update(id="c.1"), "manifest.classes[1].id"),
        (lambda d: d["splits"]["train"]["families"][0].update(classes="c00"), "families[0].classes must be array"),
        (lambda d: d["shards"][0].update(sha256="xyz"), "manifest.shards[0].sha256"),
        (lambda d: d.update(extra=1), "manifest.extra is not part"),
        (lambda d: d.update(format_version=9), "newer than this fewtask"),
        (lambda d: d["splits"]["test"]["families"][0]["classes"].append("c00"), "class 'c00' is in splits"),
        (lambda d: d["splits"]["test"]["families"][0]["classes"].append("nope"), "class 'nope', which is not"),
        (lambda d: d["splits"]["test"]["families"].append(d["splits"]["train"]["families"][0]), "appears twice"),
        (lambda d: d["shards"][0].update(count=1), "shards hold"),
    ],
)
def test_bad_manifests_name_the_problem(data, edit, words):
    bad = copy.deepcopy(data)
    edit(bad)
    with pytest.raises(FewtaskError, match=None) as err:
        validate_manifest(bad)
    assert words in str(err.value)


def test_save_is_deterministic_and_atomic(data, tmp_path):
    reordered = dict(reversed(list(data.items())))
    save_manifest(data, tmp_path / "a.json")
    save_manifest(reordered, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert list(tmp_path.iterdir()) == sorted(tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 2
    bad = copy.deepcopy(data)
    bad.pop("classes")
    with pytest.raises(FewtaskError):
        save_manifest(bad, tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_missing_manifest_says_build_is_unfinished(tmp_path):
    with pytest.raises(FewtaskError, match="did not finish"):
        load_manifest(tmp_path)


def test_inspect_cli(built):
    result = CliRunner().invoke(app, ["inspect", str(built)])
    assert result.exit_code == 0, result.output
    assert "dataset   toy" in result.output
    assert "train               2        8       80" in result.output
    assert "test                1        4       40" in result.output
