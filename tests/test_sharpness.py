"""Contract of the sharpness matching: an exact Gaussian blur, and the blur difference of two scans read from their spectra."""

import numpy as np
import pytest

from brainlossnet.sharpness import gaussian_blur, match_sharpness, relative_blur_vox2


def _textured_volume(shape: tuple[int, int, int] = (48, 56, 40), seed: int = 0) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum (detail at every scale, as in a head scan), positive."""
    rng = np.random.default_rng(seed)
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    radius = np.sqrt(sum(f * f for f in np.meshgrid(*axes, indexing="ij", sparse=True)))
    spectrum = np.fft.rfftn(rng.standard_normal(shape)) / np.maximum(radius, 1.0 / max(shape))
    volume = np.fft.irfftn(spectrum, s=shape, axes=(0, 1, 2))
    return (100.0 + 20.0 * volume / volume.std()).astype(np.float32)


def test_zero_variance_returns_the_image_and_negative_variance_is_refused():
    volume = _textured_volume()
    np.testing.assert_array_equal(gaussian_blur(volume, 0.0), volume)
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_blur(volume, -0.1)


def test_blur_variances_add_and_the_mean_and_dtype_are_kept():
    volume = _textured_volume()
    twice = gaussian_blur(gaussian_blur(volume, 0.1), 0.3)
    once = gaussian_blur(volume, 0.4)
    np.testing.assert_allclose(twice, once, atol=1e-3)
    assert once.dtype == np.float32
    assert once.mean() == pytest.approx(volume.mean(), rel=1e-5)
    assert once.std() < volume.std()


def test_a_known_blur_of_fu_is_read_back_with_its_sign():
    bl = _textured_volume()
    for variance_vox2 in (0.05, 0.1, 0.3):
        assert relative_blur_vox2(bl, gaussian_blur(bl, variance_vox2)) == pytest.approx(variance_vox2, abs=0.01)
        assert relative_blur_vox2(gaussian_blur(bl, variance_vox2), bl) == pytest.approx(-variance_vox2, abs=0.01)


def test_intensity_scale_and_a_shift_are_no_blur():
    bl = _textured_volume()
    assert relative_blur_vox2(bl, 3.0 * bl + 50.0) == pytest.approx(0.0, abs=1e-3)
    assert relative_blur_vox2(bl, np.roll(bl, (2, -1, 1), axis=(0, 1, 2))) == pytest.approx(0.0, abs=0.01)


def test_the_estimate_is_antisymmetric():
    bl, fu = _textured_volume(seed=0), gaussian_blur(_textured_volume(seed=1), 0.2)
    assert relative_blur_vox2(fu, bl) == pytest.approx(-relative_blur_vox2(bl, fu), abs=1e-9)


def test_matching_blurs_the_sharper_scan_to_the_other():
    sharp = _textured_volume()
    blurry = gaussian_blur(sharp, 0.2)
    fu_blur_vox2 = relative_blur_vox2(sharp, blurry)
    bl, fu = match_sharpness(sharp, blurry, fu_blur_vox2)
    assert fu is blurry
    np.testing.assert_array_equal(bl, gaussian_blur(sharp, fu_blur_vox2))
    assert relative_blur_vox2(bl, fu) == pytest.approx(0.0, abs=0.01)
    bl, fu = match_sharpness(blurry, sharp, -fu_blur_vox2)
    assert bl is blurry
    assert relative_blur_vox2(bl, fu) == pytest.approx(0.0, abs=0.01)


def test_anisotropic_blur_is_per_axis():
    volume = _textured_volume()
    np.testing.assert_allclose(gaussian_blur(volume, (0.2, 0.2, 0.2)), gaussian_blur(volume, 0.2), atol=1e-4)
    constant_along_x = np.repeat(volume[:1], volume.shape[0], axis=0)
    np.testing.assert_allclose(gaussian_blur(constant_along_x, (0.5, 0.0, 0.0)), constant_along_x, atol=1e-4)
    assert not np.allclose(gaussian_blur(constant_along_x, (0.0, 0.5, 0.0)), constant_along_x, atol=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_blur(volume, (0.1, -0.1, 0.0))


def test_mismatched_or_constant_images_are_refused():
    volume = _textured_volume()
    with pytest.raises(ValueError, match="one shape"):
        relative_blur_vox2(volume, volume[:-1])
    with pytest.raises(ValueError, match="constant"):
        relative_blur_vox2(volume, np.full_like(volume, 7.0))
