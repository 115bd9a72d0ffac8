"""Non-linear registration of two halfway crops and warping of masks (DESIGN §1 steps 4 and 6).

The trained :class:`~brainlossnet.models.registration_unet.RegistrationUNet` ships inside the
package (``brainlossnet/data/weights/``); nothing is downloaded. Displacements are float32
(3, X, Y, Z) arrays in voxels, pull-back: ``warped(x) = moving(x + u(x))``.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np
import scipy.ndimage
import torch

from brainlossnet.models.registration_unet import (
    MODEL_NAME,
    WEIGHTS_FILE,
    RegistrationConfig,
    RegistrationUNet,
    normalize_intensity,
)



def _weights_bytes() -> bytes:
    """The packaged weights file."""
    return resources.files("brainlossnet").joinpath("data", "weights", WEIGHTS_FILE).read_bytes()


def _model_version() -> str:
    """``MODEL_NAME`` plus the first 12 hex digits of the weights' SHA-256."""
    return f"{MODEL_NAME}+{hashlib.sha256(_weights_bytes()).hexdigest()[:12]}"


MODEL_VERSION: str = _model_version()
"""Identity of the packaged network (recorded in derivatives and cache keys)."""


def load_registration_model(device: str = "cpu") -> torch.nn.Module:
    """The packaged registration network in evaluation mode on ``device`` (no network access)."""
    payload = torch.load(io.BytesIO(_weights_bytes()), map_location="cpu", weights_only=True)
    model = RegistrationUNet(RegistrationConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def predict_displacement(model: torch.nn.Module, moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The displacement that warps ``moving`` onto ``fixed`` (paper, "Non-linear registration").

    Parameters
    ----------
    model
        From :func:`load_registration_model` (its device is used).
    moving, fixed
        (X, Y, Z) crops of one shape, every axis a multiple of 16; intensities are
        normalised here (:func:`normalize_intensity`).

    Returns
    -------
    numpy.ndarray
        float32 (3, X, Y, Z) displacement in voxels with ``moving(x + u(x)) ≈ fixed(x)``.
    """
    if np.shape(moving) != np.shape(fixed) or np.ndim(moving) != 3:
        raise ValueError(f"moving {np.shape(moving)} and fixed {np.shape(fixed)} must be 3D arrays of one shape")
    device = next(model.parameters()).device
    tensors = [torch.from_numpy(normalize_intensity(a))[None, None].to(device) for a in (moving, fixed)]
    with torch.inference_mode():
        displacement = model(*tensors)
    return displacement[0].float().cpu().numpy()


def warp(volume: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Resample ``volume`` at ``x + u(x)``: trilinear, 0 outside (DESIGN §1 step 6).

    The interpolation is the one the network was trained with (MONAI ``Warp``: trilinear,
    zero padding, values beyond the edge blended with 0), computed by
    :func:`scipy.ndimage.map_coordinates` on float64 coordinates so that a zero field returns
    the input exactly. A warped binary mask keeps fractional boundary values; their sum is
    the warped volume (paper, Eqs. 1-2).

    Returns
    -------
    numpy.ndarray
        float32 array of ``volume``'s shape.
    """
    volume = np.asarray(volume, dtype=np.float32)
    displacement = np.asarray(displacement)
    if displacement.shape != (3, *volume.shape):
        raise ValueError(f"displacement {displacement.shape} does not match volume {volume.shape}")
    coords = np.indices(volume.shape, dtype=np.float64) + displacement
    warped = scipy.ndimage.map_coordinates(volume, coords, order=1, mode="grid-constant", cval=0.0)
    return warped.astype(np.float32, copy=False)
