"""The accuracy table of ``benchmarks/accuracy.py``: per-pair estimates against simulated truth.

Input is one row per simulated BL/FU pair (keys, ``scenario``, ``true_dbpv_pct`` and
optionally ``region``, ``scaling``, ``nonlinear`` from the truth table of ``brainlossnet
simulate``) with, for each method, its estimate and per-direction estimates in percent
and its seconds for the pair. Output is one long table, one row per metric and scenario,
one column per method, which states the issue's targets directly: error against truth
(median and 95th percentile of the absolute error), forward-backward consistency,
rescan stability, sensitivity to a pure scaling of FU, slope of estimate on truth, and
time per pair.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from brainlossnet.calibration_fit import MIN_PAIRS, fit_line

KEY_COLUMNS = ("participant_id", "session_bl", "session_fu")
TWIN_TRUTH_TOLERANCE_PCT = 0.05
"""A scaled pair and its unscaled twin must have true changes this close (percent)."""
NO_CHANGE_PCT = 0.05
"""True changes of at most this size (percent) count as none in the gain rows."""
SMALL_CHANGE_PCT = 0.75
"""Gain rows: changes above :data:`NO_CHANGE_PCT` and at most this (percent) are small, larger ones large.

A method whose response is proportional to the change has the same gain in both bands; the
registration's does not (docs/registration.md, "Response to the size of the change").
"""
SMALL_GAIN_METRIC = f"median estimate / truth, {NO_CHANGE_PCT} < |truth| <= {SMALL_CHANGE_PCT} %"
LARGE_GAIN_METRIC = f"median estimate / truth, |truth| > {SMALL_CHANGE_PCT} %"
_FALSE_WORDS = {"", "0", "0.0", "false", "no", "none", "n/a", "nan", "off"}


def method_columns(prefix: str) -> dict[str, str]:
    """Per-pair columns of a method: estimate, forward, backward (percent) and seconds."""
    return {"estimate": f"{prefix}_pct", "fw": f"{prefix}_fw_pct", "bw": f"{prefix}_bw_pct",
            "seconds": f"{prefix}_seconds"}


def _number_percent(number: float) -> float:
    if 0.9 <= abs(number) <= 1.1:  # a factor: 1.008
        return abs(abs(number) - 1.0) * 100.0
    if abs(number) < 0.5:  # a fraction: 0.008
        return abs(number) * 100.0
    return abs(number)  # percent: 0.8


def scaling_percent(value: object) -> float:
    """Size of the scaling of a truth-table ``scaling`` cell, in percent (0 for none).

    Each number in the cell is read as a factor when within 10 % of 1 (``1.008``), as a
    fraction when below 0.5 in magnitude (``0.008``), else as percent (``0.8``); the size is
    the largest, so ``1.010x0.995x0.990`` (anisotropic, per axis) gives 1.0 and ``none`` 0.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 0.0
    text = str(value).strip().lower()
    if text in _FALSE_WORDS:
        return 0.0
    numbers = [float(n) for n in re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text)]
    return max((_number_percent(n) for n in numbers), default=0.0)


def _is_true(value: object) -> bool:
    return str(value).strip().lower() not in _FALSE_WORDS


