"""Parenchyma = grey + white matter inside the cavity: N4, then the CSF/grey midpoint of a mixture."""

import numpy as np
import pytest

from brainlossnet.parenchyma import parenchyma_mask, tissue_threshold


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


def test_parenchyma_mask_finds_grey_and_white_matter_and_excludes_csf():
    image, cavity, truth = three_tissue_sphere()
    mask = parenchyma_mask(image, cavity)
    assert mask.dtype == bool and mask.shape == image.shape
    dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
    assert dice > 0.95
    assert not np.any(mask & ~cavity)


def test_parenchyma_mask_rejects_mismatched_or_empty_masks():
    image, cavity, _ = three_tissue_sphere()
    with pytest.raises(ValueError, match="shape"):
        parenchyma_mask(image, cavity[:-1])
    with pytest.raises(ValueError, match="empty"):
        parenchyma_mask(image, np.zeros_like(cavity))


def test_threshold_lies_halfway_between_csf_and_grey_matter_whatever_the_class_sizes():
    rng = np.random.default_rng(1)
    csf, grey, white = 30.0, 70.0, 110.0
    for counts in ((50_000, 200_000, 150_000), (200_000, 60_000, 60_000)):
        intensities = np.concatenate([rng.normal(mean, 4.0, n) for mean, n in zip((csf, grey, white), counts)])
        assert tissue_threshold(intensities) == pytest.approx((csf + grey) / 2, abs=1.0)


def test_half_tissue_voxels_split_at_the_midpoint_so_volume_is_unbiased():
    """Partial-volume voxels between CSF and grey matter: those more than half tissue count."""
    rng = np.random.default_rng(2)
    csf, grey, white = 30.0, 70.0, 110.0
    fractions = rng.uniform(0, 1, 100_000)
    mixed = csf + fractions * (grey - csf) + rng.normal(0, 2.0, fractions.size)
    pure = np.concatenate([rng.normal(m, 2.0, 100_000) for m in (csf, grey, white)])
    threshold = tissue_threshold(np.concatenate([pure, mixed]))
    assert np.mean(mixed > threshold) == pytest.approx(np.mean(fractions), abs=0.02)


def test_parenchyma_mask_is_reproducible():
    """The mixture is fitted on a seeded sample: the mask must be the same on every run."""
    from brainlossnet import phantom

    head = phantom.make_head(3, scale=0.5)
    cavity = head.icv_frac > 0.5
    masks = [parenchyma_mask(head.image, cavity) for _ in range(3)]
    assert all(np.array_equal(masks[0], mask) for mask in masks[1:])
