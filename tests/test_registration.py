"""Contracts of the registration API: packaged model, displacement prediction, mask warping."""

import re

import numpy as np
import pytest
import torch

from brainlossnet import registration
from brainlossnet.models.registration_unet import make_warp, normalize_intensity

torch.set_num_threads(1)


def test_identity_warp_is_exact():
    volume = np.random.default_rng(0).random((16, 20, 24)).astype(np.float32)
    warped = registration.warp(volume, np.zeros((3, *volume.shape), dtype=np.float32))
    assert warped.dtype == np.float32
    np.testing.assert_array_equal(warped, volume)


def test_warping_ones_with_a_zero_field_sums_to_the_voxel_count():
    ones = np.ones((17, 19, 23), dtype=np.float32)
    assert registration.warp(ones, np.zeros((3, 17, 19, 23))).sum(dtype=np.float64) == 17 * 19 * 23


def test_integer_shift_moves_a_box_in_the_pull_back_convention():
    box = np.zeros((20, 20, 20), dtype=np.float32)
    box[8:12, 5:10, 10:14] = 1.0
    displacement = np.zeros((3, 20, 20, 20), dtype=np.float32)
    displacement[0], displacement[1], displacement[2] = 3.0, -2.0, 0.0  # warped(x) = box(x + u)
    expected = np.zeros_like(box)
    expected[5:9, 7:12, 10:14] = 1.0
    np.testing.assert_array_equal(registration.warp(box, displacement), expected)


def test_half_voxel_shift_splits_boundary_voxels_and_keeps_the_volume():
    box = np.zeros((20, 20, 20), dtype=np.float32)
    box[8:12, 8:12, 8:12] = 1.0
    displacement = np.zeros((3, 20, 20, 20))
    displacement[1] = 0.5
    warped = registration.warp(box, displacement)
    assert warped.sum() == pytest.approx(64.0)
    np.testing.assert_allclose(warped[10, [7, 11], 10], [0.5, 0.5])


def test_warp_matches_the_training_interpolation():
    rng = np.random.default_rng(3)
    volume = rng.random((16, 16, 16)).astype(np.float32)
    displacement = (rng.standard_normal((3, 16, 16, 16)) * 2.0).astype(np.float32)
    expected = make_warp(padding_mode="zeros")(torch.from_numpy(volume)[None, None], torch.from_numpy(displacement)[None])
    np.testing.assert_allclose(registration.warp(volume, displacement), expected[0, 0].numpy(), atol=1e-5)


def test_warp_rejects_a_field_of_another_shape():
    with pytest.raises(ValueError, match="does not match"):
        registration.warp(np.zeros((8, 8, 8)), np.zeros((3, 8, 8, 4)))


def test_normalize_intensity_maps_the_robust_maximum_to_one_and_clips_negatives():
    image = np.linspace(-10.0, 1000.0, 4096, dtype=np.float32).reshape(16, 16, 16)
    normalised = normalize_intensity(image)
    positive = image[image > 0]
    assert np.percentile(normalised[image > 0], 99.5) == pytest.approx(1.0, rel=1e-5)
    assert normalised.min() == 0.0
    np.testing.assert_allclose(normalised[image > 0], positive / np.percentile(positive, 99.5), rtol=1e-5)
    np.testing.assert_array_equal(normalize_intensity(np.zeros((4, 4, 4))), np.zeros((4, 4, 4)))


def test_packaged_model_loads_and_predicts_a_float32_field():
    assert re.fullmatch(r"blnet-reg-\d+\.\d+\.\d+\+[0-9a-f]{12}", registration.MODEL_VERSION)
    model = registration.load_registration_model("cpu")
    assert not model.training
    rng = np.random.default_rng(1)
    fixed = rng.random((32, 32, 48)).astype(np.float32) * 300.0
    moving = np.roll(fixed, 1, axis=0)
    field = registration.predict_displacement(model, moving, fixed)
    assert field.shape == (3, 32, 32, 48)
    assert field.dtype == np.float32
    assert np.isfinite(field).all()
    with pytest.raises(ValueError, match="one shape"):
        registration.predict_displacement(model, moving, fixed[:, :, :32])
