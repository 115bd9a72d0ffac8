"""ANTs rigid registration, expressed as RAS world matrices."""

import numpy as np
import pytest
import scipy.ndimage

from brainlossnet import geometry, rigid
from brainlossnet.rigid import register_rigid, register_rigid_both_ways


def smooth_random_head(shape=(48, 56, 48), seed=0) -> np.ndarray:
    """An asymmetric smooth blob with internal texture, so that rotation is observable."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    ellipsoid = (grid[0] / 0.7) ** 2 + (grid[1] / 0.8) ** 2 + (grid[2] / 0.65) ** 2 < 1
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return (ellipsoid * (100 + 400 * texture)).astype(np.float32) + 10 * ellipsoid * (grid[0] > 0.2)


def test_register_rigid_recovers_a_known_rotation_and_translation():
    image = smooth_random_head()
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-35, -41, -35]
    angle = np.deg2rad(4.0)
    truth = np.eye(4)  # maps fixed (moved copy) points to moving (original) points
    truth[:3, :3] = [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    truth[:3, 3] = [2.0, -1.5, 1.0]
    moved = geometry.resample(image, affine, image.shape, affine, world_transform=truth, order=3)
    estimate = register_rigid(moved, affine, image, affine, seed=1)
    np.testing.assert_allclose(estimate[:3, :3], truth[:3, :3], atol=0.01)
    np.testing.assert_allclose(estimate[:3, 3], truth[:3, 3], atol=0.3)


def test_every_seed_is_reproducible_including_0():
    """antsRegistration seeds from the clock when given --random-seed 0; register_rigid must not."""
    image, affine = smooth_random_head(), np.diag([1.0, 1.0, 1.0, 1.0])
    moved = np.roll(image, 1, axis=0)
    for seed in (0, 3):
        first = register_rigid(moved, affine, image, affine, seed=seed)
        assert np.array_equal(first, register_rigid(moved, affine, image, affine, seed=seed)), seed


@pytest.mark.parametrize("cpus", [1, 2])
def test_both_ways_side_by_side_equal_two_registrations_one_after_the_other(monkeypatch, cpus):
    """Two CPUs: BL -> FU runs in a child process; one CPU: both here. Same matrices, bitwise."""
    bl, affine = smooth_random_head(seed=2), np.diag([1.5, 1.5, 1.5, 1.0])
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 0.0, -0.5]
    fu = geometry.resample(bl, affine, bl.shape, affine, world_transform=shift, order=3)
    monkeypatch.setattr(rigid, "available_cpus", lambda: cpus)
    fu_to_bl, bl_to_fu = register_rigid_both_ways(bl, affine, fu, affine, seed=4)
    assert np.array_equal(fu_to_bl, register_rigid(fu, affine, bl, affine, seed=4))
    assert np.array_equal(bl_to_fu, register_rigid(bl, affine, fu, affine, seed=4))
