"""Contracts of the synthetic heads: geometry, tissue contrast, volumes, atrophy truth."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainlossnet import phantom
from brainlossnet.phantom import INTRACRANIAL_LABELS, LABELS, PARENCHYMA_LABELS

SCALE = 0.5  # half-size heads in a 96 x 120 x 120 mm field of view keep the tests fast


@pytest.fixture(scope="module")
def head() -> phantom.SyntheticHead:
    return phantom.make_head(3, scale=SCALE)


@pytest.fixture(scope="module")
def pair() -> phantom.SyntheticPair:
    return phantom.make_pair(5, atrophy_pct=-1.5, scale=SCALE)


def test_arrays_shapes_types_and_grid(head):
    assert head.image.shape == (96, 120, 120)
    assert head.image.dtype == np.float32
    assert head.labels.dtype == np.uint8
    assert head.labels.shape == head.parenchyma_frac.shape == head.icv_frac.shape == head.image.shape
    assert np.all(head.image >= 0) and np.isfinite(head.image).all()
    assert set(np.unique(head.labels)) <= set(LABELS.values())
    assert head.voxel_mm == pytest.approx((1.0, 1.0, 1.0))
    assert nib.aff2axcodes(head.affine) == ("R", "A", "S")
    assert head.image_int16().dtype == np.int16
    assert np.abs(head.image_int16() - head.image).max() <= 0.5


def test_fractions_are_consistent_with_volumes_and_labels(head):
    for fraction in (head.parenchyma_frac, head.icv_frac):
        assert fraction.min() >= 0.0 and fraction.max() <= 1.0 + 1e-6
    assert np.all(head.parenchyma_frac <= head.icv_frac + 1e-5)
    for fraction, volume_ml in ((head.parenchyma_frac, head.parenchyma_ml), (head.icv_frac, head.icv_ml)):
        assert volume_ml == pytest.approx(fraction.sum(dtype=np.float64) / 1000, rel=1e-6)
    # a voxel labelled parenchyma (resp. intracranial) holds mostly that
    assert head.parenchyma_frac[np.isin(head.labels, PARENCHYMA_LABELS)].min() >= 0.3
    assert head.icv_frac[np.isin(head.labels, INTRACRANIAL_LABELS)].min() >= 0.3
    assert 0.5 < head.parenchyma_frac.mean() / head.icv_frac.mean()  # both non-trivial


def test_volumes_are_those_of_an_adult_head_scaled(head):
    adult_icv_ml = head.icv_ml / SCALE**3
    assert 1150 < adult_icv_ml < 1750
    assert 0.72 < head.parenchyma_ml / head.icv_ml < 0.9  # brain parenchymal fraction
    for name in ("skin", "fat", "bone", "marrow", "csf", "ventricle", "cortical_gm", "wm", "deep_gm",
                 "cerebellar_gm", "cerebellar_wm", "brainstem", "spinal_cord", "eye"):
        assert np.any(head.labels == LABELS[name]), name


def test_t1w_contrast(head):
    def median(name: str) -> float:
        return float(np.median(head.image[head.labels == LABELS[name]]))

    assert median("wm") > median("cortical_gm") > median("csf") > median("bone")
    assert median("fat") > median("cortical_gm")
    assert median("marrow") > median("bone")
    assert median("air") < 0.1 * median("wm")


def test_same_seed_same_head_other_seed_other_head(head):
    again = phantom.make_head(3, scale=SCALE)
    np.testing.assert_array_equal(again.image, head.image)
    np.testing.assert_array_equal(again.labels, head.labels)
    other = phantom.make_head(4, scale=SCALE)
    assert other.icv_ml != pytest.approx(head.icv_ml, rel=1e-3)
    assert np.mean(other.labels != head.labels) > 0.05


def test_sessions_differ_in_noise_not_in_anatomy(head):
    second = phantom.make_head(3, scale=SCALE, session=1)
    np.testing.assert_array_equal(second.labels, head.labels)
    assert second.parenchyma_ml == head.parenchyma_ml
    assert not np.array_equal(second.image, head.image)


def test_scale_and_voxel_size_change_the_grid_not_the_anatomy(head):
    quarter = phantom.make_head(3, scale=SCALE / 2)
    assert quarter.image.shape == (48, 60, 60)
    assert quarter.icv_ml * 8 == pytest.approx(head.icv_ml, rel=0.02)
    coarse = phantom.make_head(3, scale=SCALE, voxel_mm=(1.5, 1.0, 1.25))
    assert coarse.image.shape == (64, 120, 96)
    assert coarse.voxel_mm == pytest.approx((1.5, 1.0, 1.25))
    assert coarse.icv_ml == pytest.approx(head.icv_ml, rel=0.01)
    assert coarse.parenchyma_ml == pytest.approx(head.parenchyma_ml, rel=0.02)


def test_orientation_only_permutes_the_arrays(head):
    las = phantom.make_head(3, scale=SCALE, orientation="LAS")
    assert nib.aff2axcodes(las.affine) == ("L", "A", "S")
    np.testing.assert_array_equal(las.image, head.image[::-1])
    np.testing.assert_allclose(las.affine @ [95, 0, 0, 1], head.affine @ [0, 0, 0, 1])
    assert las.reoriented("RAS").image.tobytes() == head.image.tobytes()


def test_atrophy_truth_sign_and_size(pair):
    assert pair.requested_dbpv_pct == -1.5
    assert pair.true_dbpv_pct == pytest.approx(-1.5, abs=0.15)
    assert pair.true_dbpv_pct == pytest.approx(
        100 * (pair.fu.parenchyma_ml - pair.bl.parenchyma_ml) / pair.bl.parenchyma_ml
    )
    assert abs(pair.true_dtiv_pct) < 0.02  # the same cavity sampled on a moved grid
    assert pair.fu.atrophy_shift_mm > 0 and pair.bl.atrophy_shift_mm == 0
    bl_ventricles = np.sum(pair.bl.labels == LABELS["ventricle"])
    assert np.sum(pair.fu.labels == LABELS["ventricle"]) > bl_ventricles
    assert (pair.bl.session, pair.fu.session) == (0, 1)


def test_follow_up_is_repositioned(pair):
    # same grid, different head pose: the label maps differ far more than atrophy explains
    assert np.array_equal(pair.bl.affine, pair.fu.affine)
    assert np.mean(pair.bl.labels != pair.fu.labels) > 0.02


def test_atrophy_without_repositioning_is_exact_and_keeps_the_cavity():
    still = phantom.make_pair(5, atrophy_pct=-0.8, scale=SCALE / 2, reposition=False)
    assert still.true_dbpv_pct == pytest.approx(-0.8, abs=0.01)
    np.testing.assert_array_equal(still.fu.icv_frac, still.bl.icv_frac)
    assert still.true_dtiv_pct == 0.0
    grown = phantom.make_pair(5, atrophy_pct=0.4, scale=SCALE / 2, reposition=False)
    assert grown.true_dbpv_pct == pytest.approx(0.4, abs=0.01)


def test_make_head_atrophy_matches_make_pair(pair):
    fu = phantom.make_head(5, scale=SCALE, atrophy_pct=-1.5, session=1, reposition=True)
    assert fu.parenchyma_ml == pytest.approx(pair.fu.parenchyma_ml, rel=1e-4)
    assert fu.icv_ml == pytest.approx(pair.fu.icv_ml, rel=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": 0.0}, {"voxel_mm": (1.0, -1.0, 1.0)}, {"shape": (4, 100, 100)}, {"atrophy_pct": -60.0}],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        phantom.make_head(0, **{"scale": SCALE, **kwargs})


def test_deepbet_finds_the_intracranial_cavity(head):
    """The pipeline's TIV mask (deepbet) must see the phantom's cavity as a real one."""
    from brainlossnet.intracranial import intracranial_mask

    mask = intracranial_mask(head.image)
    truth = head.icv_frac > 0.5
    dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
    assert dice > 0.9
    assert mask.sum() / 1000 == pytest.approx(head.icv_ml, rel=0.06)
