"""The intracranial cavity (TIV mask) of a T1w head scan, found by deepbet's CNN.

deepbet (Fisch et al. 2024) ships its TorchScript weights inside its wheel, so this works
offline. Its mask is what deepbet itself reports as the TIV: everything inside the inner
skull, cerebrospinal fluid included.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from deepbet import BrainExtraction

MASK_THRESHOLD = 0.5
"""Probability above which a voxel belongs to the cavity (deepbet's default)."""


@functools.lru_cache(maxsize=1)
def _brain_extraction() -> BrainExtraction:
    """deepbet's two networks, loaded once per process, on the CPU."""
    return BrainExtraction(no_gpu=True)


def intracranial_probability(t1w: np.ndarray) -> np.ndarray:
    """deepbet's probability of belonging to the intracranial cavity, per voxel.

    Parameters
    ----------
    t1w
        A T1w head image in RAS orientation (any voxel size; deepbet resamples internally).
    """
    with torch.inference_mode():
        probability = _brain_extraction().run_model(np.asarray(t1w, dtype=np.float32).copy())
    return np.asarray(probability, dtype=np.float32)


def intracranial_mask(t1w: np.ndarray) -> np.ndarray:
    """Binary intracranial mask: deepbet's thresholded, hole-filled largest component."""
    extraction = _brain_extraction()
    probability = intracranial_probability(t1w)
    mask = extraction.postprocess(probability > MASK_THRESHOLD)
    return np.asarray(mask, dtype=bool)
