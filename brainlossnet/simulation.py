"""Longitudinal pairs with known truth made from one real head scan: atrophy, rescans, distortion.

One T1w scan (the *anatomy* ``A``, on its own voxel grid, with its intracranial cavity and a
soft tissue map ``T``) is acquired twice. Each acquisition samples ``A`` exactly once, with
cubic B-splines, through a chain of maps that is composed point by point before the single
interpolation:

    output voxel i  ->  scanner world w = affine i  ->  distortion w' = D(w)  (follow-up only)
                    ->  head position h = R w'  (own rigid pose per scan)
                    ->  anatomy voxel y = affine^-1 h  ->  atrophy  y + u(y)  ->  A(.)

Atrophy is the diffeomorphism ``phi = exp(a v)`` of a stationary velocity field ``v``: the
gradient of a Poisson potential on the cavity with no flux through the inner skull, whose
source is positive where tissue shrinks and negative where the cerebrospinal fluid grows, both
kept off the tissue/fluid interface (:func:`shrink_and_growth`, :func:`neumann_gradient_field`),
multiplied by a weight that is exactly 0 outside the cavity and in a 1 mm shell inside the
inner skull, so the skull and everything outside it stay fixed and the cavity maps onto itself.
Integrating a *stationary* velocity by scaling and squaring gives a smooth invertible map
whose inverse is ``exp(-a v)``.

Truth: the follow-up shows, at ``y``, the anatomy at ``phi(y)``; a tissue region ``S`` of the
baseline occupies ``phi^-1(S)`` in the follow-up, of volume ``∫_S det D(phi^-1)``. The true
volume change of a tissue definition ``T`` (a soft map or a binary mask) is therefore the
integral of ``T (det D(phi^-1) - 1)`` on a sub-voxel grid (:func:`fine_grid_changes`); the
amplitude ``a`` is solved for so that this measured number meets the request
(:func:`solve_amplitude`), and what is reported is the measured number. Rigid motion and
scanner distortion are not anatomy: they change no truth.

Everything here is pure numerics on numpy arrays (torch for the field integration), seeded by
an explicit :class:`numpy.random.Generator`. Coordinates are voxel indices of the anatomy's
grid unless a name says ``mm``/``world``; a Jacobian determinant in voxel units equals the one in
mm, so volumes need only the voxel volume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.linalg
import torch

from brainlossnet import deformation
from brainlossnet.sharpness import gaussian_blur

REGIONS: tuple[str, ...] = ("whole", "lobe", "ventricles")
"""Where atrophy happens: all tissue; the frontal lobe (:func:`frontal_weight`); only the
tissue around the ventricles, as the ventricles enlarge (:func:`ventricle_weight`)."""

TISSUE_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
"""Thresholds of the soft tissue map that define the binary tissue masks of the truth's spread."""

SCALING_STEPS = 7
"""Scaling-and-squaring steps: the velocity is divided by 2**7 = 128 before composing."""

FIXED_SHELL_MM = 1.0
"""Depth inside the cavity's edge where the atrophy field is exactly 0 (inner skull fixed)."""

TAPER_MM = 3.0
"""Width of the smooth rise of the atrophy field's weight beyond the fixed shell."""

RESCAN_INTENSITY = deformation.SynthesisRanges(gain=(0.95, 1.05), bias_std=0.05, noise_std=0.02)
"""Per-scan gain, log-bias standard deviation (control points every 64 voxels) and added noise
(relative to the cavity's median intensity) of :func:`brainlossnet.deformation.perturb_intensity`."""


