"""The procedural manifest kind (fewtask_data.formats.procedural): what the procedural
builders write (no image fields, byte-stable, one writer), its validation, the one
builder/version check, `inspect` and `verify`, and manifests of the old kind (image
manifests with count-0 classes) read into the same families."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError, load_manifest
from fewtask_data.builders.continual_sines import build_continual_families
from fewtask_data.builders.navigation import build_navigation_families
from fewtask_data.builders.sinusoid import build_sinusoid_families
from fewtask_data.cli import app
from fewtask_data.formats.manifest import save_manifest
from fewtask_data.formats.procedural import ProceduralManifest, content_id, load_any, validate_procedural
from fewtask_data.formats.shards import index_document
from fewtask_data.io import json_bytes, sha256_bytes, write_bytes, write_json
from fewtask_data.sources.continual_sines import ContinualSpec, load_family_definitions
from fewtask_data.sources.navigation import load_navigation_families
from fewtask_data.sources.sinusoid import load_sinusoid_families

COUNTS = {"train": 5, "val": 2, "test": 3}
SPEC = ContinualSpec(functions=3, steps_per_function=2, batch=4, train_pool=30, eval_pool=40)
BUILDS = {  # builder name -> (build into a folder, its loader)
    "navigation-families": (lambda out, seed=0: build_navigation_families(out, counts=COUNTS, seed=seed), load_navigation_families),
    "continual-sine-families": (lambda out, seed=0: build_continual_families(out, families=5, test_families=2, seed=seed, spec=SPEC),
                                load_family_definitions),
    "sinusoid-families": (lambda out, seed=0: build_sinusoid_families(out, counts=COUNTS, seed=seed), load_sinusoid_families),
}  # fmt: skip


def write_legacy(out: Path, doc: dict) -> Path:
    """The old writer: the same families as the procedural document ``doc``, as the
    procedural builders wrote them before the procedural kind, an image manifest with
    count-0 placeholder classes (navigation: one per family, named after it; continual
    sines: the split's function pool), an empty index and build report."""
    classes, splits = [], {}
    for split in sorted(doc["splits"], key=["train", "val", "test"].index):  # the builders' split order
        body = doc["splits"][split]
        if "pool" in body:
            ids = [f"{split}-f{i:04d}" for i in range(len(body["pool"]))]
            classes += [{"id": c, "count": 0, "meta": meta} for c, meta in zip(ids, body["pool"])]
            families = [{"id": f["id"], "classes": ids, "meta": f["params"]} for f in body["families"]]
        else:
            ids = [f["id"] for f in body["families"]]
            classes += [{"id": f["id"], "count": 0, "meta": f["params"]} for f in body["families"]]
            families = [{"id": f["id"], "classes": [f["id"]], "meta": f["params"]} for f in body["families"]]
        splits[split] = {"classes": ids, "families": families}
    head = {
        "format": "fewtask-manifest", "format_version": 1, "dataset": doc["dataset"], "synthetic": True,
        "builder": doc["builder"], "source": {"fingerprint": doc["description"]},
        "params": {**doc["params"], "procedural": True, "shard_size": 2000}, "seeds": {**doc["seeds"], "shuffle": 0},
        "splits": splits,
    }  # fmt: skip
    index = json_bytes(index_document([], "png"))
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "index.json", index)
    write_json(out / "build_report.json", {"written": 0, "failed_count": 0, "failed": []})
    save_manifest({
        **head, "build_id": sha256_bytes(json_bytes({"head": head, "classes": classes})),
        "image": {"encoding": "png", "quality": None, "shape": [1, 1]}, "classes": classes, "shards": [],
        "index": {"name": "index.json", "sha256": sha256_bytes(index)}, "report": {"name": "build_report.json", "failed": 0},
    }, out / "manifest.json")  # fmt: skip
    return out


