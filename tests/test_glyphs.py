"""The embedded synthetic glyph source (fewtask_data.sources.glyphs)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fewtask_data.errors import FewtaskError
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