@dataclass(frozen=True)
class Anatomy:
    """The source scan prepared for simulation.

    Attributes
    ----------
    image
        float32 (X, Y, Z) T1w intensities (the source's units).
    affine
        4x4 voxel-to-world affine (RAS+ mm) of the source grid; every simulated scan uses it.
    cavity
        bool intracranial cavity (inside the inner skull).
    tissue
        float32 soft brain-tissue map in [0, 1] (0 outside the cavity).
    definitions
        Tissue definitions over which the truth's spread is taken, name -> float32 map in
        [0, 1]; ``"soft"`` (the map itself, the primary truth) is always present.
    coefficients
        Cubic B-spline coefficients of ``image`` (edges repeated), shared by all scans.
    median
        Median intensity inside the cavity (the unit of the intensity perturbations).
    """

    image: np.ndarray
    affine: np.ndarray
    cavity: np.ndarray
    tissue: np.ndarray
    definitions: dict[str, np.ndarray]
    coefficients: np.ndarray
    median: float

    @property
    def voxel_mm(self) -> np.ndarray:
        """Voxel edge lengths (mm)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_ml(self) -> float:
        """Voxel volume (ml)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def center_mm(self) -> np.ndarray:
        """World coordinates of the cavity's centroid: centre of rotations, scalings and warps."""
        centroid = np.argwhere(self.cavity).mean(axis=0)
        return self.affine[:3, :3] @ centroid + self.affine[:3, 3]


def prepare_anatomy(
    image: np.ndarray,
    affine: np.ndarray,
    cavity: np.ndarray,
    extra_definitions: Mapping[str, np.ndarray] | None = None,
) -> Anatomy:
    """Tissue map, tissue definitions and spline coefficients of a source scan.

    Parameters
    ----------
    image, affine
        The T1w scan with skull and its voxel-to-world affine.
    cavity
        Its intracranial mask (e.g. :func:`brainlossnet.intracranial.intracranial_mask`).
    extra_definitions
        More tissue maps (binary or fractional) for the truth's spread, e.g.
        ``{"pipeline": parenchyma_fraction(...)}`` (:func:`brainlossnet.parenchyma.parenchyma_fraction`);
        restricted to the cavity.

    Raises
    ------
    ValueError
        If the shapes differ or the cavity is empty.
    """
    image = np.asarray(image, dtype=np.float32)
    cavity = np.asarray(cavity, dtype=bool)
    if image.shape != cavity.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and cavity {cavity.shape} must be 3D arrays of one shape")
    if not cavity.any():
        raise ValueError("the intracranial mask is empty")
    tissue = deformation.tissue_probability(torch.from_numpy(image), torch.from_numpy(cavity)).numpy()
    definitions = {"soft": tissue}
    for threshold in TISSUE_THRESHOLDS:
        definitions[f"p{threshold:.1f}"] = (tissue > threshold).astype(np.float32)
    for name, mask in (extra_definitions or {}).items():
        if np.shape(mask) != image.shape:
            raise ValueError(f"tissue definition {name!r} has shape {np.shape(mask)}, not {image.shape}")
        definitions[name] = (np.asarray(mask, dtype=np.float32) * cavity).astype(np.float32)
    coefficients = scipy.ndimage.spline_filter(image, order=3, output=np.float32, mode="nearest")
    return Anatomy(image, np.asarray(affine, dtype=float), cavity, tissue, definitions, coefficients,
                   float(np.median(image[cavity])))


# --------------------------------------------------------------------------------------
# The atrophy field


