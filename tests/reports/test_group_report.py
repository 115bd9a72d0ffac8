"""The group HTML: statistics over ok pairs, cut-offs, reference agreement, links, every pair listed."""

import base64
import re

import numpy as np
import pytest

from brainlossnet.agreement import intraclass_correlation
from brainlossnet.reports.group_report import pair_table, render_group_report


def _records(n=12, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        fw = float(rng.normal(-0.6, 0.4))
        bw = fw + float(rng.normal(0, 0.05))
        dtiv = float(rng.normal(0, 0.3))
        records.append({
            "participant_id": f"sub-{i:02d}", "session_bl": "1", "session_fu": "2", "status": "ok",
            "message": "", "bvl_fw": fw, "bvl_bw": bw, "bvl": (fw + bw) / 2, "dbpv": (fw + bw) / 2 + 0.9 * dtiv,
            "dtiv": dtiv, "interval_days": 365.25 * (1 + i % 3), "calibration": {"name": "p", "m_tiv": 0.9},
            "tiv_bl_ml": 1500.0, "bpv_bl_ml": 1150.0, "tiv_fu_ml": 1500.0, "bpv_fu_ml": 1145.0,
        })
    records.append({"participant_id": "sub-99", "session_bl": "1", "session_fu": "2", "status": "failed",
                    "message": "reslice: image is 2D"})
    return records


def test_pair_table_annualises_and_applies_age_cutoffs():
    records = _records(3)
    table = pair_table(records, age_years={"sub-00": 55.0, "sub-01": 30.0})
    np.testing.assert_allclose(table["rate_pct_per_year"][:3],
                               [r["bvl"] / (1 + i) for i, r in enumerate(records[:3])])
    assert table["age_cutoff"][0] == pytest.approx(-0.77) and np.isnan(table["age_cutoff"][1])
    assert table["status"].tolist()[-1] == "failed" and table["n_warnings"].tolist()[-1] == 1


def test_group_report_contents(decode_png):
    records = _records()
    reference = {("sub-%02d" % i, "1", "2"): records[i]["bvl"] * 1.1 + 0.05 for i in range(10)}
    links = {("sub-00", "1", "2"): "sub-00_from-1_to-2_report.html"}
    text = render_group_report(records, age_years={f"sub-{i:02d}": 40.0 + 3 * i for i in range(12)},
                               reference=reference, reference_name="siena_pbvc", links=links,
                               problems=["sub-50/anat/x_bvl.json: cannot be read as JSON"])
    ok = records[:12]
    bvl = np.array([r["bvl"] for r in ok])
    assert "<td>13</td>" in text and "<td>12</td>" in text  # pairs, ok
    assert f"{np.median(bvl):.3f}" in text
    icc = intraclass_correlation(np.column_stack([bvl[:10], bvl[:10] * 1.1 + 0.05]))
    assert f"{icc.icc_2_1:.3f}" in text and f"{icc.icc_3_1:.3f}" in text
    assert "ICC(2,1)" in text and "ICC(3,1)" in text and "10 of 12 ok pairs have a value of <code>siena_pbvc" in text
    assert "Opfer R, Ostwaldt AC" in text and "10.1016/j.neurobiolaging.2017.12.024" in text
    assert "De Stefano N" in text and "J Neurol Neurosurg Psychiatry 87:93-99" in text
    assert '<a href="sub-00_from-1_to-2_report.html">' in text
    assert "reslice: image is 2D" in text and 'class="failed"' in text
    assert "not read: sub-50/anat/x_bvl.json" in text
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(pngs) == 5  # histogram, fw/bw, distortion, annualised, reference
    for png in pngs:
        assert decode_png(base64.b64decode(png)).std() > 5


def test_group_report_without_reference_or_ages():
    text = render_group_report(_records(4))
    assert "Agreement with" not in text and "no age available" not in text  # the note is in the figure
    assert text.count("data:image/png") == 4
