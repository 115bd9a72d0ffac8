"""Synthetic T1-weighted heads, skull included, with atrophy of known size.

A phantom subject is a set of smooth implicit surfaces (signed-distance-like functions in
mm, negative inside): ellipsoids, capsules and clipping surfaces, joined by smooth unions
and perturbed by seeded low-frequency random modulation. Painted in order they give a
whole head: scalp (skin, bright subcutaneous fat, muscle), a dark skull with a brighter
diploe, the intracranial cavity (outer CSF, lateral and third ventricles), a cerebral
cortex folded by sulci and split by the interhemispheric and Sylvian fissures, white
matter, deep grey matter, a cerebellum with folia, and a brainstem that leaves the skull
through the foramen magnum as the spinal cord in a vertebral canal, plus eyes, orbital fat
and air sinuses. Intensities follow an MPRAGE (WM > GM > CSF, fat bright, bone dark); a
smooth multiplicative bias field, a gain and Rician noise make it look acquired. Sulci are
thin slabs around the zero set of a random band-limited field, kept where that set cuts
into the brain at a steep angle, so that they run inward from the surface as real ones do.

Partial volume comes from supersampling: a voxel that some surface crosses holds
``supersample**3`` sub-samples; every surface is expanded to second order about the
voxel centre (central differences on the voxel grid; thin slabs have smooth quadratic
profiles so the expansion resolves them even below the voxel size), each sub-sample gets
a soft occupancy one sub-sample wide, so volumes vary continuously with a surface's
position, the labels are composited per sub-sample and the label fractions averaged.
Voxels that no surface crosses get one label.

The label tree splits the intracranial cavity off first: a sub-sample's fractions are
``o_icv`` times those painted inside the cavity plus ``1 - o_icv`` times those painted
outside, so nothing painted inside (atrophy included) changes the cavity's volume.

Atrophy moves the parenchyma's boundaries (pial and white-matter surfaces, cerebellum,
and by half as much brainstem and deep grey matter) inward and the ventricle walls
outward (twice as far) by a shift in mm found by secant steps so that the parenchyma
volume changes by the requested percentage. The *true* volumes are always measured from
the label fractions the images are made of, never taken from the request:
``SyntheticPair.true_dbpv_pct`` is what an exact method must report. A follow-up placed
differently in the scanner samples the same anatomy on another grid; at ``scale=1`` that
moves the measured parenchyma volume by a few 0.001 %, at ``scale=0.5`` (features
below the voxel size) by up to about 0.03 %.

Everything here is pure numerics (numpy). Public API: ``make_head``, ``make_pair``,
``SyntheticHead``, ``SyntheticPair``, ``LABELS``. Example::

    pair = make_pair(7, atrophy_pct=-1.0, scale=0.5)   # BL and repositioned FU
    pair.true_dbpv_pct, pair.true_dtiv_pct              # about -1.0 and 0.0
    pair.fu.image, pair.fu.affine                       # float32 T1w, RAS+ affine

A full-size 1 mm head (192 x 240 x 240 voxels) takes about 5 s on one CPU core, a
half-size one about 0.5 s; a pair with atrophy about three times as long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import nibabel.orientations as nio
import numpy as np

LABELS: dict[str, int] = {
    "air": 0,
    "skin": 1,
    "fat": 2,
    "soft_tissue": 3,
    "bone": 4,
    "marrow": 5,
    "extracranial_csf": 6,
    "spinal_cord": 7,
    "eye": 8,
    "orbital_fat": 9,
    "csf": 10,
    "ventricle": 11,
    "cortical_gm": 12,
    "wm": 13,
    "deep_gm": 14,
    "cerebellar_gm": 15,
    "cerebellar_wm": 16,
    "brainstem": 17,
}
"""Label codes of ``SyntheticHead.labels`` (the dominant label of each voxel)."""

INTRACRANIAL_LABELS: tuple[int, ...] = tuple(range(10, 18))
"""Labels inside the inner skull: their union is the intracranial cavity (TIV)."""

PARENCHYMA_LABELS: tuple[int, ...] = tuple(range(12, 18))
"""Brain parenchyma: cortical, deep and cerebellar grey matter, white matter, brainstem."""

_N_LABELS = len(LABELS)

# Mean T1w (MPRAGE) intensity per label relative to white matter.
_INTENSITY = np.array(
    [0.0, 0.55, 1.08, 0.38, 0.08, 0.50, 0.25, 0.85, 0.20, 1.00,
     0.25, 0.25, 0.72, 1.00, 0.82, 0.72, 0.95, 0.88],
    dtype=np.float32,
)  # fmt: skip

_WM_SIGNAL = 800.0
"""Scanner-like intensity of white matter before gain and bias."""

_DEFAULT_FOV_MM = (192.0, 240.0, 240.0)
"""Field of view of a full-size (``scale=1``) head: whole skull, face and upper neck."""

_BIG_MM = 1.0e4
"""Value of a surface function outside the box in which it is evaluated (far outside)."""


@dataclass(frozen=True)
class SyntheticHead:
    """One synthetic T1w acquisition and its label-derived truth.

    Attributes
    ----------
    image
        T1w intensities (float32, non-negative, white matter near 800), indexed [x, y, z]
        in the requested orientation (RAS by default).
    affine
        4x4 voxel-to-world affine, RAS+ mm.
    labels
        uint8 dominant label per voxel (codes in ``LABELS``).
    parenchyma_frac, icv_frac
        float32 fraction of each voxel that is brain parenchyma / intracranial cavity.
    parenchyma_ml, icv_ml
        True volumes: the sums of the fractions times the voxel volume, in ml.
    seed, session
        Subject seed and acquisition index that made this image.
    atrophy_shift_mm
        Inward shift of the parenchyma boundary relative to the subject's baseline anatomy
        (0 for no atrophy, positive for loss).
    """

    image: np.ndarray
    affine: np.ndarray
    labels: np.ndarray
    parenchyma_frac: np.ndarray
    icv_frac: np.ndarray
    parenchyma_ml: float
    icv_ml: float
    seed: int
    session: int
    atrophy_shift_mm: float

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def image_int16(self) -> np.ndarray:
        """The image rounded to int16, as a scanner would store it."""
        return np.clip(np.rint(self.image), 0, np.iinfo(np.int16).max).astype(np.int16)

    def reoriented(self, orientation: str) -> SyntheticHead:
        """The same head with its arrays' axes in ``orientation`` (e.g. "LAS"), affine to match."""
        current = nio.io_orientation(self.affine)
        transform = nio.ornt_transform(current, nio.axcodes2ornt(tuple(orientation)))
        if np.array_equal(transform, nio.ornt_transform(current, current)):
            return self
        arrays = {
            name: np.ascontiguousarray(nio.apply_orientation(getattr(self, name), transform))
            for name in ("image", "labels", "parenchyma_frac", "icv_frac")
        }
        affine = self.affine @ nio.inv_ornt_aff(transform, self.image.shape)
        return replace(self, affine=affine, **arrays)


