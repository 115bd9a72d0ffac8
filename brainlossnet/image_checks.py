"""Is an image fit for the method? Pure checks on arrays, affines and header numbers.

Every check raises :class:`InputDataError` with a one-line reason (without the file name,
which the caller prepends), so that a bad scan is refused before or at the first stage
instead of producing a meaningless number later. The thresholds are module constants,
documented in docs/usage.md ("Input checks").
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage

MAX_VOXEL_MM = 4.0
"""Voxels with an edge of this length or more are refused: at 4 mm a 1 % volume change
(a mean boundary shift of ~0.06 mm) is far below what the image resolves, and reslicing
to 1 mm cannot bring the missing detail back."""

MAX_ANISOTROPY = 3.0
"""Largest allowed ratio of the longest to the shortest voxel edge (e.g. 1 x 1 x 3 mm is
allowed, 1 x 1 x 3.5 mm is not): thick slices blur the boundaries along one axis only."""

SKULL_STRIPPED_MAX_SURROUND = 0.1
"""A head whose :func:`surround_signal_ratio` is below this is taken as skull-stripped.
With scalp present the ratio is the brightness of scalp fat and muscle relative to the
cavity's median, about 0.4 to 1.3 on T1w; a skull-stripped image has (near) zero there."""

SURROUND_SHELL_MM = (2.0, 15.0)
"""Distances (mm) from the intracranial cavity between which :func:`surround_signal_ratio`
looks for signal: past the inner skull surface, and far enough to reach the scalp
over an adult skull."""

SURROUND_PERCENTILE = 90.0
"""Percentile of the shell's intensities compared with the cavity's median: the bright
scalp occupies a minority of the shell (bone and air are dark), so a high percentile."""

MAX_INFERIOR_CUT_FRACTION = 0.15
"""Largest allowed area of the cavity on the inferior face of the field of view, as a
fraction of its largest axial cross-section. The spinal canal leaving through the foramen
magnum (about 8 cm2 against 120-150 cm2 of the largest section) is fine; a field of view
that ends above the foramen magnum cuts the cerebellum and brainstem (a section of
30 % or more) and is refused."""


class InputDataError(ValueError):
    """The input data cannot be used by the method (BIDS/sysexits status 65, EX_DATAERR)."""


def check_dimensions(shape: tuple[int, ...]) -> None:
    """Refuse anything but a 3D volume (a 4D series, a 2D slice, a single-voxel axis).

    Parameters
    ----------
    shape
        Array shape as stored in the file.
    """
    if len(shape) == 4 and shape[3] > 1:
        raise InputDataError(f"4D image with {shape[3]} volumes (shape {tuple(shape)}); "
                             "the method needs one 3D T1w volume")
    if len(shape) != 3:
        raise InputDataError(f"{len(shape)}D image (shape {tuple(shape)}); "
                             "the method needs one 3D T1w volume")
    if min(shape) < 2:
        raise InputDataError(f"2D image (shape {tuple(shape)}): an axis has a single voxel; "
                             "the method needs one 3D T1w volume")


def check_voxel_geometry(affine: np.ndarray) -> None:
    """Refuse a degenerate affine, voxels of ``MAX_VOXEL_MM`` or more, or anisotropy above ``MAX_ANISOTROPY``.

    Parameters
    ----------
    affine
        4x4 voxel-to-world affine (RAS+, mm).
    """
    matrix = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        raise InputDataError("degenerate voxel-to-world affine (non-finite or singular)")
    voxel_mm = np.linalg.norm(matrix[:3, :3], axis=0)
    sizes = " x ".join(f"{v:.3g}" for v in voxel_mm)
    if voxel_mm.max() >= MAX_VOXEL_MM:
        raise InputDataError(f"voxels of {sizes} mm: an edge of {MAX_VOXEL_MM:g} mm or more is "
                             "too coarse to measure brain volume change")
    if voxel_mm.max() / voxel_mm.min() > MAX_ANISOTROPY:
        raise InputDataError(f"voxels of {sizes} mm: anisotropy "
                             f"{voxel_mm.max() / voxel_mm.min():.2g}:1 exceeds {MAX_ANISOTROPY:g}:1")


