"""Reading and writing the NIfTI files that stages pass to each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


def load_image(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI image as a float32 array (scaling applied) and its voxel-to-world affine."""
    image = nib.load(str(path))
    return np.asarray(image.get_fdata(dtype=np.float32)), np.asarray(image.affine, dtype=float)


STAGE_IMAGE_SUFFIX = ".nii"
"""Extension of the images the stages write into the work dir: uncompressed NIfTI.

Gzip shrinks these float32 images only to about three quarters of their size (noisy
intensities; the displacement fields to 93 %) and writing one took 1.4-2.6 s on the
development machine, against 0.05 s uncompressed: about 15 s of every pair's run for 8
images, and reading each back again costs more. The work dir grows by about a third; the
derivatives are still ``.nii.gz`` (the writer compresses them on copy).
"""


def stage_image_path(name: str) -> Path:
    """Where a stage writes its image ``name``: in its task's folder (the current directory), uncompressed."""
    return Path.cwd() / f"{name}{STAGE_IMAGE_SUFFIX}"


def stem(path: str | Path) -> str:
    """File name without its NIfTI (or any) extensions: ``bl_halfway.nii.gz`` -> ``bl_halfway``."""
    return Path(path).name.split(".")[0]


def save_image(array: np.ndarray, affine: np.ndarray, path: Path, dtype: type = np.float32) -> Path:
    """Write an array as NIfTI (sform and qform set to ``affine``) and return the path."""
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    image.set_data_dtype(dtype)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path


def save_json(document: dict[str, Any], path: Path) -> Path:
    """Write a JSON document (sorted keys, indented) and return the path."""
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON document."""
    return json.loads(Path(path).read_text())
