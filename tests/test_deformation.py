"""Contracts of the synthetic longitudinal pairs: known truth, determinism, atrophy geometry."""

import dataclasses

import numpy as np
import torch

from brainlossnet import deformation
from brainlossnet.registration import warp

torch.set_num_threads(1)

QUIET = dataclasses.replace(deformation.SynthesisRanges(), gain=(1.0, 1.0), bias_std=0.0, noise_std=0.0)


def ball(shape: tuple[int, int, int], radius: float) -> torch.Tensor:
    grid = deformation.voxel_grid(shape)
    center = (torch.tensor(shape, dtype=torch.float32) - 1) / 2
    return ((grid - center.view(3, 1, 1, 1)) ** 2).sum(0) <= radius**2


def linear_crop(shape: tuple[int, int, int]) -> torch.Tensor:
    # Trilinear interpolation reproduces a linear function exactly, so BL(x + u) = FU(x) can be checked exactly.
    grid = deformation.voxel_grid(shape)
    return 0.3 * grid[0] - 0.2 * grid[1] + 0.1 * grid[2] + 20.0


def test_true_displacement_maps_baseline_onto_followup():
    shape = (48, 48, 48)
    mask = ball(shape, 18)
    crop = linear_crop(shape)
    weight = deformation.contraction_weight(mask, 6)
    for seed, augment in [(0, None), (1, 8.0)]:
        generator = torch.Generator().manual_seed(seed)
        pair = deformation.synthesize_pair(crop, weight, mask, generator, flip_and_rotate_deg=augment, ranges=QUIET)
        assert pair.displacement.abs().max() > 0.3
        pulled = warp(pair.baseline.numpy(), pair.displacement.numpy())
        # away from the edges (where samples fall outside the crop)
        inner = (slice(12, -12),) * 3
        np.testing.assert_allclose(pulled[inner], pair.followup.numpy()[inner], atol=2e-3)


def test_patches_have_the_requested_shape_and_a_consistent_truth():
    shape = (48, 64, 48)
    mask = ball(shape, 20)
    crop = linear_crop(shape)
    generator = torch.Generator().manual_seed(5)
    pair = deformation.synthesize_pair(
        crop, deformation.contraction_weight(mask, 6), mask, generator, patch_shape=(32, 32, 32), ranges=QUIET
    )
    assert pair.baseline.shape == pair.followup.shape == pair.icv_mask.shape == (32, 32, 32)
    assert pair.displacement.shape == (3, 32, 32, 32)
    pulled = warp(pair.baseline.numpy(), pair.displacement.numpy())
    np.testing.assert_allclose(pulled[8:-8, 8:-8, 8:-8], pair.followup.numpy()[8:-8, 8:-8, 8:-8], atol=2e-3)


def test_pairs_are_deterministic_in_the_generator_seed():
    shape = (32, 32, 32)
    mask = ball(shape, 12)
    crop = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    weight = deformation.contraction_weight(mask, 4)

    def make(seed: int) -> deformation.SyntheticPair:
        return deformation.synthesize_pair(crop, weight, mask, torch.Generator().manual_seed(seed), flip_and_rotate_deg=5.0)

    first, again, other = make(7), make(7), make(8)
    for name in ("baseline", "followup", "displacement"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))


def test_contraction_weight_is_zero_outside_and_one_deep_inside_the_cavity():
    mask = ball((40, 40, 40), 16)
    weight = deformation.contraction_weight(mask, 4)
    assert weight.min() >= 0.0 and weight.max() <= 1.0
    assert weight[~ball((40, 40, 40), 14)].max() == 0.0  # the outer 2-voxel shell and beyond
    assert torch.allclose(weight[ball((40, 40, 40), 5)], torch.ones(()), atol=1e-5)


def test_global_contraction_shrinks_the_brain_but_not_the_cavity():
    shape = (48, 48, 48)
    cavity = ball(shape, 20)
    brain = ball(shape, 7).float().numpy()  # deep enough for a contraction weight of 1
    only_atrophy = dataclasses.replace(
        QUIET,
        smooth_amplitude_vox=0.0,
        rotation_deg=0.0,
        translation_vox=0.0,
        atrophy_linear=(0.02, 0.02),
        blob_count_max=0,
    )
    pair = deformation.synthesize_pair(
        linear_crop(shape), deformation.contraction_weight(cavity, 5), cavity, torch.Generator().manual_seed(0), ranges=only_atrophy
    )
    # The BL brain warped to FU: 2 % shorter radii, about 6 % less volume; the cavity keeps its volume.
    brain_ratio = warp(brain, pair.displacement.numpy()).sum() / brain.sum()
    cavity_ratio = warp(cavity.float().numpy(), pair.displacement.numpy()).sum() / cavity.sum().item()
    assert 0.93 < brain_ratio < 0.95
    assert abs(cavity_ratio - 1.0) < 1e-5


def test_positive_blob_strength_shrinks_and_negative_grows_the_structure_at_its_centre():
    shape = (32, 32, 32)
    grid = deformation.voxel_grid(shape)
    center = torch.tensor([[15.5, 15.5, 15.5]])
    structure = ball(shape, 5).float().numpy()
    volumes = []
    for strength in (0.1, -0.1):
        field = deformation.radial_blob_displacement(grid, center, torch.tensor([6.0]), torch.tensor([strength]))
        volumes.append(warp(structure, field.numpy()).sum())
    assert volumes[0] < structure.sum() < volumes[1]


def test_intensity_perturbation_is_the_identity_with_zero_ranges_and_noisy_otherwise():
    image = torch.rand(16, 16, 16, generator=torch.Generator().manual_seed(0))
    same = deformation.perturb_intensity(image, QUIET, torch.Generator().manual_seed(1))
    assert torch.equal(same, image)
    noisy = deformation.perturb_intensity(image, deformation.SynthesisRanges(), torch.Generator().manual_seed(1))
    assert not torch.allclose(noisy, image)
