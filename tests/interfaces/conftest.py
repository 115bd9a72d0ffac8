"""Small synthetic heads written as NIfTI files, shared by the stage tests."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainlossnet import phantom

SMALL_CROP = (96, 112, 112)
"""Crop for half-size heads: every axis a multiple of 16, as the U-Net needs."""


@pytest.fixture(scope="session")
def small_crop() -> tuple[int, int, int]:
    return SMALL_CROP


@pytest.fixture(scope="session")
def save_head():
    """Write a synthetic head as an int16 NIfTI file."""
    return write_head


def write_head(head: phantom.SyntheticHead, path: Path) -> Path:
    nib.save(nib.Nifti1Image(head.image_int16(), head.affine), str(path))
    return path


@pytest.fixture(scope="session")
def small_pair_files(tmp_path_factory) -> dict:
    """A half-size BL/FU pair (FU repositioned, 1 % atrophy) as files, with its truth."""
    folder = tmp_path_factory.mktemp("small_pair")
    pair = phantom.make_pair(3, atrophy_pct=-1.0, scale=0.5, reposition=True)
    return {
        "bl": write_head(pair.bl, folder / "bl.nii.gz"),
        "fu": write_head(pair.fu, folder / "fu.nii.gz"),
        "pair": pair,
    }
