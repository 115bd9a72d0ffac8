"""Synthetic longitudinal pairs: random smooth and atrophy-like deformations, rescan perturbations.

The paper trained on 1525 real BL/FU pairs; we have a handful of heads. From one 1 mm crop
``C`` and its intracranial mask this module makes an unlimited supply of pairs whose true
BL->FU displacement is known (DESIGN, "Training without private data"):

* BL(x) = C(x + s) and FU(x) = C(x + s + u(x)), with a random constant sub-voxel shift ``s``
  (so both images are interpolated once) and a known field ``u``; then
  BL(x + u(x)) = FU(x) exactly, i.e. ``u`` is the pull-back displacement the network must find.
* ``u`` = a random smooth field (residual distortion) + a small rigid motion (residual of the
  halfway registration) + a global brain contraction that vanishes at the inner skull
  (atrophy with fixed intracranial volume) + a few local radial expansions/contractions
  (ventricles, sulci).
* each image then gets its own gain, smooth multiplicative bias field and Gaussian noise.

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
    atrophy_linear
        Range of the global linear contraction factor of the brain (0.01 shrinks lengths by
        1 %, so the brain volume by about 3 %); negative values swell.
    atrophy_depth_vox
        Scale of the shell below the inner skull over which the contraction fades in
        (:func:`contraction_weight`; the skull is fixed).
    blob_count_max, blob_radius_vox, blob_strength
        Local radial deformations: how many at most, their Gaussian radius and the bound of
        their strength (displacement / distance at the centre; positive contracts).
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
    atrophy_linear: tuple[float, float] = (-0.005, 0.015)
    atrophy_depth_vox: int = 8
    blob_count_max: int = 4
    blob_radius_vox: tuple[float, float] = (4.0, 15.0)
    blob_strength: float = 0.1
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


def contraction_weight(icv_mask: torch.Tensor, depth_vox: int) -> torch.Tensor:
    """Weight in [0, 1]: 0 near the inner skull, rising to 1 deep inside the intracranial cavity.

    The cavity is eroded by a cube of half-width ``depth_vox`` (voxels whose whole cube is
    inside) and the core is smoothed by two box means of half-width ``depth_vox // 4``. The
    weight is therefore exactly 0 in the outer shell of about ``depth_vox / 2`` (and outside),
    and 1 deeper than about ``1.5 depth_vox``, so a contraction scaled by it moves the brain
    but never the skull: the intracranial volume stays fixed, as in real atrophy.
    """
    core = (box_mean(icv_mask.float(), depth_vox) > 1.0 - 1e-4).float()
    radius = max(depth_vox // 4, 1)
    return box_mean(box_mean(core, radius), radius).clamp(0.0, 1.0)


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
    crop_image: torch.Tensor,
    weight: torch.Tensor,
    icv_mask: torch.Tensor,
    generator: torch.Generator,
    *,
    patch_shape: tuple[int, int, int] | None = None,
    flip_and_rotate_deg: float | None = None,
    ranges: SynthesisRanges = SynthesisRanges(),
) -> SyntheticPair:
    """Make one random BL/FU pair from a crop (see the module docstring).

    Parameters
    ----------
    crop_image
        (X, Y, Z) normalised crop.
    weight
        :func:`contraction_weight` of the crop's intracranial mask.
    icv_mask
        (X, Y, Z) bool intracranial mask of the crop.
    patch_shape
        Size of a random sub-box to return (training); ``None`` returns the whole crop.
    flip_and_rotate_deg
        Augmentation applied to the source before synthesis (same for BL and FU): a random
        left-right flip and a rotation up to this many degrees about each axis; ``None``: none.
    """
    full_shape = tuple(int(n) for n in crop_image.shape)
    shape = tuple(patch_shape) if patch_shape is not None else full_shape
    origin = tuple(int(torch.randint(0, full - part + 1, (1,), generator=generator)) for full, part in zip(full_shape, shape))
    coords = voxel_grid(shape, origin)  # (3, *shape), points of the crop in this pair's frame
    crop_center = (torch.tensor(full_shape, dtype=torch.float64) - 1.0) / 2.0

    # Augmentation as a map A from the pair's frame into the crop: flip, then rotate.
    if flip_and_rotate_deg is not None:
        flip = torch.ones(3, dtype=torch.float64)
        if bool(torch.rand((), generator=generator) < 0.5):
            flip[0] = -1.0
        angles = torch.deg2rad(_uniform(generator, -flip_and_rotate_deg, flip_and_rotate_deg, (3,)))
        augment = rotation_matrix(angles) @ torch.diag(flip)
        to_crop = coords + affine_displacement(coords, augment, crop_center, torch.zeros(3, dtype=torch.float64))
    else:
        to_crop = coords

    # The true displacement u (pair frame, voxels).
    spacing = float(_uniform(generator, *ranges.smooth_spacing_vox))
    amplitude = float(_uniform(generator, 0.0, ranges.smooth_amplitude_vox))
    u = smooth_random_field(shape, 3, spacing, amplitude, generator)
    angles = torch.deg2rad(_uniform(generator, -ranges.rotation_deg, ranges.rotation_deg, (3,)))
    shift = _uniform(generator, -ranges.translation_vox, ranges.translation_vox, (3,))
    u += affine_displacement(coords, rotation_matrix(angles), crop_center, shift)

    mask_here = sample_at(icv_mask.float(), to_crop) > 0.5
    weight_here = sample_at(weight, to_crop)
    inside = torch.nonzero(icv_mask)
    brain_center = inside.double().mean(0) if len(inside) else crop_center
    if flip_and_rotate_deg is not None:  # the brain centre seen in the pair's frame: A^-1 applied
        brain_center = torch.linalg.solve(augment, brain_center - crop_center) + crop_center
    linear = float(_uniform(generator, *ranges.atrophy_linear))
    radial = coords.double() - brain_center.view(3, 1, 1, 1)
    u += (linear * weight_here.double() * radial).float()

    n_blobs = int(torch.randint(0, ranges.blob_count_max + 1, (1,), generator=generator))
    if n_blobs and len(inside):
        picks = torch.randint(0, len(inside), (n_blobs,), generator=generator)
        centers = inside[picks].double()
        if flip_and_rotate_deg is not None:
            centers = (torch.linalg.solve(augment, (centers - crop_center).T).T + crop_center)
        radii = _uniform(generator, *ranges.blob_radius_vox, (n_blobs,))
        strengths = _uniform(generator, -ranges.blob_strength, ranges.blob_strength, (n_blobs,))
        u += radial_blob_displacement(coords, centers, radii, strengths) * weight_here

    # Both images are interpolated once, at a common random sub-voxel offset s.
    subvoxel = _uniform(generator, -0.5, 0.5, (3,)).float().view(3, 1, 1, 1)
    bl_points = coords + subvoxel
    fu_points = coords + subvoxel + u
    if flip_and_rotate_deg is not None:
        bl_points = bl_points + affine_displacement(bl_points, augment, crop_center, torch.zeros(3, dtype=torch.float64))
        fu_points = fu_points + affine_displacement(fu_points, augment, crop_center, torch.zeros(3, dtype=torch.float64))
    baseline = perturb_intensity(sample_at(crop_image, bl_points), ranges, generator)
    followup = perturb_intensity(sample_at(crop_image, fu_points), ranges, generator)
    return SyntheticPair(baseline.float(), followup.float(), u.float(), mask_here)
