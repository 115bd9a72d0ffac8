"""Published cut-offs for pathological brain volume loss per year, and annualisation.

Both sources measured the percent brain volume change with SIENA; a BVL from this
package matches SIENA's scale only under a calibration profile fitted against SIENA
(see docs/reports.md). Values are stored as published and signed as this package signs
BVL (negative = loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Reference:
    """A publication a cut-off comes from."""

    short: str
    citation: str
    doi: str | None


OPFER_2018 = Reference(
    short="Opfer et al. 2018",
    citation=(
        "Opfer R, Ostwaldt AC, Sormani MP, Gocke C, Walker-Egger C, Manogaran P, De Stefano N, "
        "Schippling S (2018) Estimates of age-dependent cutoffs for pathological brain volume "
        "loss using SIENA/FSL - a longitudinal brain volumetry study in healthy adults. "
        "Neurobiol Aging 65:1-6"
    ),
    doi="10.1016/j.neurobiolaging.2017.12.024",
)
"""Reference 9 of the BrainLossNet paper: 117 healthy adults aged 37-83, SIENA."""

DE_STEFANO_2016 = Reference(
    short="De Stefano et al. 2016",
    citation=(
        "De Stefano N, Stromillo ML, Giorgio A, Bartolozzi ML, Battaglini M, Baldini M, "
        "Portaccio E, Amato MP, Sormani MP (2016) Establishing pathological cut-offs of brain "
        "atrophy rates in multiple sclerosis. J Neurol Neurosurg Psychiatry 87:93-99"
    ),
    doi=None,
)
"""206 patients with MS and 35 healthy controls, SIENA, annualised PBVC."""

OPFER_2018_AGE_YEARS = np.array([45.0, 55.0, 65.0, 75.0])
OPFER_2018_P95_PCT_PER_YEAR = np.array([-0.52, -0.77, -1.05, -1.45])
"""Age-dependent 95th percentiles of BVL per year in healthy adults (Opfer et al. 2018,
abstract): loss beyond these values at the given age is taken as pathological."""

OPFER_2018_MEAN_PCT_PER_YEAR = np.array([-0.15, -0.30, -0.46, -0.61])
"""Mean BVL per year in the same cohort at the same ages."""

DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR: dict[str, float] = {
    "80 % specificity": -0.40,
    "90 % specificity": -0.46,
    "95 % specificity": -0.52,
}
"""Annualised PBVC below which loss is pathological in MS, at the stated specificity
(De Stefano et al. 2016, abstract; age-independent in patients)."""


def annualised_pct_per_year(bvl_pct: np.ndarray, interval_days: np.ndarray) -> np.ndarray:
    """Percent volume change per year: ``bvl * 365.25 / interval_days``.

    Parameters
    ----------
    bvl_pct, interval_days : array_like
        Percent change over the interval, and the interval between the scans in days.

    Returns
    -------
    numpy.ndarray
        %/year; NaN where the interval is missing, not finite or not positive.
    """
    bvl = np.asarray(bvl_pct, dtype=float)
    days = np.asarray(interval_days, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = bvl * DAYS_PER_YEAR / days
    return np.where(np.isfinite(days) & (days > 0), rate, np.nan)


def age_cutoff_pct_per_year(age_years: np.ndarray) -> np.ndarray:
    """Opfer et al. (2018) 95th-percentile cut-off at an age, %/year (negative).

    The paper gives the cut-off at ages 45, 55, 65 and 75; between them it is
    interpolated linearly here (our choice, not the paper's), and outside 45-75 it is
    not extrapolated.

    Parameters
    ----------
    age_years : array_like

    Returns
    -------
    numpy.ndarray
        The cut-off, NaN outside 45-75 years or for a missing age.
    """
    age = np.asarray(age_years, dtype=float)
    inside = np.isfinite(age) & (age >= OPFER_2018_AGE_YEARS[0]) & (age <= OPFER_2018_AGE_YEARS[-1])
    values = np.interp(np.where(inside, age, OPFER_2018_AGE_YEARS[0]), OPFER_2018_AGE_YEARS,
                       OPFER_2018_P95_PCT_PER_YEAR)
    return np.where(inside, values, np.nan)
