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
        rows.append(dict(participant_id=f"sub-a{i}", session_bl="bl", session_fu="fu", scenario="atrophy",
                         source="colin", region="whole", scaling="none", nonlinear="False", true_dbpv_pct=truth,
                         blnet_pct=1.1 * truth, blnet_fw_pct=1.1 * truth + 0.05, blnet_bw_pct=1.1 * truth - 0.05,
                         syn_pct=truth + 0.2, syn_fw_pct=truth + 0.4, syn_bw_pct=truth, blnet_seconds=10.0,
                         syn_seconds=400.0))
    # rescans: truth 0, estimates +-0.1 (blnet) and +-0.3 (syn)
    for i, sign in enumerate([1, -1]):
        rows.append(dict(participant_id=f"sub-r{i}", session_bl="bl", session_fu="fu", scenario="rescan",
                         source="colin", region="none", scaling="none", nonlinear="False", true_dbpv_pct=0.0,
                         blnet_pct=0.1 * sign, blnet_fw_pct=0.1 * sign, blnet_bw_pct=0.1 * sign,
                         syn_pct=0.3 * sign, syn_fw_pct=0.3 * sign, syn_bw_pct=0.3 * sign,
                         blnet_seconds=12.0, syn_seconds=600.0))
    # distortion: twin of the -1.0 atrophy pair scaled by 0.8 % (truth equal up to 0.01 %), and a
    # nonlinear one that is not a scaling twin; a failed syn estimate (NaN)
    rows.append(dict(participant_id="sub-d0", session_bl="bl", session_fu="fu", scenario="distortion",
                     source="colin", region="whole", scaling="1.008x1.008x1.008", nonlinear="False",
                     true_dbpv_pct=-1.01,
                     blnet_pct=-1.1 - 0.01 + 0.05, blnet_fw_pct=-1.0, blnet_bw_pct=-1.0,
                     syn_pct=-1.0 + 0.2 - 0.01 + 0.7, syn_fw_pct=np.nan, syn_bw_pct=np.nan,
                     blnet_seconds=11.0, syn_seconds=500.0))
    rows.append(dict(participant_id="sub-d1", session_bl="bl", session_fu="fu", scenario="distortion",
                     source="colin", region="whole", scaling="1.008x1.008x1.008", nonlinear="True",
                     true_dbpv_pct=-1.0,
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
    # gain: brainlossnet is proportional (1.1 in both bands); syn's +0.2 weighs more on the small change
    small, large = summary.SMALL_GAIN_METRIC, summary.LARGE_GAIN_METRIC
    assert small == "median estimate / truth, 0.05 < |truth| <= 0.75 %"
    assert large == "median estimate / truth, |truth| > 0.75 %"
    assert _value(table, small, "atrophy", "brainlossnet") == pytest.approx(1.1)
    assert _value(table, large, "atrophy", "brainlossnet") == pytest.approx(1.1)
    assert _value(table, small, "atrophy", "ANTs SyN + JI") == pytest.approx(0.3 / 0.5)
    assert _value(table, large, "atrophy", "ANTs SyN + JI") == pytest.approx(np.median([0.8, 1.3 / 1.5, 0.9]))
    assert np.isnan(_value(table, small, "rescan", "brainlossnet"))  # no change: no gain
    assert _value(table, "95th percentile |fw - bw| (%)", "atrophy", "brainlossnet") == pytest.approx(0.1)
    assert _value(table, "95th percentile |fw - bw| (%)", "atrophy", "ANTs SyN + JI") == pytest.approx(0.4)
    assert _value(table, "rescan: 95th percentile |estimate| (%)", "rescan", "brainlossnet") == pytest.approx(0.1)
    assert _value(table, "rescan: 95th percentile |estimate| (%)", "rescan", "ANTs SyN + JI") == pytest.approx(0.3)
    # the failed syn estimate is left out of its counts, not counted as an error
    assert _value(table, "pairs with an estimate", "distortion", "ANTs SyN + JI") == 1
    assert _value(table, "pairs with an estimate", "all", "brainlossnet") == 8
    # scaling by 0.8 %: error of the scaled pair minus error of its twin (the -1.0 atrophy pair)
    shift = "FU scaled 1.008x1.008x1.008: median |shift of estimate| (%)"
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
    ("1.008", 0.8), ("0.992", 0.8), ("1.0", 0.0), ("iso+0.8", 0.8), ("1.008x1.008x1.008", 0.8),
    ("1.010x0.995x0.990", 1.0), ("1.000x1.000x1.000", 0.0),
])
def test_scaling_cells_are_read_as_percent(cell, expected):
    assert summary.scaling_percent(cell) == pytest.approx(expected)


def test_twins_share_the_source_and_prefer_the_region():
    pairs = _pairs()
    # a scaled pair without atrophy (region none): its twins are the two rescans (errors +-0.1)
    extra = pairs[pairs["participant_id"] == "sub-d0"].assign(
        participant_id="sub-d2", region="none", true_dbpv_pct=0.0, blnet_pct=0.02)
    shifts = summary.scaling_shifts(pd.concat([pairs, extra], ignore_index=True), "blnet")
    row = shifts[shifts["participant_id"] == "sub-d2"].iloc[0]
    assert row["n_twins"] == 2 and row["shift_pct"] == pytest.approx(0.02)
    # a blurred follow-up (simulate's blur pairs) is distorted too, not a twin
    blurred = extra.assign(participant_id="sub-b0", scaling="none", blur_mm2=0.1, blnet_pct=0.5)
    with_blur = pd.concat([pairs.assign(blur_mm2=0.0), extra.assign(blur_mm2=0.0), blurred], ignore_index=True)
    row = summary.scaling_shifts(with_blur, "blnet").query("participant_id == 'sub-d2'").iloc[0]
    assert row["n_twins"] == 2 and row["shift_pct"] == pytest.approx(0.02)
    # a truth 0.2 % from every unscaled pair, or another source, has no twin
    far = pairs.copy()
    far.loc[far["participant_id"] == "sub-d0", "true_dbpv_pct"] = -1.2
    assert summary.scaling_shifts(far, "blnet").empty
    other = pairs.copy()
    other.loc[other["participant_id"] == "sub-d0", "source"] = "mni"
    assert summary.scaling_shifts(other, "blnet").empty
