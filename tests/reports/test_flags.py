"""Warnings on a pair's result."""

from brainlossnet.reports.flags import pair_warnings

CLEAN = {
    "status": "ok", "message": "", "bvl": -0.5, "bvl_fw": -0.45, "bvl_bw": -0.55, "dtiv": 0.2,
    "tiv_bl_ml": 1500.0, "tiv_fu_ml": 1501.0, "bpv_bl_ml": 1150.0, "bpv_fu_ml": 1144.0,
}
SIDECAR = {"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "MagneticFieldStrength": 3,
           "RepetitionTime": 2.3, "InversionTime": 0.9, "FlipAngle": 9}


def test_a_clean_pair_has_no_warning():
    assert pair_warnings(CLEAN, SIDECAR, dict(SIDECAR)) == []


def test_each_check_fires_with_its_reason():
    record = dict(CLEAN, bvl_fw=0.2, bvl_bw=-1.0, dtiv=-1.7, tiv_fu_ml=600.0, bpv_bl_ml=400.0)
    text = " | ".join(pair_warnings(record, SIDECAR, dict(SIDECAR, MagneticFieldStrength=1.5)))
    assert "forward and backward BVL disagree: 0.20 % vs -1.00 %" in text
    assert "apparent TIV change -1.70 %" in text
    assert "FU TIV 600 ml outside" in text
    assert "BL parenchyma is 0.27 of the TIV" in text
    assert "different scanner or sequence" in text and "MagneticFieldStrength: 3 vs 1.5" in text


def test_status_and_pipeline_flags_come_first():
    failed = {"status": "failed", "message": "crop: no head found"}
    assert pair_warnings(failed) == ["status failed: crop: no head found"]
    flagged = dict(CLEAN, status="flagged", message="implausible masks", flags=["a", "b"])
    assert pair_warnings(flagged)[:3] == ["status flagged: implausible masks", "a", "b"]


def test_scanner_warning_follows_the_flag_rule_for_absent_fields():
    """Same rule as the pair's acquisition_differs flag (tests/bids_app/test_review.py):
    absent from one sidecar warns, absent from both (or no sidecars) does not."""
    without_tr = {key: value for key, value in SIDECAR.items() if key != "RepetitionTime"}
    warnings = pair_warnings(CLEAN, SIDECAR, without_tr)
    assert warnings == ["different scanner or sequence (the method is validated for same-scanner pairs): "
                        "RepetitionTime: 2.3 vs missing"]
    assert pair_warnings(CLEAN, without_tr, dict(without_tr)) == []
    assert pair_warnings(CLEAN, {}, {}) == []


def test_a_sharpness_difference_names_the_blurrier_scan_and_whether_it_was_matched():
    assert pair_warnings(dict(CLEAN, fu_blur_mm2=0.02)) == []  # one extra resampling reads about 0.02
    matched = pair_warnings(dict(CLEAN, fu_blur_mm2=0.1, options={"sharpness_matching": True}))
    assert len(matched) == 1
    assert matched[0].startswith("FU is blurrier than BL by a Gaussian of variance 0.100 mm²")
    assert "blurred the sharper scan to match" in matched[0]
    unmatched = pair_warnings(dict(CLEAN, fu_blur_mm2=-0.05, options={"sharpness_matching": False}))
    assert unmatched[0].startswith("BL is blurrier than FU by a Gaussian of variance 0.050 mm²")
    assert "not matched (--no-sharpness-matching)" in unmatched[0]