@dataclass(frozen=True)
class SyntheticPair:
    """Baseline and follow-up of one synthetic subject with known volume change.

    ``true_dbpv_pct`` and ``true_dtiv_pct`` are ``100 (V_FU - V_BL) / V_BL`` of the
    label-derived parenchyma and intracranial volumes (negative = loss); the TIV change is
    zero up to the sampling of the cavity on two differently placed grids.
    """

    bl: SyntheticHead
    fu: SyntheticHead
    requested_dbpv_pct: float
    true_dbpv_pct: float
    true_dtiv_pct: float


def make_head(
    seed: int,
    *,
    scale: float = 1.0,
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    shape: tuple[int, int, int] | None = None,
    atrophy_pct: float = 0.0,
    session: int = 0,
    reposition: bool = False,
    supersample: int = 2,
    orientation: str = "RAS",
) -> SyntheticHead:
    """Synthesise one T1w head scan of subject ``seed``.

    Parameters
    ----------
    seed
        Subject: head and brain size and shape, ventricle size, folding pattern, tissue
        contrast and position in the scanner all follow from it.
    scale
        Linear size of the head relative to an adult (0.5 gives a half-size head in a
        half-size field of view, for fast tests).
    voxel_mm
        Voxel edge lengths in mm (anisotropic allowed).
    shape
        Matrix size; by default the field of view is ``scale * (192, 240, 240)`` mm.
    atrophy_pct
        Requested percent change of the parenchyma volume relative to the subject's
        baseline anatomy (negative = loss). The achieved change is measured, see
        ``make_pair``.
    session
        Acquisition index: seeds the noise, bias field and gain (and the repositioning).
    reposition
        Move the head by a small session-specific rigid motion (up to ~3 mm and ~3 degrees
        at scale 1), as between two visits.
    supersample
        Sub-samples per voxel edge for partial volume.
    orientation
        Axis codes of the returned array (e.g. "RAS", "LAS", "PIR"); the affine follows.
    """
    _check_rendering(atrophy_pct, supersample)
    subject = _Subject.sample(seed, scale)
    grid = _Grid.make(subject, voxel_mm, shape, _pose(subject, session, reposition))
    fields = _evaluate_fields(subject, grid)
    fractions = _paint(fields, _layers(subject), grid, 0.0, supersample)
    shift_mm = 0.0
    if atrophy_pct:
        shift_mm = _atrophy_shift_mm(subject, fields, grid, fractions, atrophy_pct, supersample)
        fractions = _paint(fields, _layers(subject), grid, shift_mm, supersample)
    return _acquire(subject, grid, fractions, shift_mm, session, orientation)


def make_pair(
    seed: int,
    *,
    atrophy_pct: float,
    scale: float = 1.0,
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    shape: tuple[int, int, int] | None = None,
    reposition: bool = True,
    supersample: int = 2,
    orientation: str = "RAS",
) -> SyntheticPair:
    """Baseline (session 0) and follow-up (session 1) of subject ``seed``.

    The follow-up has the parenchyma shrunk (``atrophy_pct < 0``) toward the CSF, larger
    ventricles, the same intracranial cavity, its own noise, bias field and gain and, with
    ``reposition``, a small rigid repositioning. The true percent changes are measured from
    the label fractions of the two images. Other parameters as in ``make_head``.
    """
    _check_rendering(atrophy_pct, supersample)
    subject = _Subject.sample(seed, scale)
    grid = _Grid.make(subject, voxel_mm, shape, _pose(subject, 0, False))
    fields = _evaluate_fields(subject, grid)
    fractions = _paint(fields, _layers(subject), grid, 0.0, supersample)
    shift_mm = _atrophy_shift_mm(subject, fields, grid, fractions, atrophy_pct, supersample)
    bl = _acquire(subject, grid, fractions, 0.0, 0, orientation)
    del fields, fractions
    grid = _Grid.make(subject, voxel_mm, shape, _pose(subject, 1, reposition))
    fields = _evaluate_fields(subject, grid)
    fractions = _paint(fields, _layers(subject), grid, shift_mm, supersample)
    fu = _acquire(subject, grid, fractions, shift_mm, 1, orientation)
    return SyntheticPair(
        bl=bl,
        fu=fu,
        requested_dbpv_pct=float(atrophy_pct),
        true_dbpv_pct=100.0 * (fu.parenchyma_ml - bl.parenchyma_ml) / bl.parenchyma_ml,
        true_dtiv_pct=100.0 * (fu.icv_ml - bl.icv_ml) / bl.icv_ml,
    )


# --------------------------------------------------------------------------------------
# Subject: random anatomy and contrast


