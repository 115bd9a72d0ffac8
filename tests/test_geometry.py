"""Contracts of the voxel-grid and rigid geometry functions."""

import numpy as np
import pytest

from brainlossnet import geometry


def rotation_about_z(degrees: float, translation_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    angle = np.deg2rad(degrees)
    transform = np.eye(4)
    transform[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    transform[:3, 3] = translation_mm
    return transform


def test_reslice_of_flipped_anisotropic_image_is_isotropic_ras_and_keeps_world_positions():
    # A bright voxel block in an LPS-ordered, 2 mm x 1 mm x 1.5 mm grid.
    source = np.zeros((20, 30, 20), dtype=np.float32)
    source[8:12, 10:20, 6:14] = 100.0
    affine = np.diag([-2.0, -1.0, 1.5, 1.0])
    affine[:3, 3] = [40.0, 30.0, -10.0]
    resliced, resliced_affine = geometry.reslice_to_isotropic(source, affine, voxel_mm=1.0, order=1)
    np.testing.assert_allclose(resliced_affine[:3, :3], np.eye(3))
    world_centre_source = affine[:3, :3] @ np.array([9.5, 14.5, 9.5]) + affine[:3, 3]
    block = np.argwhere(resliced > 50)
    world_centre_resliced = resliced_affine[:3, :3] @ block.mean(axis=0) + resliced_affine[:3, 3]
    np.testing.assert_allclose(world_centre_resliced, world_centre_source, atol=0.6)
    assert resliced[tuple(block.mean(axis=0).round().astype(int))] == pytest.approx(100.0)


def test_resample_through_world_transform_moves_content_by_that_transform():
    image = np.zeros((32, 32, 32), dtype=np.float32)
    image[10:14, 12:16, 14:18] = 1.0
    affine = np.eye(4)
    shift = np.eye(4)
    shift[:3, 3] = [2.0, -3.0, 1.0]  # target point x is read from source at x + shift
    moved = geometry.resample(image, affine, image.shape, affine, world_transform=shift, order=1)
    np.testing.assert_allclose(moved[8:12, 15:19, 13:17], 1.0, atol=1e-6)
    assert moved.sum() == pytest.approx(image.sum(), abs=1e-4)


def test_crop_box_is_centred_on_mask_and_pads_outside_the_image():
    mask = np.zeros((50, 60, 40), dtype=bool)
    mask[10:30, 20:40, 0:30] = True
    start = geometry.crop_box_start(mask, (32, 32, 48))
    assert start == (4, 14, -9)
    image = np.arange(mask.size, dtype=np.float32).reshape(mask.shape)
    affine = np.eye(4)
    box, box_affine = geometry.crop(image, affine, start, (32, 32, 48))
    assert box.shape == (32, 32, 48)
    np.testing.assert_allclose(box_affine[:3, 3], start)
    assert np.all(box[:, :, :9] == 0)
    assert box[0, 0, 9] == image[4, 14, 0]
    cropped_mask, _ = geometry.crop(mask, affine, start, (32, 32, 48))
    assert cropped_mask.sum() == mask.sum()
    assert geometry.faces_touched(cropped_mask) == []


def test_crop_box_refuses_a_cavity_larger_than_the_box():
    mask = np.zeros((40, 40, 40), dtype=bool)
    mask[2:38, 5:10, 5:10] = True
    with pytest.raises(ValueError, match="axis 0"):
        geometry.crop_box_start(mask, (32, 32, 32))
    with pytest.raises(ValueError, match="empty"):
        geometry.crop_box_start(np.zeros((8, 8, 8), dtype=bool), (4, 4, 4))


def test_faces_touched_names_ras_faces():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[3:6, 3:6, 0:4] = True
    mask[9, 5, 5] = True
    assert geometry.faces_touched(mask) == ["right", "inferior"]


def test_rigid_power_halves_a_screw_motion():
    transform = rotation_about_z(10.0, (4.0, -2.0, 6.0))
    half = geometry.rigid_power(transform, 0.5)
    np.testing.assert_allclose(half @ half, transform, atol=1e-10)
    np.testing.assert_allclose(geometry.rigid_power(transform, -0.5) @ half, np.eye(4), atol=1e-10)


def test_symmetric_rigid_is_exactly_inverted_by_swapping_its_inputs():
    forward = rotation_about_z(4.0, (1.0, 2.0, 0.5))
    backward_inverse_estimate = rotation_about_z(-3.8, (-1.1, -1.9, -0.4))
    mean = geometry.symmetric_rigid(forward, backward_inverse_estimate)
    swapped = geometry.symmetric_rigid(backward_inverse_estimate, forward)
    np.testing.assert_allclose(mean @ swapped, np.eye(4), atol=1e-10)


def test_halfway_grid_is_the_same_when_baseline_and_followup_are_exchanged():
    fu_to_bl = rotation_about_z(6.0, (3.0, -1.0, 2.0))
    bl_center, fu_center = np.array([1.0, 2.0, 3.0]), np.array([-2.0, 4.0, 0.0])
    grid = geometry.halfway_grid_affine(bl_center, fu_center, fu_to_bl, (16, 16, 16))
    swapped = geometry.halfway_grid_affine(fu_center, bl_center, np.linalg.inv(fu_to_bl), (16, 16, 16))
    np.testing.assert_allclose(grid, swapped, atol=1e-10)
    np.testing.assert_allclose(grid[:3, :3], np.eye(3))


def test_grid_center_mm_is_the_centre_voxel_in_world():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -10, -10]
    np.testing.assert_allclose(geometry.grid_center_mm((11, 11, 11), affine), [0.0, 0.0, 0.0])