def scaling_shifts(pairs: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """How much a scaling of FU moves a method's estimate: scaled pairs against unscaled twins.

    A scaled pair has a nonzero ``scaling`` and no ``nonlinear`` warp. Its twins are the
    pairs of the same ``source`` (all pairs when there is no such column) with no scaling,
    no warp and no blur (``blur_mm2``, where given) whose true change lies within
    ``TWIN_TRUTH_TOLERANCE_PCT`` of its own,
    those of the same ``region`` if there are any (e.g. a scaled pair with -1 % whole-brain
    atrophy is matched with the unscaled -1 % pair; a scaled pair without atrophy with the
    rescans). The shift is the error of the scaled pair minus the mean error of its twins,
    ``(est - truth)_scaled - mean (est - truth)_twins``, so that a small difference of the
    true changes does not count as a shift.

    Returns
    -------
    pandas.DataFrame
        One row per scaled pair with a twin: keys, ``scaling`` (the cell), ``scaling_pct``,
        ``n_twins`` and ``shift_pct`` (NaN where the method has no estimate).
    """
    columns = ["participant_id", "session_bl", "session_fu", "scaling", "scaling_pct", "n_twins", "shift_pct"]
    if "scaling" not in pairs.columns:
        return pd.DataFrame(columns=columns)
    estimate = method_columns(prefix)["estimate"]
    table = pairs.assign(
        scaling_pct=pairs["scaling"].map(scaling_percent),
        warped=pairs["nonlinear"].map(_is_true) if "nonlinear" in pairs.columns else False,
        blurred=pairs["blur_mm2"].astype(float) > 0 if "blur_mm2" in pairs.columns else False,
        twin_region=pairs["region"].astype(str) if "region" in pairs.columns else "",
        twin_source=pairs["source"].astype(str) if "source" in pairs.columns else "",
        error=pairs[estimate].astype(float) - pairs["true_dbpv_pct"].astype(float),
    )
    plain = table[(table["scaling_pct"] == 0) & ~table["warped"] & ~table["blurred"]]
    rows = []
    for _, scaled in table[(table["scaling_pct"] > 0) & ~table["warped"]].iterrows():
        twins = plain[(plain["twin_source"] == scaled["twin_source"])
                      & ((plain["true_dbpv_pct"].astype(float) - float(scaled["true_dbpv_pct"])).abs()
                         <= TWIN_TRUTH_TOLERANCE_PCT)]
        same_region = twins[twins["twin_region"] == scaled["twin_region"]]
        twins = same_region if len(same_region) else twins
        if twins.empty:
            continue
        rows.append({
            "participant_id": scaled["participant_id"], "session_bl": scaled["session_bl"],
            "session_fu": scaled["session_fu"], "scaling": scaled["scaling"],
            "scaling_pct": scaled["scaling_pct"], "n_twins": len(twins),
            "shift_pct": float(scaled["error"] - twins["error"].mean()),
        })
    return pd.DataFrame(rows, columns=columns)


def _slope(truth: np.ndarray, estimate: np.ndarray) -> float:
    if truth.size < MIN_PAIRS or np.ptp(truth) < 0.1:  # truth must span at least 0.1 %
        return float("nan")
    return fit_line(truth, estimate).slope


def _gain(truth: np.ndarray, estimate: np.ndarray, low_pct: float, high_pct: float) -> float:
    """Median of estimate / truth over the pairs with ``low_pct < |truth| <= high_pct`` (NaN for none)."""
    band = (np.abs(truth) > low_pct) & (np.abs(truth) <= high_pct)
    return float(np.median(estimate[band] / truth[band])) if band.any() else float("nan")


def _p95(values: pd.Series) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


def _median(values: pd.Series) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def accuracy_table(pairs: pd.DataFrame, methods: Mapping[str, str]) -> pd.DataFrame:
    """One table of every accuracy and speed figure, per scenario, for each method.

    Parameters
    ----------
    pairs
        One row per pair: ``scenario``, ``true_dbpv_pct``, keys, optional ``region``,
        ``scaling``, ``nonlinear``, and for each method prefix the columns of
        :func:`method_columns` (NaN where the method failed on the pair).
    methods
        Column prefix -> method name used as the column header, e.g.
        ``{"brainlossnet": "brainlossnet", "syn": "ANTs SyN + JI"}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric``, ``scenario`` and one per method. Rows, for every scenario
        and for ``all``: pairs, median and 95th percentile of ``|estimate - truth|``,
        95th percentile of ``|fw - bw|``, slope of estimate on truth (where the truth
        spans at least 0.1 %), the median gain (estimate / truth) over small and over large
        changes (:data:`SMALL_CHANGE_PCT`); then the rescan 95th percentile of ``|estimate|``, the
        median and largest ``|shift|`` per ``scaling`` cell (:func:`scaling_shifts`), the
        median seconds per pair, and the ratio of each method's time to the first
        method's.
    """
    scenarios = sorted(pairs["scenario"].astype(str).unique()) + ["all"]
    rows: list[dict[str, object]] = []

    def add(metric: str, scenario: str, values: Mapping[str, float | int]) -> None:
        rows.append({"metric": metric, "scenario": scenario, **{methods[p]: values[p] for p in methods}})

    for scenario in scenarios:
        subset = pairs if scenario == "all" else pairs[pairs["scenario"].astype(str) == scenario]
        stats: dict[str, dict[str, float | int]] = {}
        for prefix in methods:
            c = method_columns(prefix)
            valid = subset[np.isfinite(subset[c["estimate"]].astype(float))]
            truth = valid["true_dbpv_pct"].astype(float)
            estimate = valid[c["estimate"]].astype(float)
            error = (estimate - truth).abs()
            consistency = (valid[c["fw"]].astype(float) - valid[c["bw"]].astype(float)).abs()
            truth_pct, estimate_pct = truth.to_numpy(), estimate.to_numpy()
            stats[prefix] = {
                "n": len(valid),
                "median": _median(error),
                "p95": _p95(error),
                "fwbw": _p95(consistency.dropna()),
                "slope": _slope(truth_pct, estimate_pct),
                "small": _gain(truth_pct, estimate_pct, NO_CHANGE_PCT, SMALL_CHANGE_PCT),
                "large": _gain(truth_pct, estimate_pct, SMALL_CHANGE_PCT, np.inf),
            }
        add("pairs with an estimate", scenario, {p: stats[p]["n"] for p in methods})
        add("median |estimate - truth| (%)", scenario, {p: stats[p]["median"] for p in methods})
        add("95th percentile |estimate - truth| (%)", scenario, {p: stats[p]["p95"] for p in methods})
        add("95th percentile |fw - bw| (%)", scenario, {p: stats[p]["fwbw"] for p in methods})
        add("slope of estimate on truth", scenario, {p: stats[p]["slope"] for p in methods})
        add(SMALL_GAIN_METRIC, scenario, {p: stats[p]["small"] for p in methods})
        add(LARGE_GAIN_METRIC, scenario, {p: stats[p]["large"] for p in methods})
    rescan = pairs[pairs["scenario"].astype(str) == "rescan"]
    if len(rescan):
        add("rescan: 95th percentile |estimate| (%)", "rescan",
            {p: _p95(rescan[method_columns(p)["estimate"]].astype(float).dropna().abs()) for p in methods})
    shifts = {p: scaling_shifts(pairs, p) for p in methods}
    cells = sorted(set().union(*(set(s["scaling"].astype(str)) for s in shifts.values())))
    for cell in cells:
        by_method = {p: s.loc[s["scaling"].astype(str) == cell, "shift_pct"].dropna().abs() for p, s in shifts.items()}
        add(f"FU scaled {cell}: median |shift of estimate| (%)", "distortion",
            {p: _median(v) for p, v in by_method.items()})
        add(f"FU scaled {cell}: largest |shift of estimate| (%)", "distortion",
            {p: float(v.max()) if len(v) else float("nan") for p, v in by_method.items()})
    seconds = {p: _median(pairs[method_columns(p)["seconds"]].astype(float).dropna()) for p in methods}
    add("median seconds per pair", "all", seconds)
    first = next(iter(methods))
    add(f"time relative to {methods[first]}", "all", {p: seconds[p] / seconds[first] for p in methods})
    return pd.DataFrame(rows, columns=["metric", "scenario", *methods.values()], dtype=object)


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table; floats with ``digits`` decimals, NaN as ``n/a``.

    Pipes inside cells (``|estimate - truth|``) are escaped so they do not split columns.
    """
    def cell(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
