"""Session stage in halfway space: intracranial (TIV) and parenchyma masks."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.interfaces.nifti import load_image, save_image, stem
from brainlossnet.intracranial import intracranial_mask
from brainlossnet.parenchyma import parenchyma_mask


@pydra.mark.annotate({"return": {"intracranial": File, "parenchyma": File, "elapsed_s": float}})
def segment(in_file: File) -> tuple[Path, Path, float]:
    """Binary TIV mask (deepbet) and parenchyma mask (ANTs N4 + Atropos) of one halfway image.

    Output names start with the input's name, so BL and FU masks stay distinct files.
    """
    start = time.perf_counter()
    image, affine = load_image(in_file)
    cavity = intracranial_mask(image)
    tissue = parenchyma_mask(image, cavity)
    intracranial_file = save_image(cavity, affine, Path.cwd() / f"{stem(in_file)}_intracranial_mask.nii.gz", np.uint8)
    parenchyma_file = save_image(tissue, affine, Path.cwd() / f"{stem(in_file)}_parenchyma_mask.nii.gz", np.uint8)
    return intracranial_file, parenchyma_file, time.perf_counter() - start


segment_task = pydra.mark.task(segment)
