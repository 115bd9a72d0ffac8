"""Bland-Altman and intraclass correlation against hand computations and published values."""

import numpy as np
import pytest

from brainlossnet.agreement import bland_altman, intraclass_correlation

# Shrout and Fleiss (1979), Table 2: 6 targets rated by 4 judges. Their Table 4 gives
# ICC(2,1) = 0.29 and ICC(3,1) = 0.71.
SHROUT_FLEISS = np.array([
    [9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7],
], dtype=float)


def test_icc_reproduces_shrout_and_fleiss_table_4():
    icc = intraclass_correlation(SHROUT_FLEISS)
    assert (icc.n, icc.k) == (6, 4)
    assert icc.icc_2_1 == pytest.approx(0.29, abs=0.005)
    assert icc.icc_3_1 == pytest.approx(0.71, abs=0.005)


def test_icc_consistency_ignores_an_offset_and_agreement_does_not():
    rng = np.random.default_rng(1)
    truth = rng.normal(0, 1, 50)
    same = intraclass_correlation(np.column_stack([truth, truth]))
    assert same.icc_2_1 == pytest.approx(1.0) and same.icc_3_1 == pytest.approx(1.0)
    shifted = intraclass_correlation(np.column_stack([truth, truth + 1.0]))
    assert shifted.icc_3_1 == pytest.approx(1.0)
    assert shifted.icc_2_1 < 0.8


def test_icc_leaves_out_incomplete_rows_and_needs_two_targets():
    table = np.vstack([SHROUT_FLEISS, [np.nan, 1, 2, 3]])
    assert intraclass_correlation(table).icc_3_1 == pytest.approx(0.71, abs=0.005)
    assert np.isnan(intraclass_correlation(np.array([[1.0, 2.0]])).icc_2_1)
    with pytest.raises(ValueError, match="raters"):
        intraclass_correlation(np.ones(5))


def test_bland_altman_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    b = np.array([0.5, 2.5, 2.0, 4.0, 1.0])
    stats = bland_altman(a, b)
    diff = np.array([0.5, -0.5, 1.0, 0.0])
    assert stats.n == 4
    assert stats.mean_diff == pytest.approx(diff.mean())
    assert stats.sd_diff == pytest.approx(diff.std(ddof=1))
    assert stats.loa_high == pytest.approx(diff.mean() + 1.96 * diff.std(ddof=1))
    assert stats.median_diff == pytest.approx(0.25)
    assert stats.p95_abs_diff == pytest.approx(np.percentile(np.abs(diff), 95))
    with pytest.raises(ValueError, match="length"):
        bland_altman([1.0], [1.0, 2.0])
    assert bland_altman([], []).n == 0
