"""SyN + Jacobian integration recovers a known isotropic scaling and gives ~0 for identical images."""

from __future__ import annotations

import numpy as np
import pytest

from brainlossnet import jacobian_reference

N = 32
FAST = jacobian_reference.SynParameters(metric_radius_voxels=2, iterations=(20, 10))
"""Two levels and few iterations: enough for a smooth 32^3 blob, fast for a test."""


def _blob(scale: float) -> np.ndarray:
    """A textured ellipsoid with a 'ventricle', scaled about the grid centre by ``scale``."""
    grid = np.stack(np.meshgrid(*[np.arange(N) - (N - 1) / 2] * 3, indexing="ij")) / scale
    radius = np.sqrt(((grid / np.array([1.0, 1.15, 0.95])[:, None, None, None]) ** 2).sum(0))
    head = 1 / (1 + np.exp((radius - 10) / 0.7))
    ventricle_radius = np.sqrt(((grid - np.array([2.0, 1.0, 0.5])[:, None, None, None]) ** 2).sum(0))
    ventricle = 1 / (1 + np.exp((ventricle_radius - 3.5) / 0.7))
    texture = 0.25 * np.sin(grid[0] / 1.7) * np.cos(grid[1] / 2.3) * np.sin(grid[2] / 2.0)
    return (head * (1 + texture) - 0.7 * ventricle).astype(np.float32)


def test_isotropic_scaling_is_recovered_in_both_directions():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    bl, fu = _blob(1.0), _blob(0.98)  # FU shrunk by 2 % per axis: volume -5.88 %
    truth_pct = 100 * (0.98**3 - 1)
    change = jacobian_reference.jacobian_volume_change(
        bl, fu, (bl > 0.5).astype(np.float32), (fu > 0.5).astype(np.float32), affine, parameters=FAST
    )
    for estimate in (change.dbpv_fw, change.dbpv_bw, change.dbpv):
        assert estimate == pytest.approx(truth_pct, abs=0.6)
    assert change.dbpv == pytest.approx(0.5 * (change.dbpv_fw + change.dbpv_bw))
    assert change.bpv_fu_from_bl_ml < change.bpv_bl_ml and change.bpv_bl_from_fu_ml > change.bpv_fu_ml


def test_identical_images_give_no_change_and_voxel_size_scales_volumes():
    image = _blob(1.0)
    mask = (image > 0.5).astype(np.float32)
    affine = np.diag([1.2, 1.2, 1.2, 1.0])
    quick = jacobian_reference.SynParameters(metric_radius_voxels=2, iterations=(5, 5))
    change = jacobian_reference.jacobian_volume_change(image, image, mask, mask, affine, parameters=quick)
    assert abs(change.dbpv_fw) < 0.01 and abs(change.dbpv_bw) < 0.01
    assert change.bpv_bl_ml == pytest.approx(mask.sum() * 1.2**3 / 1000)


def test_mismatched_shapes_and_empty_masks_are_refused():
    image = _blob(1.0)
    with pytest.raises(ValueError, match="shape"):
        jacobian_reference.jacobian_volume_change(image, image[:-1], image, image, np.eye(4))
    with pytest.raises(ValueError, match="empty"):
        jacobian_reference.jacobian_volume_change(image, image, np.zeros_like(image), image, np.eye(4))
