"""Sharpness matching of a BL/FU pair before registration.

A difference in sharpness between the two scans (another scanner or protocol, a scan that
some tool resampled once more) is no change of the brain, yet the registration's local NCC
reads it as one (:data:`SHARPNESS_MATCHING`). The blurrier scan's point-spread
function cannot be undone, so the sharper scan is blurred to match it, for the registration
only; volumes and masks come from the scans as they are.

The difference is measured on the whole crop from the two power spectra: blurring by a
Gaussian of variance ``s`` (voxel²) multiplies the power at spatial frequency ``f``
(cycles per voxel) by ``exp(-4 pi² s f²)``, so the log ratio of FU's to BL's radially
averaged power falls linearly in ``f²`` with slope ``-4 pi² (s_FU - s_BL)``. A small
deformation between the scans (atrophy) barely moves the spectra, a different intensity
scale only shifts the log ratio (the fit's intercept), and independent noise of similar
level adds nearly the same power to both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal

SHARPNESS_BAND_CYCLES_PER_VOX: tuple[float, float] = (0.05, 0.45)
"""Spatial frequencies (cycles per voxel) whose power ratio gives the blur difference.

Below 0.05 the power is the head's outline, not its detail; 0.45 stays short of the 0.5 of
the Nyquist limit, where the crop's resampling shapes the spectrum. On pairs from real scans
with a known Gaussian blur of FU (variance 0.1 voxel²) this band recovered 0.0997, or
0.0960 with additional noise in FU; on rescans with noise alone it read -0.002 to 0.000.
"""

SHARPNESS_SHELLS: int = 16
"""Frequency shells, of equal width, over :data:`SHARPNESS_BAND_CYCLES_PER_VOX`."""

SHARPNESS_MATCHING: bool = True
"""Default of the registration stage: blur the sharper scan to the other's sharpness first.

On a rescan pair whose FU alone was blurred by a Gaussian of variance 0.1 voxel², the pooled
refinement alone read dBPV -0.14 % and two full-resolution steps of 0.1 (the default from the
seventh to the tenth session) -0.90 %;
matched, -0.003 and -0.002 % (docs/registration.md, "Sharpness matching").
"""

TAPER_FRACTION: float = 0.5
"""Share of each axis tapered by the Tukey window, so that the crop's borders add no spectral leakage."""


def _squared_frequencies(shape: tuple[int, int, int], weights: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """``sum_i weights_i f_i²`` (f in cycles per voxel) on the grid of ``numpy.fft.rfftn`` of ``shape``."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    return sum(w * f * f for w, f in zip(weights, np.meshgrid(*axes, indexing="ij", sparse=True)))


def gaussian_blur(image: np.ndarray, variance_vox2: float | Sequence[float]) -> np.ndarray:
    """``image`` convolved with a Gaussian of variance ``variance_vox2`` (voxel²; one per axis, or one for all).

    Applied in the Fourier domain (periodic borders), so that variances well below one voxel²,
    which a sampled kernel of three taps cannot represent, blur by exactly that amount.

    Raises
    ------
    ValueError
        If a variance is negative.
    """
    variances = np.broadcast_to(np.asarray(variance_vox2, dtype=float), (3,))
    if np.any(variances < 0):
        raise ValueError(f"a blur variance must be >= 0, got {variance_vox2}")
    image = np.asarray(image)
    if not np.any(variances):
        return image.copy()
    transfer = np.exp(-2.0 * np.pi**2 * _squared_frequencies(image.shape, variances))
    blurred = np.fft.irfftn(np.fft.rfftn(image) * transfer, s=image.shape, axes=(0, 1, 2))
    return blurred.astype(image.dtype, copy=False)


def _shell_power(image: np.ndarray, shell_index: np.ndarray, in_band: np.ndarray) -> np.ndarray:
    """Mean power of ``image`` in each frequency shell, its windowed mean removed and the Tukey window applied.

    Without the mean removed, the window's own spectrum, scaled by the image's mean, would
    leak into the lowest shells and read as a blur of the brighter scan.
    """
    window = np.einsum("i,j,k->ijk", *(scipy.signal.windows.tukey(n, TAPER_FRACTION) for n in image.shape))
    image = np.asarray(image, dtype=np.float64)
    power = np.abs(np.fft.rfftn((image - np.sum(image * window) / np.sum(window)) * window)) ** 2
    sums = np.bincount(shell_index[in_band], power[in_band], SHARPNESS_SHELLS)
    return sums / np.bincount(shell_index[in_band], None, SHARPNESS_SHELLS)


def relative_blur_vox2(bl: np.ndarray, fu: np.ndarray) -> float:
    """How much blurrier FU is than BL, as the variance (voxel²) of a Gaussian blur.

    The slope of ``log(P_FU / P_BL)`` against ``f²`` over the shells of
    :data:`SHARPNESS_BAND_CYCLES_PER_VOX`, divided by ``-4 pi²`` (module docstring).
    Negative when BL is the blurrier scan.

    Parameters
    ----------
    bl, fu
        3D images of one shape on one grid (the pair's halfway crops).

    Raises
    ------
    ValueError
        If the shapes differ or are not 3D, or an image is constant.
    """
    if np.shape(bl) != np.shape(fu) or np.ndim(bl) != 3:
        raise ValueError(f"BL {np.shape(bl)} and FU {np.shape(fu)} must be 3D arrays of one shape")
    if np.ptp(bl) == 0 or np.ptp(fu) == 0:
        raise ValueError("a constant image has no sharpness to compare")
    low, high = SHARPNESS_BAND_CYCLES_PER_VOX
    shell_edges = np.linspace(low, high, SHARPNESS_SHELLS + 1)
    shell_index = np.digitize(np.sqrt(_squared_frequencies(np.shape(bl))), shell_edges) - 1
    in_band = (shell_index >= 0) & (shell_index < SHARPNESS_SHELLS)
    power_bl, power_fu = (_shell_power(image, shell_index, in_band) for image in (bl, fu))
    shell_centres = 0.5 * (shell_edges[:-1] + shell_edges[1:])
    slope = np.polyfit(shell_centres**2, np.log(power_fu / power_bl), 1)[0]
    return float(-slope / (4.0 * np.pi**2))


def match_sharpness(bl: np.ndarray, fu: np.ndarray, fu_blur_vox2: float) -> tuple[np.ndarray, np.ndarray]:
    """BL and FU with the sharper one blurred to the other's sharpness.

    Parameters
    ----------
    bl, fu
        The two images.
    fu_blur_vox2
        :func:`relative_blur_vox2` of the two: BL is blurred by it when positive, FU by its
        absolute value when negative.

    Returns
    -------
    bl, fu : numpy.ndarray
        The two images; the blurrier one is returned as it is (not copied).
    """
    if fu_blur_vox2 > 0:
        return gaussian_blur(bl, fu_blur_vox2), fu
    return bl, gaussian_blur(fu, -fu_blur_vox2)
