"""Annualisation and the published cut-offs."""

import numpy as np
import pytest

from brainlossnet.reports.normative import (
    DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR,
    age_cutoff_pct_per_year,
    annualised_pct_per_year,
)


def test_annualised_rate_scales_by_interval_and_rejects_bad_intervals():
    rate = annualised_pct_per_year([-1.0, -1.0, -1.0, -1.0], [365.25, 730.5, 0.0, np.nan])
    np.testing.assert_allclose(rate[:2], [-1.0, -0.5])
    assert np.all(np.isnan(rate[2:]))


def test_age_cutoff_at_the_published_ages_and_between():
    # Opfer et al. 2018: 95th percentiles 0.52, 0.77, 1.05, 1.45 %/year at 45, 55, 65, 75
    np.testing.assert_allclose(age_cutoff_pct_per_year([45, 55, 65, 75]), [-0.52, -0.77, -1.05, -1.45])
    assert age_cutoff_pct_per_year(50.0) == pytest.approx((-0.52 - 0.77) / 2)
    assert np.all(np.isnan(age_cutoff_pct_per_year([30.0, 80.0, np.nan])))


def test_ms_cutoffs_are_losses_ordered_by_specificity():
    values = list(DE_STEFANO_2016_MS_CUTOFFS_PCT_PER_YEAR.values())
    assert values == sorted(values, reverse=True) and all(v < 0 for v in values)
