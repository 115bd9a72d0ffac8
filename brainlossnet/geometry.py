"""Voxel grids and rigid geometry: reslicing, the crop box and the halfway space.

Every function here is pure: arrays and 4x4 voxel-to-world affines (RAS+, mm) in, arrays
and affines out. The pipeline interpolates each scan exactly once into its final grid (the
halfway crop); the 1 mm reslice made here only serves to find the crop box and to estimate
the rigid transform, so its interpolation never reaches a measured volume.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.ndimage

CROP_SHAPE: tuple[int, int, int] = (176, 208, 208)
"""Matrix of the crop in 1 mm voxels (x: left-right, y: posterior-anterior, z: inferior-superior)."""


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm: the norms of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def isotropic_ras_grid(
    shape: tuple[int, ...], affine: np.ndarray, voxel_mm: float = 1.0
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Axis-aligned RAS grid of ``voxel_mm`` voxels covering an image's field of view.

    The grid's axes are world x (left to right), y (posterior to anterior) and z (inferior
    to superior), whatever the source orientation (oblique, flipped or sagittal); its
    bounds enclose the source's corner voxel centres.

    Returns
    -------
    shape, affine
        Matrix size and voxel-to-world affine of the grid.
    """
    extent = np.array(shape[:3], dtype=float) - 1.0
    corners = np.array(np.meshgrid(*[[0.0, e] for e in extent], indexing="ij")).reshape(3, -1)
    world = np.asarray(affine, dtype=float)[:3, :3] @ corners + np.asarray(affine)[:3, 3:4]
    lower, upper = world.min(axis=1), world.max(axis=1)
    grid_shape = tuple(int(n) for n in np.floor((upper - lower) / voxel_mm + 1e-6).astype(int) + 1)
    grid_affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    grid_affine[:3, 3] = lower
    return grid_shape, grid_affine


def resample(
    source: np.ndarray,
    source_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    *,
    world_transform: np.ndarray | None = None,
    order: int = 3,
) -> np.ndarray:
    """Sample ``source`` on a target grid, optionally through a rigid/affine world map.

    A target voxel ``i`` is taken from the source at world point
    ``world_transform @ target_affine @ i``: ``world_transform`` maps target-world
    points to source-world points (identity when omitted). Voxels outside the source
    are 0. One call is one interpolation, however many transforms are composed.

    Parameters
    ----------
    order
        Spline order (1 linear, 3 cubic B-spline). Cubic keeps sub-voxel edges sharp,
        which the volume measurement needs.
    """
    world = np.eye(4) if world_transform is None else np.asarray(world_transform, dtype=float)
    target_to_source = np.linalg.inv(np.asarray(source_affine, dtype=float)) @ world @ target_affine
    resampled = scipy.ndimage.affine_transform(
        np.asarray(source, dtype=np.float32),
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=tuple(target_shape),
        order=order,
        mode="constant",
        cval=0.0,
        prefilter=order > 1,
    )
    return resampled.astype(np.float32, copy=False)


def reslice_to_isotropic(
    source: np.ndarray, affine: np.ndarray, voxel_mm: float = 1.0, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Reslice an image to isotropic voxels on the canonical RAS axes (paper, preprocessing)."""
    grid_shape, grid_affine = isotropic_ras_grid(source.shape, affine, voxel_mm)
    return resample(source, affine, grid_shape, grid_affine, order=order), grid_affine


def crop_box_start(
    mask: np.ndarray, crop_shape: tuple[int, int, int] = CROP_SHAPE
) -> tuple[int, int, int]:
    """First voxel of a ``crop_shape`` box centred on the bounding box of ``mask``.

    The box may extend beyond the array (it is then zero-padded by :func:`crop`).

    Raises
    ------
    ValueError
        If ``mask`` is empty or its bounding box does not fit inside the box with at least
        one voxel of margin on every face.
    """
    if not np.any(mask):
        raise ValueError("the intracranial mask is empty")
    starts: list[int] = []
    for axis, size in enumerate(crop_shape):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        occupied = np.flatnonzero(np.any(mask, axis=other_axes))
        low, high = int(occupied[0]), int(occupied[-1])
        extent = high - low + 1
        if extent + 2 > size:
            raise ValueError(
                f"the intracranial cavity spans {extent} voxels along axis {axis}, "
                f"more than the crop's {size} minus a 1-voxel margin on each side"
            )
        starts.append(low - (size - extent) // 2)
    return starts[0], starts[1], starts[2]


def crop(
    image: np.ndarray,
    affine: np.ndarray,
    start: tuple[int, int, int],
    crop_shape: tuple[int, int, int] = CROP_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a box out of an image without interpolation; outside the image is 0.

    Returns the box and its affine (the source affine shifted to the box's first voxel).
    """
    box = np.zeros(crop_shape, dtype=image.dtype)
    source_slices, box_slices = [], []
    for first, size, length in zip(start, crop_shape, image.shape):
        low, high = max(first, 0), min(first + size, length)
        source_slices.append(slice(low, max(high, low)))
        box_slices.append(slice(low - first, max(high, low) - first))
    box[tuple(box_slices)] = image[tuple(source_slices)]
    box_affine = np.array(affine, dtype=float)
    box_affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=float) + affine[:3, 3]
    return box, box_affine


