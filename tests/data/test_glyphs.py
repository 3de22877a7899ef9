"""The embedded synthetic glyph source (fewtask_data.sources.glyphs)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fewtask_data import FewtaskError
from fewtask_data.sources.glyphs import GlyphDecoder, SCRIPTS, describe, fingerprint, list_glyph_characters
from fewtask_data.sources.omniglot import BACKGROUND, EVALUATION


@pytest.fixture(scope="module")
def chars():
    return list_glyph_characters(alphabets=None, characters=6, drawers=5, seed=0)


def test_omniglot_layout_many_scripts(chars):
    alphabets = {c.alphabet for c in chars}
    assert len(alphabets) == len(SCRIPTS) >= 25
    assert {c.set for c in chars} == {BACKGROUND, EVALUATION}
    for c in chars:
        assert len(c.images) == 5
        assert c.name.startswith("character")
    per_alphabet = {a: sum(c.alphabet == a for c in chars) for a in alphabets}
    assert set(per_alphabet.values()) == {6}
    sample_ids = [sid for c in chars for sid, _ in c.images]
    assert len(sample_ids) == len(set(sample_ids))
    assert all("." not in sid and "/" not in sid for sid in sample_ids)


def test_listing_is_deterministic_and_seeded():
    a = list_glyph_characters(alphabets=3, characters=3, drawers=4, seed=1)
    b = list_glyph_characters(alphabets=3, characters=3, drawers=4, seed=1)
    c = list_glyph_characters(alphabets=3, characters=3, drawers=4, seed=2)
    assert a == b
    assert a != c


def test_images_bright_on_black_and_drawers_differ(chars):
    decode = GlyphDecoder(28)
    images = [decode((loc, 0)) for _, loc in chars[0].images]
    for img in images:
        assert img.shape == (28, 28) and img.dtype == np.uint8
        assert img.max() > 200
        assert img[0].mean() < 30 and img[:, 0].mean() < 30  # dark border
    assert len({img.tobytes() for img in images}) == len(images)
    other = decode((chars[1].images[0][1], 0))
    assert not np.array_equal(other, images[0])


def test_decoder_picklable_rotation_and_size(chars):
    decode = pickle.loads(pickle.dumps(GlyphDecoder(84)))
    loc = chars[3].images[0][1]
    img = decode((loc, 0))
    assert img.shape == (84, 84)
    assert np.array_equal(decode((loc, 90)), np.rot90(img))
    assert np.array_equal(decode((loc, 0)), img)  # deterministic


def test_labelled_synthetic():
    info = describe()
    assert info["synthetic"] is True and "SYNTHETIC" in info["note"]
    assert "DejaVuSans.ttf" in info["fonts"]
    assert fingerprint(0) == fingerprint(0) != fingerprint(1)


def test_bad_counts_rejected():
    with pytest.raises(FewtaskError, match=">= 1"):
        list_glyph_characters(characters=0)


# ----------------------------------------------------------------------------- end to end: CLI build -> stream

import json  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from fewtask_data import EpisodeShape  # noqa: E402

SMALL_GLYPHS = ["--glyph-alphabets", "6", "--glyph-characters", "6", "--glyph-drawers", "6", "--workers", "1"]
ONE_SHOT = EpisodeShape(ways=5, shots=1, queries=1, val=2, meta_tasks=2, goal_tasks=1)


def cli(*args: str):
    from fewtask_data.cli import app

    return CliRunner().invoke(app, ["build", "omniglot-families", *args])


@pytest.fixture(scope="module")
def glyph_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("glyphs") / "out"
    result = cli("--out", str(out), "--families-per-alphabet", "2", *SMALL_GLYPHS)
    assert result.exit_code == 0, result.output
    return out


def test_cli_build_is_labelled_synthetic(glyph_build):
    manifest = json.loads((glyph_build / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["dataset"] == "glyphs-synthetic"
    assert "SYNTHETIC" in manifest["source"]["note"]
    assert manifest["augment_space"]["rotation"] == [-30.0, 30.0]
    fams = [f for s in manifest["splits"].values() for f in s["families"]]
    assert len(fams) == 12 and all("fixed" in f["augment"] for f in fams)
    assert sum(c["count"] for c in manifest["classes"]) == 6 * 6 * 6


def test_stream_five_way_one_shot_from_glyph_build(glyph_build):
    from fewtask_data import FamilyStream

    stream = FamilyStream(glyph_build, "train", ONE_SHOT, seed=0, episodes_per_visit=2)
    episodes = stream.take(4)
    again = FamilyStream(glyph_build, "train", ONE_SHOT, seed=0, episodes_per_visit=2).take(4)
    for ep, twin in zip(episodes, again):
        assert ep.meta_x.shape == (2, 10, 1, 28, 28) and ep.goal_x.shape == (1, 15, 1, 28, 28)
        assert sorted(ep.meta_y[0, :5].tolist()) == [0, 1, 2, 3, 4]
        assert torch_equal(ep.meta_x, twin.meta_x)  # augmentation replays exactly
    assert torch_equal(stream.replay(episodes[0].identity).meta_x, episodes[0].meta_x)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_rebuild_gives_identical_bytes(glyph_build, tmp_path):
    out = tmp_path / "again"
    assert cli("--out", str(out), "--families-per-alphabet", "2", *SMALL_GLYPHS).exit_code == 0
    for name in ("manifest.json", "index.json", "shard-000000.tar"):
        assert (out / name).read_bytes() == (glyph_build / name).read_bytes()


def test_materialized_eval_families_need_no_augmentation(tmp_path):
    from fewtask_data import FamilyStream

    out = tmp_path / "mat"
    result = cli("--out", str(out), "--families-per-alphabet", "2", "--materialize-eval", *SMALL_GLYPHS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["materialized_splits"] == ["val", "test"]
    test_fams = manifest["splits"]["test"]["families"]
    assert all("augment" not in f and "materialized_augment" in f["meta"] for f in test_fams)
    assert "augment" in manifest["splits"]["train"]["families"][0]

    def refuse(space, augment):
        raise AssertionError("evaluation families must not be augmented in the stream")

    episodes = FamilyStream(out, "test", ONE_SHOT, seed=0, transform_factory=refuse).take(2)
    assert episodes[0].meta_x.shape == (2, 10, 1, 28, 28)
    # The two families of one alphabet hold differently augmented copies of the same images.
    first, second = test_fams[0], test_fams[1]
    assert first["meta"]["alphabet"] == second["meta"]["alphabet"]
    assert first["classes"] != second["classes"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "vinyals"], "Vinyals split is defined on real Omniglot"),
        (["--space", "nope"], "no augmentation space named"),
        (["--fixed-dims", "3-1"], "LOW <= HIGH"),
        (["--alphabet-split", "1,2"], "three positive numbers"),
        (["--families-per-alphabet", "-1"], ">= 0"),
        (["--image-size", "4"], ">= 8"),
        (["--root", "/nonexistent/omniglot"], "not a folder"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path, capsys, args, message):
    import sys

    from fewtask_data.cli import app
    from fewtask_data.cli.common import run

    argv = ["fewtask-data", "build", "omniglot-families", "--out", str(tmp_path / "x"), *SMALL_GLYPHS, *args]
    old, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as exit_info:
            run(app)
    finally:
        sys.argv = old
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_cli_bad_space_file(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"rotation": [10, -10]}))
    result = cli("--out", str(tmp_path / "x"), "--space", str(space), *SMALL_GLYPHS)
    assert result.exit_code != 0
    assert "low <= high" in str(result.exception)


@pytest.mark.slow
def test_killed_build_resumes_to_identical_bytes(tmp_path):
    """SIGKILL a real build process once some shards exist; the rerun must give the bytes
    of an uninterrupted build."""
    import signal
    import subprocess
    import sys
    import time

    args = ["build", "omniglot-families", "--families-per-alphabet", "2", "--glyph-alphabets", "6",
            "--glyph-characters", "10", "--glyph-drawers", "20", "--workers", "1", "--shard-size", "50"]
    command = [sys.executable, "-c", "from fewtask_data.cli import main; main()", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "shard-000003.tar").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the build finished before it could be killed"
    subprocess.run([*command, "--out", str(killed)], check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run([*command, "--out", str(clean)], check=True, capture_output=True)
    names = sorted(p.name for p in clean.iterdir())
    assert sorted(p.name for p in killed.iterdir()) == names
    for name in names:
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
