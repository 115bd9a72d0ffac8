"""Agreement between two measurements of the same pairs: Bland-Altman and intraclass correlation.

The paper compares forward with backward estimates and BrainLossNet with SIENA by
Bland-Altman analysis (median and IQR of the differences, 95th percentile of their
absolute values) and the intraclass correlation coefficient; these are those statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BlandAltman:
    """Summary of the differences ``a - b`` of paired measurements (units of the inputs)."""

    n: int
    mean_diff: float
    sd_diff: float
    loa_low: float
    loa_high: float
    median_diff: float
    q1_diff: float
    q3_diff: float
    p95_abs_diff: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class IntraclassCorrelation:
    """Single-measure ICCs of Shrout and Fleiss (1979) from one two-way ANOVA.

    ``icc_2_1`` (two-way random effects, absolute agreement) counts a systematic offset
    between the methods as disagreement; ``icc_3_1`` (two-way mixed, consistency) ignores it.
    """

    n: int
    k: int
    icc_2_1: float
    icc_3_1: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired measurements differ in length: {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def bland_altman(a: np.ndarray, b: np.ndarray) -> BlandAltman:
    """Bland-Altman statistics of ``a - b``; pairs with a non-finite value are left out.

    Parameters
    ----------
    a, b : array_like
        Paired measurements of the same quantity (e.g. forward and backward BVL in %).

    Returns
    -------
    BlandAltman
        Mean and sample SD of the differences, limits of agreement (mean +- 1.96 SD),
        median and quartiles (the paper's summary) and the 95th percentile of the
        absolute differences. NaN where fewer than 2 pairs remain (SD) or none.
    """
    a, b = _paired(a, b)
    diff = a - b
    if diff.size == 0:
        nan = float("nan")
        return BlandAltman(0, nan, nan, nan, nan, nan, nan, nan, nan)
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else float("nan")
    q1, median, q3 = (float(q) for q in np.percentile(diff, [25, 50, 75]))
    return BlandAltman(
        n=int(diff.size), mean_diff=mean, sd_diff=sd,
        loa_low=mean - 1.96 * sd, loa_high=mean + 1.96 * sd,
        median_diff=median, q1_diff=q1, q3_diff=q3,
        p95_abs_diff=float(np.percentile(np.abs(diff), 95)),
    )


def intraclass_correlation(ratings: np.ndarray) -> IntraclassCorrelation:
    """ICC(2,1) and ICC(3,1) of a targets x raters table (Shrout and Fleiss 1979, Table 1).

    Parameters
    ----------
    ratings : array_like
        Shape (n, k): n targets (pairs) measured by k raters (methods), k >= 2. Rows
        with a non-finite value are left out.

    Returns
    -------
    IntraclassCorrelation
        With mean squares BMS (targets), JMS (raters) and EMS (residual):
        ICC(2,1) = (BMS - EMS) / (BMS + (k-1) EMS + k (JMS - EMS) / n) and
        ICC(3,1) = (BMS - EMS) / (BMS + (k-1) EMS). NaN with fewer than 2 targets or
        no variance at all.

    Raises
    ------
    ValueError
        If the table is not two-dimensional with at least two columns.
    """
    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"ratings must be an (n targets, k >= 2 raters) table, got shape {table.shape}")
    table = table[np.all(np.isfinite(table), axis=1)]
    n, k = table.shape
    if n < 2:
        return IntraclassCorrelation(n, k, float("nan"), float("nan"))
    grand = table.mean()
    ss_targets = k * np.sum((table.mean(axis=1) - grand) ** 2)
    ss_raters = n * np.sum((table.mean(axis=0) - grand) ** 2)
    ss_error = np.sum((table - grand) ** 2) - ss_targets - ss_raters
    bms = ss_targets / (n - 1)
    jms = ss_raters / (k - 1)
    ems = ss_error / ((n - 1) * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        icc_2_1 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
        icc_3_1 = (bms - ems) / (bms + (k - 1) * ems)
    return IntraclassCorrelation(n, k, float(icc_2_1), float(icc_3_1))
