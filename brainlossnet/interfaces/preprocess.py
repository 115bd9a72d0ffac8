"""Per-session preprocessing stages: reslice to 1 mm and crop around the intracranial cavity.

Each stage is a plain function (files in, files written to the working directory out, plus
its run time) promoted to a Pydra task; Pydra runs it inside the task's cache directory.
"""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet import geometry
from brainlossnet.interfaces.nifti import load_image, save_image
from brainlossnet.intracranial import intracranial_mask


@pydra.mark.annotate({"return": {"out_file": File, "elapsed_s": float}})
def reslice(in_file: File) -> tuple[Path, float]:
    """Reslice a T1w scan to 1 mm isotropic voxels on canonical RAS axes (linear)."""
    start = time.perf_counter()
    source, affine = load_image(in_file)
    if source.ndim != 3:
        raise ValueError(f"{in_file}: expected a 3D image, got shape {source.shape}")
    resliced, resliced_affine = geometry.reslice_to_isotropic(source, affine, voxel_mm=1.0, order=1)
    out_file = save_image(resliced, resliced_affine, Path.cwd() / "resliced_1mm.nii.gz")
    return out_file, time.perf_counter() - start


@pydra.mark.annotate({"return": {"out_file": File, "mask_file": File, "elapsed_s": float}})
def crop(in_file: File, crop_shape: tuple = geometry.CROP_SHAPE) -> tuple[Path, Path, float]:
    """Cut the fixed-size box around the intracranial cavity found by deepbet.

    The cavity may reach the inferior edge of the field of view: it continues through the
    foramen magnum as the spinal canal, and many scans stop there.

    Raises
    ------
    ValueError
        When the cavity does not fit the box, or reaches another edge of the field of view
        (the scan cuts the skull, so the cavity cannot be measured).
    """
    start = time.perf_counter()
    image, affine = load_image(in_file)
    shape = tuple(int(n) for n in crop_shape)
    mask = intracranial_mask(image)
    cut_faces = [face for face in geometry.faces_touched(mask) if face != "inferior"]
    if cut_faces:
        raise ValueError(
            f"{in_file}: the intracranial cavity reaches the {', '.join(cut_faces)} edge of the "
            "field of view (the scan cuts the skull)"
        )
    try:
        box_start = geometry.crop_box_start(mask, shape)
    except ValueError as error:
        raise ValueError(f"{in_file}: {error}") from error
    cropped, cropped_affine = geometry.crop(image, affine, box_start, shape)
    cropped_mask, _ = geometry.crop(mask.astype(np.uint8), affine, box_start, shape)
    out_file = save_image(cropped, cropped_affine, Path.cwd() / "crop_1mm.nii.gz")
    mask_file = save_image(cropped_mask, cropped_affine, Path.cwd() / "crop_intracranial.nii.gz", np.uint8)
    return out_file, mask_file, time.perf_counter() - start


reslice_task = pydra.mark.task(reslice)
crop_task = pydra.mark.task(crop)
