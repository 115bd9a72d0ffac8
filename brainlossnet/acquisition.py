"""Same scanner and sequence? The comparison of two sessions' BIDS sidecar metadata.

The method is validated on pairs acquired on one scanner with one sequence, so a pair
whose sidecars disagree on the scanner or the sequence is computed but flagged. This is
the single rule for that comparison: the review of each pair (``acquisition_differs``
in group_bvl.tsv) and the warnings of the reports both call
:func:`acquisition_differences`, so the flag and the warning always say the same.

Rule for a field recorded in one sidecar only: it counts as a difference. A DICOM
converter writes the same fields for the same scanner and sequence, so a field present
for one session and absent for the other means another scanner, software or conversion,
and the same-scanner requirement cannot be confirmed; the flag only informs (the status
stays ``ok``). A field absent from both sidecars is not compared (nothing is known).

The voxel size is compared too (:func:`voxel_size_differences`): the same sequence gives
the same voxels, and a resolution mismatch biases the measured change (a blurrier
follow-up reads as extra loss; docs/usage.md), so it raises the same flag.

Pure: mappings and numbers in, strings out; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ACQUISITION_KEYS: tuple[str, ...] = (
    "Manufacturer", "ManufacturersModelName", "MagneticFieldStrength",
    "RepetitionTime", "InversionTime", "FlipAngle",
)
"""Sidecar fields that must agree between the two sessions of a pair: the scanner
(maker, model, field strength) and the T1w sequence's timing and flip angle."""

RELATIVE_TOLERANCE = 1e-3
"""Numbers (field strength, TR, TI, flip angle) agree when they differ by at most this
fraction of the larger one: DICOM converters round the same value differently."""

VOXEL_SIZE_TOLERANCE = 0.05
"""Voxel sizes agree when each of the sorted edge lengths differs by at most this fraction of
the larger: a sequence re-run on the same scanner reproduces its voxels exactly, header
rounding and a slightly different field of view stay far below it, and the resolution bias
measured on a 20 % mismatch is half a point of BVL (docs/usage.md)."""

MISSING = "missing"
"""How a field absent from one sidecar is shown in a difference."""


def values_differ(value_bl: Any, value_fu: Any) -> bool:
    """Whether two recorded values of one sidecar field differ.

    Numbers are compared within :data:`RELATIVE_TOLERANCE`; text ignoring case and
    surrounding blanks (``"SIEMENS "`` is ``"Siemens"``); anything else exactly.
    """
    if isinstance(value_bl, (int, float)) and isinstance(value_fu, (int, float)):
        return abs(value_bl - value_fu) > RELATIVE_TOLERANCE * max(abs(value_bl), abs(value_fu))
    if isinstance(value_bl, str) and isinstance(value_fu, str):
        return value_bl.strip().casefold() != value_fu.strip().casefold()
    return value_bl != value_fu


def acquisition_differences(sidecar_bl: Mapping[str, Any], sidecar_fu: Mapping[str, Any]) -> list[str]:
    """The :data:`ACQUISITION_KEYS` whose values differ between the BL and FU sidecars.

    A field set to null counts as absent. Absent from both: not compared; absent from one
    only: a difference (see the module docstring for why).

    Parameters
    ----------
    sidecar_bl, sidecar_fu : mapping
        BIDS sidecar metadata of the baseline and follow-up T1w images (an empty mapping
        when an image has none).

    Returns
    -------
    list of str
        ``"Key: <BL value> vs <FU value>"`` per differing field, in ``ACQUISITION_KEYS``
        order, an absent value shown as ``missing``; empty when the sessions agree.
    """
    differences = []
    for key in ACQUISITION_KEYS:
        value_bl, value_fu = sidecar_bl.get(key), sidecar_fu.get(key)
        if value_bl is None and value_fu is None:
            continue
        if value_bl is None or value_fu is None or values_differ(value_bl, value_fu):
            shown = [MISSING if value is None else value for value in (value_bl, value_fu)]
            differences.append(f"{key}: {shown[0]} vs {shown[1]}")
    return differences


def voxel_size_differences(voxel_mm_bl: Sequence[float], voxel_mm_fu: Sequence[float]) -> list[str]:
    """A one-line difference when the two sessions' voxel sizes differ, else an empty list.

    The edge lengths are compared sorted, so the same voxels stored along other axes (an
    oblique, permuted or flipped copy) count as the same; each pair of edges within
    :data:`VOXEL_SIZE_TOLERANCE`.

    Parameters
    ----------
    voxel_mm_bl, voxel_mm_fu : sequence of float
        Voxel edge lengths of the BL and FU images in mm (e.g. ``nibabel``'s zooms).

    Returns
    -------
    list of str
        ``["voxel size: 1x1x1 vs 1.2x1.2x1.2 mm"]`` (edges in the images' own axis order),
        or ``[]``.
    """
    sorted_bl, sorted_fu = sorted(map(float, voxel_mm_bl)), sorted(map(float, voxel_mm_fu))
    if len(sorted_bl) == len(sorted_fu) and all(
            abs(a - b) <= VOXEL_SIZE_TOLERANCE * max(a, b) for a, b in zip(sorted_bl, sorted_fu)):
        return []
    shown = ["x".join(f"{float(edge):.3g}" for edge in voxel_mm) for voxel_mm in (voxel_mm_bl, voxel_mm_fu)]
    return [f"voxel size: {shown[0]} vs {shown[1]} mm"]
