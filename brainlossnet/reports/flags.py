"""Warnings a reader of a pair's result should see: quality checks on its numbers and inputs.

These checks only inform (the report and the run summary show them); they change no
number and no status. The forward/backward and TIV-change limits are deliberately lower
than those of the sanity gate (:mod:`brainlossnet.sanity`, which sets ``status = flagged``),
so a reader sees a pair drifting before it is flagged; the plausible volume ranges are the
gate's own. Documented in docs/reports.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from brainlossnet.acquisition import acquisition_differences
from brainlossnet.sanity import BPV_TIV_RATIO_RANGE as PARENCHYMA_FRACTION_RANGE
from brainlossnet.sanity import TIV_RANGE_ML

FW_BW_LIMIT_PCT = 0.5
"""|bvl_fw - bvl_bw| above this (%) is called a forward/backward disagreement. The paper
found 95 % of |fw - bw| below 0.19 % for its network; 0.5 % leaves room for ours."""

DTIV_LIMIT_PCT = 1.0
"""|dtiv| above this (%): the apparent intracranial volume change (which should be 0) says
the scans differ by more distortion than a same-scanner pair usually shows."""


SHARPNESS_DIFFERENCE_LIMIT_MM2 = 0.03
"""|fu_blur_mm2| above this (Gaussian variance, mm²) is called a sharpness difference.

Simulated pairs of one scanner and protocol read at most 0.005 mm², a scan resampled once
more (cubic) than its partner 0.019 mm² (:mod:`brainlossnet.sharpness`); a larger difference
points to another scanner, protocol or processing of one scan."""


def _number(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def pair_warnings(
    record: Mapping[str, Any],
    metadata_bl: Mapping[str, Any] | None = None,
    metadata_fu: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every warning about one pair's result, one sentence each.

    Parameters
    ----------
    record : mapping
        The pair's ``_bvl.json`` record.
    metadata_bl, metadata_fu : mapping, optional
        BIDS sidecar metadata of the two T1w images (for the scanner check, the rule of
        :func:`brainlossnet.acquisition.acquisition_differences` that also sets the
        pair's ``acquisition_differs`` flag).

    Returns
    -------
    list of str
        Empty when nothing is remarkable. A status other than ``ok`` (failed, or a
        ``flagged`` status set by the pipeline) comes first with its message, then any
        ``flags``/``warnings`` the record itself carries, then the checks of this
        module: forward/backward disagreement, apparent TIV change, implausible mask
        volumes, a sharpness difference between the scans, different scanner or sequence.
    """
    warnings: list[str] = []
    status = record.get("status", "ok")
    if status != "ok":
        warnings.append(f"status {status}: {record.get('message') or 'no message'}")
    for key in ("flags", "warnings"):
        extra = record.get(key)
        if isinstance(extra, str) and extra:
            warnings.append(extra)
        elif isinstance(extra, (list, tuple)):
            warnings.extend(str(item) for item in extra if item)
    fw, bw = _number(record, "bvl_fw"), _number(record, "bvl_bw")
    if abs(fw - bw) > FW_BW_LIMIT_PCT:
        warnings.append(f"forward and backward BVL disagree: {fw:.2f} % vs {bw:.2f} % "
                        f"(|difference| > {FW_BW_LIMIT_PCT} %)")
    dtiv = _number(record, "dtiv")
    if abs(dtiv) > DTIV_LIMIT_PCT:
        warnings.append(f"apparent TIV change {dtiv:.2f} % (|dTIV| > {DTIV_LIMIT_PCT} %): "
                        "strong distortion between the scans")
    for session in ("bl", "fu"):
        tiv, bpv = _number(record, f"tiv_{session}_ml"), _number(record, f"bpv_{session}_ml")
        if math.isfinite(tiv) and not TIV_RANGE_ML[0] <= tiv <= TIV_RANGE_ML[1]:
            warnings.append(f"{session.upper()} TIV {tiv:.0f} ml outside the plausible adult range "
                            f"{TIV_RANGE_ML[0]:.0f}-{TIV_RANGE_ML[1]:.0f} ml")
        if math.isfinite(tiv) and math.isfinite(bpv) and tiv > 0:
            fraction = bpv / tiv
            low, high = PARENCHYMA_FRACTION_RANGE
            if not low <= fraction <= high:
                warnings.append(f"{session.upper()} parenchyma is {fraction:.2f} of the TIV, "
                                f"outside {low:.2f}-{high:.2f}: check the masks")
    fu_blur_mm2 = _number(record, "fu_blur_mm2")
    if abs(fu_blur_mm2) > SHARPNESS_DIFFERENCE_LIMIT_MM2:
        blurrier, sharper = ("FU", "BL") if fu_blur_mm2 > 0 else ("BL", "FU")
        matched = (record.get("options") or {}).get("sharpness_matching")
        handling = ("the registration blurred the sharper scan to match" if matched
                    else "not matched (--no-sharpness-matching): read as volume change")
        warnings.append(f"{blurrier} is blurrier than {sharper} by a Gaussian of variance "
                        f"{abs(fu_blur_mm2):.3f} mm² (> {SHARPNESS_DIFFERENCE_LIMIT_MM2} mm²; another "
                        f"scanner, protocol or a resampled scan?); {handling}")
    if metadata_bl is not None and metadata_fu is not None:
        differences = acquisition_differences(metadata_bl, metadata_fu)
        if differences:
            warnings.append("different scanner or sequence (the method is validated for "
                            "same-scanner pairs): " + "; ".join(differences))
    return warnings