def cavity_weight(cavity: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    """Weight of the atrophy field: 0 outside the cavity and within :data:`FIXED_SHELL_MM` of its
    edge, rising smoothly (cubic smoothstep over :data:`TAPER_MM`) to 1 deeper inside."""
    depth_mm = scipy.ndimage.distance_transform_edt(cavity, sampling=voxel_mm)
    t = np.clip((depth_mm - FIXED_SHELL_MM) / TAPER_MM, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def frontal_weight(anatomy: Anatomy, start_fraction: float = 0.6, edge_mm: float = 3.0) -> np.ndarray:
    """Soft indicator of the frontal lobe without an atlas: the cavity anterior of the plane at
    ``start_fraction`` of its posterior-anterior extent (world y), with an ``edge_mm`` sigmoid edge."""
    index = np.indices(anatomy.cavity.shape, dtype=np.float32).reshape(3, -1)
    y_mm = (anatomy.affine[1, :3] @ index + anatomy.affine[1, 3]).reshape(anatomy.cavity.shape)
    inside = y_mm[anatomy.cavity]
    plane = inside.min() + start_fraction * (inside.max() - inside.min())
    return (anatomy.cavity / (1.0 + np.exp(-(y_mm - plane) / edge_mm))).astype(np.float32)


def ventricle_weight(anatomy: Anatomy, depth_fraction: float = 0.4) -> np.ndarray:
    """Soft map of the ventricles: cerebrospinal fluid deeper than ``depth_fraction`` of the
    cavity's largest depth below the inner skull (deep fluid is ventricular; no atlas)."""
    depth_mm = scipy.ndimage.distance_transform_edt(anatomy.cavity, sampling=anatomy.voxel_mm)
    deep = depth_mm > depth_fraction * depth_mm.max()
    return ((1.0 - anatomy.tissue) * deep).astype(np.float32)


CORE_TISSUE_MM = 1.5
"""Tissue shrinks only deeper than this below its interface with the fluid (see :func:`shrink_and_growth`)."""


def shrink_and_growth(anatomy: Anatomy, region: str, periventricular_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Where tissue shrinks and where fluid grows, for one region of :data:`REGIONS`.

    Both stay off the tissue/fluid interface: tissue shrinks only deeper than
    :data:`CORE_TISSUE_MM` from the fluid (tissue map above 1/2 = solid), fluid grows only in
    voxels that no solid voxel touches (6-neighbourhood). Partial-volume voxels at the interface
    then keep their volume (Jacobian near 1), so the truth barely depends on where a tissue mask
    puts the edge, and the smooth field is resolved by the voxel grid (a field that shrank the
    cortex and grew the 1-voxel sulci beside it would not be).

    ``whole``: all (core) tissue shrinks, all (core) fluid grows; ``lobe``: the frontal tissue
    shrinks (:func:`frontal_weight`); ``ventricles``: only the ventricles grow
    (:func:`ventricle_weight`) and only the tissue within ``periventricular_mm`` of them shrinks.
    """
    solid = (anatomy.tissue > 0.5) & anatomy.cavity
    fluid = anatomy.cavity & ~solid
    depth_mm = scipy.ndimage.distance_transform_edt(~fluid, sampling=anatomy.voxel_mm)
    core_tissue = anatomy.tissue * (depth_mm > CORE_TISSUE_MM)
    core_fluid = (1.0 - anatomy.tissue) * (fluid & ~scipy.ndimage.binary_dilation(solid))
    if region == "whole":
        shrink, growth = core_tissue, core_fluid
    elif region == "lobe":
        shrink, growth = core_tissue * frontal_weight(anatomy), core_fluid
    elif region == "ventricles":
        growth = core_fluid * (ventricle_weight(anatomy) > 0)
        distance_mm = scipy.ndimage.distance_transform_edt(growth < 0.5, sampling=anatomy.voxel_mm)
        near = np.clip(1.0 - (distance_mm - periventricular_mm) / 3.0, 0.0, 1.0)
        shrink = core_tissue * near
    else:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    return (np.asarray(shrink * anatomy.cavity, dtype=np.float32),
            np.asarray(growth * anatomy.cavity, dtype=np.float32))


def _cavity_laplacian(cavity: np.ndarray) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """Graph Laplacian (6-neighbour, voxel units) of the cavity's voxels and their flat indices.

    Only pairs of neighbours that are both inside are linked, which is the zero-flux (Neumann)
    condition at the cavity's edge.
    """
    index = np.full(cavity.shape, -1, dtype=np.int64)
    index[cavity] = np.arange(int(cavity.sum()))
    lows, highs = [], []
    for axis in range(3):
        moved = np.moveaxis(index, axis, 0)
        low, high = moved[:-1].ravel(), moved[1:].ravel()
        linked = (low >= 0) & (high >= 0)
        lows.append(low[linked])
        highs.append(high[linked])
    low, high = np.concatenate(lows), np.concatenate(highs)
    n = int(cavity.sum())
    adjacency = scipy.sparse.coo_matrix((np.ones(len(low)), (low, high)), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (scipy.sparse.diags(degree) - adjacency).tocsr(), degree


def neumann_gradient_field(source: np.ndarray, cavity: np.ndarray, rtol: float = 1e-5) -> np.ndarray:
    """Curl-free field (3, X, Y, Z), voxels, with divergence ``source`` in the cavity and no flux
    through its edge.

    Solves Poisson's equation ``Δφ = source`` on the cavity's voxels with zero normal gradient at
    the inner skull (conjugate gradients on the graph Laplacian, Jacobi-preconditioned; the source is
    first made to sum to 0, the condition for a solution) and returns ``grad φ``: per axis the mean
    of the two one-sided differences at each voxel, a difference across the edge counting as 0.
    Unlike the free-space solution of :func:`brainlossnet.deformation.atrophy_unit_field`, this
    field does not push through the skull, so fixing the skull costs almost no change of its
    divergence.
    """
    laplacian, degree = _cavity_laplacian(cavity)
    rhs = -np.asarray(source, dtype=np.float64)[cavity]
    rhs -= rhs.mean()
    preconditioner = scipy.sparse.diags(1.0 / np.maximum(degree, 1.0))
    solution, info = scipy.sparse.linalg.cg(laplacian, rhs, rtol=rtol, maxiter=20000, M=preconditioner)
    if info != 0:
        raise RuntimeError(f"the Poisson solve did not converge ({info} iterations)")
    potential = np.zeros(cavity.shape)
    potential[cavity] = solution
    field = np.zeros((3, *cavity.shape), dtype=np.float32)
    for axis in range(3):
        step = np.diff(potential, axis=axis) * (np.diff(cavity.astype(np.int8), axis=axis) == 0)
        step *= np.take(cavity, np.arange(cavity.shape[axis] - 1), axis=axis)
        padding = [(0, 0)] * 3
        padding[axis] = (1, 0)
        before = np.pad(step, padding)
        padding[axis] = (0, 1)
        after = np.pad(step, padding)
        field[axis] = 0.5 * (before + after) * cavity
    return field


def unit_velocity(anatomy: Anatomy, region: str) -> np.ndarray:
    """Stationary velocity (3, X, Y, Z), voxels, of unit atrophy in ``region``.

    Its divergence is +1 times the shrink map and negative on the growth map, balanced so that
    the cavity keeps its volume (:func:`shrink_and_growth`, :func:`neumann_gradient_field`), and
    it is multiplied by :func:`cavity_weight`, so it is exactly 0 outside the cavity and in the
    fixed shell under the inner skull.
    """
    shrink, growth = shrink_and_growth(anatomy, region)
    source = shrink - growth * (float(shrink.sum()) / max(float(growth.sum()), 1e-6))
    field = neumann_gradient_field(source, anatomy.cavity)
    return field * cavity_weight(anatomy.cavity, anatomy.voxel_mm)[None]


def exponentiate(velocity: np.ndarray, steps: int = SCALING_STEPS) -> np.ndarray:
    """Displacement of ``exp(v)`` by scaling and squaring: ``u = v / 2**steps``, then ``steps``
    times ``u(x) <- u(x) + u(x + u(x))`` (trilinear). ``exp(-v)`` is its inverse. Voxels where
    ``v`` is 0 stay exactly fixed (they are fixed points of the flow)."""
    field = torch.from_numpy(np.ascontiguousarray(velocity, dtype=np.float32)) / 2.0**steps
    fixed = (field == 0).all(dim=0)  # zeros of v are fixed points of the flow: keep them exact
    grid = deformation.voxel_grid(tuple(int(n) for n in field.shape[1:]))
    for _ in range(steps):
        points = grid + field
        field = field + torch.stack([deformation.sample_at(component, points) for component in field])
        field[:, fixed] = 0.0
    return field.numpy()


def jacobian_minus_one(displacement: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """det(I + G) - 1 of a (3, X, Y, Z) displacement, G = grad u by central differences.

    ``spacing`` is the grid step in the displacement's units (1 for a voxel grid, ``1/s`` for a
    grid ``s`` times finer). Expanded as tr G + (sum of the principal 2x2 minors of G) + det G, so
    the small local volume change is computed without the cancellation of ``det - 1`` in float32.
    """
    g = [np.gradient(np.asarray(component, dtype=np.float32), spacing) for component in displacement]
    trace = g[0][0] + g[1][1] + g[2][2]
    minors = (g[0][0] * g[1][1] - g[0][1] * g[1][0] + g[0][0] * g[2][2] - g[0][2] * g[2][0]
              + g[1][1] * g[2][2] - g[1][2] * g[2][1])
    det = (g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1])
           - g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0])
           + g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0]))
    return trace + minors + det


def _upsample(volume: np.ndarray, supersample: int) -> np.ndarray:
    """Trilinear values at the centres of a grid ``supersample`` times finer (edges clamped)."""
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    leading = tensor.dim() - 3
    batch = tensor.reshape(1, -1, *tensor.shape[leading:])
    fine = torch.nn.functional.interpolate(batch, scale_factor=supersample, mode="trilinear", align_corners=False)
    return fine.reshape(*tensor.shape[:leading], *fine.shape[2:]).numpy()


def fine_grid_changes(inverse_displacement: np.ndarray, weights: Mapping[str, np.ndarray],
                      supersample: int = 2, slab_vox: int = 16) -> tuple[dict[str, float], float]:
    """∫ weight x (det D(phi^-1) - 1), in voxels, on a grid ``supersample`` times finer.

    The displacement and the weights are interpolated trilinearly onto the fine grid (as the
    warps interpolate them), the Jacobian is differentiated there (:func:`jacobian_minus_one`
    with step ``1 / supersample``), and the products are summed times the fine voxel volume.
    The grid is processed in slabs of ``slab_vox`` voxels along x (one voxel of overlap) to
    bound memory.

    Returns
    -------
    changes, min_jacobian
        Integral per weight name (voxels) and the smallest fine-grid Jacobian determinant.
    """
    n_x = inverse_displacement.shape[1]
    totals = dict.fromkeys(weights, 0.0)
    smallest = np.inf
    for start in range(0, n_x, slab_vox):
        stop = min(start + slab_vox, n_x)
        low, high = max(start - 1, 0), min(stop + 1, n_x)
        keep = slice((start - low) * supersample, (stop - low) * supersample)
        density = jacobian_minus_one(_upsample(inverse_displacement[:, low:high], supersample),
                                     1.0 / supersample)[keep]
        smallest = min(smallest, float(density.min()))
        for name, weight in weights.items():
            fine = _upsample(weight[low:high], supersample)[keep]
            totals[name] += float(np.sum(fine * density, dtype=np.float64)) / supersample**3
    return totals, 1.0 + smallest


@dataclass(frozen=True)
class Truth:
    """True volumes and changes of one pair, from Jacobian integration.

    ``dbpv_pct`` maps each tissue definition to its percent change; the primary truth is
    ``dbpv_pct["soft"]``; ``spread_pct`` is max - min over the definitions; ``dtiv_pct`` is the
    cavity's change (0 up to discretisation: the cavity maps onto itself); ``min_jacobian`` is
    the smallest Jacobian determinant of ``phi^-1`` (positive: no folding); ``definition_ml`` is
    the baseline volume of each tissue definition.
    """

    dbpv_pct: dict[str, float]
    dtiv_pct: float
    bpv_bl_ml: float
    tiv_bl_ml: float
    min_jacobian: float
    definition_ml: dict[str, float]

    @property
    def spread_pct(self) -> float:
        """Range of the percent change across tissue definitions."""
        return max(self.dbpv_pct.values()) - min(self.dbpv_pct.values())

    @property
    def dbpv_ml(self) -> dict[str, float]:
        """Change of each tissue definition in ml (the change happens in the tissue's core, so
        this varies less across definitions than the percentage, whose denominator differs)."""
        return {name: pct / 100.0 * self.definition_ml[name] for name, pct in self.dbpv_pct.items()}


def measure_truth(anatomy: Anatomy, inverse_displacement: np.ndarray | None, supersample: int = 2,
                  definitions: tuple[str, ...] | None = None) -> Truth:
    """Parenchyma and TIV change of a pair whose follow-up shows the anatomy at ``phi(y)``.

    The volume of a tissue map ``T`` is its sum (the same on the fine grid, as ``T`` is 0 at the
    grid's faces); its change is ``∫ T (det D(phi^-1) - 1)`` on the fine grid
    (:func:`fine_grid_changes`).

    Parameters
    ----------
    inverse_displacement
        Displacement of ``phi^-1`` (``exp(-a v)``), or None for no change (rescans).
    supersample
        Sub-samples per voxel edge of the integration grid.
    definitions
        Names of ``anatomy.definitions`` to measure (default all).
    """
    names = tuple(anatomy.definitions) if definitions is None else definitions
    weights = {name: anatomy.definitions[name] for name in names}
    weights["cavity"] = anatomy.cavity.astype(np.float32)
    volumes = {name: float(np.sum(weight, dtype=np.float64)) for name, weight in weights.items()}
    if inverse_displacement is None:
        changes, min_jacobian = dict.fromkeys(weights, 0.0), 1.0
    else:
        changes, min_jacobian = fine_grid_changes(inverse_displacement, weights, supersample)
    pct = {name: 100.0 * changes[name] / volumes[name] for name in weights}
    dtiv_pct = pct.pop("cavity")
    bpv_ml = float(np.sum(anatomy.tissue, dtype=np.float64)) * anatomy.voxel_ml
    definition_ml = {name: volumes[name] * anatomy.voxel_ml for name in names}
    return Truth(pct, dtiv_pct, bpv_ml, volumes["cavity"] * anatomy.voxel_ml, min_jacobian, definition_ml)


@dataclass(frozen=True)
class Atrophy:
    """A solved atrophy deformation: ``phi = exp(amplitude v)`` and its inverse (displacements,
    None for no change) and the truth measured on every tissue definition."""

    amplitude: float
    forward: np.ndarray | None
    inverse: np.ndarray | None
    truth: Truth


def solve_amplitude(
    anatomy: Anatomy, velocity: np.ndarray | None, requested_pct: float, tolerance_pct: float = 1e-3,
    max_iterations: int = 8, min_jacobian: float = 0.1,
) -> Atrophy:
    """Amplitude of ``velocity`` whose measured parenchyma change (soft truth) is ``requested_pct``.

    The change is nearly linear in the amplitude; secant steps from 0 (no change) stop within
    ``tolerance_pct``. A request of 0 (or no velocity) gives the identity.

    Raises
    ------
    ValueError
        If the request is not met or the deformation would fold (a Jacobian determinant of
        ``phi`` or ``phi^-1`` below ``min_jacobian``).
    """
    if requested_pct == 0.0 or velocity is None:
        return Atrophy(0.0, None, None, measure_truth(anatomy, None))
    amplitudes, changes = [0.0], [0.0]
    amplitude = -requested_pct / 100.0
    for _ in range(max_iterations):
        inverse = exponentiate(-amplitude * velocity)
        truth = measure_truth(anatomy, inverse, definitions=("soft",))
        if truth.min_jacobian < min_jacobian:
            raise ValueError(f"a change of {requested_pct} % folds the deformation "
                             f"(Jacobian {truth.min_jacobian:.3f}); request less")
        amplitudes.append(amplitude)
        changes.append(truth.dbpv_pct["soft"])
        if abs(changes[-1] - requested_pct) <= tolerance_pct:
            forward = exponentiate(amplitude * velocity)
            if 1.0 + float(jacobian_minus_one(forward).min()) < min_jacobian:
                raise ValueError(f"a change of {requested_pct} % folds the deformation; request less")
            return Atrophy(amplitude, forward, inverse, measure_truth(anatomy, inverse))
        slope = (changes[-1] - changes[-2]) / (amplitudes[-1] - amplitudes[-2])
        amplitude += (requested_pct - changes[-1]) / slope
    raise ValueError(f"no amplitude met {requested_pct} % within {tolerance_pct} % (last {changes[-1]:.4f} %)")


# --------------------------------------------------------------------------------------
# Acquisition: pose, scanner distortion, one interpolation, intensities


def random_pose(rng: np.random.Generator, center_mm: np.ndarray, max_rotation_deg: float = 3.0,
                max_translation_mm: float = 3.0) -> np.ndarray:
    """4x4 rigid world map (scanner -> head) rotating about ``center_mm`` by uniform angles up to
    ``max_rotation_deg`` about each axis and translating up to ``max_translation_mm`` per axis."""
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    rotation = deformation.rotation_matrix(torch.from_numpy(angles)).numpy()
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = center_mm - rotation @ center_mm + rng.uniform(-max_translation_mm, max_translation_mm, 3)
    return pose


def gradient_warp_coefficients(rng: np.random.Generator, max_mm: float = 1.0) -> np.ndarray:
    """Random coefficients (3,) of :func:`gradient_warp_mm`, of sign and size drawn per axis, scaled so
    that the largest displacement on a sphere of 100 mm radius is about ``max_mm``."""
    return rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 1.0, 3) * max_mm / 4.0


def gradient_warp_mm(points_mm: np.ndarray, center_mm: np.ndarray, coefficients: np.ndarray,
                     radius_mm: float = 100.0) -> np.ndarray:
    """Displacement (mm) of a gradient-nonlinearity-like warp at (3, N) world points.

    Each gradient coil displaces along its own axis by a third-order solid harmonic of the
    position relative to ``center_mm`` (harmonic, as a coil's field is): x (4z² - x² - y²),
    y (4z² - x² - y²) and z (2z² - 3x² - 3y²), in units of ``radius_mm`` and times ``coefficients``
    (mm); the displacement is 0 at the centre and grows with the cube of the distance.
    """
    x, y, z = (points_mm - center_mm[:, None]) / radius_mm
    transverse = 4.0 * z * z - x * x - y * y
    return np.stack([
        coefficients[0] * x * transverse,
        coefficients[1] * y * transverse,
        coefficients[2] * z * (2.0 * z * z - 3.0 * x * x - 3.0 * y * y),
    ])


@dataclass(frozen=True)
class Distortion:
    """Scanner distortion of a follow-up: scaling per world axis about the centre (1.008 shows
    the head 0.8 % larger), gradient-warp coefficients (mm; None for none) and a wider
    point-spread function (variance in mm² of the Gaussian the scan is blurred by before its
    noise; 0 for none)."""

    scaling: tuple[float, float, float] = (1.0, 1.0, 1.0)
    warp_mm: np.ndarray | None = None
    blur_mm2: float = 0.0


def acquire(anatomy: Anatomy, pose: np.ndarray, atrophy: np.ndarray | None = None,
            distortion: Distortion = Distortion()) -> np.ndarray:
    """One scan of the anatomy on its own grid, interpolated once (cubic B-spline; beyond the
    source's field of view the edge values are repeated).

    Parameters
    ----------
    pose
        4x4 world map from scanner to head coordinates (:func:`random_pose`).
    atrophy
        Displacement of ``phi`` (voxels), sampled trilinearly at the posed points, or None.
    distortion
        Applied in scanner coordinates before the pose; its blur last, on the scan's grid.
    """
    shape = anatomy.image.shape
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = anatomy.affine[:3, :3] @ index + anatomy.affine[:3, 3:4]
    center = anatomy.center_mm
    scaling = np.asarray(distortion.scaling, dtype=float)
    if np.any(scaling != 1.0):
        world = center[:, None] + (world - center[:, None]) / scaling[:, None]
    if distortion.warp_mm is not None:
        world = world + gradient_warp_mm(world, center, distortion.warp_mm)
    head = pose[:3, :3] @ world + pose[:3, 3:4]
    del world
    to_voxel = np.linalg.inv(anatomy.affine)
    points = to_voxel[:3, :3] @ head + to_voxel[:3, 3:4]
    del head
    if atrophy is not None:
        points_t = torch.from_numpy(points.reshape(3, *shape))
        for axis in range(3):
            points[axis] += deformation.sample_at(torch.from_numpy(atrophy[axis]), points_t).double().numpy().ravel()
        del points_t
    values = scipy.ndimage.map_coordinates(anatomy.coefficients, points, order=3, prefilter=False, mode="nearest")
    scan = values.reshape(shape).astype(np.float32)
    if distortion.blur_mm2:
        scan = gaussian_blur(scan, distortion.blur_mm2 / anatomy.voxel_mm**2)
    return scan


def perturb(anatomy: Anatomy, scan: np.ndarray, generator: torch.Generator,
            ranges: deformation.SynthesisRanges = RESCAN_INTENSITY) -> np.ndarray:
    """A scan's own gain, smooth bias field and noise (:func:`brainlossnet.deformation.perturb_intensity`,
    in units of the cavity's median), clipped at 0 like a magnitude image."""
    normalised = torch.from_numpy(scan / np.float32(anatomy.median))
    perturbed = deformation.perturb_intensity(normalised, ranges, generator).numpy()
    return np.clip(perturbed * np.float32(anatomy.median), 0.0, None).astype(np.float32)


@dataclass(frozen=True)
class SimulatedPair:
    """Baseline and follow-up images (float32, the anatomy's grid) and the pair's truth."""

    baseline: np.ndarray
    followup: np.ndarray
    truth: Truth
    amplitude: float


def simulate_pair(anatomy: Anatomy, atrophy: Atrophy, seed: int, distortion: Distortion = Distortion(),
                  max_rotation_deg: float = 3.0, max_translation_mm: float = 3.0) -> SimulatedPair:
    """BL and FU of one pair: each with its own pose, gain, bias and noise; FU with the atrophy
    (from :func:`solve_amplitude`) and the scanner ``distortion``. A pure function of ``seed``."""
    rng = np.random.default_rng([int(seed), 1])
    generator = torch.Generator().manual_seed(int(seed))
    poses = [random_pose(rng, anatomy.center_mm, max_rotation_deg, max_translation_mm) for _ in range(2)]
    baseline = perturb(anatomy, acquire(anatomy, poses[0]), generator)
    followup = perturb(anatomy, acquire(anatomy, poses[1], atrophy.forward, distortion), generator)
    return SimulatedPair(baseline, followup, atrophy.truth, atrophy.amplitude)


def with_warp(distortion: Distortion, seed: int, max_mm: float = 1.0) -> Distortion:
    """``distortion`` plus a gradient warp with coefficients drawn from ``seed``."""
    rng = np.random.default_rng([int(seed), 2])
    return dataclasses.replace(distortion, warp_mm=gradient_warp_coefficients(rng, max_mm))
