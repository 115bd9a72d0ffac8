"""Sanity gate: is a pair's result plausible enough to be averaged with others?

A pair whose forward and backward estimates disagree, whose apparent TIV change is large
(the TIV cannot change, so this is distortion or a registration failure), or whose masks
have implausible volumes gets status ``flagged`` with these reasons: it is reported,
never silently averaged in. Pure arithmetic on the numbers of a pair's result; the
thresholds are the module constants below (documented in docs/outputs.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from brainlossnet.geometry import CROP_SHAPE

MAX_FW_BW_DIFFERENCE_PCT = 1.0
"""Largest |bvl_fw - bvl_bw| (percentage points). The paper reports 95 % of its pairs
below 0.19 % and a median of -0.02 %; five times that 95th percentile is no longer
noise: one of the two registrations went wrong."""

MAX_ABS_DTIV_PCT = 3.5
"""Largest |dtiv| (percent). The intracranial volume cannot change between sessions; an
apparent change of this size means strong distortion (e.g. a gradient or coil change) or
a failed registration, beyond what the linear correction of Eq. 6 was fitted on. Set
above the distortions the correction is meant to handle (issue 3: FU scaled by up to 1 %
per axis, 3 % in volume): on the ground-truth benchmark an isotropic 0.8 % scaling read as
dTIV 2.2 % and was corrected to BVL +0.09 % (the pooled refinement's profile, now `pooled`;
+0.07 % with `prior`) on a
pair without change (docs/accuracy.md); the former 2 % flagged those pairs."""

TIV_RANGE_ML = (900.0, 2200.0)
"""Plausible total intracranial volume of an adult (ml), in the default 176 x 208 x 208
crop: published adult TIVs span roughly 1100-1900 ml; outside this wider range the
intracranial mask has leaked or lost a part."""

BPV_RANGE_ML = (600.0, 1700.0)
"""Plausible brain parenchyma volume of an adult (ml), in the default crop."""

BPV_TIV_RATIO_RANGE = (0.45, 0.95)
"""Plausible parenchyma fraction of the TIV: about 0.85 in young adults, falling with
age and disease to about 0.6; outside this range one of the masks failed."""


def sanity_problems(
    metrics: Mapping[str, float],
    *,
    crop_shape: tuple[int, int, int] = CROP_SHAPE,
    tiv_measured: bool = True,
) -> list[str]:
    """Reasons why a pair's numbers are implausible (empty when they pass).

    Parameters
    ----------
    metrics
        A pair's result: ``bvl_fw``, ``bvl_bw``, ``dtiv``, ``bpv_bl_ml``, ``bpv_fu_ml``,
        ``tiv_bl_ml``, ``tiv_fu_ml`` (percent and ml, as written to the pair's JSON).
    crop_shape
        The crop used. The ml ranges hold for adult heads in the default crop; with
        another crop (``--crop-shape`` exists for small synthetic test heads, whose size
        is arbitrary) they are not checked.
    tiv_measured
        False for a skull-stripped pair: its "TIV" mask is the brain, so the TIV change
        and the TIV ranges say nothing and are not checked.

    Returns
    -------
    list of str
        One short reason per failed check, e.g. ``"|bvl_fw - bvl_bw| = 1.4 % > 1 %"``.
    """
    keys = ["bvl_fw", "bvl_bw", "bpv_bl_ml", "bpv_fu_ml"]
    if tiv_measured:
        keys += ["dtiv", "tiv_bl_ml", "tiv_fu_ml"]
    missing = [key for key in keys if not _finite(metrics.get(key))]
    if missing:
        return [f"missing or non-finite {', '.join(missing)}"]
    problems = []
    difference = abs(metrics["bvl_fw"] - metrics["bvl_bw"])
    if difference > MAX_FW_BW_DIFFERENCE_PCT:
        problems.append(f"forward and backward disagree: |bvl_fw - bvl_bw| = {difference:.3g} % "
                        f"> {MAX_FW_BW_DIFFERENCE_PCT:g} %")
    ranges = [("bpv_bl_ml", BPV_RANGE_ML), ("bpv_fu_ml", BPV_RANGE_ML)]
    if tiv_measured:
        if abs(metrics["dtiv"]) > MAX_ABS_DTIV_PCT:
            problems.append(f"apparent TIV change |dtiv| = {abs(metrics['dtiv']):.3g} % "
                            f"> {MAX_ABS_DTIV_PCT:g} %")
        ranges += [("tiv_bl_ml", TIV_RANGE_ML), ("tiv_fu_ml", TIV_RANGE_ML)]
    if tuple(crop_shape) != tuple(CROP_SHAPE):
        ranges = []
    for key, (low, high) in ranges:
        if not low <= metrics[key] <= high:
            problems.append(f"implausible {key} = {metrics[key]:.4g} (expected {low:g} to {high:g})")
    if tiv_measured:
        for session in ("bl", "fu"):
            ratio = metrics[f"bpv_{session}_ml"] / metrics[f"tiv_{session}_ml"]
            low, high = BPV_TIV_RATIO_RANGE
            if not low <= ratio <= high:
                problems.append(f"implausible parenchyma fraction of the TIV ({session}) = {ratio:.3g} "
                                f"(expected {low:g} to {high:g})")
    return problems


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
