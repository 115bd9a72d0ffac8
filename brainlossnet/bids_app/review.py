"""What the participant level does with each pair's outcome: flags, crash reports, exit code.

* A pair whose image failed the input checks (:mod:`brainlossnet.bids_app.validation`) or
  was refused by a stage for its data (``InputDataError``) failed *because of its data*;
  any other failure is a *processing* failure.
* A computed pair is reviewed: a skull-stripped pair (allowed by ``--allow-skull-stripped``)
  gets its BVL without distortion correction; sessions acquired on different scanners or
  sequences, per their sidecars (:func:`brainlossnet.acquisition.acquisition_differences`),
  or with different voxel sizes (:func:`brainlossnet.acquisition.voxel_size_differences`),
  are flagged; the sanity gate
  (:func:`brainlossnet.sanity.sanity_problems`) turns an implausible result into status
  ``flagged`` with the reasons.
* Every failed pair gets a crash report ``output_dir/logs/<pair>_crash.txt`` (stage,
  inputs, message, traceback).
* Exit status: 0 when no pair failed (``flagged`` pairs included), 65 (``EX_DATAERR``)
  when pairs failed only because of their data, 1 when some pair failed in processing.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainlossnet import __version__
from brainlossnet.acquisition import acquisition_differences, voxel_size_differences
from brainlossnet.bids_app.derivatives import atomic_write_text, pair_prefix
from brainlossnet.image_checks import InputDataError, looks_skull_stripped
from brainlossnet.sanity import sanity_problems
from brainlossnet.volumetry import distortion_corrected

if TYPE_CHECKING:
    from brainlossnet.workflows.participant import PairResult, PairSpec

EXIT_DATAERR = 65
"""Exit status when pairs failed because of their input data (sysexits ``EX_DATAERR``)."""

EXIT_FAILURE = 1

LOGS_DIR = "logs"
"""Folder of output_dir holding the crash reports."""

FLAG_SKULL_STRIPPED = "skull_stripped_no_distortion_correction"
FLAG_ACQUISITION = "acquisition_differs"
FLAG_SANITY = "implausible"

_DATA_ERROR = f"{InputDataError.__name__}:"


def is_data_error(message: str) -> bool:
    """Whether a failed pair's one-line message says its data were refused."""
    return _DATA_ERROR in message


def refused_pair(pair: PairSpec, problems: Mapping[Path, str]) -> PairResult | None:
    """The failed result of a pair one of whose images failed the input checks, else None.

    Parameters
    ----------
    pair : PairSpec
    problems : mapping
        From :func:`brainlossnet.bids_app.validation.validate_files`.
    """
    from brainlossnet.workflows.participant import PairResult

    lines = [problems[path] for path in (pair.t1w_bl, pair.t1w_fu) if path in problems]
    if not lines:
        return None
    return PairResult(pair=pair, status="failed",
                      message=f"input check: {_DATA_ERROR} " + "; ".join(dict.fromkeys(lines)))


def _without_distortion_correction(metrics: dict[str, Any]) -> dict[str, Any]:
    """BVL from dBPV alone (m_tiv = 0; Eq. 6 without its TIV term), same rescaling."""
    m_scale = float(metrics["calibration"]["m_scale"])
    updated = dict(metrics)
    for suffix in ("_fw", "_bw"):
        updated[f"bvl{suffix}"] = distortion_corrected(metrics[f"dbpv{suffix}"], 0.0, 0.0, m_scale)
    updated["bvl"] = 0.5 * (updated["bvl_fw"] + updated["bvl_bw"])
    updated["distortion_correction"] = False
    return updated


