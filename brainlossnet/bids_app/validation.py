"""Input checks of the T1w files, run before any pair starts its heavy stages.

Each selected T1w image is opened once: a missing or unreadable file, a git-annex or
Git LFS pointer instead of the image, a truncated or corrupt gzip stream, a header
nibabel cannot parse, and the content checks of :mod:`brainlossnet.image_checks`
(dimensions, voxel geometry, scaling, NaN/Inf, constant images) each give one line
naming the file and the problem. A pair with a refused image fails with that line
(a data error, exit status 65); the other pairs run.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from brainlossnet.image_checks import (
    InputDataError,
    check_dimensions,
    check_intensities,
    check_scaling,
    check_voxel_geometry,
)

POINTER_MAX_BYTES = 1024
"""Files at most this large are read as text to recognise annex/LFS pointers."""

NIFTI1_HEADER_BYTES = 348


def _pointer_problem(path: Path) -> str | None:
    """Recognise a git-annex or Git LFS pointer file left where the image should be."""
    head = path.read_bytes()[:POINTER_MAX_BYTES]
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer file, not an image (fetch the content: git lfs pull)"
    if b"/annex/objects/" in head or head.startswith(b"/annex/"):
        return "a git-annex pointer file, not an image (fetch the content: datalad get / git annex get)"
    return None


def file_problem(path: Path) -> str | None:
    """What is wrong with one T1w file, as one line without the path; None if it is usable.

    Parameters
    ----------
    path : Path
        A T1w image (``.nii`` or ``.nii.gz``).

    Returns
    -------
    str or None
        The problem, e.g. ``"zero-byte file"``, ``"truncated or corrupt gzip stream
        (EOFError: ...)"``, ``"4D image with 3 volumes (shape ...)"``.
    """
    if path.is_symlink() and not path.exists():
        target = path.readlink()
        if ".git/annex/objects" in str(target) or "annex/objects" in str(target):
            return ("a git-annex symbolic link whose content is not present "
                    "(fetch it: datalad get / git annex get)")
        return f"broken symbolic link (to {target})"
    if not path.is_file():
        return "file not found"
    size = path.stat().st_size
    if size == 0:
        return "zero-byte file (a placeholder, not an image)"
    if size <= POINTER_MAX_BYTES:
        pointer = _pointer_problem(path)
        if pointer:
            return pointer
    with path.open("rb") as handle:
        magic = handle.read(2)
    if path.name.endswith(".gz") and magic != b"\x1f\x8b":
        return "not gzip-compressed although the name ends in .gz (corrupt or mislabelled)"
    if size < NIFTI1_HEADER_BYTES and not path.name.endswith(".gz"):
        return f"only {size} bytes, shorter than a NIfTI header"
    try:
        header = _raw_header(path)
        if header is not None:  # before nib.load, which refuses some and ignores others
            check_scaling(float(header["scl_slope"]), float(header["scl_inter"]),
                          np.issubdtype(header.get_data_dtype(), np.integer))
        image = nib.load(str(path))
        check_dimensions(tuple(int(n) for n in image.shape))
        check_voxel_geometry(np.asarray(image.affine, dtype=float))
        data = np.asarray(image.dataobj)
    except InputDataError as err:
        return str(err)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        return f"truncated or corrupt gzip stream ({type(err).__name__}: {_one_line(err)})"
    except Exception as err:  # nibabel's many reader errors: the file is not a readable NIfTI
        return f"not a readable NIfTI image ({type(err).__name__}: {_one_line(err)})"
    try:
        check_intensities(data)
    except InputDataError as err:
        return str(err)
    return None


def _raw_header(path: Path) -> nib.Nifti1Header | None:
    """The NIfTI-1 header as stored (no scaling fix-ups); None for another format."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read(NIFTI1_HEADER_BYTES)
    if len(raw) < NIFTI1_HEADER_BYTES or raw[344:347] not in (b"n+1", b"ni1"):
        return None
    return nib.Nifti1Header(raw, check=False)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def validate_files(paths: Iterable[Path], max_workers: int = 1) -> dict[Path, str]:
    """Check every file once (in threads: reading is decompression, which frees the GIL).

    Parameters
    ----------
    paths : iterable of Path
        T1w images; duplicates are checked once.
    max_workers : int
        Threads.

    Returns
    -------
    dict
        Path -> one line ``"<path>: <problem>"`` for each refused file.
    """
    unique = sorted(set(paths))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        problems = dict(zip(unique, pool.map(file_problem, unique)))
    return {path: f"{path}: {problem}" for path, problem in problems.items() if problem}

