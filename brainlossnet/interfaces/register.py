"""Pair stage: non-linear registration by the U-Net, both directions from one refinement."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.interfaces.nifti import load_image, save_image, stage_image_path, stem
from brainlossnet.registration import (
    MODEL_VERSION,
    REFINE_FINE_LEARNING_RATE_VOX,
    REFINE_FINE_STEPS,
    REFINE_NCC_KERNEL_VOX,
    REFINE_SMOOTHNESS_WEIGHT,
    REFINE_STEPS,
    load_registration_model,
    predict_displacement_pair,
)
from brainlossnet.sharpness import SHARPNESS_MATCHING, match_sharpness, relative_blur_vox2


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible to this (worker) process, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pydra.mark.annotate({"return": {"field_fw": File, "field_bw": File, "fu_blur_mm2": float, "elapsed_s": float}})
def register(
    bl: File,
    fu: File,
    device: str = "auto",
    refine_steps: int = REFINE_STEPS,
    refine_fine_steps: int = REFINE_FINE_STEPS,
    refine_fine_learning_rate_vox: float = REFINE_FINE_LEARNING_RATE_VOX,
    refine_smoothness_weight: float = REFINE_SMOOTHNESS_WEIGHT,
    refine_ncc_kernel_vox: int = REFINE_NCC_KERNEL_VOX,
    sharpness_matching: bool = SHARPNESS_MATCHING,
    model_version: str = MODEL_VERSION,
) -> tuple[Path, Path, float, float]:
    """Displacement fields (voxels, pull-back) BL->FU and FU->BL of two halfway images.

    The network's prediction is refined on the pair for ``refine_steps`` steps at half
    resolution and ``refine_fine_steps`` with the similarity at full resolution, as one
    velocity for both directions (:func:`~brainlossnet.registration.predict_displacement_pair`),
    so the two fields are each other's inverse. Each is written as a 4D NIfTI (X, Y, Z, 3) on
    the halfway grid, named for both inputs.

    ``fu_blur_mm2`` is how much blurrier FU is than BL, as the variance of a Gaussian on the
    1 mm halfway grid (:func:`~brainlossnet.sharpness.relative_blur_vox2`; negative: BL is the
    blurrier). With ``sharpness_matching`` the sharper image is blurred by it before the
    registration (:func:`~brainlossnet.sharpness.match_sharpness`).

    The refinement's objective, the full-resolution stage's step size and the network's
    identity are inputs, with the release's values as defaults, because Pydra's cache key is
    made of the inputs only: a work dir filled by another release (other weights, another
    smoothness or step size) then misses instead of returning that release's fields. ``model_version`` must name the packaged weights.

    Raises
    ------
    ValueError
        If ``model_version`` is not the packaged network's version.
    """
    if model_version != MODEL_VERSION:
        raise ValueError(f"registration model {model_version!r} requested, but the packaged weights are {MODEL_VERSION!r}")
    start = time.perf_counter()
    bl_image, affine = load_image(bl)
    fu_image, _ = load_image(fu)
    fu_blur_mm2 = relative_blur_vox2(bl_image, fu_image)
    if sharpness_matching:
        bl_image, fu_image = match_sharpness(bl_image, fu_image, fu_blur_mm2)
    model = load_registration_model(resolve_device(device))
    forward, backward = predict_displacement_pair(
        model, bl_image, fu_image, refine_steps=refine_steps, refine_fine_steps=refine_fine_steps,
        refine_fine_learning_rate_vox=refine_fine_learning_rate_vox,
        refine_smoothness_weight=refine_smoothness_weight, refine_ncc_kernel_vox=refine_ncc_kernel_vox,
    )
    fields = [
        save_image(np.moveaxis(field, 0, -1), affine, stage_image_path(f"{stem(moving)}_to_{stem(fixed)}_displacement"))
        for field, moving, fixed in ((forward, bl, fu), (backward, fu, bl))
    ]
    return fields[0], fields[1], fu_blur_mm2, time.perf_counter() - start


register_task = pydra.mark.task(register)
