"""Parenchyma = grey + white matter inside the cavity, as a tissue fraction: N4, then a ramp
from the CSF mean to the grey matter mean of a three-class mixture (linear partial volume)."""

import numpy as np
import pytest

from brainlossnet.parenchyma import csf_and_grey_means, parenchyma_fraction


def three_tissue_sphere(shape=(40, 40, 40), seed=0):
    """Concentric CSF shell, grey shell and white core, with noise; returns image, cavity, truth."""
    rng = np.random.default_rng(seed)
    radius = np.linalg.norm(np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2, axis=0)
    cavity = radius < 18
    white = radius < 10
    grey = (radius >= 10) & (radius < 14)
    image = np.where(white, 110.0, np.where(grey, 70.0, np.where(cavity, 25.0, 5.0)))
    image += rng.normal(0, 4, size=shape)
    return image.astype(np.float32), cavity, white | grey


def test_fraction_is_one_in_grey_and_white_matter_zero_in_csf_and_outside_the_cavity():
    image, cavity, truth = three_tissue_sphere()
    fraction = parenchyma_fraction(image, cavity)
    assert fraction.dtype == np.float32 and fraction.shape == image.shape
    assert fraction.min() >= 0.0 and fraction.max() <= 1.0
    assert not np.any(fraction[~cavity])
    assert np.mean(fraction[truth]) > 0.9
    assert np.mean(fraction[cavity & ~truth]) < 0.05
    binary = fraction > 0.5
    dice = 2 * np.sum(binary & truth) / (binary.sum() + truth.sum())
    assert dice > 0.95


def test_fraction_rejects_mismatched_or_empty_masks():
    image, cavity, _ = three_tissue_sphere()
    with pytest.raises(ValueError, match="shape"):
        parenchyma_fraction(image, cavity[:-1])
    with pytest.raises(ValueError, match="empty"):
        parenchyma_fraction(image, np.zeros_like(cavity))


def test_intensities_without_contrast_are_refused_rather_than_divided_by_zero():
    with pytest.warns(Warning), pytest.raises(ValueError, match="no contrast"):  # the mixture warns: 1 distinct value
        csf_and_grey_means(np.full(5000, 100.0))


def test_the_mixture_finds_the_csf_and_grey_means_whatever_the_class_sizes():
    rng = np.random.default_rng(1)
    csf, grey, white = 30.0, 70.0, 110.0
    for counts in ((50_000, 200_000, 150_000), (200_000, 60_000, 60_000)):
        intensities = np.concatenate([rng.normal(mean, 4.0, n) for mean, n in zip((csf, grey, white), counts)])
        found = csf_and_grey_means(intensities)
        assert found == pytest.approx((csf, grey), abs=1.0)


def test_partial_volume_voxels_count_with_the_tissue_they_hold():
    """Voxels mixing CSF and grey matter: on average the map gives each its true fraction,
    where a mask thresholded at one half would give 0 or 1."""
    rng = np.random.default_rng(2)
    csf, grey = 30.0, 70.0
    shape = (60, 60, 60)
    true_fraction = rng.uniform(0, 1, shape)
    classes = rng.integers(0, 4, shape)  # 0 CSF, 1 grey, 2 white, 3 mixed
    image = np.select([classes == 0, classes == 1, classes == 2],
                      [csf, grey, 110.0], csf + true_fraction * (grey - csf)) + rng.normal(0, 2.0, shape)
    fraction = parenchyma_fraction(image.astype(np.float32), np.ones(shape, bool))
    mixed = classes == 3
    assert np.mean(fraction[mixed]) == pytest.approx(np.mean(true_fraction[mixed]), abs=0.02)
    assert np.corrcoef(fraction[mixed], true_fraction[mixed])[0, 1] > 0.95


def test_fraction_is_reproducible():
    """The mixture is fitted on a seeded sample: the map must be the same on every run."""
    from brainlossnet import phantom

    head = phantom.make_head(3, scale=0.5)
    cavity = head.icv_frac > 0.5
    maps = [parenchyma_fraction(head.image, cavity) for _ in range(3)]
    assert all(np.array_equal(maps[0], other) for other in maps[1:])
