"""Brain parenchyma (grey + white matter) inside the intracranial cavity, as a tissue fraction.

Within the cavity a T1w scan holds three tissues: CSF (dark), grey matter and white
matter. After ANTs N4 bias correction inside the cavity, a three-class Gaussian mixture
with one shared variance (scikit-learn) finds the mean intensity of each class. Under
linear partial volume a voxel between CSF and grey matter is a mix of the two, and its
intensity says how much of it is tissue: the parenchyma fraction is 0 at the CSF mean, 1
at the grey matter mean and above, linear in between. The paper's binary mask is this
map thresholded at one half (the midpoint of the two means), which the report's contours
draw.

Why a fraction and not the mask: the pipeline integrates the Jacobian determinant over
the parenchyma (:func:`brainlossnet.volumetry.pair_volumes`), and a binary mask counts a
voxel that is 0.6 tissue as all tissue and one that is 0.4 as none. Where the
deformation moves the tissue/fluid interface (enlarging ventricles and sulci push on the
partial-volume voxels along them) that edge decides how much of the change the mask sees,
and how much partial volume a head has differs from person to person: under the same
simulated -1 % deformation the binary mask's own change was 1.17 (one person) and 1.50
(another) times the soft tissue map's (docs/accuracy.md, "The parenchyma as a tissue
fraction"). The fraction weighs each voxel
by the tissue it holds, as FSL SIENAX's partial-volume estimates do.

Why this rule: MR noise is the same in every tissue, so one shared variance; the spread
of the dark class beyond it is partial volume. On a blurred phantom with known tissue
fractions the fraction's sum is 1.5 % under the true parenchyma volume (noise takes pure
grey matter voxels below the grey mean, where they count as part CSF; the thresholded
mask: 0.4-1.0 % under), it costs under a second of CPU besides N4, and the BVL depends on
it only through the weights it gives the same tissue in both sessions.
"""

from __future__ import annotations

import ants
import numpy as np
from sklearn.mixture import GaussianMixture

N4_SHRINK_FACTOR = 4
N4_ITERATIONS = [20, 20]
MIXTURE_SAMPLE_VOXELS = 200_000
"""Voxels (drawn with a fixed seed) on which the mixture is fitted; the fraction is read for all."""
MIXTURE_SEED = 0
PARENCHYMA_DEFINITION = "fraction-linear-partial-volume"
"""What the parenchyma map holds: each voxel's tissue fraction under linear partial volume
(:func:`parenchyma_fraction`); a binary mask until 2026-12-07."""


def csf_and_grey_means(intensities: np.ndarray) -> tuple[float, float]:
    """Mean intensities of CSF and grey matter: the two darker classes of a three-class mixture.

    Parameters
    ----------
    intensities
        Bias-corrected intensities of the voxels inside the cavity (1D).

    Returns
    -------
    tuple of float
        ``(csf_mean, grey_mean)``, the first below the second.

    Raises
    ------
    ValueError
        If the two means do not differ (an image without contrast inside the cavity).
    """
    values = np.asarray(intensities, dtype=np.float64).reshape(-1, 1)
    rng = np.random.default_rng(MIXTURE_SEED)
    sample = values[rng.choice(len(values), min(MIXTURE_SAMPLE_VOXELS, len(values)), replace=False)]
    mixture = GaussianMixture(
        n_components=3,
        covariance_type="tied",
        init_params="kmeans",
        random_state=MIXTURE_SEED,
    ).fit(sample)
    csf_mean, grey_mean, _ = np.sort(mixture.means_.ravel())
    if not grey_mean - csf_mean > 1e-6 * max(abs(grey_mean), 1.0):
        raise ValueError(f"no contrast between CSF and grey matter inside the cavity (class means {csf_mean:.6g} "
                         f"and {grey_mean:.6g})")
    return float(csf_mean), float(grey_mean)


def parenchyma_fraction(t1w: np.ndarray, intracranial: np.ndarray) -> np.ndarray:
    """Fraction of each voxel that is grey or white matter, inside an intracranial mask.

    Parameters
    ----------
    t1w
        T1w image (any orientation; the result has the same voxel grid).
    intracranial
        Binary intracranial (TIV) mask of the same shape.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1]: 0 outside ``intracranial`` and at or below the CSF mean, 1 at or
        above the grey matter mean, linear in between. Above 0.5 exactly where the voxel is
        brighter than the midpoint of the two means. Deterministic for given inputs.

    Raises
    ------
    ValueError
        If the shapes differ, the intracranial mask is empty or the image shows no contrast
        inside it (:func:`csf_and_grey_means`).
    """
    if t1w.shape != intracranial.shape:
        raise ValueError(f"image {t1w.shape} and mask {intracranial.shape} differ in shape")
    cavity = np.asarray(intracranial, dtype=bool)
    if not np.any(cavity):
        raise ValueError("the intracranial mask is empty")
    corrected = ants.n4_bias_field_correction(
        ants.from_numpy(np.asarray(t1w, dtype=np.float32)),
        mask=ants.from_numpy(cavity.astype(np.float32)),
        shrink_factor=N4_SHRINK_FACTOR,
        convergence={"iters": N4_ITERATIONS, "tol": 1e-6},
    ).numpy()
    csf_mean, grey_mean = csf_and_grey_means(corrected[cavity])
    fraction = np.clip((corrected - csf_mean) / (grey_mean - csf_mean), 0.0, 1.0)
    return np.where(cavity, fraction, 0.0).astype(np.float32)