def review_result(
    result: PairResult,
    *,
    sidecars: tuple[Mapping[str, Any], Mapping[str, Any]] = ({}, {}),
    voxel_sizes_mm: tuple[Sequence[float], Sequence[float]] | None = None,
    crop_shape: tuple[int, int, int],
) -> PairResult:
    """Flag or re-status a computed pair (failed results are returned unchanged).

    Parameters
    ----------
    result : PairResult
        As returned by the workflow, status ``ok``.
    sidecars : (mapping, mapping)
        Sidecar metadata of the BL and FU images.
    voxel_sizes_mm : (sequence, sequence), optional
        Voxel edge lengths (mm) of the BL and FU images as stored; not compared when None.
    crop_shape : tuple of int
        The run's crop, for the sanity gate's volume ranges.

    Returns
    -------
    PairResult
        Status ``ok`` or ``flagged``; ``metrics["flags"]`` lists the flags (possibly
        empty) and ``message`` gives the reasons of every flag.
    """
    if result.status != "ok":
        return result
    metrics = dict(result.metrics)
    flags: list[str] = []
    reasons: list[str] = []
    ratios = metrics.get("surround_ratio") or {}
    stripped = [session for session, ratio in ratios.items() if looks_skull_stripped(float(ratio))]
    if stripped:
        metrics = _without_distortion_correction(metrics)
        flags.append(FLAG_SKULL_STRIPPED)
        reasons.append(f"skull-stripped ({', '.join(stripped)}): BVL without distortion correction")
    differences = acquisition_differences(*sidecars)
    if voxel_sizes_mm is not None:
        differences += voxel_size_differences(*voxel_sizes_mm)
    if differences:
        flags.append(FLAG_ACQUISITION)
        reasons.append("different scanner or sequence (method validated on same-scanner pairs only): "
                       + ", ".join(differences))
    problems = sanity_problems(metrics, crop_shape=crop_shape, tiv_measured=not stripped)
    if problems:
        flags.append(FLAG_SANITY)
        reasons.append("; ".join(problems))
    metrics["flags"] = flags
    return dataclasses.replace(result, status="flagged" if problems else "ok",
                               message="; ".join(reasons), metrics=metrics)


def crash_report_path(output_dir: Path, pair: PairSpec) -> Path:
    """``output_dir/logs/sub-X_from-BL_to-FU_crash.txt``."""
    return output_dir / LOGS_DIR / f"{pair_prefix(pair.subject, pair.session_bl, pair.session_fu)}_crash.txt"


def failed_stage(message: str) -> str:
    """The stage named at the start of a failure message (``"crop: InputDataError: ..."``).

    Messages without a stage start with the exception's type (``"RuntimeError: ..."``).
    """
    head = message.split(":", 1)[0].strip()
    if not head or len(head.split()) > 2 or head.endswith(("Error", "Exception", "Interrupt")):
        return "unknown"
    return head


def write_crash_report(
    output_dir: Path, result: PairResult, options: Mapping[str, Any], work_dir: Path
) -> Path:
    """Write the crash report of a failed pair (atomically) and return its path.

    The report names the pair, the stage that failed, the inputs (both images and the run
    options), the one-line message, and the full traceback when there is one.
    """
    pair = result.pair
    lines = [
        f"brainlossnet {__version__} crash report, {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"pair: {pair_prefix(pair.subject, pair.session_bl, pair.session_fu)}",
        f"stage: {failed_stage(result.message)}",
        f"kind: {'input data' if is_data_error(result.message) else 'processing'}",
        f"message: {result.message}",
        "inputs:",
        f"  t1w_bl: {pair.t1w_bl}",
        f"  t1w_fu: {pair.t1w_fu}",
        f"  work_dir: {work_dir}",
        *(f"  {key}: {value}" for key, value in options.items()),
        f"host: {platform.node()} (Python {platform.python_version()})",
        "traceback:",
        result.traceback.rstrip() or "  (none: refused by the input checks before any stage ran)",
    ]
    path = crash_report_path(output_dir, pair)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def exit_status(statuses_and_messages: Iterable[tuple[str, str]]) -> int:
    """0, 65 or 1 from the (status, message) of every pair written (see the module docstring)."""
    failed = [message for status, message in statuses_and_messages if status == "failed"]
    if not failed:
        return 0
    return EXIT_DATAERR if all(is_data_error(message) for message in failed) else EXIT_FAILURE
