"""The VoxelMorph-style registration network (paper, "Non-linear registration"; DESIGN §1 step 4).

Input: a moving and a fixed image of one shape (any multiple of 16 per axis). Output: the
dense displacement field that warps the moving image onto the fixed one, in voxels, in the
pull-back convention ``warped(x) = moving(x + u(x))``.

Built for CPUs: the pair is average-pooled 2x (optionally joined by its difference and
local correlation volume, ``RegistrationConfig.correlation_radius_vox``), MONAI's VoxelMorph
U-Net predicts a field at half resolution, which (by default) is a stationary velocity field integrated by scaling
and squaring (MONAI ``DVF2DDF``, as in SynthMorph) so the displacement is diffeomorphic;
the half-resolution displacement is then upsampled trilinearly to full resolution and
doubled (its unit becomes full-resolution voxels).

The two halves are separate methods so that the half-resolution field can be refined on a
pair at test time (:func:`brainlossnet.registration.refine_velocity`) and then turned into
a displacement exactly as the network does: :meth:`RegistrationUNet.half_resolution_field`
(pooling + U-Net) and :meth:`RegistrationUNet.field_to_displacement` (integration +
upsampling); ``forward`` is their composition.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF, Warp
from monai.networks.nets import VoxelMorphUNet
from torch import nn

from brainlossnet.models.local_correlation import correlation_channels, local_correlation_volume

MODEL_NAME = "blnet-reg-0.1.0"
"""Architecture/training-recipe version; ``brainlossnet.registration.MODEL_VERSION`` appends the weights' hash."""

WEIGHTS_FILE = "registration_unet.pt"
"""Name of the packaged weights file in ``brainlossnet/data/weights/``."""

NORMALIZATION_PERCENTILE = 99.5
"""Percentile of the positive voxels that is mapped to intensity 1 (robust to bright vessels/fat)."""

SHAPE_MULTIPLE = 16
"""Every input axis must be a multiple of this: 2x pooling, then three U-Net poolings."""


@dataclass(frozen=True)
class RegistrationConfig:
    """Architecture of :class:`RegistrationUNet` (stored with the weights).

    Attributes
    ----------
    channels
        MONAI ``VoxelMorphUNet`` channels, in (down, next) pairs; six entries = three poolings.
    final_conv_channels
        Channels of the convolutions between the U-Net and the 3-channel field.
    integration_steps
        Scaling-and-squaring steps; 0 makes the network output a plain displacement.
    correlation_radius_vox
        0: the paper's input, the two images. ``r`` > 0: the U-Net also sees their
        difference and their local correlation at every half-resolution shift up to ``r``
        per axis (:func:`~brainlossnet.models.local_correlation.local_correlation_volume`),
        which lets a short training run see sub-voxel displacements.
    correlation_window_vox
        Window edge of those local correlations (half-resolution voxels, odd).
    """

    channels: tuple[int, ...] = (16, 32, 32, 32, 32, 32)
    final_conv_channels: tuple[int, ...] = (16, 16)
    integration_steps: int = 7
    correlation_radius_vox: int = 0
    correlation_window_vox: int = 5

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form, for checkpoints and the model card."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> RegistrationConfig:
        """Inverse of :meth:`to_dict`; weights saved before the correlation input get the paper's input."""
        return cls(
            channels=tuple(int(c) for c in values["channels"]),  # type: ignore[union-attr]
            final_conv_channels=tuple(int(c) for c in values["final_conv_channels"]),  # type: ignore[union-attr]
            integration_steps=int(values["integration_steps"]),  # type: ignore[arg-type]
            correlation_radius_vox=int(values.get("correlation_radius_vox", 0)),  # type: ignore[arg-type]
            correlation_window_vox=int(values.get("correlation_window_vox", 5)),  # type: ignore[arg-type]
        )

    @property
    def input_channels(self) -> int:
        """Channels the U-Net reads: 2 images, or images, difference and correlation volume.

        The difference (optical flow's temporal derivative) also makes the count even, which
        MONAI's ``VoxelMorphUNet`` requires: ``(2r+1)^3`` is odd.
        """
        if self.correlation_radius_vox == 0:
            return 2
        return 3 + correlation_channels(self.correlation_radius_vox)


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """Scale a T1w crop so its robust maximum is 1: divide by the 99.5th percentile of positive voxels.

    Negative values (interpolation overshoot) are set to 0. The network's inputs are
    normalised this way; a constant gain between the two scans therefore cancels.
    """
    values = np.asarray(image, dtype=np.float32)
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros_like(values)
    scale = float(np.percentile(positive, NORMALIZATION_PERCENTILE))
    return np.clip(values / scale, 0.0, None).astype(np.float32)