@dataclass(frozen=True)
class _Waves:
    """A random smooth field: a sum of cosines ``sum_k a_k cos(k . q + phi_k)``."""

    vectors: np.ndarray  # (K, 3) wave vectors, rad/mm in the canonical frame
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K,)

    @staticmethod
    def sample(
        rng: np.random.Generator, n: int, wavelength_mm: tuple[float, float], rms: float
    ) -> _Waves:
        directions = rng.normal(size=(n, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=n)
        amplitudes = rng.normal(size=n)
        amplitudes *= rms * np.sqrt(2.0 / np.sum(amplitudes**2))
        return _Waves(
            2 * np.pi * directions / wavelengths[:, None], rng.uniform(0, 2 * np.pi, n), amplitudes
        )


@dataclass(frozen=True)
class _Subject:
    """Random parameters of one phantom subject (canonical lengths in adult mm)."""

    seed: int
    scale: float
    size: np.ndarray  # per-axis length factor (head size and aspect), times scale
    rotation_deg: np.ndarray  # (3,) head pose: angles about x, y, z (see _rotation)
    offset_mm: np.ndarray  # (3,) head position in the field of view (canonical mm)
    skull_mm: float
    scalp_fat_mm: float
    outer_csf_mm: float
    sulcus_mm: float
    sulcus_depth_mm: float
    cortex_mm: float
    ventricle_factor: float
    shape_waves: _Waves
    skull_waves: _Waves
    fold_waves: _Waves
    folia_waves: _Waves
    intensity: np.ndarray = field(repr=False)

    @staticmethod
    def sample(seed: int, scale: float) -> _Subject:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        rng = np.random.default_rng([int(seed), 0])
        size = rng.uniform(0.94, 1.06) * rng.uniform(0.97, 1.03, size=3) * scale
        return _Subject(
            seed=int(seed),
            scale=float(scale),
            size=size,
            rotation_deg=rng.uniform(-1, 1, size=3) * np.array([8.0, 4.0, 4.0]),
            offset_mm=rng.normal(0.0, 3.0, size=3) + np.array([0.0, -6.0, 22.0]),
            skull_mm=rng.uniform(5.5, 7.5),
            scalp_fat_mm=rng.uniform(2.5, 4.5),
            outer_csf_mm=rng.uniform(1.0, 2.5),
            sulcus_mm=rng.uniform(0.7, 1.3),
            sulcus_depth_mm=rng.uniform(14.0, 19.0),
            cortex_mm=rng.uniform(2.3, 2.8),
            ventricle_factor=float(np.clip(np.exp(rng.normal(0.0, 0.25)), 0.6, 1.8)),
            shape_waves=_Waves.sample(rng, 12, (70.0, 150.0), 1.5),
            skull_waves=_Waves.sample(rng, 8, (50.0, 100.0), 0.7),
            fold_waves=_Waves.sample(rng, 48, (20.0, 26.0), 1.0),
            folia_waves=_Waves.sample(rng, 32, (7.0, 10.0), 1.0),
            intensity=_INTENSITY * (1.0 + rng.normal(0.0, 0.03, size=_N_LABELS)).astype(np.float32),
        )



def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix from angles about x (pitch), y (roll) and z (yaw), in degrees."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _pose(subject: _Subject, session: int, reposition: bool) -> np.ndarray:
    """4x4 head-to-world transform (canonical mm -> world mm) of one session."""
    rotation = _rotation(subject.rotation_deg)
    translation = subject.offset_mm * subject.scale
    if reposition:
        rng = np.random.default_rng([subject.seed, 2, int(session)])
        rotation = _rotation(rng.uniform(-3.0, 3.0, size=3)) @ rotation
        translation = translation + rng.uniform(-3.0, 3.0, size=3) * subject.scale
    pose = np.eye(4)
    pose[:3, :3] = rotation @ np.diag(subject.size)
    pose[:3, 3] = translation
    return pose


# --------------------------------------------------------------------------------------
# Grid: voxel indices <-> canonical head coordinates


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray  # voxel -> world (RAS mm)
    to_canonical: np.ndarray  # voxel -> canonical head coordinates (4x4)
    mm_per_canonical: float  # converts canonical distances to mm (mean size factor)

    @staticmethod
    def make(
        subject: _Subject,
        voxel_mm: tuple[float, float, float],
        shape: tuple[int, int, int] | None,
        pose: np.ndarray,
    ) -> _Grid:
        voxel = np.asarray(voxel_mm, dtype=float)
        if voxel.shape != (3,) or np.any(voxel <= 0):
            raise ValueError(f"voxel_mm must be three positive lengths, got {voxel_mm}")
        if shape is None:
            shape = tuple(int(round(f * subject.scale / v)) for f, v in zip(_DEFAULT_FOV_MM, voxel))
        if len(shape) != 3 or min(shape) < 8:
            raise ValueError(f"shape must be three sizes of at least 8 voxels, got {shape}")
        affine = np.diag([*voxel, 1.0])
        affine[:3, 3] = -voxel * (np.asarray(shape) - 1) / 2.0
        return _Grid(
            shape=tuple(int(n) for n in shape),
            affine=affine,
            to_canonical=np.linalg.inv(pose) @ affine,
            mm_per_canonical=float(np.exp(np.mean(np.log(subject.size)))),
        )

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.diag(self.affine)[:3].copy()

    def box(
        self, lower: tuple[float, ...], upper: tuple[float, ...], margin: int = 3
    ) -> tuple[slice, ...]:
        """Index box that holds the canonical box [lower, upper], plus a margin."""
        corners = np.array(np.meshgrid(*zip(lower, upper), indexing="ij")).reshape(3, -1)
        index = np.linalg.inv(self.to_canonical) @ np.vstack([corners, np.ones(8)])
        lo = np.floor(index[:3].min(axis=1)).astype(int) - margin
        hi = np.ceil(index[:3].max(axis=1)).astype(int) + margin + 1
        return tuple(slice(max(0, a), min(n, max(0, b))) for a, b, n in zip(lo, hi, self.shape))

    def coordinates(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical coordinates (float32, broadcast to the box) of the box's voxels."""
        ranges = [np.arange(s.start, s.stop, dtype=np.float64) for s in box]
        m = self.to_canonical
        out = []
        for row in range(3):
            parts = [m[row, col] * ranges[col].reshape([-1 if c == col else 1 for c in range(3)])
                     for col in range(3)]  # fmt: skip
            out.append((parts[0] + m[row, 3]).astype(np.float32) + parts[1].astype(np.float32)
                       + parts[2].astype(np.float32))  # fmt: skip
        return out[0], out[1], out[2]

    def waves(
        self, box: tuple[slice, ...], waves: _Waves, derivative: int | None = None
    ) -> np.ndarray:
        """Sum of cosines (or its derivative along canonical axis ``derivative``) on a box.

        ``cos(k . q + phi)`` with ``q`` affine in the voxel index is a product of three
        one-dimensional complex exponentials, so the sum over waves is a matrix product.
        """
        m = self.to_canonical
        slope = waves.vectors @ m[:3, :3]  # (K, 3): phase per voxel step along each axis
        coefficient = waves.amplitudes * np.exp(1j * (waves.vectors @ m[:3, 3] + waves.phases))
        if derivative is not None:
            coefficient = coefficient * 1j * waves.vectors[:, derivative]
        e = [np.exp(1j * slope[:, a, None] * np.arange(s.start, s.stop)[None])
             for a, s in enumerate(box)]  # fmt: skip
        exy = coefficient[:, None, None] * e[0][:, :, None] * e[1][:, None, :]
        exy = exy.reshape(len(coefficient), -1)
        ez = e[2]
        out = exy.real.T.astype(np.float32) @ ez.real.astype(np.float32)
        out -= exy.imag.T.astype(np.float32) @ ez.imag.astype(np.float32)
        return out.reshape(tuple(s.stop - s.start for s in box))


# --------------------------------------------------------------------------------------
# Implicit surfaces (canonical mm; negative inside)


def _ellipsoid(q, center, radii) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the surface).

    ``k0 (k0 - 1) / k1`` with ``k0 = |(q - c) / r|`` and ``k1 = |(q - c) / r**2|``: the
    ellipsoid's implicit function divided by its gradient's norm.
    """
    k0 = np.zeros_like(q[0])
    k1 = np.zeros_like(q[0])
    for qi, c, r in zip(q, center, radii):
        u = qi - np.float32(c)
        u *= u
        u *= np.float32(1.0 / r**2)
        k0 += u
        u *= np.float32(1.0 / r**2)
        k1 += u
    np.sqrt(k0, out=k0)
    np.sqrt(k1, out=k1)
    np.maximum(k1, np.float32(1e-6), out=k1)
    out = k0 - np.float32(1.0)
    out *= k0
    out /= k1
    return out


def _capsule(q, a, b, radius_a, radius_b) -> np.ndarray:
    """Signed distance to a segment a-b swept by a radius varying linearly along it."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(sum((qi - ai) * di for qi, ai, di in zip(q, a, ab)) / float(ab @ ab), 0.0, 1.0)
    d = np.sqrt(sum((qi - ai - t * di) ** 2 for qi, ai, di in zip(q, a, ab)))
    return d - (radius_a + t * (radius_b - radius_a))


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two implicit solids (polynomial smooth minimum of width k)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + h * (a - b) - k * h * (1.0 - h)


def _zero_set_distance_sq(
    grid: _Grid,
    box: tuple[slice, ...],
    waves: _Waves,
    radial: tuple[tuple[np.ndarray, ...], tuple[float, ...], tuple[float, ...]] | None = None,
) -> np.ndarray:
    """Squared distance (canonical mm^2) to the zero set of a random band-limited field.

    ``s = atan(k F / |grad F|) / k`` with ``k`` the field's mean wavenumber is exactly the
    distance across the zero set of a sinusoid of wavenumber ``k``, and nearly so for the
    narrow band used here; ``s^2`` is smooth (the distance itself has a kink on the set),
    so a second-order expansion samples thin slabs around the set faithfully.

    With ``radial = (q, centre, radii)`` only the gradient's part tangential to the
    ellipsoids ``|(q - centre) / radii| = const`` counts: parts of the zero set that lie
    parallel to the brain surface get a large distance and vanish, so the slabs that
    remain cut into the brain roughly at right angles, as sulci do.
    """
    k = float(np.mean(np.linalg.norm(waves.vectors, axis=1)))
    value = grid.waves(box, waves)
    gradient = [grid.waves(box, waves, derivative=axis) for axis in range(3)]
    gradient_sq = np.full_like(value, 1e-6)
    for g in gradient:
        gradient_sq += g * g
    if radial is not None:
        q, centre, radii = radial
        normal = [(qi - np.float32(c)) * np.float32(1.0 / r**2) for qi, c, r in zip(q, centre, radii)]
        norm_sq = np.full_like(value, 1e-12)
        along = np.zeros_like(value)
        for n, g in zip(normal, gradient):
            norm_sq += n * n
            along += n * g
        along *= along
        along /= norm_sq
        gradient_sq -= along
        np.maximum(gradient_sq, np.float32(1e-6), out=gradient_sq)
        del normal, norm_sq, along
    del gradient
    np.sqrt(gradient_sq, out=gradient_sq)
    value *= np.float32(k)
    value /= gradient_sq
    np.arctan(value, out=value)
    value *= np.float32(1.0 / k)
    value *= value
    return value


def _ellipsoid_pair(q, center, radii) -> np.ndarray:
    """Union of an ellipsoid and its left-right mirror image."""
    mirrored = (-center[0], *center[1:])
    return np.minimum(_ellipsoid(q, center, radii), _ellipsoid(q, mirrored, radii))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(x))


