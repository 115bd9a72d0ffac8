"""Per-session preprocessing stages: reslice to 1 mm and crop around the intracranial cavity.

Each stage is a plain function (files in, files written to the working directory out, plus
its run time) promoted to a Pydra task; Pydra runs it inside the task's cache directory.
"""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet import geometry, image_checks
from brainlossnet.image_checks import InputDataError
from brainlossnet.interfaces.nifti import load_image, save_image, stage_image_path
from brainlossnet.intracranial import intracranial_mask


@pydra.mark.annotate({"return": {"out_file": File, "elapsed_s": float}})
def reslice(in_file: File) -> tuple[Path, float]:
    """Reslice a T1w scan to 1 mm isotropic voxels on canonical RAS axes (linear)."""
    start = time.perf_counter()
    source, affine = load_image(in_file)
    if source.ndim != 3:
        raise ValueError(f"{in_file}: expected a 3D image, got shape {source.shape}")
    resliced, resliced_affine = geometry.reslice_to_isotropic(source, affine, voxel_mm=1.0, order=1)
    out_file = save_image(resliced, resliced_affine, stage_image_path("resliced_1mm"))
    return out_file, time.perf_counter() - start


@pydra.mark.annotate(
    {"return": {"out_file": File, "mask_file": File, "surround_ratio": float, "elapsed_s": float}}
)
def crop(
    in_file: File,
    crop_shape: tuple = geometry.CROP_SHAPE,
    source: File | None = None,
    allow_skull_stripped: bool = False,
) -> tuple[Path, Path, float, float]:
    """Cut the fixed-size box around the intracranial cavity found by deepbet.

    The cavity may reach the inferior edge of the field of view through the foramen magnum
    (it continues as the spinal canal, and many scans stop there), but not with a larger
    section (see :func:`image_checks.cavity_cut_faces`). ``source`` (the original scan) only
    names the file in messages. ``surround_ratio`` is the signal around the cavity
    (:func:`image_checks.surround_signal_ratio`, measured in the box); a skull-stripped scan
    is refused unless ``allow_skull_stripped``.

    Raises
    ------
    InputDataError
        When no cavity is found, the scan cuts the skull or the brainstem, the cavity does
        not fit the box, or the scan is skull-stripped (and that is not allowed).
    """
    start = time.perf_counter()
    image, affine = load_image(in_file)
    name = source if source is not None else in_file
    shape = tuple(int(n) for n in crop_shape)
    mask = intracranial_mask(image)
    if not np.any(mask):
        raise InputDataError(f"{name}: no intracranial cavity found (is this a T1w head scan?)")
    cut_faces = image_checks.cavity_cut_faces(mask)
    if cut_faces:
        raise InputDataError(
            f"{name}: the field of view cuts the skull or brainstem: the intracranial cavity reaches "
            f"the {', '.join(cut_faces)} edge of the image, so the crop cannot hold the whole cavity"
        )
    try:
        box_start = geometry.crop_box_start(mask, shape)
    except ValueError as error:
        raise InputDataError(f"{name}: {error}") from error
    cropped, cropped_affine = geometry.crop(image, affine, box_start, shape)
    cropped_mask, _ = geometry.crop(mask.astype(np.uint8), affine, box_start, shape)
    surround_ratio = image_checks.surround_signal_ratio(
        cropped, cropped_mask > 0, geometry.voxel_sizes_mm(cropped_affine))
    if image_checks.looks_skull_stripped(surround_ratio) and not allow_skull_stripped:
        raise InputDataError(
            f"{name}: looks skull-stripped (signal around the intracranial cavity {surround_ratio:.3f} "
            f"of the signal inside, below {image_checks.SKULL_STRIPPED_MAX_SURROUND}); the method needs "
            "the skull to measure TIV and distortion (see --allow-skull-stripped)"
        )
    out_file = save_image(cropped, cropped_affine, stage_image_path("crop_1mm"))
    mask_file = save_image(cropped_mask, cropped_affine, stage_image_path("crop_intracranial"), np.uint8)
    return out_file, mask_file, surround_ratio, time.perf_counter() - start


reslice_task = pydra.mark.task(reslice)
crop_task = pydra.mark.task(crop)
