"""Tiny BIDS datasets written at test time for the BIDS App tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest


def write_nifti(path: Path, seed: int = 0, shape: tuple[int, int, int] = (4, 5, 6)) -> Path:
    """Write a small random int16 image (content is irrelevant to the BIDS layer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 1000, size=shape, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


BidsTreeFactory = Callable[..., Path]


@pytest.fixture
def bids_tree(tmp_path: Path) -> BidsTreeFactory:
    """Return a factory writing a BIDS dataset under tmp_path.

    ``bids_tree(files, name="bids")`` takes a mapping from a path relative to the
    dataset root to its sidecar metadata (a dict, written next to the image as JSON)
    or None (no sidecar), writes a dataset_description.json and the images, and
    returns the dataset root.
    """

    def make(files: Mapping[str, Mapping[str, Any] | None], name: str = "bids") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "dataset_description.json").write_text(
            json.dumps({"Name": "test", "BIDSVersion": "1.9.0"})
        )
        for seed, (relative, sidecar) in enumerate(sorted(files.items())):
            image = write_nifti(root / relative, seed=seed)
            if sidecar is not None:
                stem = image.name.split(".")[0]
                (image.parent / f"{stem}.json").write_text(json.dumps(sidecar))
        return root

    return make


def _t1w(subject: str, session: str, entities: str = "") -> str:
    middle = f"_{entities}" if entities else ""
    return f"sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}{middle}_T1w.nii.gz"


@pytest.fixture
def t1w() -> Callable[..., str]:
    """Return ``t1w(subject, session, entities="")``: relative path of a T1w image,
    e.g. ``t1w("01", "2", "acq-fast_run-2")``."""
    return _t1w


@pytest.fixture
def nifti() -> Callable[..., Path]:
    """Return :func:`write_nifti`."""
    return write_nifti


@pytest.fixture
def tsv() -> Callable[..., None]:
    """Return :func:`write_tsv`."""
    return write_tsv