def make_warp(padding_mode: str = "zeros") -> Warp:
    """MONAI's trilinear spatial transformer (``ddf`` in voxels, channels in axis order).

    MONAI warns once per instance that it falls back to PyTorch's ``grid_sample``; that is
    the intended path here (no compiled extension), so the warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*PyTorch native grid_sample.*")
        return Warp(mode="bilinear", padding_mode=padding_mode)


def integrate_velocity(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Displacement ``exp(v)`` of a stationary velocity field by scaling and squaring.

    The field is divided by ``2**steps`` and composed with itself ``steps`` times
    (``u <- u + u∘(id + u)``), MONAI ``DVF2DDF``; resampling takes the border value
    outside the grid so a field near the edge is continued rather than pulled to zero.

    Parameters
    ----------
    velocity
        (B, 3, X, Y, Z) velocity in voxels.
    steps
        Number of squarings (7 in VoxelMorph and SynthMorph).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*PyTorch native grid_sample.*")
        integrate = DVF2DDF(num_steps=steps, mode="bilinear", padding_mode="border")
    return integrate(velocity)


def upsample_displacement(displacement: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Trilinear upsampling of a displacement by ``factor``, rescaled to the finer voxels.

    With ``align_corners=False`` a coarse voxel centre lands where the mean of the fine
    voxels it pooled lies, matching :func:`torch.nn.functional.avg_pool3d`.
    """
    fine = F.interpolate(displacement, scale_factor=factor, mode="trilinear", align_corners=False)
    return fine * float(factor)


class RegistrationUNet(nn.Module):
    """Half-resolution VoxelMorph U-Net returning a full-resolution displacement.

    ``forward(moving, fixed)`` takes two (B, 1, X, Y, Z) tensors with normalised
    intensities and returns the (B, 3, X, Y, Z) displacement in voxels (pull-back).
    """

    def __init__(self, config: RegistrationConfig | None = None) -> None:
        super().__init__()
        self.config = config or RegistrationConfig()
        self.unet = VoxelMorphUNet(
            spatial_dims=3,
            in_channels=self.config.input_channels,
            unet_out_channels=self.config.final_conv_channels[0],
            channels=self.config.channels,
            final_conv_channels=self.config.final_conv_channels,
        )
        # VoxelMorph starts from a near-zero field: tiny weights on the output convolution.
        out_conv = self.unet.net[1].final_conv_out.conv
        nn.init.normal_(out_conv.weight, mean=0.0, std=1e-5)
        nn.init.zeros_(out_conv.bias)

    def half_resolution_field(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The U-Net's output before integration and upsampling: (B, 3, X/2, Y/2, Z/2).

        A stationary velocity field in half-resolution voxels when
        ``config.integration_steps > 0``, else the half-resolution displacement itself.
        Inputs as in ``forward``.
        """
        if moving.shape != fixed.shape:
            raise ValueError(f"moving {tuple(moving.shape)} and fixed {tuple(fixed.shape)} differ in shape")
        spatial = tuple(moving.shape[2:])
        if any(n % SHAPE_MULTIPLE for n in spatial):
            raise ValueError(f"every axis must be a multiple of {SHAPE_MULTIPLE}, got {spatial}")
        moving_half = F.avg_pool3d(moving, kernel_size=2)
        fixed_half = F.avg_pool3d(fixed, kernel_size=2)
        inputs = [moving_half, fixed_half]
        if self.config.correlation_radius_vox > 0:
            correlation = local_correlation_volume(
                moving_half, fixed_half, self.config.correlation_radius_vox, self.config.correlation_window_vox
            )
            inputs += [fixed_half - moving_half, correlation]
        return self.unet(torch.cat(inputs, dim=1))

    def half_resolution_displacement(self, field: torch.Tensor, integration_steps: int | None = None) -> torch.Tensor:
        """``exp(field)`` by scaling and squaring (or ``field`` itself without integration), half-resolution voxels.

        ``integration_steps`` overrides the number of squarings of ``config`` (a cheaper
        approximation, e.g. inside test-time refinement); it has no effect when the network
        outputs a plain displacement (``config.integration_steps == 0``).
        """
        if self.config.integration_steps > 0:
            return integrate_velocity(field, self.config.integration_steps if integration_steps is None else integration_steps)
        return field

    def field_to_displacement(self, field: torch.Tensor) -> torch.Tensor:
        """Full-resolution displacement (B, 3, X, Y, Z) in voxels from :meth:`half_resolution_field`'s output."""
        return upsample_displacement(self.half_resolution_displacement(field), 2)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Displacement (B, 3, X, Y, Z) in voxels with ``moving(x + u(x)) ≈ fixed(x)``."""
        return self.field_to_displacement(self.half_resolution_field(moving, fixed))
