"""Review of computed pairs: skull-stripped policy, scanner flags, sanity gate, exit status."""

from pathlib import Path

import pytest

from brainlossnet.bids_app import review
from brainlossnet.volumetry import distortion_corrected
from brainlossnet.workflows.participant import PairResult, PairSpec

PAIR = PairSpec("01", "1", "2", Path("/d/bl.nii.gz"), Path("/d/fu.nii.gz"))
SIDECAR = {"Manufacturer": "Siemens", "MagneticFieldStrength": 3, "RepetitionTime": 2.3}
METRICS = {"bvl": -0.5, "bvl_fw": -0.6, "bvl_bw": -0.4, "dbpv_fw": -0.7, "dbpv_bw": -0.5, "dbpv": -0.6,
           "dtiv_fw": 0.1, "dtiv_bw": 0.1, "dtiv": 0.1, "bpv_bl_ml": 1100.0, "bpv_fu_ml": 1094.0,
           "tiv_bl_ml": 1500.0, "tiv_fu_ml": 1501.0, "calibration": {"m_tiv": 1.0, "m_scale": 0.5},
           "surround_ratio": {"bl": 0.8, "fu": 0.7}}
CROP = (176, 208, 208)


def ok(**changes) -> PairResult:
    return PairResult(pair=PAIR, status="ok", metrics={**METRICS, **changes})


def test_plausible_same_scanner_pair_stays_ok_without_flags():
    reviewed = review.review_result(ok(), sidecars=(SIDECAR, dict(SIDECAR)), crop_shape=CROP)
    assert (reviewed.status, reviewed.message, reviewed.metrics["flags"]) == ("ok", "", [])
    assert reviewed.metrics["bvl"] == METRICS["bvl"]


def test_different_scanner_is_flagged_but_ok():
    fu = dict(SIDECAR, Manufacturer="Philips", MagneticFieldStrength=1.5)
    reviewed = review.review_result(ok(), sidecars=(SIDECAR, fu), crop_shape=CROP)
    assert reviewed.status == "ok" and reviewed.metrics["flags"] == [review.FLAG_ACQUISITION]
    assert "Manufacturer: Siemens vs Philips, MagneticFieldStrength: 3 vs 1.5" in reviewed.message


def test_field_recorded_for_one_session_only_is_flagged_but_ok():
    """Same rule as the reports' scanner warning (tests/reports/test_flags.py)."""
    without_tr = {key: value for key, value in SIDECAR.items() if key != "RepetitionTime"}
    reviewed = review.review_result(ok(), sidecars=(SIDECAR, without_tr), crop_shape=CROP)
    assert reviewed.status == "ok" and reviewed.metrics["flags"] == [review.FLAG_ACQUISITION]
    assert reviewed.message.endswith(": RepetitionTime: 2.3 vs missing")
    for both_without in ((without_tr, dict(without_tr)), ({}, {})):
        assert review.review_result(ok(), sidecars=both_without, crop_shape=CROP).metrics["flags"] == []


def test_different_voxel_sizes_raise_the_acquisition_flag_with_both_sizes():
    reviewed = review.review_result(ok(), sidecars=(SIDECAR, dict(SIDECAR)),
                                    voxel_sizes_mm=((1.0, 1.0, 1.0), (1.2, 1.2, 1.2)), crop_shape=CROP)
    assert reviewed.status == "ok" and reviewed.metrics["flags"] == [review.FLAG_ACQUISITION]
    assert reviewed.message.endswith(": voxel size: 1x1x1 vs 1.2x1.2x1.2 mm")
    same = review.review_result(ok(), voxel_sizes_mm=((1.0, 1.0, 1.2), (1.2, 1.0, 1.0)), crop_shape=CROP)
    assert same.metrics["flags"] == []


def test_implausible_pair_is_flagged_with_the_reason():
    reviewed = review.review_result(ok(bvl_fw=-2.0, bvl_bw=0.5), crop_shape=CROP)
    assert reviewed.status == "flagged" and reviewed.metrics["flags"] == [review.FLAG_SANITY]
    assert "forward and backward disagree" in reviewed.message


def test_skull_stripped_pair_gets_bvl_without_distortion_correction():
    result = ok(surround_ratio={"bl": 0.01, "fu": 0.5}, dtiv=7.0, tiv_bl_ml=1120.0)
    reviewed = review.review_result(result, crop_shape=CROP)
    assert reviewed.status == "ok" and reviewed.metrics["flags"] == [review.FLAG_SKULL_STRIPPED]
    assert reviewed.metrics["distortion_correction"] is False
    assert reviewed.metrics["bvl_fw"] == pytest.approx(-0.7 / 0.5)
    assert reviewed.metrics["bvl_fw"] != distortion_corrected(-0.7, 0.1, 1.0, 0.5)
    assert reviewed.metrics["bvl"] == pytest.approx((-0.7 - 0.5) / 2 / 0.5)
    assert "skull-stripped (bl)" in reviewed.message


def test_failed_result_is_left_alone_and_exit_status():
    failed = PairResult(pair=PAIR, status="failed", message="crop: InputDataError: x: bad")
    assert review.review_result(failed, crop_shape=CROP) is failed
    assert review.exit_status([("ok", ""), ("flagged", "x")]) == 0
    assert review.exit_status([("ok", ""), ("failed", "input check: InputDataError: f: zero-byte file")]) == 65
    assert review.exit_status([("failed", "crop: InputDataError: a"), ("failed", "segment: OSError: b")]) == 1
    assert review.failed_stage("segment: OSError: b") == "segment"
    assert review.failed_stage("RuntimeError: b") == "unknown"