FACE_NAMES: tuple[str, ...] = ("left", "right", "posterior", "anterior", "inferior", "superior")
"""Faces of a RAS voxel grid, in the order low/high x, low/high y, low/high z."""


def faces_touched(mask: np.ndarray) -> list[str]:
    """Names of the faces of a RAS grid that a mask reaches (see :data:`FACE_NAMES`)."""
    touched = []
    for axis in range(3):
        for side, index in enumerate((0, -1)):
            if np.any(np.take(mask, index, axis=axis)):
                touched.append(FACE_NAMES[2 * axis + side])
    return touched


def rigid_power(transform: np.ndarray, power: float) -> np.ndarray:
    """A rigid 4x4 world transform raised to a real power, via the matrix logarithm.

    ``rigid_power(T, 0.5)`` moves points half of the way along the screw motion of ``T``,
    which defines the halfway space; ``rigid_power(T, -0.5)`` the other half, backwards.
    """
    log_transform = np.real(scipy.linalg.logm(np.asarray(transform, dtype=float)))
    return np.real(scipy.linalg.expm(power * log_transform))


def symmetric_rigid(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Average of a registration and the inverse of its reverse, in the log domain.

    ``forward`` maps fixed-world points to moving-world points for one order of the
    images and ``backward`` for the swapped order. The result is exactly inverted when
    the two inputs are exchanged, so swapping BL and FU gives the same halfway space.
    """
    log_forward = np.real(scipy.linalg.logm(np.asarray(forward, dtype=float)))
    log_backward = np.real(scipy.linalg.logm(np.asarray(backward, dtype=float)))
    return np.real(scipy.linalg.expm(0.5 * (log_forward - log_backward)))


def halfway_grid_affine(
    bl_center_mm: np.ndarray,
    fu_center_mm: np.ndarray,
    fu_to_bl: np.ndarray,
    crop_shape: tuple[int, int, int] = CROP_SHAPE,
    voxel_mm: float = 1.0,
) -> np.ndarray:
    """Affine of the halfway crop: RAS axes, centred between the two crops' centres.

    A halfway point ``q`` is sampled in BL at ``fu_to_bl^(1/2) q`` and in FU at
    ``fu_to_bl^(-1/2) q``. The grid centre is the mean of both crop centres carried into
    halfway space, which is unchanged when BL and FU (and so ``fu_to_bl`` and its inverse)
    are exchanged.
    """
    half_back = rigid_power(fu_to_bl, -0.5)
    half_forward = rigid_power(fu_to_bl, 0.5)
    bl_in_halfway = half_back[:3, :3] @ bl_center_mm + half_back[:3, 3]
    fu_in_halfway = half_forward[:3, :3] @ fu_center_mm + half_forward[:3, 3]
    center = 0.5 * (bl_in_halfway + fu_in_halfway)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = center - voxel_mm * (np.asarray(crop_shape, dtype=float) - 1.0) / 2.0
    return affine


def grid_center_mm(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the centre of a voxel grid."""
    center_voxel = (np.asarray(shape[:3], dtype=float) - 1.0) / 2.0
    return np.asarray(affine)[:3, :3] @ center_voxel + np.asarray(affine)[:3, 3]
