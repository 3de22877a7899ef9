"""Generic build: determinism across worker counts, failure report, strict mode, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import toydata
from fewtask_data import BuildOptions, FewtaskError, SourceClass, build_dataset, load_manifest, read_shard, verify
from fewtask_data.builders.plan import shuffled_items

TESTS = Path(__file__).resolve().parents[1]  # where toydata.py lives


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_bytes_with_one_or_two_workers(tmp_path):
    toydata.build_toy(tmp_path / "a", n_classes=16, per_class=12, workers=1)
    toydata.build_toy(tmp_path / "b", n_classes=16, per_class=12, workers=2)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b
    assert ".build" not in a and "manifest.json" in a and "index.json" in a


def test_classes_are_contiguous_and_shuffled_with_the_recorded_seed(tmp_path):
    toydata.build_toy(tmp_path, n_classes=8, per_class=10, seed=5)
    m = load_manifest(tmp_path)
    assert m.data["seeds"]["shuffle"] == 5
    seen = [(cls, sample) for s in m.data["shards"] for _, cls, sample, _ in read_shard(str(tmp_path / s["name"]))]
    classes = [c for c, _ in seen]
    assert classes == sorted(classes)  # class-contiguous, in the given order
    c0 = [s for c, s in seen if c == "c00"]
    expected = [sid for sid, _ in shuffled_items(toydata.classes(8, 10)[0], 5)]
    assert c0 == expected and c0 != sorted(c0)


def test_failed_images_are_reported_and_counted(tmp_path):
    report = toydata.build_toy(tmp_path, bad=((1, 3), (7, 0)))
    assert [(f["class"], f["sample"]) for f in report.failed] == [("c01", "s003"), ("c07", "s000")]
    assert "cannot identify image file" in report.failed[0]["reason"]
    on_disk = json.loads((tmp_path / "build_report.json").read_text())
    assert on_disk["failed_count"] == 2 and on_disk["written"] == 118
    m = load_manifest(tmp_path)
    assert m.class_count("c01") == 9 and m.class_count("c00") == 10
    assert m.data["report"]["failed"] == 2
    assert verify(tmp_path) == []


def test_corrupt_and_truncated_files_are_listed(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"not an image at all")
    (folder / "5.png").write_bytes((folder / "5.png").read_bytes()[:40])
    classes = [SourceClass("a", [(f"s{i}", str(folder / f"{i}.png")) for i in range(6)])]
    report = build_dataset(tmp_path / "out", dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"},
                           classes=classes, decode=toydata.PilFile(), splits={"t": [{"id": "f", "classes": ["a"]}]},
                           options=BuildOptions(workers=1))
    assert sorted(f["sample"] for f in report.failed) == ["s3", "s5"]
    assert all(f["reason"] for f in report.failed) and report.written == 4
    assert load_manifest(tmp_path / "out").class_count("a") == 4


def test_strict_makes_a_failed_image_fatal(tmp_path):
    with pytest.raises(FewtaskError, match="c01/s003 failed"):
        toydata.build_toy(tmp_path, bad=((1, 3),), strict=True)
    assert not (tmp_path / "manifest.json").exists()


def test_bad_families_fail_before_any_image_is_decoded(tmp_path):
    def exploding(item):
        raise AssertionError("decode must not run")

    with pytest.raises(FewtaskError, match="class 'zz', which is not in manifest.classes"):
        build_dataset(tmp_path, dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"},
                      classes=toydata.classes(4, 2), decode=exploding,
                      splits={"train": [{"id": "f", "classes": ["c00", "zz"]}]})
    with pytest.raises(FewtaskError, match="class 'c00' is in splits"):
        build_dataset(tmp_path, dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"},
                      classes=toydata.classes(4, 2), decode=exploding,
                      splits={"train": [{"id": "f", "classes": ["c00"]}], "test": [{"id": "g", "classes": ["c00"]}]})
    with pytest.raises(FewtaskError, match="not a valid id"):
        build_dataset(tmp_path, dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"},
                      classes=[SourceClass("a.b", [("x", 0)])], decode=exploding, splits={"t": []})


def test_decoder_must_return_one_shape(tmp_path):
    def ragged(item):
        return np.zeros((8, 8 + item), np.uint8)

    classes = [SourceClass("a", [("x", 0), ("y", 1)])]
    with pytest.raises(FewtaskError, match="several shapes|differs"):
        build_dataset(tmp_path, dataset="d", builder="b", builder_version="1", source={"fingerprint": "f"},
                      classes=classes, decode=ragged, splits={"t": [{"id": "f", "classes": ["a"]}]},
                      options=BuildOptions(strict=True, workers=1))


def test_rerun_of_a_finished_build_is_a_no_op_and_other_settings_are_refused(tmp_path):
    toydata.build_toy(tmp_path)
    before = tree(tmp_path)
    report = toydata.build_toy(tmp_path)
    assert tree(tmp_path) == before and report.written == 120
    with pytest.raises(FewtaskError, match="different build"):
        toydata.build_toy(tmp_path, seed=3)


def test_jpeg_rgb_build(tmp_path):
    toydata.build_toy(tmp_path, rgb=True, encoding="jpeg", quality=80, side=16)
    m = load_manifest(tmp_path)
    assert m.data["image"] == {"encoding": "jpeg", "quality": 80, "shape": [16, 16, 3]}
    names = [n for s in m.data["shards"] for n in __import__("tarfile").open(tmp_path / s["name"]).getnames()]
    assert all(n.endswith((".jpg", ".json")) for n in names)


def _kill_build_after(out: Path, shards_done: int, workers: int) -> None:
    """Start a real build process and SIGKILL it once ``shards_done`` shards exist."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(TESTS / "toydata.py"), str(out), "60", str(workers)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(out.glob("shard-*.tar"))) >= shards_done:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be killed"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """An uninterrupted build in its own process."""
    out = tmp_path_factory.mktemp("reference")
    subprocess.run([sys.executable, str(TESTS / "toydata.py"), str(out), "60", "1"], check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])))
    return tree(out)


@pytest.mark.slow
@pytest.mark.parametrize("shards_done, workers", [(1, 1), (25, 2), (50, 1)])
def test_killed_build_resumes_to_identical_bytes(tmp_path, reference, shards_done, workers):
    out = tmp_path / "killed"
    _kill_build_after(out, shards_done, workers)
    assert (out / ".build").exists()
    toydata.build_toy(out, n_classes=60, per_class=40, side=64, shard_size=40, workers=1)
    assert tree(out) == reference
    assert verify(out) == []
