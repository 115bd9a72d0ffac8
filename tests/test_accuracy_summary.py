"""The accuracy table's figures, on per-pair tables made up here with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlossnet import accuracy_summary as summary

METHODS = {"blnet": "brainlossnet", "syn": "ANTs SyN + JI"}


def _pairs() -> pd.DataFrame:
    rows = []
    # atrophy: truth -0.5 ... -2.0; blnet estimates 1.1 * truth, syn truth + 0.2; fw/bw +-0.05 / +-0.2
    for i, truth in enumerate([-0.5, -1.0, -1.5, -2.0]):
        rows.append(dict(participant_id="sub-01", session_bl="bl", session_fu=f"a{i}", scenario="atrophy",
                         region="whole", scaling="0", nonlinear="False", true_dbpv_pct=truth,
                         blnet_pct=1.1 * truth, blnet_fw_pct=1.1 * truth + 0.05, blnet_bw_pct=1.1 * truth - 0.05,
                         syn_pct=truth + 0.2, syn_fw_pct=truth + 0.4, syn_bw_pct=truth, blnet_seconds=10.0,
                         syn_seconds=400.0))
    # rescans: truth 0, estimates +-0.1 (blnet) and +-0.3 (syn)
    for i, sign in enumerate([1, -1]):
        rows.append(dict(participant_id="sub-01", session_bl="bl", session_fu=f"r{i}", scenario="rescan",
                         region="whole", scaling="0", nonlinear="False", true_dbpv_pct=0.0,
                         blnet_pct=0.1 * sign, blnet_fw_pct=0.1 * sign, blnet_bw_pct=0.1 * sign,
                         syn_pct=0.3 * sign, syn_fw_pct=0.3 * sign, syn_bw_pct=0.3 * sign,
                         blnet_seconds=12.0, syn_seconds=600.0))
    # distortion: twin of the -1.0 atrophy pair scaled by 0.8 % (truth equal up to 0.01 %), and a
    # nonlinear one that is not a scaling twin; a failed syn estimate (NaN)
    rows.append(dict(participant_id="sub-01", session_bl="bl", session_fu="d0", scenario="distortion",
                     region="whole", scaling="1.008", nonlinear="False", true_dbpv_pct=-1.01,
                     blnet_pct=-1.1 - 0.01 + 0.05, blnet_fw_pct=-1.0, blnet_bw_pct=-1.0,
                     syn_pct=-1.0 + 0.2 - 0.01 + 0.7, syn_fw_pct=np.nan, syn_bw_pct=np.nan,
                     blnet_seconds=11.0, syn_seconds=500.0))
    rows.append(dict(participant_id="sub-01", session_bl="bl", session_fu="d1", scenario="distortion",
                     region="whole", scaling="0.8", nonlinear="True", true_dbpv_pct=-1.0,
                     blnet_pct=-1.0, blnet_fw_pct=-1.0, blnet_bw_pct=-1.0, syn_pct=np.nan,
                     syn_fw_pct=np.nan, syn_bw_pct=np.nan, blnet_seconds=11.0, syn_seconds=np.nan))
    return pd.DataFrame(rows)


def _value(table: pd.DataFrame, metric: str, scenario: str, method: str) -> float:
    row = table[(table["metric"] == metric) & (table["scenario"] == scenario)]
    assert len(row) == 1, (metric, scenario)
    return row.iloc[0][method]


def test_table_figures_match_hand_computed_values():
    table = summary.accuracy_table(_pairs(), METHODS)
    errors_blnet = np.abs(0.1 * np.array([-0.5, -1.0, -1.5, -2.0]))
    assert _value(table, "median |estimate - truth| (%)", "atrophy", "brainlossnet") == pytest.approx(
        np.median(errors_blnet))
    assert _value(table, "95th percentile |estimate - truth| (%)", "atrophy", "brainlossnet") == pytest.approx(
        np.percentile(errors_blnet, 95))
    assert _value(table, "median |estimate - truth| (%)", "atrophy", "ANTs SyN + JI") == pytest.approx(0.2)
    assert _value(table, "slope of estimate on truth", "atrophy", "brainlossnet") == pytest.approx(1.1)
    assert _value(table, "slope of estimate on truth", "atrophy", "ANTs SyN + JI") == pytest.approx(1.0)
    assert np.isnan(_value(table, "slope of estimate on truth", "rescan", "brainlossnet"))
    assert _value(table, "95th percentile |fw - bw| (%)", "atrophy", "brainlossnet") == pytest.approx(0.1)
    assert _value(table, "95th percentile |fw - bw| (%)", "atrophy", "ANTs SyN + JI") == pytest.approx(0.4)
    assert _value(table, "rescan: 95th percentile |estimate| (%)", "rescan", "brainlossnet") == pytest.approx(0.1)
    assert _value(table, "rescan: 95th percentile |estimate| (%)", "rescan", "ANTs SyN + JI") == pytest.approx(0.3)
    # the failed syn estimate is left out of its counts, not counted as an error
    assert _value(table, "pairs with an estimate", "distortion", "ANTs SyN + JI") == 1
    assert _value(table, "pairs with an estimate", "all", "brainlossnet") == 8
    # scaling by 0.8 %: error of the scaled pair minus error of its twin (the -1.0 atrophy pair)
    shift = "scaling of FU by 0.8 %: median |shift of estimate| (%)"
    assert _value(table, shift, "distortion", "brainlossnet") == pytest.approx(0.05)
    assert _value(table, shift, "distortion", "ANTs SyN + JI") == pytest.approx(0.7)
    seconds = _value(table, "median seconds per pair", "all", "ANTs SyN + JI")
    assert seconds == pytest.approx(np.median([400.0] * 4 + [600.0] * 2 + [500.0]))
    blnet_seconds = np.median([10.0] * 4 + [12.0] * 2 + [11.0, 11.0])
    assert _value(table, "median seconds per pair", "all", "brainlossnet") == pytest.approx(blnet_seconds)
    assert _value(table, "time relative to brainlossnet", "all", "ANTs SyN + JI") == pytest.approx(
        seconds / blnet_seconds)
    markdown = summary.to_markdown(table)
    assert markdown.splitlines()[0] == "| metric | scenario | brainlossnet | ANTs SyN + JI |"
    assert "| pairs with an estimate | all | 8 | 7 |" in markdown and "n/a" in markdown
    assert "| median \\|estimate - truth\\| (%) | atrophy | 0.125 | 0.200 |" in markdown


@pytest.mark.parametrize("cell, expected", [
    ("0", 0.0), ("", 0.0), ("none", 0.0), (None, 0.0), ("0.8", 0.8), ("-0.8", 0.8), ("0.008", 0.8),
    ("1.008", 0.8), ("0.992", 0.8), ("1.0", 0.0), ("iso+0.8", 0.8), ("aniso:1.0,-0.5,0", 1.0),
])
def test_scaling_cells_are_read_as_percent(cell, expected):
    assert summary.scaling_percent(cell) == pytest.approx(expected)


def test_scaled_pairs_without_a_close_twin_are_not_matched():
    pairs = _pairs()
    pairs.loc[pairs["session_fu"] == "d0", "true_dbpv_pct"] = -1.2  # 0.2 % from every unscaled pair
    assert summary.scaling_shifts(pairs, "blnet").empty
