"""Session stage in halfway space: the parenchyma fraction inside the intracranial (TIV) mask."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.interfaces.nifti import load_image, save_image, stage_image_path, stem
from brainlossnet.parenchyma import PARENCHYMA_DEFINITION, parenchyma_fraction


@pydra.mark.annotate({"return": {"parenchyma": File, "elapsed_s": float}})
def segment(in_file: File, intracranial: File, definition: str = PARENCHYMA_DEFINITION) -> tuple[Path, float]:
    """Parenchyma fraction map (N4 + Gaussian mixture) of one halfway image inside its TIV mask.

    The TIV mask comes with the image from the rigid halfway stage (deepbet's, found in
    the crop stage). The output name starts with the input's name, so BL and FU maps stay
    distinct files.

    ``definition`` names what the map holds (:data:`~brainlossnet.parenchyma.PARENCHYMA_DEFINITION`),
    with the release's value as default, because Pydra's cache key is made of the inputs
    only: a work dir filled by a release with another definition (the binary mask before
    2026-12-07) then misses instead of returning that release's maps.

    Raises
    ------
    ValueError
        If the image and the mask do not share one voxel grid, or ``definition`` is not the
        package's.
    """
    if definition != PARENCHYMA_DEFINITION:
        raise ValueError(f"parenchyma definition {definition!r} requested, "
                         f"but this release makes {PARENCHYMA_DEFINITION!r}")
    start = time.perf_counter()
    image, affine = load_image(in_file)
    cavity, cavity_affine = load_image(intracranial)
    if cavity.shape != image.shape or not np.allclose(cavity_affine, affine, atol=1e-4):
        raise ValueError(f"{intracranial}: the TIV mask is not on the voxel grid of {in_file}")
    fraction = parenchyma_fraction(image, cavity > 0.5)
    parenchyma_file = save_image(fraction, affine, stage_image_path(f"{stem(in_file)}_parenchyma_fraction"),
                                 np.float32)
    return parenchyma_file, time.perf_counter() - start


segment_task = pydra.mark.task(segment)
