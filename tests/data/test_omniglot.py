"""Omniglot reader, splits and families (sources/omniglot.py, families/omniglot.py).

Tests on the real Omniglot use the ``omniglot_dir`` / ``splits_dir`` fixtures and skip
with the reason when the data is absent; the rest run on the synthetic glyphs.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import Counter

import numpy as np
import pytest

from fewtask_data import FewtaskError, named_space
from fewtask_data.families.alphabets import (
    VINYALS,
    FamilyImageDecoder,
    alphabet_counts,
    assign_splits,
    base_families,
    check_hygiene,
    plan_families,
    vinyals_lines,
)
from fewtask_data.sources.glyphs import list_glyph_characters
from fewtask_data.sources.omniglot import OmniglotDecoder, fingerprint, list_characters

SMALL = ("images_background_small1",)


@pytest.fixture(scope="module")
def glyph_chars():
    return list_glyph_characters(alphabets=10, characters=6, drawers=4, seed=0)


# ----------------------------------------------------------------------------- real Omniglot


def test_full_release_counts(omniglot_dir):
    chars = list_characters(omniglot_dir)
    assert len(chars) == 1623
    assert len({c.alphabet for c in chars}) == 50
    assert sum(len(c.images) for c in chars) == 32460
    by_set = Counter(c.set for c in chars)
    assert by_set == {"images_background": 964, "images_evaluation": 659}
    assert all(len(c.images) == 20 for c in chars)


def test_decoder_resizes_inverts_rotates(omniglot_dir):
    chars = list_characters(omniglot_dir, SMALL)
    loc = chars[0].images[0][1]
    decode = pickle.loads(pickle.dumps(OmniglotDecoder(28)))
    img = decode((loc, 0))
    assert img.shape == (28, 28) and img.dtype == np.uint8
    assert img.max() == 255 and np.median(img) == 0  # bright strokes on black
    assert np.array_equal(decode((loc, 90)), np.rot90(img))
    assert decode.__class__(None)((loc, 0)).shape == (105, 105)


def test_extracted_folder_matches_zip(omniglot_dir, tmp_path):
    with zipfile.ZipFile(omniglot_dir / "images_background_small1.zip") as zf:
        members = [m for m in zf.namelist() if "/Balinese/character0" in m]
        zf.extractall(tmp_path, members)
    from_zip = [c for c in list_characters(omniglot_dir, SMALL) if c.alphabet == "Balinese" and c.name < "character10"]
    from_dir = list_characters(tmp_path, SMALL)
    assert [(c.key, [s for s, _ in c.images]) for c in from_dir] == [(c.key, [s for s, _ in c.images]) for c in from_zip]
    decode = OmniglotDecoder(28)
    for a, b in zip(from_zip[0].images[:3], from_dir[0].images[:3]):
        assert np.array_equal(decode((a[1], 0)), decode((b[1], 0)))
    assert fingerprint(tmp_path, SMALL) != fingerprint(omniglot_dir, SMALL)


def test_vinyals_split_reproduced_exactly(splits_dir):
    expected = {s: (splits_dir / "omniglot-vinyals" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert vinyals_lines() == expected
    assert vinyals_lines(splits_dir / "omniglot-vinyals") == expected
    trainval = (splits_dir / "omniglot-vinyals" / "trainval.txt").read_text().split()
    assert trainval == expected["train"] + expected["val"]


def test_vinyals_split_on_real_characters(omniglot_dir):
    assignment = assign_splits(list_characters(omniglot_dir), "vinyals")
    chars = {s: {c.key for c, _ in pairs} for s, pairs in assignment.items()}
    assert {s: len(v) for s, v in chars.items()} == {"train": 1028, "val": 172, "test": 423}
    assert {s: len(p) for s, p in assignment.items()} == {"train": 4112, "val": 688, "test": 1692}
    assert not (chars["train"] & chars["val"] or chars["train"] & chars["test"] or chars["val"] & chars["test"])
    check_hygiene(assignment, alphabet_disjoint=False)
    bases = base_families(assignment, rotations=True)
    assert {b.id for b in bases if b.alphabet == "Gurmukhi"} == {"Gurmukhi@train", "Gurmukhi@test"}


@pytest.mark.parametrize("mode", ["lake", "alphabets"])
def test_alphabet_disjoint_splits_on_real_characters(omniglot_dir, mode):
    assignment = assign_splits(list_characters(omniglot_dir), mode, seed=3)
    alphabets = {s: {c.alphabet for c, _ in pairs} for s, pairs in assignment.items()}
    names = list(alphabets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not alphabets[a] & alphabets[b], (a, b)
    assert sum(len(v) for v in alphabets.values()) == 50
    check_hygiene(assignment, alphabet_disjoint=True)
    if mode == "lake":
        assert (len(alphabets["train"]), len(alphabets["test"])) == (30, 20)
    else:
        assert [len(alphabets[s]) for s in ("train", "val", "test")] == [30, 10, 10]


def test_vinyals_needs_the_full_release(omniglot_dir):
    with pytest.raises(FewtaskError, match="Vinyals split names .* characters the source lacks"):
        assign_splits(list_characters(omniglot_dir, SMALL), "vinyals")


# ----------------------------------------------------------------------------- errors, any machine


def test_missing_and_broken_sources(tmp_path):
    with pytest.raises(FewtaskError, match="not a folder"):
        list_characters(tmp_path / "nope")
    with pytest.raises(FewtaskError, match="images_background.zip or an extracted"):
        list_characters(tmp_path)
    (tmp_path / "images_background.zip").write_bytes(b"not a zip")
    with pytest.raises(FewtaskError, match="not a readable zip"):
        list_characters(tmp_path, ("images_background",))


def test_vinyals_table_sizes():
    counts = {s: len(v) for s, v in vinyals_lines().items()}
    assert counts == {"train": 4112, "val": 688, "test": 1692}
    assert len(set(VINYALS["train"]) | set(VINYALS["val"]) | set(VINYALS["test"])) == 50


# ----------------------------------------------------------------------------- splits and families on glyphs


def test_alphabet_counts():
    assert alphabet_counts(50, (0.6, 0.2, 0.2)) == [30, 10, 10]
    assert alphabet_counts(3, (0.9, 0.05, 0.05)) == [1, 1, 1]
    assert sum(alphabet_counts(31, (0.6, 0.2, 0.2))) == 31
    with pytest.raises(FewtaskError, match="at least 3 alphabets"):
        alphabet_counts(2, (0.6, 0.2, 0.2))
    with pytest.raises(FewtaskError, match="three positive"):
        alphabet_counts(10, (1, 0, 1))


def test_hygiene_violation_detected(glyph_chars):
    pairs = [(c, 0) for c in glyph_chars[:3]]
    with pytest.raises(FewtaskError, match="split hygiene: class"):
        check_hygiene({"train": pairs, "test": pairs[:1]}, alphabet_disjoint=False)
    other = [c for c in glyph_chars if c.alphabet == glyph_chars[0].alphabet][3:4]
    with pytest.raises(FewtaskError, match="split hygiene: alphabet"):
        check_hygiene({"train": pairs, "test": [(other[0], 0)]}, alphabet_disjoint=True)


def test_glyph_splits_are_alphabet_disjoint(glyph_chars):
    for mode in ("lake", "alphabets"):
        assignment = assign_splits(glyph_chars, mode, seed=1)
        check_hygiene(assignment, alphabet_disjoint=True)
    with pytest.raises(FewtaskError, match="Vinyals"):
        assign_splits(glyph_chars, "vinyals")
    with pytest.raises(FewtaskError, match="unknown split"):
        assign_splits(glyph_chars, "random")


def test_augmented_family_plan(glyph_chars):
    assignment = assign_splits(glyph_chars, "alphabets", seed=0, rotations=True)
    bases = base_families(assignment, rotations=True)
    space = named_space("handwritten")
    plan = plan_families(bases, space=space, per_alphabet=3, seed=4, materialize=("test",))
    ids = [f["id"] for fams in plan.splits.values() for f in fams]
    assert len(ids) == len(set(ids)) == 3 * len(bases)
    class_ids = [c for c, _, _ in plan.classes]
    assert len(class_ids) == len(set(class_ids))
    written = set(class_ids)
    for split, fams in plan.splits.items():
        for fam in fams:
            assert set(fam["classes"]) <= written
            if split == "test":
                assert "augment" not in fam and fam["meta"]["materialized_augment"]["fixed"] is not None
            else:
                assert fam["augment"]["seed"] >= 0
    # Families of one alphabet share base classes (written once) but not their specs.
    train = plan.splits["train"]
    same = [f for f in train if f["meta"]["alphabet"] == train[0]["meta"]["alphabet"]]
    assert len(same) == 3 and same[0]["classes"] == same[1]["classes"]
    assert same[0]["augment"] != same[1]["augment"]
    # Same seed, same plan; other seed, other specs.
    again = plan_families(bases, space=space, per_alphabet=3, seed=4, materialize=("test",))
    assert again.splits == plan.splits
    assert plan_families(bases, space=space, per_alphabet=3, seed=5).splits["train"][0]["augment"] != train[0]["augment"]


def test_materialized_images_are_reproducible(glyph_chars):
    from fewtask_data.sources.glyphs import GlyphDecoder

    bases = base_families(assign_splits(glyph_chars, "alphabets", seed=0), rotations=False)
    space = named_space("handwritten")
    plan = plan_families(bases, space=space, per_alphabet=2, seed=0, materialize=("val", "test"))
    decode = pickle.loads(pickle.dumps(FamilyImageDecoder(GlyphDecoder(28), space.to_json())))
    materialized = [c for c in plan.classes if "base_class" in c[2]]
    _, items, _ = materialized[0]
    first = decode(items[0][1])
    assert np.array_equal(first, decode(items[0][1]))
    assert not np.array_equal(first, GlyphDecoder(28)(items[0][1][0]))
    plain = [c for c in plan.classes if "base_class" not in c[2]]
    _, items, _ = plain[0]
    assert np.array_equal(decode(items[0][1]), GlyphDecoder(28)(items[0][1][0]))


def test_plain_alphabet_families(glyph_chars):
    bases = base_families(assign_splits(glyph_chars, "lake"), rotations=False)
    plan = plan_families(bases, space=None, per_alphabet=0)
    assert all("augment" not in f for fams in plan.splits.values() for f in fams)
    assert len(plan.classes) == len(glyph_chars)
    with pytest.raises(FewtaskError, match=">= 0"):
        plan_families(bases, space=None, per_alphabet=-1)


# ----------------------------------------------------------------------------- end to end on real Omniglot


def build_cli(*args: str):
    from typer.testing import CliRunner

    from fewtask_data.cli import app

    return CliRunner().invoke(app, ["build", "omniglot-families", *args])


def test_real_omniglot_build_and_stream(omniglot_dir, tmp_path):
    import json

    from fewtask_data import EpisodeShape, FamilyStream, verify

    out = tmp_path / "omni"
    result = build_cli(
        "--root", str(omniglot_dir), "--sets", "images_background_small1", "--out", str(out),
        "--families-per-alphabet", "2", "--workers", "2",
    )
    assert result.exit_code == 0, result.output
    assert "2720 images" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "omniglot" and manifest["synthetic"] is False
    assert all(c["count"] == 20 for c in manifest["classes"]) and len(manifest["classes"]) == 136
    alphabets = {s: {f["meta"]["alphabet"] for f in body["families"]} for s, body in manifest["splits"].items()}
    assert [len(alphabets[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert not (alphabets["train"] & alphabets["test"])
    assert verify(out) == []
    shape = EpisodeShape(ways=5, shots=1, queries=5, val=5, meta_tasks=3, goal_tasks=1)
    for split in ("train", "test"):
        ep = FamilyStream(out, split, shape, seed=1).take(1)[0]
        assert ep.meta_x.shape == (3, 30, 1, 28, 28) and ep.goal_x.shape == (1, 30, 1, 28, 28)
        assert ep.identity["family"].split("~aug")[0] in alphabets[split]


def test_real_omniglot_vinyals_on_subset_fails_clearly(omniglot_dir, tmp_path):
    result = build_cli("--root", str(omniglot_dir), "--sets", "images_background_small1", "--split", "vinyals",
                       "--out", str(tmp_path / "v"))
    assert result.exit_code != 0
    assert "characters the source lacks" in str(result.exception)


# ----------------------------------------------------------------------------- extracted-folder layout, any machine


def fake_omniglot(root, alphabets=("Alpha", "Beta", "Gamma"), characters=5, drawers=4, corrupt=()):
    """An extracted images_background/ folder of black-on-white 105x105 mode-1 PNGs."""
    from PIL import Image, ImageDraw

    n = 0
    for a, alphabet in enumerate(alphabets):
        for c in range(1, characters + 1):
            n += 1
            folder = root / "images_background" / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for d in range(1, drawers + 1):
                path = folder / f"{n:04d}_{d:02d}.png"
                if (alphabet, c, d) in corrupt:
                    path.write_bytes(b"\x89PNG broken")
                    continue
                img = Image.new("1", (105, 105), 1)
                ImageDraw.Draw(img).line([(20 + 5 * a, 10 * c), (80, 20 + 7 * d)], fill=0, width=6)
                img.save(path)
    return root


def test_folder_source_corrupt_image_reported_and_strict(tmp_path):
    import json

    root = fake_omniglot(tmp_path / "src", corrupt={("Beta", 2, 3)})
    chars = list_characters(root, ("images_background",))
    assert len(chars) == 15 and all(len(c.images) == 4 for c in chars)
    img = OmniglotDecoder(28)((chars[0].images[0][1], 0))
    assert img.shape == (28, 28) and img.max() > 200 and img[0, 0] == 0

    out = tmp_path / "out"
    args = ["--root", str(root), "--sets", "images_background", "--families-per-alphabet", "1", "--workers", "1"]
    result = build_cli(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "1 failed" in result.output and "Beta~character02/0007_03" in result.output
    report = json.loads((out / "build_report.json").read_text())
    assert report["failed_count"] == 1 and report["failed"][0]["sample"] == "0007_03"
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {c["id"]: c["count"] for c in manifest["classes"]}
    assert counts["Beta~character02"] == 3 and sum(counts.values()) == 59

    strict = build_cli(*args, "--out", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code != 0 and "0007_03" in str(strict.exception)
    assert not (tmp_path / "strict" / "manifest.json").exists()


def test_separate_family_count_for_evaluation_splits(glyph_chars):
    bases = base_families(assign_splits(glyph_chars, "alphabets", seed=0), rotations=False)
    space = named_space("handwritten")
    plan = plan_families(bases, space=space, per_alphabet=3, eval_per_alphabet=1, seed=0)
    per_split = {s: Counter(f["meta"]["alphabet"] for f in fams) for s, fams in plan.splits.items()}
    assert set(per_split["train"].values()) == {3}
    assert set(per_split["val"].values()) == set(per_split["test"].values()) == {1}
    plain_eval = plan_families(bases, space=space, per_alphabet=2, eval_per_alphabet=0, seed=0)
    assert all("augment" in f for f in plain_eval.splits["train"])
    assert all("augment" not in f for s in ("val", "test") for f in plain_eval.splits[s])
