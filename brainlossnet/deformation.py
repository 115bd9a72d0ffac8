"""Synthetic longitudinal pairs: random smooth and atrophy-like deformations, rescan perturbations.

The paper trained on 1525 real BL/FU pairs; we have a handful of heads. From one 1 mm crop
``C`` and its intracranial mask this module makes an unlimited supply of pairs whose true
BL->FU displacement is known (DESIGN, "Training without private data"):

* BL(x) = C(x + s) and FU(x) = C(x + s + u(x)), with a random constant sub-voxel shift ``s``
  (so both images are interpolated once) and a known field ``u``; then
  BL(x + u(x)) = FU(x) exactly, i.e. ``u`` is the pull-back displacement the network must find.
* ``u`` = a random smooth field (residual distortion) + a small rigid motion (residual of the
  halfway registration) + an atrophy field (brain tissue loses a known fraction of its volume,
  the cerebrospinal fluid gains it, the intracranial volume stays; :func:`atrophy_unit_field`)
  + a few local radial expansions/contractions (ventricles, sulci).
* each image then gets its own gain, smooth multiplicative bias field and Gaussian noise.

Real BL/FU pairs (a user's longitudinal data, already in halfway space) get the same
augmentation without a synthetic deformation (:func:`augment_real_pair`): both images are
sampled on one random frame (:func:`random_frame`: patch, left-right flip, rotation) and each
gets its own Gaussian noise.

Coordinates are voxel indices (1 mm voxels, so voxels = mm). Everything is torch, driven by
an explicit :class:`torch.Generator` so a pair is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SynthesisRanges:
    """Ranges of the random synthesis parameters (uniform draws unless said otherwise).

    Attributes
    ----------
    smooth_amplitude_vox
        Upper bound of the per-component standard deviation of the smooth field (voxels).
    smooth_spacing_vox
        Range of the control-point spacing of the smooth field (voxels).
    rotation_deg, translation_vox
        Bounds of the residual rigid motion between BL and FU (per axis).
    atrophy_fraction
        Range of the fraction of its volume that brain tissue loses (0.01 = 1 % atrophy;
        negative values swell), taken up by the cerebrospinal fluid.
    blob_count_max, blob_radius_vox, blob_strength
        Local radial deformations: how many at most, their Gaussian radius and the bound of
        their strength (displacement / distance at the centre; positive contracts).
    blob_depth_vox
        Scale of the shell below the inner skull where blobs fade out
        (:func:`interior_weight`; the skull is fixed).
    gain, bias_std, noise_std
        Per-image intensity perturbations: gain range, standard deviation of the log bias
        field, upper bound of the noise standard deviation (in normalised intensity units).
    bias_spacing_vox
        Control-point spacing of the bias field.
    """

    smooth_amplitude_vox: float = 1.5
    smooth_spacing_vox: tuple[float, float] = (12.0, 40.0)
    rotation_deg: float = 1.0
    translation_vox: float = 1.0
    atrophy_fraction: tuple[float, float] = (-0.01, 0.03)
    blob_count_max: int = 4
    blob_radius_vox: tuple[float, float] = (4.0, 15.0)
    blob_strength: float = 0.1
    blob_depth_vox: int = 8
    gain: tuple[float, float] = (0.9, 1.1)
    bias_std: float = 0.1
    bias_spacing_vox: float = 64.0
    noise_std: float = 0.03


def _uniform(generator: torch.Generator, low: float, high: float, size: tuple[int, ...] = ()) -> torch.Tensor:
    """Uniform draws in [low, high) from ``generator``."""
    return low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)


def voxel_grid(shape: tuple[int, int, int], origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """(3, X, Y, Z) float32 voxel coordinates of a box starting at ``origin``."""
    axes = [torch.arange(n, dtype=torch.float32) + float(o) for n, o in zip(shape, origin)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def sample_at(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of a (X, Y, Z) volume at (3, ...) voxel coordinates; 0 outside.

    Unlike a warp, the output grid may differ from the volume's (a patch of a crop).
    """
    sizes = torch.tensor(volume.shape, dtype=coords.dtype).view(3, *([1] * (coords.dim() - 1)))
    normalised = coords * 2.0 / (sizes - 1.0) - 1.0
    grid = normalised.flip(0).permute(*range(1, coords.dim()), 0).unsqueeze(0)  # (1, ..., 3) as (z, y, x)
    sampled = F.grid_sample(
        volume[None, None].to(coords.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return sampled[0, 0]


def smooth_random_field(
    shape: tuple[int, ...], channels: int, spacing_vox: float, std: float, generator: torch.Generator
) -> torch.Tensor:
    """A smooth random field: Gaussian control points every ``spacing_vox``, trilinearly interpolated.

    Returns a (channels, *shape) float32 tensor whose control values have standard deviation ``std``.
    """
    coarse = tuple(max(2, math.ceil(n / spacing_vox) + 1) for n in shape)
    control = torch.randn((1, channels, *coarse), generator=generator, dtype=torch.float64).float() * std
    return F.interpolate(control, size=tuple(shape), mode="trilinear", align_corners=True)[0]


def rotation_matrix(angles_rad: torch.Tensor) -> torch.Tensor:
    """3x3 rotation about the x, then y, then z axis by the three given angles (radians)."""
    cx, cy, cz = torch.cos(angles_rad)
    sx, sy, sz = torch.sin(angles_rad)
    rot_x = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    rot_y = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rot_z = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rot_z @ rot_y @ rot_x


def affine_displacement(coords: torch.Tensor, matrix: torch.Tensor, center: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Displacement ``M (x - c) + c + t - x`` of the affine map about ``center``, at (3, ...) coords."""
    flat = coords.reshape(3, -1).double()
    centered = flat - center.view(3, 1)
    mapped = matrix @ centered + center.view(3, 1) + shift.view(3, 1)
    return (mapped - flat).float().reshape(coords.shape)


def box_mean(volume: torch.Tensor, radius_vox: int) -> torch.Tensor:
    """Mean over a cube of edge ``2 radius + 1`` (zeros outside), as three 1D passes."""
    width = 2 * radius_vox + 1
    result = volume[None, None]
    for axis in range(3):
        kernel = [1, 1, 1]
        kernel[axis] = width
        padding = [0, 0, 0]
        padding[axis] = radius_vox
        result = F.avg_pool3d(result, tuple(kernel), stride=1, padding=tuple(padding), count_include_pad=True)
    return result[0, 0]


def interior_weight(icv_mask: torch.Tensor, depth_vox: int) -> torch.Tensor:
    """Weight in [0, 1]: 0 near the inner skull, rising to 1 deep inside the intracranial cavity.

    The cavity is eroded by a cube of half-width ``depth_vox`` (voxels whose whole cube is
    inside) and the core is smoothed by two box means of half-width ``depth_vox // 4``. The
    weight is therefore exactly 0 in the outer shell of about ``depth_vox / 2`` (and outside),
    and 1 deeper than about ``1.5 depth_vox``, so a local deformation scaled by it never moves
    the skull.
    """
    core = (box_mean(icv_mask.float(), depth_vox) > 1.0 - 1e-4).float()
    radius = max(depth_vox // 4, 1)
    return box_mean(box_mean(core, radius), radius).clamp(0.0, 1.0)


TISSUE_CUTOFF = 0.5
"""Tissue is brighter than this fraction of the median intensity inside the cavity (T1w: CSF is far darker)."""


def tissue_probability(image: torch.Tensor, icv_mask: torch.Tensor) -> torch.Tensor:
    """Soft brain-tissue map of a T1w crop: 0 outside the cavity and in CSF, 1 in grey/white matter.

    Relative to the median ``m`` of the intensities inside the cavity (mostly tissue), the map
    rises linearly from 0 at ``0.35 m`` to 1 at ``0.65 m``; its 1/2 level is
    :data:`TISSUE_CUTOFF` ``m``. Scanner-independent up to the T1w contrast itself.
    """
    inside = image[icv_mask]
    if inside.numel() == 0:
        return torch.zeros_like(image)
    median = inside.median()
    ramp = ((image / median - (TISSUE_CUTOFF - 0.15)) / 0.3).clamp(0.0, 1.0)
    return ramp * icv_mask


def atrophy_unit_field(tissue: torch.Tensor, icv_mask: torch.Tensor, pad_vox: int = 24) -> torch.Tensor:
    """Displacement (3, X, Y, Z) by which brain tissue loses 100 % x ``f`` of its volume, per unit ``f``.

    In the pull-back convention a warped mask's volume is about ``∫_S (1 - div u)`` (small
    deformations), so a field with ``div u = f`` in tissue removes the fraction ``f`` of every
    tissue region. The cerebrospinal fluid inside the cavity takes up exactly that volume
    (``div u`` negative there, balanced so that the cavity's total is 0) and ``div u = 0``
    outside. ``u`` is the gradient of the solution of Poisson's equation ``Δφ = div u``, solved by
    FFT on a zero-padded grid; being curl-free, it is the smallest field with that divergence.
    Scale the result by the wanted ``f`` (a few percent at most, where linearity holds).
    """
    cavity = icv_mask.double()
    brain = tissue.double() * cavity
    fluid = (1.0 - tissue.double()) * cavity
    source = brain - fluid * (brain.sum() / fluid.sum().clamp_min(1.0))
    padded = F.pad(source, (pad_vox,) * 6)
    spectrum = torch.fft.rfftn(padded)
    axes = [torch.fft.fftfreq(n, dtype=torch.float64) for n in padded.shape[:2]] + [
        torch.fft.rfftfreq(padded.shape[2], dtype=torch.float64)
    ]
    wavenumbers = torch.meshgrid(*[2.0 * math.pi * k for k in axes], indexing="ij")
    squared = sum(k**2 for k in wavenumbers)
    squared[0, 0, 0] = 1.0
    potential = -spectrum / squared
    potential[0, 0, 0] = 0.0
    crop = tuple(slice(pad_vox, pad_vox + n) for n in source.shape)
    components = [torch.fft.irfftn(1j * k * potential, s=padded.shape)[crop] for k in wavenumbers]
    return torch.stack(components).float()


@dataclass(frozen=True)
class SourceCrop:
    """A crop prepared for pair synthesis: normalised image, cavity mask and the fields derived from them."""

    image: torch.Tensor
    icv_mask: torch.Tensor
    interior: torch.Tensor
    atrophy_unit: torch.Tensor


def prepare_source_crop(image: torch.Tensor, icv_mask: torch.Tensor, ranges: SynthesisRanges = SynthesisRanges()) -> SourceCrop:
    """Precompute the interior weight (:func:`interior_weight`) and unit atrophy field of a crop."""
    mask = icv_mask.bool()
    return SourceCrop(
        image.float(),
        mask,
        interior_weight(mask, ranges.blob_depth_vox),
        atrophy_unit_field(tissue_probability(image.float(), mask), mask),
    )


def radial_blob_displacement(
    coords: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Sum of local radial fields ``k (x - c) exp(-|x - c|^2 / 2 r^2)`` at (3, ...) coords.

    In the pull-back convention a positive ``k`` makes the follow-up sample further out,
    so the structure around ``c`` shrinks; a negative ``k`` makes it grow (a ventricle).
    """
    field = torch.zeros_like(coords)
    for center, radius, strength in zip(centers, radii, strengths):
        offset = coords - center.float().view(3, *([1] * (coords.dim() - 1)))
        gauss = torch.exp(-(offset**2).sum(0) / (2.0 * float(radius) ** 2))
        field += float(strength) * offset * gauss
    return field


def perturb_intensity(
    image: torch.Tensor, ranges: SynthesisRanges, generator: torch.Generator
) -> torch.Tensor:
    """One rescan's intensities: random gain, smooth multiplicative bias field and Gaussian noise."""
    gain = float(_uniform(generator, *ranges.gain))
    log_bias = smooth_random_field(tuple(image.shape), 1, ranges.bias_spacing_vox, ranges.bias_std, generator)[0]
    noise_std = float(_uniform(generator, 0.0, ranges.noise_std))
    noise = torch.randn(tuple(image.shape), generator=generator, dtype=torch.float32) * noise_std
    return image * gain * torch.exp(log_bias) + noise


@dataclass(frozen=True)
class PairFrame:
    """The grid a training pair is sampled on: a box of the crop seen through a flip and rotation.

    The frame's point ``y`` is the crop's point ``A(y) = M (y - c) + c`` (``M`` = rotation @
    flip, ``c`` the crop's centre); ``coords`` (3, *shape) are the frame's points, i.e. the
    voxel indices of a patch (or of the whole crop).
    """

    coords: torch.Tensor
    augment: torch.Tensor
    crop_center: torch.Tensor

    def to_crop(self, points: torch.Tensor) -> torch.Tensor:
        """``A(points)``: where the frame's (3, ...) points lie in the crop."""
        return points + affine_displacement(points, self.augment, self.crop_center, torch.zeros(3, dtype=torch.float64))


def random_frame(
    full_shape: tuple[int, int, int],
    generator: torch.Generator,
    *,
    patch_shape: tuple[int, int, int] | None = None,
    flip_and_rotate_deg: float | None = None,
) -> PairFrame:
    """A random patch origin, then (unless ``flip_and_rotate_deg`` is None) a left-right flip
    with probability 1/2 and a rotation up to ``flip_and_rotate_deg`` about each axis."""
    shape = tuple(patch_shape) if patch_shape is not None else tuple(full_shape)
    origin = tuple(int(torch.randint(0, full - part + 1, (1,), generator=generator)) for full, part in zip(full_shape, shape))
    augment = torch.eye(3, dtype=torch.float64)
    if flip_and_rotate_deg is not None:
        flip = torch.ones(3, dtype=torch.float64)
        if bool(torch.rand((), generator=generator) < 0.5):
            flip[0] = -1.0
        angles = torch.deg2rad(_uniform(generator, -flip_and_rotate_deg, flip_and_rotate_deg, (3,)))
        augment = rotation_matrix(angles) @ torch.diag(flip)
    crop_center = (torch.tensor(full_shape, dtype=torch.float64) - 1.0) / 2.0
    return PairFrame(voxel_grid(shape, origin), augment, crop_center)


def augment_real_pair(
    baseline: torch.Tensor,
    followup: torch.Tensor,
    icv_mask: torch.Tensor,
    generator: torch.Generator,
    *,
    patch_shape: tuple[int, int, int] | None = None,
    flip_and_rotate_deg: float | None = None,
    noise_std: float = SynthesisRanges().noise_std,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A real BL/FU pair (same grid, e.g. halfway space) sampled on one :func:`random_frame`.

    Both images see the same patch, flip and rotation, so their true correspondence is kept;
    each then gets Gaussian noise of its own standard deviation, drawn up to ``noise_std``.

    Returns
    -------
    baseline, followup, icv_mask
        The frame's images (float32) and the cavity mask (bool) sampled on it.
    """
    frame = random_frame(tuple(int(n) for n in baseline.shape), generator, patch_shape=patch_shape,
                         flip_and_rotate_deg=flip_and_rotate_deg)
    in_crop = frame.to_crop(frame.coords)
    images = []
    for image in (baseline, followup):
        sampled = sample_at(image.float(), in_crop)
        noise = torch.randn(tuple(sampled.shape), generator=generator, dtype=torch.float32)
        images.append(sampled + noise * float(_uniform(generator, 0.0, noise_std)))
    return images[0], images[1], sample_at(icv_mask.float(), in_crop) > 0.5


@dataclass(frozen=True)
class SyntheticPair:
    """A synthesised BL/FU pair and its true BL->FU displacement (pull-back, voxels).

    ``baseline``, ``followup``: (X, Y, Z); ``displacement``: (3, X, Y, Z);
    ``icv_mask``: (X, Y, Z) bool, the intracranial cavity in this pair's frame.
    """

    baseline: torch.Tensor
    followup: torch.Tensor
    displacement: torch.Tensor
    icv_mask: torch.Tensor


def synthesize_pair(
    source: SourceCrop,
    generator: torch.Generator,
    *,
    patch_shape: tuple[int, int, int] | None = None,
    flip_and_rotate_deg: float | None = None,
    ranges: SynthesisRanges = SynthesisRanges(),
) -> SyntheticPair:
    """Make one random BL/FU pair from a prepared crop (see the module docstring).

    Parameters
    ----------
    source
        From :func:`prepare_source_crop`.
    patch_shape
        Size of a random sub-box to return (training); ``None`` returns the whole crop.
    flip_and_rotate_deg
        Augmentation applied to the source before synthesis (same for BL and FU): a random
        left-right flip and a rotation up to this many degrees about each axis; ``None``: none.
    """
    frame = random_frame(tuple(source.image.shape), generator, patch_shape=patch_shape,
                         flip_and_rotate_deg=flip_and_rotate_deg)
    coords, augment, crop_center, to_crop = frame.coords, frame.augment, frame.crop_center, frame.to_crop
    shape = tuple(coords.shape[1:])
    in_crop = to_crop(coords)
    mask_here = sample_at(source.icv_mask.float(), in_crop) > 0.5
    interior_here = sample_at(source.interior, in_crop)

    # The true displacement u (pair frame, voxels).
    spacing = float(_uniform(generator, *ranges.smooth_spacing_vox))
    amplitude = float(_uniform(generator, 0.0, ranges.smooth_amplitude_vox))
    u = smooth_random_field(shape, 3, spacing, amplitude, generator)
    angles = torch.deg2rad(_uniform(generator, -ranges.rotation_deg, ranges.rotation_deg, (3,)))
    shift = _uniform(generator, -ranges.translation_vox, ranges.translation_vox, (3,))
    u += affine_displacement(coords, rotation_matrix(angles), crop_center, shift)

    # Atrophy: the crop's unit field at A(y), its vectors brought into the pair's frame by M^-1.
    fraction = float(_uniform(generator, *ranges.atrophy_fraction))
    unit = torch.stack([sample_at(component, in_crop) for component in source.atrophy_unit])
    unit = (torch.linalg.inv(augment).float() @ unit.reshape(3, -1)).reshape(unit.shape)
    u += fraction * unit

    n_blobs = int(torch.randint(0, ranges.blob_count_max + 1, (1,), generator=generator))
    inside = torch.nonzero(source.icv_mask)
    if n_blobs and len(inside):
        picks = torch.randint(0, len(inside), (n_blobs,), generator=generator)
        centers = torch.linalg.solve(augment, (inside[picks].double() - crop_center).T).T + crop_center
        radii = _uniform(generator, *ranges.blob_radius_vox, (n_blobs,))
        strengths = _uniform(generator, -ranges.blob_strength, ranges.blob_strength, (n_blobs,))
        u += radial_blob_displacement(coords, centers, radii, strengths) * interior_here

    # Both images are interpolated once, at a common random sub-voxel offset s.
    subvoxel = _uniform(generator, -0.5, 0.5, (3,)).float().view(3, 1, 1, 1)
    baseline = sample_at(source.image, to_crop(coords + subvoxel))
    followup = sample_at(source.image, to_crop(coords + subvoxel + u))
    baseline = perturb_intensity(baseline, ranges, generator)
    followup = perturb_intensity(followup, ranges, generator)
    return SyntheticPair(baseline.float(), followup.float(), u.float(), mask_here)
