"""The per-pair HTML: every number, the correction, warnings, times, versions, embedded figures."""

import base64
import re

from brainlossnet.reports.pair_report import render_pair_report


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_holds_numbers_correction_times_versions_and_figures(record, pair_images, decode_png):
    text = render_pair_report(record, pair_images, {"Manufacturer": "Siemens"}, {"Manufacturer": "GE"})
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for number in ("-0.585", "-0.568", "-0.577", "-0.565", "-0.548", "-0.557", "0.020", "0.033", "0.027",
                   "1150.0", "1143.5", "1149.4", "1500.3"):
        assert number in text, number
    assert "(-0.557 − 0.750 · 0.027) / 1.000 = <strong>-0.577 %</strong>" in text
    assert "testprofile 9.9" in text and "made for a test" in text and "{&quot;n&quot;: 12}" in text
    assert "registration_unet sha256:abcdef" in text and "brainlossnet 0.0.test" in text
    assert "rigid_halfway" in text and "43.8" in text  # stage total 43.76 s
    assert "different scanner or sequence" in text and "Manufacturer: Siemens vs GE" in text
    assert "366 days" in text
    pngs = _embedded_pngs(text)
    assert len(pngs) == 4
    for png in pngs:
        assert decode_png(png).std() > 10
    assert not re.search(r'(src|href)="(?!data:)', text)  # self-contained: nothing to fetch


def test_skull_stripped_pair_report_shows_the_bvl_without_correction(record):
    stripped = dict(record, distortion_correction=False, bvl=record["dbpv"],
                    flags=["skull_stripped_no_distortion_correction"])
    text = render_pair_report(stripped)
    assert "No distortion correction" in text
    assert "BVL = dBPV / m<sub>scale</sub> = -0.557 / 1.000 = <strong>-0.557 %</strong>" in text
    assert "m<sub>TIV</sub> · dTIV" not in text


def test_failed_pair_report_says_why_and_has_no_figures(record):
    failed = {key: record[key] for key in ("participant_id", "session_bl", "session_fu", "source_files",
                                           "acquisition_time", "interval_days", "generated_by")}
    failed.update(status="failed", message="crop: the head touches the top of the field of view")
    text = render_pair_report(failed)
    assert "crop: the head touches the top of the field of view" in text
    assert 'class="failed"' in text and "No images" in text and "data:image/png" not in text
    assert "No stage times" in text


def test_text_from_the_record_is_escaped(record):
    record["message"] = "<script>alert(1)</script>"
    record["status"] = "flagged"
    text = render_pair_report(record)
    assert "<script>" not in text and "&lt;script&gt;" in text
