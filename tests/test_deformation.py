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
    source = deformation.prepare_source_crop(linear_crop(shape), mask, QUIET)
    for seed, augment in [(0, None), (1, 8.0)]:
        generator = torch.Generator().manual_seed(seed)
        pair = deformation.synthesize_pair(source, generator, flip_and_rotate_deg=augment, ranges=QUIET)
        assert pair.displacement.abs().max() > 0.3
        pulled = warp(pair.baseline.numpy(), pair.displacement.numpy())
        # away from the edges (where samples fall outside the crop)
        inner = (slice(12, -12),) * 3
        np.testing.assert_allclose(pulled[inner], pair.followup.numpy()[inner], atol=2e-3)


def test_patches_have_the_requested_shape_and_a_consistent_truth():
    shape = (48, 64, 48)
    source = deformation.prepare_source_crop(linear_crop(shape), ball(shape, 20), QUIET)
    generator = torch.Generator().manual_seed(5)
    pair = deformation.synthesize_pair(source, generator, patch_shape=(32, 32, 32), ranges=QUIET)
    assert pair.baseline.shape == pair.followup.shape == pair.icv_mask.shape == (32, 32, 32)
    assert pair.displacement.shape == (3, 32, 32, 32)
    pulled = warp(pair.baseline.numpy(), pair.displacement.numpy())
    np.testing.assert_allclose(pulled[8:-8, 8:-8, 8:-8], pair.followup.numpy()[8:-8, 8:-8, 8:-8], atol=2e-3)


def test_pairs_are_deterministic_in_the_generator_seed():
    shape = (32, 32, 32)
    mask = ball(shape, 12)
    source = deformation.prepare_source_crop(torch.rand(shape, generator=torch.Generator().manual_seed(0)), mask)

    def make(seed: int) -> deformation.SyntheticPair:
        return deformation.synthesize_pair(source, torch.Generator().manual_seed(seed), flip_and_rotate_deg=5.0)

    first, again, other = make(7), make(7), make(8)
    for name in ("baseline", "followup", "displacement"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))


def test_interior_weight_is_zero_outside_and_one_deep_inside_the_cavity():
    mask = ball((40, 40, 40), 16)
    weight = deformation.interior_weight(mask, 4)
    assert weight.min() >= 0.0 and weight.max() <= 1.0
    assert weight[~ball((40, 40, 40), 14)].max() == 0.0  # the outer 2-voxel shell and beyond
    assert torch.allclose(weight[ball((40, 40, 40), 5)], torch.ones(()), atol=1e-5)


def two_compartment_head(shape=(64, 64, 64)) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright tissue ball (radius 22) in a dark CSF shell, inside a cavity of radius 25."""
    cavity = ball(shape, 25)
    return torch.where(ball(shape, 22), 1.0, 0.1) * cavity, cavity


def test_tissue_probability_separates_tissue_from_csf_relative_to_the_median():
    image, cavity = two_compartment_head()
    for gain in (1.0, 250.0):
        tissue = deformation.tissue_probability(image * gain, cavity)
        assert torch.equal(tissue > 0.5, ball((64, 64, 64), 22))


def test_atrophy_field_removes_the_requested_tissue_fraction_and_keeps_the_cavity():
    image, cavity = two_compartment_head()
    unit = deformation.atrophy_unit_field(deformation.tissue_probability(image, cavity), cavity)
    tissue = ball((64, 64, 64), 22).float().numpy()
    for fraction in (0.02, -0.01):
        field = (fraction * unit).numpy()
        tissue_ratio = warp(tissue, field).sum() / tissue.sum()
        cavity_ratio = warp(cavity.float().numpy(), field).sum() / cavity.sum().item()
        assert abs(tissue_ratio - (1.0 - fraction)) < 0.15 * abs(fraction)  # first-order model
        assert abs(cavity_ratio - 1.0) < 0.1 * abs(fraction)
    # curl-free and balanced: the field dies out outside the cavity
    outside = ~ball((64, 64, 64), 28)
    assert torch.linalg.norm(unit, dim=0)[outside].max() < 0.02 * torch.linalg.norm(unit, dim=0).max()


def test_synthesised_atrophy_is_seen_in_the_true_field():
    image, cavity = two_compartment_head()
    only_atrophy = dataclasses.replace(
        QUIET, smooth_amplitude_vox=0.0, rotation_deg=0.0, translation_vox=0.0, atrophy_fraction=(0.02, 0.02), blob_count_max=0
    )
    source = deformation.prepare_source_crop(image, cavity, only_atrophy)
    tissue = ball((64, 64, 64), 22).float().numpy()
    for augment in (None, 10.0):
        pair = deformation.synthesize_pair(source, torch.Generator().manual_seed(2), flip_and_rotate_deg=augment, ranges=only_atrophy)
        # the ball is symmetric, so flips and rotations leave its tissue where it was
        assert abs(warp(tissue, pair.displacement.numpy()).sum() / tissue.sum() - 0.98) < 0.002


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


def test_real_pairs_are_sampled_on_one_frame_for_both_images():
    # FU = 2 BL: interpolation is linear, so the pair keeps FU = 2 BL exactly only if both
    # images were sampled at the same points (same patch, flip and rotation).
    shape = (40, 48, 40)
    baseline = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    mask = ball(shape, 15)
    for seed in range(3):
        bl, fu, mask_here = deformation.augment_real_pair(
            baseline, 2.0 * baseline, mask, torch.Generator().manual_seed(seed),
            patch_shape=(32, 32, 32), flip_and_rotate_deg=10.0, noise_std=0.0)
        assert bl.shape == fu.shape == mask_here.shape == (32, 32, 32) and mask_here.dtype == torch.bool
        torch.testing.assert_close(fu, 2.0 * bl)
    # without rotation the patch is a plain sub-box of the pair
    bl, _, mask_here = deformation.augment_real_pair(
        baseline, baseline, mask, torch.Generator().manual_seed(4), patch_shape=(32, 32, 32), noise_std=0.0)
    matches = [origin for origin in np.ndindex(9, 17, 9)
               if torch.allclose(bl, baseline[origin[0]:origin[0] + 32, origin[1]:origin[1] + 32, origin[2]:origin[2] + 32],
                                 atol=1e-5)]
    assert len(matches) == 1  # (up to the rounding of grid coordinates)
    x, y, z = matches[0]
    assert torch.equal(mask_here, mask[x:x + 32, y:y + 32, z:z + 32])


def test_real_pairs_get_independent_noise_per_image_and_are_deterministic_in_the_seed():
    shape = (32, 32, 32)
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    mask = ball(shape, 12)

    def make(seed: int) -> tuple[torch.Tensor, ...]:
        return deformation.augment_real_pair(image, image, mask, torch.Generator().manual_seed(seed), noise_std=0.05)

    bl, fu, _ = make(2)
    difference = (fu - bl).std()
    assert 0.0 < difference < 0.05 * np.sqrt(2) + 0.005
    assert all(torch.equal(a, b) for a, b in zip(make(2), make(2)))
    assert not torch.equal(make(2)[0], make(3)[0])
