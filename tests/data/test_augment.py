"""Augmentation space, family-fixed vs per-image-random dimensions (fewtask_data.augment)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fewtask_data import AugmentSpace, FewtaskError, family_transform, named_space, sample_family_augment
from fewtask_data.augment.space import DIMENSIONS, image_rng, validate_family_augment

SPACE = named_space("handwritten")


def cross(size: int = 28) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[6:22, 13:15] = 255
    img[13:15, 6:22] = 255
    img[8:11, 18:21] = 200
    return img


def drawn(transform, image, seed):
    record: list = []
    out = transform(image, np.random.default_rng(seed), record)
    return out, {r["transform"]: r for r in record}


def test_space_has_required_dimensions():
    required = {"rotation", "shear", "scale", "translate_x", "translate_y", "elastic", "stroke", "blur"}
    assert required <= set(DIMENSIONS)
    assert required <= set(SPACE.dims)
    assert AugmentSpace.from_json(SPACE.to_json()) == SPACE


def test_fixed_dimensions_shared_exactly_random_ones_vary():
    augment = {"fixed": {"rotation": 17.25, "stroke": 0.75, "elastic": 0.02}, "seed": 5}
    t = family_transform(SPACE.to_json(), augment)
    assert t.random_dims == ["blur", "scale", "shear", "translate_x", "translate_y"]
    params = [drawn(t, cross(), seed)[1] for seed in range(12)]
    assert {p["Affine"]["rotate"] for p in params} == {17.25}
    assert {p["StrokeThickness"]["radius"] for p in params} == {0.75}
    assert {p["ElasticDistortion"]["strength"] for p in params} == {0.02}
    # Random dimensions: the affine matrix (shear/scale/translation) and blur differ per image.
    assert len({str(p["Affine"]["matrix"]) for p in params}) == 12
    assert len({str(p["GaussianBlur"]["kernel"]) for p in params}) > 1


def test_fully_fixed_affine_gives_identical_matrices():
    fixed = {"rotation": -10.0, "shear": 5.0, "scale": 1.1, "translate_x": 0.05, "translate_y": -0.05}
    t = family_transform(SPACE.to_json(), {"fixed": fixed, "seed": 1})
    matrices = {str(drawn(t, cross(), s)[1]["Affine"]["matrix"]) for s in range(6)}
    assert len(matrices) == 1


def test_families_differ_and_rng_determinism():
    rng = np.random.default_rng(0)
    families = [sample_family_augment(SPACE, rng, (2, 4)) for _ in range(20)]
    assert len({str(f["fixed"]) for f in families}) == 20
    assert all(2 <= len(f["fixed"]) <= 4 for f in families)
    a = family_transform(SPACE.to_json(), families[0])
    b = family_transform(SPACE.to_json(), families[1])
    img = cross()
    assert np.array_equal(a(img, np.random.default_rng(3)), a(img, np.random.default_rng(3)))
    assert not np.array_equal(a(img, np.random.default_rng(3)), b(img, np.random.default_rng(3)))
    assert not np.array_equal(a(img, np.random.default_rng(3)), a(img, np.random.default_rng(4)))


def test_sampling_is_reproducible_from_the_seed():
    one = [sample_family_augment(SPACE, np.random.default_rng(7)) for _ in range(2)]
    assert one[0] == one[1]
    assert validate_family_augment(SPACE, one[0]) == one[0]


def test_pickled_transform_gives_same_images():
    t = family_transform(SPACE.to_json(), {"fixed": {"blur": 0.5}, "seed": 2})
    img = cross()
    expected = t(img, np.random.default_rng(9))
    clone = pickle.loads(pickle.dumps(t))
    assert np.array_equal(clone(img, np.random.default_rng(9)), expected)


def test_image_rng_depends_on_seed_and_sample():
    draw = lambda seed, sample: image_rng(seed, sample).integers(1 << 30)  # noqa: E731
    assert draw(1, "a") == draw(1, "a")
    assert draw(1, "a") != draw(2, "a")
    assert draw(1, "a") != draw(1, "b")


def test_stroke_thickens_and_thins():
    img = cross()
    thick = family_transform({"stroke": [-2, 2]}, {"fixed": {"stroke": 1.0}, "seed": 0})(img, np.random.default_rng(0))
    thin = family_transform({"stroke": [-2, 2]}, {"fixed": {"stroke": -1.0}, "seed": 0})(img, np.random.default_rng(0))
    assert (thick > 0).sum() > (img > 0).sum() > (thin > 0).sum()


def test_identity_values_leave_the_image_alone():
    space = {"rotation": [0, 0], "shear": [0, 0], "scale": [1, 1], "elastic": [0, 0], "stroke": [0, 0]}
    t = family_transform(space, {"fixed": {}, "seed": 0})
    img = cross()
    assert np.array_equal(t(img, np.random.default_rng(0)), img)


def test_shapes_and_dtype_kept_for_rgb_and_84px():
    t = family_transform(SPACE.to_json(), {"fixed": {"rotation": 3.0}, "seed": 0})
    rgb = np.random.default_rng(0).integers(0, 256, (84, 84, 3), dtype=np.uint8)
    out = t(rgb, np.random.default_rng(1))
    assert out.shape == rgb.shape and out.dtype == np.uint8


@pytest.mark.parametrize(
    "space, message",
    [
        ({"rotation": [20, -20]}, "low <= high"),
        ({"rotation": [-400, 10]}, "allowed"),
        ({"blur": [0, 1]}, "allowed"),
        ({"wobble": [0, 1]}, "unknown dimension 'wobble'"),
        ({"scale": [1]}, "[low, high]"),
        ({"scale": ["a", 2]}, "[low, high]"),
        ({}, "non-empty"),
        ({"shear": [0, float("nan")]}, "finite"),
    ],
)
def test_invalid_spaces_fail_clearly(space, message):
    with pytest.raises(FewtaskError, match="augmentation space") as err:
        AugmentSpace.from_json(space)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "augment, message",
    [
        ({"fixed": {"rotation": 90.0}, "seed": 0}, "outside the space range"),
        ({"fixed": {"elastic": 0.01}, "seed": 0}, "not in the space"),
        ({"fixed": {}, "seed": -1}, "seed"),
        ({"seed": 3}, "fixed"),
    ],
)
def test_invalid_family_augments_fail_clearly(augment, message):
    with pytest.raises(FewtaskError, match=message):
        family_transform({"rotation": [-30, 30]}, augment)


def test_non_uint8_images_rejected():
    t = family_transform({"rotation": [-5, 5]}, {"fixed": {}, "seed": 0})
    with pytest.raises(FewtaskError, match="uint8"):
        t(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def test_sampled_values_stay_inside_ranges_with_many_decimals():
    space = AugmentSpace.from_json({"elastic": [0.012345, 0.012346], "rotation": [-0.00001, 0.00001]})
    rng = np.random.default_rng(0)
    for _ in range(50):
        augment = sample_family_augment(space, rng, (2, 2))
        assert validate_family_augment(space, augment) == augment
