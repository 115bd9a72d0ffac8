"""Fitting the calibration constants m_TIV and m_scale from results and a reference (Eqs. 5-8).

The paper calibrates in two regressions over a set of BL/FU pairs:

* Eq. 5, distortion: ``dBPV = m_TIV * dTIV + c_TIV``. The TIV cannot change, so its
  apparent change measures relative distortion of the two scans, and the slope says how
  much of it leaks into the brain change.
* Eqs. 6-7, rescaling: the residual ``res = dBPV - m_TIV * dTIV`` (Eq. 6, without the
  offset) is regressed on a reference BVL (SIENA in the paper, simulated truth here):
  ``res = m_scale * reference + c_scale``.

:func:`brainlossnet.volumetry.distortion_corrected` applies the inverse at inference,
``BVL = (dBPV - m_TIV * dTIV) / m_scale`` (Eq. 8), so a fit on results made with any
profile gives the constants that map this network's raw changes onto the reference.

Both regressions are ordinary least squares (:func:`scipy.stats.linregress`); their 95 %
confidence intervals are t-based with n - 2 degrees of freedom. The interval of m_scale
is conditional on the fitted m_TIV (the uncertainty of Eq. 5 is not propagated), as in
the paper. Eq. 5 is an unbiased estimate of m_TIV only when the apparent TIV change is
uncorrelated with the true change across the pairs; :attr:`CalibrationFit.corr_dtiv_reference`
reports that correlation so that a user can see when the design violates it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.stats

MIN_PAIRS = 3
"""Fewest pairs a line with a confidence interval can be fitted to (n - 2 >= 1)."""


@dataclass(frozen=True)
class LineFit:
    """An ordinary least-squares line ``y = slope * x + intercept`` with 95 % intervals."""

    slope: float
    slope_ci95: tuple[float, float]
    intercept: float
    intercept_ci95: tuple[float, float]
    r2: float
    residual_sd: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


def fit_line(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> LineFit:
    """Least-squares line of ``y`` on ``x`` with t-based confidence intervals.

    Parameters
    ----------
    x, y
        1D arrays of one length n >= 3 (``MIN_PAIRS``), finite values; ``x`` not constant.
    confidence
        Two-sided coverage of the intervals (default 95 %).

    Returns
    -------
    LineFit
        Slope and intercept with intervals ``estimate -/+ t_{(1+confidence)/2, n-2} * stderr``,
        the coefficient of determination and the residual standard deviation (n - 2 dof).

    Raises
    ------
    ValueError
        If the arrays differ in length, hold fewer than 3 or non-finite values, or ``x``
        is constant (the slope is then undetermined).
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length ({x.size} and {y.size})")
    if x.size < MIN_PAIRS:
        raise ValueError(f"a line with confidence intervals needs at least {MIN_PAIRS} points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    if np.ptp(x) == 0:
        raise ValueError(f"x is constant ({x[0]}); the slope is undetermined")
    result = scipy.stats.linregress(x, y)
    dof = x.size - 2
    t_value = float(scipy.stats.t.ppf(0.5 + confidence / 2, dof))
    residuals = y - (result.slope * x + result.intercept)
    residual_sd = float(np.sqrt(np.sum(residuals**2) / dof))
    slope_half = t_value * float(result.stderr)
    intercept_half = t_value * float(result.intercept_stderr)
    return LineFit(
        slope=float(result.slope),
        slope_ci95=(float(result.slope) - slope_half, float(result.slope) + slope_half),
        intercept=float(result.intercept),
        intercept_ci95=(float(result.intercept) - intercept_half, float(result.intercept) + intercept_half),
        r2=float(result.rvalue) ** 2,
        residual_sd=residual_sd,
        n=int(x.size),
    )


@dataclass(frozen=True)
class CalibrationFit:
    """Result of the two regressions of Eqs. 5 and 7 over one set of pairs.

    Attributes
    ----------
    distortion
        Eq. 5: dBPV on dTIV (slope m_TIV, intercept c_TIV). None when m_TIV was fixed.
    rescaling
        Eq. 7: residual of Eq. 6 on the reference (slope m_scale, intercept c_scale).
    m_tiv
        The m_TIV used for the residual: the slope of Eq. 5, or the fixed value.
    corr_dtiv_reference
        Pearson correlation of dTIV with the reference; far from 0 biases Eq. 5's slope.
    bvl_minus_reference_mean_pct, bvl_minus_reference_sd_pct
        Mean and standard deviation of ``BVL - reference`` with BVL from Eq. 8 with
        the fitted constants (the agreement a user can expect on data like these).
    """

    distortion: LineFit | None
    rescaling: LineFit
    m_tiv: float
    corr_dtiv_reference: float
    bvl_minus_reference_mean_pct: float
    bvl_minus_reference_sd_pct: float

    @property
    def m_scale(self) -> float:
        """Slope of Eq. 7, the divisor of Eq. 8."""
        return self.rescaling.slope


def fit_calibration(
    dbpv_pct: np.ndarray,
    dtiv_pct: np.ndarray,
    reference_pct: np.ndarray,
    *,
    m_tiv: float | None = None,
) -> CalibrationFit:
    """Fit m_TIV (Eq. 5) and m_scale (Eq. 7) so that Eq. 8 maps dBPV onto the reference.

    Parameters
    ----------
    dbpv_pct
        Raw percent parenchyma change of each pair, mean of both directions (Eq. 3).
    dtiv_pct
        Apparent percent TIV change of each pair (Eq. 4).
    reference_pct
        Reference percent brain volume change of each pair (negative = loss), e.g.
        simulated truth or SIENA's PBVC.
    m_tiv
        Use this m_TIV instead of fitting Eq. 5 (when the pairs hold too little
        distortion to determine it).

    Returns
    -------
    CalibrationFit

    Raises
    ------
    ValueError
        If the arrays differ in length, hold fewer than 3 pairs or non-finite values, dTIV
        or the reference is constant, or the fitted m_scale is not positive (the
        estimates do not increase with the reference, so Eq. 8 cannot be used).
    """
    dbpv = np.asarray(dbpv_pct, dtype=float).ravel()
    dtiv = np.asarray(dtiv_pct, dtype=float).ravel()
    reference = np.asarray(reference_pct, dtype=float).ravel()
    if not dbpv.shape == dtiv.shape == reference.shape:
        raise ValueError(f"dbpv, dtiv and reference differ in length ({dbpv.size}, {dtiv.size}, {reference.size})")
    distortion = None
    if m_tiv is None:
        distortion = fit_line(dtiv, dbpv)
        m_tiv = distortion.slope
    residual = dbpv - m_tiv * dtiv  # Eq. 6
    rescaling = fit_line(reference, residual)  # Eq. 7
    if not rescaling.slope > 0:
        raise ValueError(
            f"m_scale = {rescaling.slope:.4g} is not positive: the distortion-corrected changes do "
            "not increase with the reference"
        )
    bvl = (dbpv - m_tiv * dtiv) / rescaling.slope  # Eq. 8, as volumetry.distortion_corrected
    difference = bvl - reference
    corr = float(np.corrcoef(dtiv, reference)[0, 1]) if np.ptp(dtiv) > 0 else 0.0
    return CalibrationFit(
        distortion=distortion,
        rescaling=rescaling,
        m_tiv=float(m_tiv),
        corr_dtiv_reference=corr,
        bvl_minus_reference_mean_pct=float(np.mean(difference)),
        bvl_minus_reference_sd_pct=float(np.std(difference, ddof=1)),
    )


def bvl_slope(dbpv_pct: np.ndarray, dtiv_pct: np.ndarray, reference_pct: np.ndarray, m_tiv: float,
              m_scale: float) -> float:
    """Least-squares slope (with intercept) of BVL (Eq. 8) on the reference, as in the accuracy benchmark.

    How well a calibration fits a set of pairs other than (or part of) the one it was
    fitted on: 1 when the set reads the reference at the calibration's scale.

    Returns
    -------
    float
        The slope; NaN when it is undetermined (fewer than 3 pairs, or a constant reference).
    """
    reference = np.asarray(reference_pct, dtype=float).ravel()
    bvl = (np.asarray(dbpv_pct, dtype=float).ravel() - m_tiv * np.asarray(dtiv_pct, dtype=float).ravel()) / m_scale
    try:
        return fit_line(reference, bvl).slope
    except ValueError:
        return float("nan")

