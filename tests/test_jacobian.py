"""Jacobian determinant of displacement fields: known fields, and agreement with mask warping."""

import numpy as np
import pytest

from brainlossnet.jacobian import jacobian_determinant
from brainlossnet.registration import warp
from brainlossnet.volumetry import volume_ml


def _grid(shape):
    return np.indices(shape, dtype=np.float64)


def test_zero_field_and_translation_have_determinant_one():
    assert np.all(jacobian_determinant(np.zeros((3, 5, 6, 7))) == 1.0)
    shift = np.broadcast_to(np.array([1.5, -2.0, 0.3]).reshape(3, 1, 1, 1), (3, 5, 6, 7))
    np.testing.assert_allclose(jacobian_determinant(shift), 1.0, atol=1e-6)


def test_linear_field_gives_det_of_identity_plus_matrix_everywhere():
    matrix = np.array([[0.10, 0.02, 0.00], [-0.03, -0.05, 0.04], [0.01, 0.00, 0.08]])
    grid = _grid((6, 7, 8))
    field = np.einsum("ij,j...->i...", matrix, grid)
    det = jacobian_determinant(field)
    assert det.shape == (6, 7, 8) and det.dtype == np.float32
    np.testing.assert_allclose(det, np.linalg.det(np.eye(3) + matrix), rtol=1e-5)


def test_folding_gives_a_negative_determinant():
    grid = _grid((5, 5, 5))
    field = np.zeros((3, 5, 5, 5))
    field[0] = -2.0 * grid[0]  # x + u = -x: mirrored
    assert np.all(jacobian_determinant(field) < 0)


def test_volume_of_a_warped_mask_matches_the_mean_inverse_determinant():
    # pull-back convention: warped(x) = mask(x + u(x)); the map x -> x + u scales by s about
    # the centre, so the warped mask is smaller by s^3 and 1/det = s^-3 says the same.
    shape, s = (40, 40, 40), 1.03
    grid = _grid(shape)
    centre = (np.array(shape) - 1).reshape(3, 1, 1, 1) / 2
    field = (s - 1.0) * (grid - centre)
    radius = np.sqrt(np.sum((grid - centre) ** 2, axis=0))
    mask = (radius < 12).astype(np.float32)
    ratio = volume_ml(warp(mask, field), (1, 1, 1)) / volume_ml(mask, (1, 1, 1))
    det = jacobian_determinant(field)
    assert ratio == pytest.approx(s ** -3, rel=0.01)
    assert float(np.mean(1.0 / det[mask > 0])) == pytest.approx(ratio, rel=0.01)


def test_an_axis_of_length_one_has_zero_derivative():
    field = np.zeros((3, 4, 4, 1))
    field[0] = 0.1 * _grid((4, 4, 1))[0]
    np.testing.assert_allclose(jacobian_determinant(field), 1.1, rtol=1e-6)


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(3, X, Y, Z\)"):
        jacobian_determinant(np.zeros((2, 4, 4, 4)))


def test_jacobian_integration_measures_the_volume_a_mask_takes_in_the_other_space():
    """The backward field u(y) = -0.01 (y - c) maps a ball of radius 8 onto one of radius 7.92."""
    shape, centre = (32, 32, 32), np.array([15.5, 15.5, 15.5]).reshape(3, 1, 1, 1)
    grid = np.indices(shape, dtype=np.float64)
    ball = (((grid - centre) ** 2).sum(axis=0) <= 8.0**2).astype(np.float32)
    determinant = jacobian_determinant(-0.01 * (grid - centre))
    assert np.sum(ball * determinant, dtype=np.float64) / ball.sum() == pytest.approx(0.99**3, rel=1e-6)
