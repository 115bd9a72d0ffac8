"""Brain parenchyma (grey + white matter) inside the intracranial cavity, by ANTs.

Within the deepbet cavity a T1w scan holds three tissues: CSF (dark), grey matter and
white matter. After N4 bias correction, Atropos classifies them by k-means-initialised
Gaussian mixture with a weak Markov random field prior; parenchyma is where grey plus
white matter posterior exceeds one half. Binary, as in the paper.
"""

from __future__ import annotations

import ants
import numpy as np

N4_SHRINK_FACTOR = 4
N4_ITERATIONS = [20, 20]
ATROPOS_MRF = "[0.1,1x1x1]"
ATROPOS_CONVERGENCE = "[3,0]"
ATROPOS_RANDOM_SEED = 0
"""Atropos' ``--use-random-seed``: 0 seeds its random number generator with a constant.
Its default (1) seeds it from the clock, which changed a few voxels of a mask between two
runs on the same image (6 of 114240 on a half-size phantom) and so the BVL's last digits."""


def parenchyma_mask(t1w: np.ndarray, intracranial: np.ndarray) -> np.ndarray:
    """Binary grey + white matter mask inside an intracranial mask.

    Parameters
    ----------
    t1w
        T1w image (any orientation; the result has the same voxel grid).
    intracranial
        Binary intracranial (TIV) mask of the same shape.

    Raises
    ------
    ValueError
        If the shapes differ or the intracranial mask is empty.
    """
    if t1w.shape != intracranial.shape:
        raise ValueError(f"image {t1w.shape} and mask {intracranial.shape} differ in shape")
    if not np.any(intracranial):
        raise ValueError("the intracranial mask is empty")
    image = ants.from_numpy(np.asarray(t1w, dtype=np.float32))
    mask = ants.from_numpy(np.asarray(intracranial, dtype=np.float32))
    corrected = ants.n4_bias_field_correction(
        image,
        mask=mask,
        shrink_factor=N4_SHRINK_FACTOR,
        convergence={"iters": N4_ITERATIONS, "tol": 1e-6},
    )
    classes = ants.atropos(
        a=corrected, x=mask, i="kmeans[3]", m=ATROPOS_MRF, c=ATROPOS_CONVERGENCE, priorweight=0.0,
        r=ATROPOS_RANDOM_SEED,
    )
    csf, grey, white = (np.asarray(p.numpy()) for p in classes["probabilityimages"])
    return ((grey + white) > 0.5) & np.asarray(intracranial, dtype=bool)
