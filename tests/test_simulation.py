"""Contracts of the simulated pairs: prescribed change met and measured, skull fixed, invertible,
rescans unchanged, distortion is no anatomy, images show the change, seeded."""

import numpy as np
import pytest
import torch

from brainlossnet import deformation, phantom, registration, simulation

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def anatomy() -> simulation.Anatomy:
    head = phantom.make_head(11, scale=0.4)
    return simulation.prepare_anatomy(head.image, head.affine, head.icv_frac > 0.5)


@pytest.fixture(scope="module")
def whole(anatomy) -> simulation.Atrophy:
    return simulation.solve_amplitude(anatomy, simulation.unit_velocity(anatomy, "whole"), -0.5)


def test_prescribed_change_is_measured_by_jacobian_integration(anatomy, whole):
    truth = whole.truth
    assert abs(truth.dbpv_pct["soft"] - (-0.5)) < 1e-3
    assert set(truth.dbpv_pct) == {"soft", "p0.3", "p0.5", "p0.7"}
    assert 0.0 <= truth.spread_pct < 0.3
    # the change lies in the tissue's core: in ml it hardly depends on the definition
    changes_ml = truth.dbpv_ml
    assert max(changes_ml.values()) - min(changes_ml.values()) < 0.1 * abs(changes_ml["soft"])
    assert abs(truth.dtiv_pct) < 0.05  # the cavity maps onto itself (up to its voxelised edge)
    assert truth.bpv_bl_ml == pytest.approx(anatomy.tissue.sum() * anatomy.voxel_ml)
    # independent check: the tissue map pulled through phi holds the same volume change
    warped = registration.warp(anatomy.tissue, whole.forward)
    warped_pct = 100.0 * (warped.sum() - anatomy.tissue.sum()) / anatomy.tissue.sum()
    assert warped_pct == pytest.approx(truth.dbpv_pct["soft"], rel=0.25)


def test_deformation_fixes_the_skull_and_is_invertible(anatomy, whole):
    outside = ~anatomy.cavity
    assert np.abs(whole.forward[:, outside]).max() == 0.0
    assert np.abs(whole.inverse[:, outside]).max() == 0.0
    assert np.abs(whole.forward).max() > 0.05
    assert whole.truth.min_jacobian > 0.0
    assert 1.0 + simulation.jacobian_minus_one(whole.forward).min() > 0.0
    # phi^-1(phi(y)) = y: sample the inverse at y + u(y)
    grid = deformation.voxel_grid(anatomy.cavity.shape)
    moved = grid + torch.from_numpy(whole.forward)
    back = torch.stack([deformation.sample_at(torch.from_numpy(c), moved) for c in whole.inverse])
    residual = (torch.from_numpy(whole.forward) + back).abs().max()
    assert residual < 0.15  # voxels; strains are large in the phantom's thin fluid


@pytest.mark.parametrize("region", ["lobe", "ventricles"])
def test_regional_atrophy_stays_in_its_region(anatomy, region):
    velocity = simulation.unit_velocity(anatomy, region)
    atrophy = simulation.solve_amplitude(anatomy, velocity, -0.5, tolerance_pct=0.01)
    assert abs(atrophy.truth.dbpv_pct["soft"] + 0.5) < 0.01
    shrink, _ = simulation.shrink_and_growth(anatomy, region)
    density = simulation.jacobian_minus_one(atrophy.inverse)
    tissue = anatomy.tissue > 0.9
    inside, elsewhere = tissue & (shrink > 0.5), tissue & (shrink < 1e-3)
    # the region's tissue shrinks several times more than tissue elsewhere (on average)
    assert density[inside].mean() < 3.0 * min(density[elsewhere].mean(), 0.0) - 1e-3


def test_rescan_pair_has_zero_truth_but_differs(anatomy):
    rescan = simulation.solve_amplitude(anatomy, None, 0.0)
    pair = simulation.simulate_pair(anatomy, rescan, seed=5)
    assert pair.truth.dbpv_pct == dict.fromkeys(anatomy.definitions, 0.0)
    assert pair.truth.dtiv_pct == 0.0 and pair.truth.spread_pct == 0.0
    assert pair.baseline.dtype == np.float32 and pair.baseline.shape == anatomy.image.shape
    assert np.abs(pair.baseline - pair.followup).mean() > 0.01 * anatomy.median  # own pose, bias, noise
    assert pair.baseline.min() >= 0.0


def test_followup_image_shows_the_true_change(anatomy, whole):
    atrophy = whole
    identity = np.eye(4)
    baseline = simulation.acquire(anatomy, identity)
    followup = simulation.acquire(anatomy, identity, atrophy.forward)
    # the tissue map's ramp, with the baseline's median for both images
    volumes = [float((np.clip((image / anatomy.median - 0.35) / 0.3, 0, 1) * anatomy.cavity).sum())
               for image in (baseline, followup)]
    seen_pct = 100.0 * (volumes[1] - volumes[0]) / volumes[0]
    # the image-based tissue map sees the loss, to within the spread of tissue definitions
    assert 0.5 < seen_pct / atrophy.truth.dbpv_pct["soft"] < 1.5
    assert seen_pct < -0.25


def test_scaling_distortion_enlarges_the_head_but_not_the_truth(anatomy, whole):
    identity = np.eye(4)
    scaled = simulation.acquire(anatomy, identity, None, simulation.Distortion((1.05, 1.05, 1.05)))
    plain = simulation.acquire(anatomy, identity)
    threshold = 0.3 * anatomy.median
    ratio = (scaled > threshold).sum() / (plain > threshold).sum()
    assert ratio == pytest.approx(1.05**3, rel=0.02)
    warped = simulation.with_warp(simulation.Distortion((1.008,) * 3), seed=2)
    pair = simulation.simulate_pair(anatomy, whole, seed=3, distortion=warped)
    assert pair.truth is whole.truth  # truth is the tissue change only


def test_gradient_warp_is_zero_at_the_centre_and_cubic():
    center = np.array([10.0, -5.0, 3.0])
    coefficients = simulation.gradient_warp_coefficients(np.random.default_rng(0), max_mm=1.0)
    points = center[:, None] + np.array([[0.0, 50.0, 100.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    shift = simulation.gradient_warp_mm(points, center, coefficients)
    assert np.all(shift[:, 0] == 0.0)
    assert shift[0, 2] == pytest.approx(8.0 * shift[0, 1])
    assert 0.1 < np.abs(shift[:, 2]).max() <= 1.0


def test_pairs_are_seeded(anatomy, whole):
    one = simulation.simulate_pair(anatomy, whole, seed=9)
    again = simulation.simulate_pair(anatomy, whole, seed=9)
    other = simulation.simulate_pair(anatomy, whole, seed=10)
    assert np.array_equal(one.baseline, again.baseline) and np.array_equal(one.followup, again.followup)
    assert not np.array_equal(one.followup, other.followup)


def test_bad_inputs_are_refused(anatomy):
    with pytest.raises(ValueError, match="shape"):
        simulation.prepare_anatomy(anatomy.image, anatomy.affine, anatomy.cavity[:-1])
    with pytest.raises(ValueError, match="empty"):
        simulation.prepare_anatomy(anatomy.image, anatomy.affine, np.zeros_like(anatomy.cavity))
    with pytest.raises(ValueError, match="region"):
        simulation.unit_velocity(anatomy, "occipital")