def check_scaling(slope: float, intercept: float, integer_storage: bool) -> None:
    """Refuse a NIfTI scaling (``scl_slope``, ``scl_inter``) that gives no defined intensities.

    NIfTI-1 says a slope of 0 means "no scaling", and nibabel writes NaN for the same, so
    0 and NaN with a zero (or NaN) intercept are accepted. An infinite slope, a
    non-finite intercept with a valid slope, or an intercept set while the slope says
    "no scaling" leave the stored integers without a defined meaning (nibabel would
    silently read them unscaled).

    Parameters
    ----------
    slope, intercept
        Raw header values.
    integer_storage
        Whether the voxels are stored as integers (float data is not scaled in practice).
    """
    if not integer_storage:
        return
    if math.isinf(slope):
        raise InputDataError(f"integer image with a broken scaling header: scl_slope = {slope}")
    no_scaling = slope == 0 or math.isnan(slope)
    if no_scaling and not (intercept == 0 or math.isnan(intercept)):
        raise InputDataError(f"integer image with a broken scaling header: scl_inter = {intercept:g} "
                             f"but scl_slope = {slope} (no scaling)")
    if not no_scaling and not math.isfinite(intercept):
        raise InputDataError(f"integer image with a broken scaling header: scl_inter = {intercept}")


def check_intensities(image: np.ndarray) -> None:
    """Refuse NaN or infinite voxels, and an all-zero or constant image.

    Parameters
    ----------
    image
        Voxel values with the file's scaling applied.
    """
    finite = np.isfinite(image)
    n_bad = int(finite.size - np.count_nonzero(finite))
    if n_bad:
        n_nan = int(np.count_nonzero(np.isnan(image)))
        raise InputDataError(f"{n_nan} NaN and {n_bad - n_nan} infinite voxel values "
                             f"({100.0 * n_bad / image.size:.3g} % of the image)")
    low, high = float(np.min(image)), float(np.max(image))
    if low == high:
        what = "all-zero" if high == 0 else f"constant ({high:g})"
        raise InputDataError(f"{what} image: no anatomy to measure")


def surround_signal_ratio(image: np.ndarray, cavity: np.ndarray, voxel_mm: np.ndarray) -> float:
    """Brightness just outside the intracranial cavity relative to inside it.

    The ``SURROUND_PERCENTILE`` of the intensities at ``SURROUND_SHELL_MM`` from the cavity
    (within the array), divided by the median intensity inside the cavity. On a T1w head
    the shell holds the dark skull and the bright scalp (fat, muscle, skin), so the ratio
    is high; on a skull-stripped image everything outside the brain is (near) zero.

    Parameters
    ----------
    image
        T1w intensities.
    cavity
        Boolean intracranial mask of the same shape (e.g. deepbet's).
    voxel_mm
        Voxel edge lengths, for distances in mm.

    Returns
    -------
    float
        The ratio; 0 when the shell lies entirely outside the array or the cavity is dark.
    """
    cavity = np.asarray(cavity, dtype=bool)
    distance_mm = scipy.ndimage.distance_transform_edt(~cavity, sampling=np.asarray(voxel_mm, float))
    shell = (distance_mm > SURROUND_SHELL_MM[0]) & (distance_mm <= SURROUND_SHELL_MM[1])
    inside = float(np.median(image[cavity])) if np.any(cavity) else 0.0
    if not np.any(shell) or inside <= 0:
        return 0.0
    return float(np.percentile(image[shell], SURROUND_PERCENTILE)) / inside


def looks_skull_stripped(surround_ratio: float) -> bool:
    """Whether a :func:`surround_signal_ratio` says the skull and scalp were removed."""
    return surround_ratio < SKULL_STRIPPED_MAX_SURROUND


def inferior_cut_fraction(cavity: np.ndarray) -> float:
    """Area of a RAS cavity mask on the inferior face relative to its largest axial section.

    Parameters
    ----------
    cavity
        Boolean mask indexed [x, y, z], z inferior to superior.

    Returns
    -------
    float
        0 when the cavity does not reach the inferior face.
    """
    areas = np.count_nonzero(np.asarray(cavity, dtype=bool), axis=(0, 1))
    return float(areas[0] / areas.max()) if areas.max() else 0.0


def cavity_cut_faces(cavity: np.ndarray) -> list[str]:
    """Faces of the field of view where the scan cuts the skull or the brainstem.

    The cavity may reach the inferior face only through the foramen magnum (see
    ``MAX_INFERIOR_CUT_FRACTION``); reaching any other face means the field of view
    cuts the skull.

    Parameters
    ----------
    cavity
        Boolean intracranial mask on a RAS grid.

    Returns
    -------
    list of str
        Names among "left", "right", "posterior", "anterior", "inferior", "superior".
    """
    mask = np.asarray(cavity, dtype=bool)
    faces = [("left", mask[0]), ("right", mask[-1]), ("posterior", mask[:, 0]),
             ("anterior", mask[:, -1]), ("superior", mask[:, :, -1])]
    cut = [name for name, face in faces if np.any(face)]
    if inferior_cut_fraction(mask) > MAX_INFERIOR_CUT_FRACTION:
        cut.append("inferior")
    return cut
