"""Sanity gate: each documented threshold flags, a plausible pair passes."""

import math

import pytest

from brainlossnet import sanity

PLAUSIBLE = {"bvl_fw": -0.6, "bvl_bw": -0.4, "dtiv": 0.1, "bpv_bl_ml": 1100.0, "bpv_fu_ml": 1094.0,
             "tiv_bl_ml": 1500.0, "tiv_fu_ml": 1501.0}


def test_plausible_pair_passes():
    assert sanity.sanity_problems(PLAUSIBLE) == []


@pytest.mark.parametrize("change, expected", [
    ({"bvl_fw": -1.5, "bvl_bw": 0.2}, "|bvl_fw - bvl_bw| = 1.7 % > 1 %"),
    ({"dtiv": -3.6}, "|dtiv| = 3.6 % > 3.5 %"),
    ({"tiv_fu_ml": 2500.0, "bpv_fu_ml": 1100.0}, "implausible tiv_fu_ml = 2500 (expected 900 to 2200)"),
    ({"bpv_bl_ml": 500.0}, "implausible bpv_bl_ml = 500"),
    ({"bpv_bl_ml": 1450.0, "bpv_fu_ml": 1445.0}, "parenchyma fraction of the TIV (bl) = 0.967"),
    ({"dtiv": math.nan}, "missing or non-finite dtiv"),
])
def test_each_threshold_flags(change, expected):
    problems = sanity.sanity_problems({**PLAUSIBLE, **change})
    assert any(expected in problem for problem in problems), problems


def test_thresholds_just_inside_pass():
    edge = {**PLAUSIBLE, "bvl_fw": -0.99, "bvl_bw": 0.0, "dtiv": -3.49}
    assert sanity.sanity_problems(edge) == []


def test_volume_ranges_only_for_the_default_crop_and_tiv_checks_can_be_skipped():
    small_head = {k: (v / 8 if k.endswith("_ml") else v) for k, v in PLAUSIBLE.items()}
    assert sanity.sanity_problems(small_head, crop_shape=(96, 112, 112)) == []
    assert sanity.sanity_problems(small_head) != []
    assert sanity.sanity_problems({**small_head, "bpv_bl_ml": 200.0}, crop_shape=(96, 112, 112)) != []  # ratio
    stripped = {**PLAUSIBLE, "dtiv": 9.0, "tiv_bl_ml": 1100.0, "tiv_fu_ml": math.nan}
    assert sanity.sanity_problems(stripped, tiv_measured=False) == []