@dataclass
class _Field:
    """An implicit surface function (mm, negative inside) on an index box of the grid."""

    box: tuple[slice, ...]
    values: np.ndarray  # float32 on the box
    half_range: np.ndarray = field(init=False)  # bound of |change| from a voxel centre to its corners

    def __post_init__(self) -> None:
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        # First differences bound the linear term over the voxel; twice the pure second
        # differences stand in for the quadratic terms (mixed ones included).
        half = np.zeros_like(self.values)
        for axis in range(3):
            if self.values.shape[axis] < 3:
                continue
            lo, hi, mid = ([slice(None)] * 3 for _ in range(3))
            lo[axis], hi[axis], mid[axis] = slice(None, -2), slice(2, None), slice(1, -1)
            up, down, centre = self.values[tuple(hi)], self.values[tuple(lo)], self.values[tuple(mid)]
            target = half[tuple(mid)]
            first = np.subtract(up, down)
            np.abs(first, out=first)
            target += first
            np.add(up, down, out=first)
            first -= centre
            first -= centre
            np.abs(first, out=first)
            target += first
        half *= np.float32(0.25)
        self.half_range = half

    def inside(self, shape: tuple[int, int, int], offset_mm: float) -> np.ndarray:
        """Boolean ``values + offset_mm < 0`` on the whole grid (False outside the box)."""
        out = np.zeros(shape, dtype=bool)
        np.less(self.values, np.float32(-offset_mm), out=out[self.box])
        return out

    def sample(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values, half ranges and flat box indices (-1 outside) at voxels ``index`` (n, 3)."""
        dims = np.array(self.values.shape)
        local = index - np.array([s.start for s in self.box])
        inside = np.all((local >= 0) & (local < dims), axis=1)
        flat = np.where(inside, local @ np.array([dims[1] * dims[2], dims[2], 1]), -1)
        safe = np.maximum(flat, 0)
        value = np.where(inside, self.values.reshape(-1).take(safe), np.float32(_BIG_MM))
        half = np.where(inside, self.half_range.reshape(-1).take(safe), np.float32(0.0))
        return value, half, flat

    def expansion(self, flat: np.ndarray) -> np.ndarray:
        """Second-order Taylor coefficients at flat box indices, (n, 9), per voxel step.

        Columns: gradient (3), second derivatives along the axes (3), mixed (xy, xz, yz),
        by central differences; they pair with ``_taylor_design``. Only called where a
        surface crosses the voxel, which the boxes' margins keep off the box faces.
        """
        dims = self.values.shape
        values = self.values.reshape(-1)
        last = values.size - 1
        strides = (dims[1] * dims[2], dims[2], 1)

        def at(step: int) -> np.ndarray:
            return values.take(np.clip(flat + step, 0, last))

        centre = values.take(flat)
        out = np.empty((len(flat), 9), dtype=np.float32)
        for axis, stride in enumerate(strides):
            up, down = at(stride), at(-stride)
            out[:, axis] = 0.5 * (up - down)
            out[:, 3 + axis] = up + down - 2 * centre
        for column, (a, b) in enumerate(((0, 1), (0, 2), (1, 2)), start=6):
            sa, sb = strides[a], strides[b]
            out[:, column] = 0.25 * (at(sa + sb) - at(sa - sb) - at(sb - sa) + at(-sa - sb))
        return out


def _taylor_design(supersample: int) -> np.ndarray:
    """(9, supersample**3) monomials of the sub-sample offsets (voxel units) for ``expansion``."""
    steps = (np.arange(supersample) + 0.5) / supersample - 0.5
    o = np.array(np.meshgrid(steps, steps, steps, indexing="ij")).reshape(3, -1)
    return np.vstack([o, 0.5 * o**2, o[0] * o[1], o[0] * o[2], o[1] * o[2]]).astype(np.float32)


@dataclass(frozen=True)
class _Layer:
    """One painted label: inside ``field + offset + atrophy_gain * shift < 0``."""

    label: int
    field: str
    offset_mm: float = 0.0
    atrophy_gain: float = 0.0


def _evaluate_fields(subject: _Subject, grid: _Grid) -> dict[str, _Field]:
    """All implicit surfaces of a subject on a grid (mm, negative inside)."""
    mm = grid.mm_per_canonical
    full = tuple(slice(0, n) for n in grid.shape)
    fields: dict[str, _Field] = {}

    def add(name: str, box: tuple[slice, ...], function: Callable[..., np.ndarray]) -> None:
        if any(s.stop <= s.start for s in box):  # outside the field of view
            box = tuple(slice(0, 1) for _ in range(3))
            fields[name] = _Field(box, np.full((1, 1, 1), _BIG_MM, np.float32))
            return
        fields[name] = _Field(box, function(box) * np.float32(mm))

    # Intracranial cavity: cerebral vault clipped by the skull base, joined with the
    # posterior fossa, perturbed by a smooth random modulation.
    q = grid.coordinates(full)
    modulation = grid.waves(full, subject.shape_waves)
    base = (
        -40.0
        + 23.0 * _sigmoid((q[1] - 20.0) / 8.0)  # anterior fossa, above the orbits
        + 14.0 * _sigmoid((-q[1] - 14.0) / 8.0)  # tentorium, above the posterior fossa
        + 12.0 * np.exp(-((q[0] / 16.0) ** 2)) * _sigmoid((q[1] + 8.0) / 5.0)  # sella, clivus
    )
    vault = np.maximum(_ellipsoid(q, (0, 0, 0), (66, 84, 70)), base - q[2]) + modulation
    del base
    fossa = _ellipsoid(q, (0, -40, -42), (48, 34, 24)) + modulation
    icv = _smooth_min(vault, fossa, 4.0)
    fields["icv"] = _Field(full, icv * np.float32(mm))
    skull = subject.skull_mm + grid.waves(full, subject.skull_waves)
    fields["outer_skull"] = _Field(full, (icv - skull / mm) * np.float32(mm))
    del skull

    # Head surface: cranium (cavity + skull + scalp), face and neck.
    scalp = subject.skull_mm + 1.5 + subject.scalp_fat_mm + 1.5
    face = _ellipsoid(q, (0, 46, -58), (50, 46, 50))
    neck = np.maximum(_ellipsoid((q[0], q[1], 0 * q[2]), (0, -18, 0), (50, 54, 1e6)), q[2] + 50.0)
    head = _smooth_min(_smooth_min(icv - scalp, face, 12.0), neck, 25.0)
    fields["head"] = _Field(full, head * np.float32(mm))
    del face, neck, head, icv

    # Cerebrum: the vault minus the outer CSF and the tentorium, folded by sulci (thin
    # slabs around the zero set of a random band-limited field, down to a depth below the
    # hull), split by the interhemispheric fissure down to the corpus callosum. The slabs
    # are given the smooth profile (w^2/4 - d^2)/w, whose zero level is at the walls
    # (d = w/2, unit slope) and which a second-order expansion samples exactly even where
    # a sulcus is thinner than a voxel.
    box = grid.box((-76, -96, -50), (76, 96, 82))
    q = tuple(x[box] for x in q)
    hull = np.maximum(vault[box] + subject.outer_csf_mm, 2.0 + subject.outer_csf_mm - fossa[box])
    del vault, fossa
    radial = (q, (0, -5, 5), (66, 84, 70))
    sulcus_sq = _zero_set_distance_sq(grid, box, subject.fold_waves, radial=radial)
    w, depth, cortex = subject.sulcus_mm, subject.sulcus_depth_mm, subject.cortex_mm
    pial = np.maximum(hull, np.minimum((0.25 * w * w - sulcus_sq) / w, hull + depth))
    sulcus = np.sqrt(sulcus_sq)
    del sulcus_sq
    wm = np.maximum(hull, np.minimum(0.5 * w - sulcus, hull + depth))
    del hull, sulcus
    # Fissures: the interhemispheric one (down to the corpus callosum and diencephalon)
    # and the lateral (Sylvian) ones between the frontal/parietal and temporal lobes,
    # each a slab (coordinate across, width) cut where its region function is negative.
    w_fissure = 1.0 + w
    midline = q[0] - 2.0 * np.sin(q[1] / 18.0) - 1.0 * np.sin(q[2] / 13.0 + 1.0)
    sylvian = q[2] + 4.0 + 0.25 * q[1]
    lateral = _ellipsoid_pair(q, (60, -5, -4), (26, 36, 16))
    for across, region in ((midline, -_ellipsoid(q, (0, -5, 6), (22, 38, 20))), (sylvian, lateral)):
        pial = np.maximum(pial, np.minimum((0.25 * w_fissure**2 - across * across) / w_fissure, -region))
        wm = np.maximum(wm, np.minimum(0.5 * w_fissure - np.abs(across), -region))
    del midline, sylvian, lateral, q
    fields["pial"] = _Field(box, pial * np.float32(mm))
    # White matter: the same walls moved inward by the cortical thickness.
    fields["wm"] = _Field(box, (wm + cortex) * np.float32(mm))
    del pial, wm

    # Deep grey matter: thalami, caudate heads, putamina.
    def deep_gm(box):
        q = grid.coordinates(box)
        parts = [_ellipsoid(q, (s * 11, -15, 3), (9, 14, 9)) for s in (-1, 1)]
        parts += [_ellipsoid(q, (s * 14, 12, 9), (6, 12, 8)) for s in (-1, 1)]
        parts += [_ellipsoid(q, (s * 25, 4, -1), (6, 16, 11)) for s in (-1, 1)]
        out = parts[0]
        for p in parts[1:]:
            out = _smooth_min(out, p, 2.0)
        return out

    add("deep_gm", grid.box((-36, -34, -16), (36, 30, 22)), deep_gm)

    # Ventricles: lateral ventricle bodies and atria, third ventricle.
    v = subject.ventricle_factor

    def ventricles(box):
        q = grid.coordinates(box)
        parts = [_ellipsoid(q, (s * (4 + 4 * v), 4, 12), (5 * v, 26, 7 * v)) for s in (-1, 1)]
        parts += [_ellipsoid(q, (s * (11 + 4 * v), -26, 8), (6 * v, 13, 9 * v)) for s in (-1, 1)]
        parts.append(_ellipsoid(q, (0, -8, -2), (1.5 * v, 13, 8)))
        out = parts[0]
        for p in parts[1:]:
            out = _smooth_min(out, p, 3.0)
        return out

    add("ventricle", grid.box((-35, -45, -15), (35, 35, 30)), ventricles)

    # Cerebellum: two hemispheres and the vermis in the posterior fossa, with folia.
    def cerebellum(box):
        q = grid.coordinates(box)
        fossa = _ellipsoid(q, (0, -40, -42), (48, 34, 24)) + grid.waves(box, subject.shape_waves)
        stem = _capsule(q, (0, -14, 0), (0, -26, -64), 12.0, 10.0)
        vallecula = np.maximum(np.abs(q[0]) - 1.0, -_ellipsoid(q, (0, -80, -46), (12, 20, 14)))
        lobes = np.maximum(np.maximum(fossa + 1.2, -stem), -vallecula)
        folia_sq = _zero_set_distance_sq(grid, box, subject.folia_waves)
        return np.maximum(lobes, np.minimum(0.25 - folia_sq, lobes + 5.0))

    cb_box = grid.box((-56, -80, -72), (56, 0, -12))
    add("cerebellum", cb_box, cerebellum)

    def cerebellar_wm(box):
        q = grid.coordinates(box)
        return _smooth_min(
            _ellipsoid(q, (-16, -45, -41), (12, 12, 8)), _ellipsoid(q, (16, -45, -41), (12, 12, 8)), 4.0
        )

    add("cerebellar_wm", cb_box, cerebellar_wm)

    # Brainstem and spinal cord (one surface: intracranial part = brainstem).
    def brainstem(box):
        q = grid.coordinates(box)
        stem = _capsule(q, (0, -14, 0), (0, -26, -64), 9.0, 7.0)
        pons = _ellipsoid(q, (0, -13, -28), (13, 11, 12))
        cord = _capsule(q, (0, -26, -64), (0, -34, -400), 7.0, 6.0)
        return _smooth_min(_smooth_min(stem, pons, 4.0), cord, 4.0)

    add("brainstem", grid.box((-20, -40, -400), (20, 5, 14)), brainstem)

    def canal(box):
        return _capsule(grid.coordinates(box), (0, -26, -52), (0, -34, -400), 9.5, 9.0)

    add("canal", grid.box((-14, -46, -400), (14, -10, -36)), canal)

    def vertebrae(box):
        q = grid.coordinates(box)
        arch = _capsule(q, (0, -27, -76), (0, -35, -400), 16.0, 15.0)
        bodies = _capsule(q, (0, -4, -80), (0, -10, -400), 12.0, 11.0)
        return _smooth_min(arch, bodies, 4.0)

    add("vertebrae", grid.box((-20, -52, -400), (20, 12, -58)), vertebrae)

    # Eyes, orbital fat, air in the paranasal sinuses.
    def eyes(box):
        q = grid.coordinates(box)
        return _ellipsoid_pair(q, (32, 70, -39), (12, 12, 12))

    def orbits(box):
        q = grid.coordinates(box)
        return _ellipsoid_pair(q, (30, 62, -40), (17, 16, 15))

    def sinuses(box):
        q = grid.coordinates(box)
        parts = [_ellipsoid(q, (0, 25, -48), (12, 12, 10)), _ellipsoid(q, (0, 58, -58), (9, 26, 26))]
        parts += [_ellipsoid(q, (s * 26, 52, -78), (13, 15, 15)) for s in (-1, 1)]
        out = parts[0]
        for p in parts[1:]:
            out = np.minimum(out, p)
        return out

    add("eyes", grid.box((-50, 44, -60), (50, 86, -20)), eyes)
    add("orbits", grid.box((-50, 44, -60), (50, 86, -20)), orbits)
    add("sinuses", grid.box((-42, 10, -96), (42, 86, -30)), sinuses)
    return fields


def _layers(subject: _Subject) -> tuple[list[_Layer], list[_Layer]]:
    """Painting order (bottom to top) outside and inside the intracranial cavity."""
    mm = float(np.exp(np.mean(np.log(subject.size))))
    skin, fat = 1.5 * mm, subject.scalp_fat_mm * mm
    table = 1.8 * mm
    outside = [
        _Layer(LABELS["skin"], "head"),
        _Layer(LABELS["fat"], "head", skin),
        _Layer(LABELS["soft_tissue"], "head", skin + fat),
        _Layer(LABELS["air"], "sinuses"),
        _Layer(LABELS["orbital_fat"], "orbits"),
        _Layer(LABELS["eye"], "eyes"),
        _Layer(LABELS["bone"], "outer_skull"),
        _Layer(LABELS["marrow"], "outer_skull", table),
        _Layer(LABELS["bone"], "icv", -table),
        _Layer(LABELS["marrow"], "vertebrae"),
        _Layer(LABELS["extracranial_csf"], "canal"),
        _Layer(LABELS["spinal_cord"], "brainstem", 0.0, 0.5),
    ]
    inside = [
        _Layer(LABELS["cortical_gm"], "pial", 0.0, 1.0),
        _Layer(LABELS["wm"], "wm", 0.0, 1.0),
        _Layer(LABELS["deep_gm"], "deep_gm", 0.0, 0.5),
        _Layer(LABELS["ventricle"], "ventricle", 0.0, -2.0),
        _Layer(LABELS["cerebellar_gm"], "cerebellum", 0.0, 1.0),
        _Layer(LABELS["cerebellar_wm"], "cerebellar_wm", 0.0, 1.0),
        _Layer(LABELS["brainstem"], "brainstem", 0.0, 0.5),
    ]
    return outside, inside


# --------------------------------------------------------------------------------------
# Label fractions


@dataclass
class _Fractions:
    """Per-voxel result of painting: dominant label, and fractions at crossed voxels."""

    labels: np.ndarray  # uint8, whole grid (dominant label)
    crossed: np.ndarray  # flat indices of supersampled voxels
    fractions: np.ndarray  # (n_crossed, n_labels) float32
    cavity: np.ndarray  # (n_crossed,) intracranial fraction, independent of the inside layers


def _paint(
    fields: dict[str, _Field],
    layers: tuple[list[_Layer], list[_Layer]],
    grid: _Grid,
    shift_mm: float,
    supersample: int,
) -> _Fractions:
    """Label fractions of every voxel by supersampled, soft compositing of the layers.

    A voxel that no surface crosses (judged on its second-order expansion) gets the label
    painted at its centre. In a crossed voxel each layer's surface is expanded to second
    order, each of the ``supersample**3`` sub-samples gets a soft occupancy
    ``clip(1/2 - f/w, 0, 1)`` (``f`` the surface value in mm, ``w`` the sub-sample
    spacing), the layers are composited top-down per sub-sample (a layer takes its
    occupancy of what the layers above left), separately inside and outside the
    intracranial cavity, and the sub-samples are averaged.
    """
    outside, inside = layers
    shape = grid.shape
    width_mm = float(np.mean(grid.voxel_mm)) / supersample
    cavity = _Layer(LABELS["csf"], "icv")

    def offset(layer: _Layer) -> float:
        return layer.offset_mm + layer.atrophy_gain * shift_mm

    labels = np.zeros(shape, dtype=np.uint8)
    for layer in outside:
        labels[fields[layer.field].inside(shape, offset(layer))] = layer.label
    labels_in = np.full(shape, LABELS["csf"], dtype=np.uint8)
    for layer in inside:
        labels_in[fields[layer.field].inside(shape, offset(layer))] = layer.label
    in_cavity = fields["icv"].inside(shape, 0.0)
    labels[in_cavity] = labels_in[in_cavity]
    del labels_in, in_cavity

    crossed_mask = np.zeros(shape, dtype=bool)
    for layer in [cavity, *outside, *inside]:
        f = fields[layer.field]
        distance = np.abs(f.values + np.float32(offset(layer)))
        crossed_mask[f.box] |= distance < f.half_range + np.float32(0.5 * width_mm)
        del distance
    crossed = np.flatnonzero(crossed_mask)
    del crossed_mask

    sub = _taylor_design(supersample)
    average = np.full(sub.shape[1], 1.0 / sub.shape[1], dtype=np.float32)
    fractions = np.empty((len(crossed), _N_LABELS), dtype=np.float32)
    cavity_fraction = np.empty(len(crossed), dtype=np.float32)
    chunk = 1 << 17
    used = {layer.field for layer in [cavity, *outside, *inside]}
    for begin in range(0, len(crossed), chunk):
        index = np.stack(np.unravel_index(crossed[begin:begin + chunk], shape), axis=1)
        samples = {name: fields[name].sample(index) for name in used}

        def occupancy(layer: _Layer) -> np.ndarray:
            value, half, flat = samples[layer.field]
            value = value + np.float32(offset(layer))
            occ = np.empty((len(value), sub.shape[1]), dtype=np.float32)
            occ[:] = (value < 0)[:, None]
            partial = np.flatnonzero(np.abs(value) < half + 0.5 * width_mm)
            if len(partial):
                sampled = value[partial, None] + fields[layer.field].expansion(flat[partial]) @ sub
                occ[partial] = np.clip(0.5 - sampled / width_mm, 0.0, 1.0)
            return occ

        def composite(
            layers: list[_Layer], background: int, remaining: np.ndarray, out: np.ndarray
        ) -> None:
            for layer in reversed(layers):  # top layer first
                taken = remaining * occupancy(layer)
                out[:, layer.label] += taken @ average
                remaining -= taken
            out[:, background] += remaining @ average

        out = fractions[begin:begin + chunk]
        out[:] = 0.0
        in_cavity = occupancy(cavity)
        cavity_fraction[begin:begin + chunk] = in_cavity @ average
        composite(outside, LABELS["air"], 1.0 - in_cavity, out)
        composite(inside, LABELS["csf"], in_cavity, out)
    labels.reshape(-1)[crossed] = np.argmax(fractions, axis=1).astype(np.uint8)
    return _Fractions(labels, crossed, fractions, cavity_fraction)


def _label_sum(fr: _Fractions, weights: np.ndarray) -> np.ndarray:
    """Per-voxel sum of label fractions weighted by ``weights`` (n_labels,)."""
    out = weights.astype(np.float32)[fr.labels]
    out.reshape(-1)[fr.crossed] = fr.fractions @ weights.astype(np.float32)
    return out


def _indicator(labels: tuple[int, ...]) -> np.ndarray:
    w = np.zeros(_N_LABELS, dtype=np.float32)
    w[list(labels)] = 1.0
    return w


def _check_rendering(atrophy_pct: float, supersample: int) -> None:
    if not -50.0 < atrophy_pct < 50.0:
        raise ValueError(f"atrophy_pct must lie between -50 and 50, got {atrophy_pct}")
    if supersample < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}")


def _atrophy_shift_mm(
    subject: _Subject,
    fields: dict[str, _Field],
    grid: _Grid,
    baseline: _Fractions,
    atrophy_pct: float,
    supersample: int,
) -> float:
    """Boundary shift (mm) that changes the parenchyma volume by ``atrophy_pct`` percent.

    ``baseline`` holds the fractions painted without atrophy. The volume is nearly linear
    in the shift over the range of interest (tenths of a mm), so two secant steps from a
    trial shift of about the right size suffice.
    """
    if not atrophy_pct:
        return 0.0
    layers = _layers(subject)
    w = _indicator(PARENCHYMA_LABELS)

    def volume(fractions: _Fractions) -> float:
        return float(_label_sum(fractions, w).sum(dtype=np.float64))

    v0 = volume(baseline)
    target = v0 * atrophy_pct / 100.0
    shifts, changes = [0.0], [0.0]
    shift = -0.1 * atrophy_pct * grid.mm_per_canonical  # about 0.1 mm per percent
    for _ in range(2):
        shifts.append(shift)
        changes.append(volume(_paint(fields, layers, grid, shift, supersample)) - v0)
        slope = (changes[-1] - changes[-2]) / (shifts[-1] - shifts[-2])
        shift = shifts[-1] + (target - changes[-1]) / slope
    return float(shift)


def _acquire(
    subject: _Subject,
    grid: _Grid,
    fr: _Fractions,
    shift_mm: float,
    session: int,
    orientation: str,
) -> SyntheticHead:
    """Turn label fractions into a T1w image (contrast, gain, bias, Rician noise); reorient."""
    rng = np.random.default_rng([subject.seed, 1, int(session)])
    signal = _label_sum(fr, subject.intensity) * np.float32(_WM_SIGNAL * rng.uniform(0.9, 1.1))
    signal *= _bias_field(grid, rng)
    sigma = np.float32(_WM_SIGNAL * rng.uniform(0.02, 0.035))
    real = signal + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
    image = np.sqrt(real * real + imag * imag)
    del real, imag, signal
    parenchyma = _label_sum(fr, _indicator(PARENCHYMA_LABELS))
    icv = _indicator(INTRACRANIAL_LABELS)[fr.labels]
    icv.reshape(-1)[fr.crossed] = fr.cavity
    voxel_ml = float(np.prod(grid.voxel_mm)) / 1000.0
    parenchyma_ml = float(parenchyma.sum(dtype=np.float64)) * voxel_ml
    icv_ml = float(icv.sum(dtype=np.float64)) * voxel_ml
    head = SyntheticHead(
        image=image,
        affine=grid.affine,
        labels=fr.labels,
        parenchyma_frac=parenchyma,
        icv_frac=icv,
        parenchyma_ml=parenchyma_ml,
        icv_ml=icv_ml,
        seed=subject.seed,
        session=int(session),
        atrophy_shift_mm=float(shift_mm),
    )
    return head.reoriented(orientation)


def _bias_field(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic in scanner coordinates."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in grid.shape]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    terms = [x, y, z, x * x - 1 / 3, y * y - 1 / 3, z * z - 1 / 3, x * y, y * z, x * z]
    c = rng.normal(0.0, 0.06, size=len(terms)).astype(np.float32)
    log_bias = np.zeros(grid.shape, dtype=np.float32)
    for ci, term in zip(c, terms):
        log_bias += ci * term
    return np.exp(log_bias)