def document(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("builder", sorted(BUILDS))
def test_builders_write_one_procedural_manifest_byte_stable(tmp_path, builder):
    build, _ = BUILDS[builder]
    build(tmp_path / "a")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["manifest.json"]  # no index, report or shards
    doc = document(tmp_path / "a")
    assert set(doc) == {"format", "format_version", "build_id", "dataset", "description", "builder", "params", "seeds", "splits"}
    assert doc["format"] == "fewtask-procedural" and doc["builder"]["name"] == builder and doc["build_id"] == content_id(doc)
    assert all(set(f) == {"id", "params"} for body in doc["splits"].values() for f in body["families"])
    first = (tmp_path / "a" / "manifest.json").read_bytes()
    assert first == json_bytes(doc)  # canonical JSON
    build(tmp_path / "a")  # finished: a no-op
    build(tmp_path / "b")  # another folder: the same bytes
    assert (tmp_path / "a" / "manifest.json").read_bytes() == first == (tmp_path / "b" / "manifest.json").read_bytes()
    with pytest.raises(FewtaskError, match="already holds a different build"):
        build(tmp_path / "a", seed=1)


def test_old_format_manifests_read_the_same_families(tmp_path):
    build_navigation_families(tmp_path / "nav", counts=COUNTS, seed=2)
    old = write_legacy(tmp_path / "nav-old", document(tmp_path / "nav"))
    new_crops, old_crops = load_navigation_families(tmp_path / "nav"), load_navigation_families(old)
    assert new_crops.keys() == old_crops.keys() and all(torch.equal(new_crops[s], old_crops[s]) for s in new_crops)

    build_continual_families(tmp_path / "cs", families=5, test_families=2, spec=SPEC)
    old = write_legacy(tmp_path / "cs-old", document(tmp_path / "cs"))
    new, was = load_family_definitions(tmp_path / "cs"), load_family_definitions(old)
    assert new.spec == was.spec and new.frequencies == was.frequencies
    assert all(torch.equal(new.pools[s], was.pools[s]) for s in ("train", "test"))
    assert was.build_id == document(old)["build_id"] != new.build_id  # an old build keeps its id
    m = load_any(old)
    assert isinstance(m, ProceduralManifest) and m.legacy and "params" in m.families("test")[0]


def test_the_test_writes_old_manifests_as_the_old_builder_did(tmp_path):
    # the old continual-sine-families build with default settings had this build id, recorded in
    # docs/results/continual-families/results.json: write_legacy reproduces the old bytes
    build_continual_families(tmp_path / "new")
    old = write_legacy(tmp_path / "old", document(tmp_path / "new"))
    assert load_family_definitions(old).build_id == "bf8b8b11e2de922280d38967ca7048c2d0aa62d37a131a798bbbe3eeb05d5336"


def test_rebuilding_over_an_old_build_of_the_same_families_is_a_no_op(tmp_path):
    build_navigation_families(tmp_path / "new", counts=COUNTS)
    old = write_legacy(tmp_path / "old", document(tmp_path / "new"))
    before = (old / "manifest.json").read_bytes()
    build_navigation_families(old, counts=COUNTS)
    assert (old / "manifest.json").read_bytes() == before
    with pytest.raises(FewtaskError, match="already holds a different build"):
        build_navigation_families(old, counts={**COUNTS, "test": 4})


def test_inspect_and_verify_show_both_kinds(tmp_path):
    build_continual_families(tmp_path / "new", families=5, test_families=2, spec=SPEC)
    write_legacy(tmp_path / "old", document(tmp_path / "new"))
    runner = CliRunner()
    for folder in ("new", "old"):
        shown = runner.invoke(app, ["inspect", str(tmp_path / folder)])
        assert shown.exit_code == 0, shown.output
        assert "continual-sine-families 1  format fewtask-procedural v1" in shown.output
        assert "frequency 0.5" in shown.output and '"frequency_range": [0.5, 2.0]' in shown.output
        assert ("old format" in shown.output) == (folder == "old")
        checked = runner.invoke(app, ["verify", str(tmp_path / folder)])
        assert checked.exit_code == 0 and "no shards to verify" in checked.output and "5 families" in checked.output


def test_summary_ranges_per_parameter(tmp_path):
    build_navigation_families(tmp_path, counts=COUNTS)
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path)]).output
    crops = load_navigation_families(tmp_path)["val"]
    low, high = crops[:, 2].min().item(), crops[:, 2].max().item()
    assert "val                 2      0  crop [" in shown and f"{low:.4g}..{high:.4g}" in shown


def _mutations():
    def add_image(d):
        d["image"] = {"encoding": "png", "quality": None, "shape": [1, 1]}

    def drop_params(d):
        del d["splits"]["val"]["families"][0]["params"]

    def repeat_family(d):
        d["splits"]["val"]["families"][0]["id"] = d["splits"]["test"]["families"][0]["id"]

    def empty_split(d):
        d["splits"]["val"]["families"] = []

    def bad_id(d):
        d["splits"]["val"]["families"][0]["id"] = "a.b"

    def newer(d):
        d["format_version"] = 2

    return [(add_image, "manifest.image is not part of format version 1"), (drop_params, r"families\[0\]\.params is missing"),
            (repeat_family, "appears twice"), (empty_split, "has 0 items"), (bad_id, "does not match"), (newer, "upgrade fewtask")]  # fmt: skip


@pytest.mark.parametrize("mutate, message", _mutations(), ids=lambda v: getattr(v, "__name__", ""))
def test_invalid_documents_are_one_line_errors(tmp_path, mutate, message):
    build_navigation_families(tmp_path, counts=COUNTS)
    doc = copy.deepcopy(document(tmp_path))
    validate_procedural(doc)
    mutate(doc)
    with pytest.raises(FewtaskError, match=message) as err:
        validate_procedural(doc)
    assert "\n" not in str(err.value)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(FewtaskError, match=message):
        load_navigation_families(tmp_path)


@pytest.mark.parametrize("builder", sorted(BUILDS))
def test_every_loader_checks_builder_and_version_once(tmp_path, builder):
    build, load = BUILDS[builder]
    other = next(name for name in sorted(BUILDS) if name != builder)
    BUILDS[other][0](tmp_path / "other")
    with pytest.raises(FewtaskError, match=f"holds {other} families, not {builder}; build them with `fewtask-data build {builder}"):
        load(tmp_path / "other")
    build(tmp_path / "mine")
    doc = document(tmp_path / "mine")
    doc["builder"]["version"] = "0"
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(FewtaskError, match=f"version 0; this fewtask reads version 1; rebuild it with `fewtask-data build {builder}"):
        load(tmp_path / "mine")


def test_image_manifest_readers_point_procedural_definitions_to_their_loaders(tmp_path):
    build_navigation_families(tmp_path, counts=COUNTS)
    with pytest.raises(FewtaskError, match="procedural family definitions"):
        load_manifest(tmp_path)
