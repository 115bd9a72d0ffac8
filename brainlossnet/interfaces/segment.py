"""Session stage in halfway space: the parenchyma mask inside the intracranial (TIV) mask."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.interfaces.nifti import load_image, save_image, stage_image_path, stem
from brainlossnet.parenchyma import parenchyma_mask


@pydra.mark.annotate({"return": {"parenchyma": File, "elapsed_s": float}})
def segment(in_file: File, intracranial: File) -> tuple[Path, float]:
    """Binary parenchyma mask (N4 + Gaussian mixture) of one halfway image inside its TIV mask.

    The TIV mask comes with the image from the rigid halfway stage (deepbet's, found in
    the crop stage). The output name starts with the input's name, so BL and FU masks stay
    distinct files.

    Raises
    ------
    ValueError
        If the image and the mask do not share one voxel grid.
    """
    start = time.perf_counter()
    image, affine = load_image(in_file)
    cavity, cavity_affine = load_image(intracranial)
    if cavity.shape != image.shape or not np.allclose(cavity_affine, affine, atol=1e-4):
        raise ValueError(f"{intracranial}: the TIV mask is not on the voxel grid of {in_file}")
    tissue = parenchyma_mask(image, cavity > 0.5)
    parenchyma_file = save_image(tissue, affine, stage_image_path(f"{stem(in_file)}_parenchyma_mask"), np.uint8)
    return parenchyma_file, time.perf_counter() - start


segment_task = pydra.mark.task(segment)
