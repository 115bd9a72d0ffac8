"""The reports as the BIDS App writes them: per pair at the participant level, and the group report."""

import base64
import json
import re

import numpy as np

from brainlossnet.bids_app.reporting import pair_report_path, read_reference
from brainlossnet.bids_app.run import EXIT_NOINPUT, main


def _pngs(text):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_participant_level_writes_a_report_per_pair_and_a_log(tiny_run):
    out = tiny_run.output_dir
    for pair_json in sorted(out.glob("sub-*/anat/*_bvl.json")):
        record = json.loads(pair_json.read_text())
        report = pair_report_path(out, record["participant_id"][4:], record["session_bl"], record["session_fu"])
        text = report.read_text()
        assert f"{record['bvl']:.3f}" in text and f"{record['dtiv']:.3f}" in text
        assert record["model_version"] in text and record["calibration"]["name"] in text
        pngs = _pngs(text)
        assert len(pngs) == 4 and all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000 for png in pngs)
        assert "Manufacturer" in text  # the sidecars were read
    logs = sorted((out / "logs").glob("participant_*.log"))
    assert logs
    text = logs[-1].read_text()
    assert "summary: 2 pair(s): 2 ok, 0 flagged, 0 failed" in text and "1 participant(s) skipped" in text
    assert "median per stage: reslice" in text
    assert not list(out.glob(".*.tmp"))


def test_group_level_writes_the_group_report_with_a_reference(tiny_run, tmp_path):
    out = tiny_run.output_dir
    reference = tmp_path / "truth.tsv"
    tiny_run.truth.assign(session_bl="ses-" + tiny_run.truth["session_bl"]).to_csv(reference, sep="\t", index=False)
    assert main([str(tiny_run.bids_dir), str(out), "group", "--reference-column", "true_dbpv_pct",
                 "--reference-table", str(reference)]) == 0
    text = (out / "group_report.html").read_text()
    assert "Agreement with true_dbpv_pct" in text and "2 of 2 ok pairs have a value" in text
    for report in sorted(out.glob("sub-*_report.html")):
        assert f'<a href="{report.name}">' in text
    assert len(_pngs(text)) == 5
    assert "Opfer et al. 2018" in text and "ages 45, 55, 65 and 75" in text
    assert sorted((out / "logs").glob("group_*.log"))
    parsed = read_reference(reference, "true_dbpv_pct")
    assert set(parsed) == {("sub-01", "01", "02"), ("sub-02", "01", "02")}
    assert np.allclose(sorted(parsed.values()), sorted(tiny_run.truth["true_dbpv_pct"]))


def test_a_missing_reference_column_is_missing_input(tiny_run):
    assert main([str(tiny_run.bids_dir), str(tiny_run.output_dir), "group",
                 "--reference-column", "siena_pbvc"]) == EXIT_NOINPUT
