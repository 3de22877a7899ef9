"""Shards: reproducible bytes, dot-free sorted keys, class ranges, checksum checks, verify."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import webdataset as wds
from typer.testing import CliRunner

import toydata
from fewtask_data.cli import app
from fewtask_data import FewtaskError, decode_image, encode_image, read_shard, verify
from fewtask_data.formats.shards import iter_shard_bytes, sample_key, shard_bytes

SAMPLES = [("a", "x1", b"one"), ("a", "x0", b"two"), ("b", "y", b"three")]


def test_shard_bytes_are_reproducible_and_normalized():
    data, entry = shard_bytes(SAMPLES, "png")
    assert data == shard_bytes(SAMPLES, "png")[0]
    assert entry["count"] == 3 and [r[:3] for r in entry["classes"]] == [["a", 0, 2], ["b", 2, 3]]
    assert entry["classes"][0][3] == 0 and entry["classes"][0][4] == entry["classes"][1][3] == 4 * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert all("." not in n.split(".", 1)[0] for n in names)


def test_non_contiguous_class_is_refused():
    with pytest.raises(FewtaskError, match="not contiguous"):
        shard_bytes([("a", "1", b""), ("b", "2", b""), ("a", "3", b"")], "png")


def test_keys_reject_dots():
    with pytest.raises(FewtaskError, match="not a valid id"):
        sample_key(0, "a.b", "c")


def test_plain_webdataset_reads_our_shards(tmp_path):
    data, _ = shard_bytes(SAMPLES, "png")
    (tmp_path / "s.tar").write_bytes(data)
    got = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False).decode())
    assert [g["json"]["class"] for g in got] == ["a", "a", "b"]
    assert got[2]["png"] == b"three"


@pytest.mark.parametrize(
    "img", [np.arange(64, dtype=np.uint8).reshape(8, 8), np.arange(60, dtype=np.uint8).reshape(4, 5, 3)]
)
def test_png_round_trip_is_lossless(img):
    assert np.array_equal(decode_image(encode_image(img, "png")), img)


def test_rgb_channel_order_survives_jpeg():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    back = decode_image(encode_image(red, "jpeg", 90))
    assert back[..., 0].mean() > 240 and back[..., 2].mean() < 15


def test_jpeg_quality_changes_size():
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    assert len(encode_image(img, "jpeg", 30)) < len(encode_image(img, "jpeg", 95))
    assert decode_image(encode_image(img, "jpeg", 90)).shape == (32, 32, 3)


def test_read_shard_checks_checksum(tmp_path):
    data, entry = shard_bytes(SAMPLES, "png")
    path = tmp_path / "s.tar"
    path.write_bytes(data)
    assert [s[1:3] for s in read_shard(str(path), entry["sha256"])] == [("a", "x1"), ("a", "x0"), ("b", "y")]
    assert [s[2] for s in read_shard(str(path), entry["sha256"], keep=lambda p: p == 2)] == ["y"]
    path.write_bytes(data[:1500])
    with pytest.raises(FewtaskError, match="s.tar does not match its index checksum"):
        list(read_shard(str(path), entry["sha256"]))
    with pytest.raises(FewtaskError, match="s.tar is corrupt"):
        list(read_shard(str(path), count=3))  # without a checksum, the sample count catches the cut


@pytest.fixture
def built(tmp_path):
    toydata.build_toy(tmp_path)
    return tmp_path


def test_verify_passes_on_a_clean_build(built):
    assert verify(built) == []
    result = CliRunner().invoke(app, ["verify", str(built)])
    assert result.exit_code == 0 and "ok:" in result.output


def test_verify_catches_truncated_and_altered_shards(built):
    first, second = sorted(built.glob("shard-*.tar"))[:2]
    first.write_bytes(first.read_bytes()[:-2048])
    data = bytearray(second.read_bytes())
    data[700] ^= 1
    second.write_bytes(bytes(data))
    problems = verify(built)
    assert [p.split(":")[0] for p in problems] == [first.name, second.name]
    result = CliRunner().invoke(app, ["verify", str(built)])
    assert result.exit_code != 0 and first.name in result.output


def test_verify_catches_an_altered_index(built):
    index = built / "index.json"
    index.write_text(index.read_text().replace('"count": 25', '"count": 24', 1))
    assert any("index.json: checksum" in p for p in verify(built))


def test_long_keys_use_gnu_long_names(tmp_path):
    long_cls, long_sample = "c" * 90, "s" * 40
    data, _ = shard_bytes([(long_cls, long_sample, b"img"), ("b", "y", b"x" * 700)], "png")
    (tmp_path / "s.tar").write_bytes(data)
    with tarfile.open(tmp_path / "s.tar") as tar:
        names = tar.getnames()
        assert tar.extractfile(names[3]).read() == b"x" * 700
    assert names[1] == f"000000_{long_cls}_{long_sample}.png"
    assert [(c, s) for _, c, s, _ in read_shard(str(tmp_path / "s.tar"), count=2)] == [(long_cls, long_sample), ("b", "y")]
    got = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert got[0]["png"] == b"img"


def test_corrupt_header_is_caught_without_a_checksum(tmp_path):
    data = bytearray(shard_bytes(SAMPLES, "png")[0])
    data[1024 + 10] ^= 1  # inside the second member's name
    with pytest.raises(FewtaskError, match="bad tar header checksum"):
        list(iter_shard_bytes(bytes(data), "s.tar"))
