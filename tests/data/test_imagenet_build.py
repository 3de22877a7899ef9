"""ImageNet folders, decoding oddities, and `build imagenet-families` end to end on real JPEGs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewtask_data import BuildOptions, EpisodeShape, FamilyStream, FewtaskError, build_imagenet_families
from fewtask_data.builders.imagenet import parse_roots, read_class_file
from fewtask_data.families.hierarchy import FamilyRule
from fewtask_data.sources import imagenet as src

REPO = Path(__file__).resolve().parents[2]
TWO = FamilyRule(min_classes=2, max_classes=50)
SMALL = dict(max_per_class=6, rule=TWO, allow_missing=True)


def options(**kw) -> BuildOptions:
    return BuildOptions(**{"encoding": "jpeg", "quality": 95, "shard_size": 20, "workers": 1, **kw})


def photo(w: int = 500, h: int = 375, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients + noise) of ImageNet's typical size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def link_classes(samples: Path, train_dir: Path, classes: list[str] | None = None) -> Path:
    train_dir.mkdir(parents=True)
    for folder in sorted((samples / "train").iterdir()):
        if classes is None or folder.name in classes:
            (train_dir / folder.name).symlink_to(folder)
    return train_dir


# ------------------------------------------------------------------ folders and decoding


def test_layouts_are_found(imagenet_samples, tmp_path):
    assert src.find_train_dir(imagenet_samples) == ("standard", imagenet_samples / "train")
    kaggle = link_classes(imagenet_samples, tmp_path / "k" / "ILSVRC" / "Data" / "CLS-LOC" / "train")
    assert src.find_train_dir(tmp_path / "k") == ("kaggle", kaggle)
    assert src.find_train_dir(imagenet_samples / "train") == ("flat", imagenet_samples / "train")
    classes = src.list_classes(imagenet_samples / "train")
    assert len(classes) == 10 and all(len(src.list_images(d)) == 50 for d in classes.values())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FewtaskError, match="no ImageNet class folders found"):
        src.find_train_dir(tmp_path / "empty")
    with pytest.raises(FewtaskError, match="is not a folder"):
        src.find_train_dir(tmp_path / "nope")


def test_imagenet_oddities_decode_to_rgb(tmp_path):
    img = photo()
    img.save(tmp_path / "rgb.JPEG", quality=90)
    img.convert("L").save(tmp_path / "gray.JPEG", quality=90)
    img.convert("CMYK").save(tmp_path / "cmyk.JPEG", quality=90)
    img.save(tmp_path / "png_named.JPEG", format="PNG")  # like n02105855_2933.JPEG
    img.convert("RGBA").save(tmp_path / "rgba.png")
    img.convert("P").save(tmp_path / "palette.png")
    decode = src.ImageDecoder(84)
    ref = decode(tmp_path / "rgb.JPEG").astype(float)
    for name in ["gray.JPEG", "cmyk.JPEG", "png_named.JPEG", "rgba.png", "palette.png"]:
        out = decode(tmp_path / name)
        assert out.shape == (84, 84, 3) and out.dtype == np.uint8, name
        if name != "gray.JPEG":
            assert np.abs(out.astype(float) - ref).mean() < 12, name  # same picture, not garbage
    gray = decode(tmp_path / "gray.JPEG")
    assert (gray[..., 0] == gray[..., 1]).all()
    (tmp_path / "broken.JPEG").write_bytes((tmp_path / "rgb.JPEG").read_bytes()[:300])
    with pytest.raises(OSError):
        decode(tmp_path / "broken.JPEG")
    (tmp_path / "text.JPEG").write_text("not an image")
    with pytest.raises(OSError):
        decode(tmp_path / "text.JPEG")


@pytest.mark.parametrize("resize", ["squash", "center-crop"])
def test_reduced_decoding_matches_full_decoding(tmp_path, resize):
    photo(500, 375).save(tmp_path / "a.JPEG", quality=90)
    fast = src.ImageDecoder(84, resize)(tmp_path / "a.JPEG").astype(float)
    full = src.naive_decode(tmp_path / "a.JPEG", 84, resize).astype(float)
    assert fast.shape == full.shape == (84, 84, 3)
    assert np.abs(fast - full).mean() < 4


def test_decoder_is_picklable_and_checks_settings():
    dec = pickle.loads(pickle.dumps(src.ImageDecoder(32, "center-crop")))
    assert dec == src.ImageDecoder(32, "center-crop")
    with pytest.raises(FewtaskError, match="--resize"):
        src.ImageDecoder(84, "stretch")
    with pytest.raises(FewtaskError, match="--image-size"):
        src.ImageDecoder(4)
    assert src.sample_id(Path("n01440764_10026.JPEG")) == "n01440764_10026"
    assert src.sample_id(Path("a.b c.JPEG")) == "a_b_c"


def test_parse_roots():
    assert parse_roots(["val=n02075296", "test=n03183080,n04576211"]) == {
        "val": ("n02075296",),
        "test": ("n03183080", "n04576211"),
    }
    for bad in ["val", "dev=n02075296", "val=carnivore"]:
        with pytest.raises(FewtaskError):
            parse_roots([bad])


def test_class_files(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\nn01440764 tench, Tinca tinca\n\nn02102040\n")
    assert read_class_file(path) == ["n01440764", "n02102040"]
    path.write_text("tench\n")
    with pytest.raises(FewtaskError, match="not a wnid"):
        read_class_file(path)
    with pytest.raises(FewtaskError, match="does not exist"):
        read_class_file(tmp_path / "nope.txt")


# ------------------------------------------------------------------ the build on the real sample JPEGs


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_build_streams_family_episodes(imagenet_samples, wordnet, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "out"
    report = build_imagenet_families(imagenet_samples, out, options=options(workers=2), **SMALL)
    assert report.written == 60 and not report.failed
    manifest = json.loads((out / "manifest.json").read_text())
    params = manifest["params"]
    assert params["allow_missing"] and len(params["missing_classes"]) == 990 and params["layout"] == "standard"
    assert manifest["image"]["shape"] == [84, 84, 3]
    order = [c["id"] for c in manifest["classes"]]
    splits = [c["meta"]["split"] for c in manifest["classes"]]
    assert splits == sorted(splits, key=["train", "val", "test"].index)  # split by split, each in leaf order
    assert {c["id"] for c in manifest["classes"] if c["meta"]["split"] == "test"} == {"n03000684", "n03394916", "n03425413"}
    train = {f["meta"]["lemma"]: f for f in manifest["splits"]["train"]["families"]}
    assert "artifact" in train and all(f["id"].startswith("train-n") for f in train.values())
    for fam in manifest["splits"]["train"]["families"]:  # a family's classes sit together in shard order
        idx = sorted(order.index(c) for c in fam["classes"])
        assert idx == list(range(idx[0], idx[0] + len(idx)))
    shape = EpisodeShape(ways=2, shots=1, queries=2, val=2, meta_tasks=2, goal_tasks=1)
    episodes = list(FamilyStream(out, "train", shape, seed=0, epochs=1, episodes_per_visit=2))
    assert len(episodes) == 2 * len(train)
    ep = episodes[0]
    assert ep.meta_x.shape == (2, 6, 3, 84, 84) and ep.goal_x.shape == (1, 6, 3, 84, 84)
    assert 0.05 < float(ep.meta_x.mean()) < 0.95 and float(ep.meta_x.std()) > 0.05  # real pixels


def test_same_input_gives_the_same_bytes_and_a_killed_build_resumes_to_them(imagenet_samples, wordnet, tmp_path):
    clean = tmp_path / "clean"
    build_imagenet_families(imagenet_samples, clean, **SMALL, options=options())

    class Killed(Exception):
        pass

    def kill_after_first_shard(done, total):
        if done > 0:  # (0, total) comes before any image is decoded
            raise Killed

    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):
        build_imagenet_families(imagenet_samples, resumed, **SMALL, options=options(), progress=kill_after_first_shard)
    assert not (resumed / "manifest.json").exists()  # an unfinished build never looks complete
    assert (resumed / "shard-000000.tar").exists() and not (resumed / "shard-000001.tar").exists()
    build_imagenet_families(imagenet_samples, resumed, **SMALL, options=options(workers=2))
    assert _files(clean) == _files(resumed) and len(_files(clean)) == 3 + 3  # 3 shards, index, report, manifest


def test_missing_classes_are_listed(imagenet_samples, wordnet, tmp_path):
    with pytest.raises(FewtaskError) as err:
        build_imagenet_families(imagenet_samples, tmp_path / "o", preset_name="mini", rule=TWO)
    text = str(err.value)
    assert "99 class(es) of preset mini are missing" in text and "n01532829" in text and "--allow-missing" in text


def test_unreadable_images_are_reported_or_fatal_with_strict(imagenet_samples, wordnet, tmp_path):
    root = tmp_path / "imagenet" / "train"
    for wnid in ["n03000684", "n03394916", "n03425413"]:  # chain saw, French horn, gas pump: under device
        (root / wnid).mkdir(parents=True)
        for f in src.list_images(imagenet_samples / "train" / wnid)[:4]:
            (root / wnid / f.name).symlink_to(f)
    (root / "n03000684" / "n03000684_broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    photo(300, 200).convert("CMYK").save(root / "n03394916" / "n03394916_cmyk.JPEG")
    photo(300, 200).save(root / "n03425413" / "n03425413_png.JPEG", format="PNG")
    common = dict(preset_name="custom", roots={"test": ("n03183080",)}, rule=TWO)
    report = build_imagenet_families(tmp_path / "imagenet", tmp_path / "a", options=options(), **common)
    assert report.written == 14
    assert [(f["class"], f["sample"]) for f in report.failed] == [("n03000684", "n03000684_broken")]
    saved = json.loads((tmp_path / "a" / "build_report.json").read_text())
    assert saved["failed"][0]["sample"] == "n03000684_broken"
    with pytest.raises(FewtaskError, match="n03000684/n03000684_broken failed"):
        build_imagenet_families(tmp_path / "imagenet", tmp_path / "b", options=options(strict=True), **common)


def test_build_from_definitions_needs_no_wordnet(imagenet_samples, tmp_path, monkeypatch):
    import fewtask_data.sources.wordnet as wnmod

    def no_wordnet(*a, **k):
        raise AssertionError("WordNet must not be opened")

    monkeypatch.setattr(wnmod, "load_wordnet", no_wordnet)
    defs = {
        "format": "fewtask-family-definitions",
        "format_version": 1,
        "name": "two-families",
        "taxonomy": "WordNet 3.0",
        "preset": {"name": "handmade"},
        "params": {"min_classes": 2, "max_classes": 50, "disjoint": False, "families": "wordnet"},
        "lemmas": {},
        "splits": {
            "train": {
                "classes": ["n01440764", "n02102040", "n03028079", "n03888257", "n09999999"],
                "families": [
                    {"id": "train-a", "wnid": "n00000001", "lemma": "a", "depth": 0, "classes": ["n01440764", "n02102040"]},
                    {"id": "train-b", "wnid": "n00000002", "lemma": "b", "depth": 0, "classes": ["n03028079", "n03888257", "n09999999"]},
                ],
            }
        },
    }
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(defs))
    kaggle = tmp_path / "kaggle"
    link_classes(imagenet_samples, kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "train")
    with pytest.raises(FewtaskError, match="1 class.* missing .*n09999999"):
        build_imagenet_families(kaggle, tmp_path / "a", definitions=str(path), options=options())
    report = build_imagenet_families(kaggle, tmp_path / "b", definitions=str(path), max_per_class=3, allow_missing=True, options=options())
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert report.written == 12 and manifest["params"]["layout"] == "kaggle"
    assert [f["classes"] for f in manifest["splits"]["train"]["families"]] == [["n01440764", "n02102040"], ["n03028079", "n03888257"]]


def test_cli_reports_missing_classes_as_one_line(imagenet_samples, tmp_path):
    code = "import sys; from fewtask_data.cli import main; sys.argv = ['fewtask-data', *sys.argv[1:]]; main()"
    args = ["build", "imagenet-families", "--imagenet-root", str(imagenet_samples), "--out", str(tmp_path / "o"),
            "--definitions", "imagenet-mini"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: 99 class(es) of definitions imagenet-mini are missing")  # 1 of 10 is mini
    assert done.stderr.strip().count("\n") == 0
    both = subprocess.run([sys.executable, "-c", code, *args, "--preset", "tiered"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert both.returncode == 2 and both.stderr.startswith("error: give --preset or --definitions, not both"), both.stderr
