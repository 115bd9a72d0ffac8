"""Pair stage: non-linear registration by the U-Net, one direction per task."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.interfaces.nifti import load_image, save_image, stem
from brainlossnet.registration import load_registration_model, predict_displacement


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible to this (worker) process, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pydra.mark.annotate({"return": {"field": File, "elapsed_s": float}})
def register(moving: File, fixed: File, device: str = "auto") -> tuple[Path, float]:
    """Displacement field (voxels, pull-back) that warps ``moving`` onto ``fixed``.

    Written as a 4D NIfTI (X, Y, Z, 3) in the fixed image's grid, named for both inputs.
    """
    start = time.perf_counter()
    moving_image, _ = load_image(moving)
    fixed_image, affine = load_image(fixed)
    model = load_registration_model(resolve_device(device))
    displacement = predict_displacement(model, moving_image, fixed_image)
    field_file = save_image(np.moveaxis(displacement, 0, -1), affine, Path.cwd() / f"{stem(moving)}_to_{stem(fixed)}_displacement.nii.gz")
    return field_file, time.perf_counter() - start


register_task = pydra.mark.task(register)
