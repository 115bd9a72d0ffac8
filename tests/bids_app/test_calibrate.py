"""``brainlossnet calibrate``: a group table and a reference in, a loadable profile and a figure out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainlossnet.bids_app import calibrate
from brainlossnet.bids_app.derivatives import pair_json_path
from brainlossnet.bids_app.group import COLUMNS
from brainlossnet.bids_app.run import main as run_main
from brainlossnet.calibration import load_profile

M_TIV, M_SCALE = 0.85, 0.4


def _write_results(folder: Path, n: int = 40, seed: int = 0, model: str = "net-a",
                   m_scale: float = M_SCALE) -> tuple[Path, Path]:
    """A group_bvl.tsv of n ok pairs following Eqs. 5/7 plus two failed ones, and a truth table.

    Sessions are written without prefix in the results and with ``ses-`` in the truth, so
    the keys must be normalised to match. The last ok pair has no truth row.
    """
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-2.0, 0.0, n)
    dtiv = rng.normal(0.0, 0.5, n)
    dbpv = m_scale * truth + M_TIV * dtiv - 0.05 + rng.normal(0.0, 0.02, n)
    rows, truth_rows = [], ["participant_id\tsession_bl\tsession_fu\ttrue_dbpv_pct\tother"]
    for i in range(n):
        values = dict.fromkeys(COLUMNS, "n/a") | {
            "participant_id": f"sub-{i:03d}", "session_bl": "01", "session_fu": "02",
            "dbpv": str(float(dbpv[i])), "dtiv": str(float(dtiv[i])), "bvl": str(float(dbpv[i])), "status": "ok",
            "siena_pbvc": str(float(truth[i])),
        }
        rows.append(values)
        if i < n - 1:
            truth_rows.append(f"sub-{i:03d}\tses-01\tses-02\t{float(truth[i])}\t1")
        record = {"participant_id": f"sub-{i:03d}", "session_bl": "01", "session_fu": "02",
                  "status": "ok", "model_version": model}
        path = pair_json_path(folder, f"{i:03d}", "01", "02")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    for i in (n, n + 1):
        rows.append(dict.fromkeys(COLUMNS, "n/a") | {
            "participant_id": f"sub-{i:03d}", "session_bl": "01", "session_fu": "02",
            "status": "failed", "message": "register: boom", "siena_pbvc": "-1.0",
        })
        truth_rows.append(f"sub-{i:03d}\t01\t02\t-1.0\t1")
    header = [*COLUMNS, "siena_pbvc"]
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "group_bvl.tsv"
    results.write_text("\n".join(["\t".join(header)] + ["\t".join(r[c] for c in header) for r in rows]) + "\n")
    truth_path = folder.parent / "truth.tsv"
    truth_path.write_text("\n".join(truth_rows) + "\n")
    return results, truth_path


def test_fit_against_a_truth_table_writes_a_profile_the_app_reads(tmp_path):
    results, truth = _write_results(tmp_path / "derivatives")
    profile_path = tmp_path / "profiles" / "site.json"
    code = run_main(["calibrate", str(results), "--reference", str(truth), "-o", str(profile_path),
                     "--source-description", "synthetic test pairs"])
    assert code == 0
    profile = load_profile(profile_path)
    fit = profile.fit
    assert profile.name == "site" and profile.model == "net-a"
    assert fit["m_tiv_ci95"][0] < M_TIV < fit["m_tiv_ci95"][1]
    assert fit["m_scale_ci95"][0] < M_SCALE < fit["m_scale_ci95"][1]
    assert (profile.m_tiv, profile.m_scale) == pytest.approx((M_TIV, M_SCALE), abs=0.1)
    assert fit["n_pairs"] == 39
    assert fit["n_excluded"] == {"status failed": 2, "no reference": 1}
    assert fit["source_data"] == "synthetic test pairs"
    (dataset,) = fit["datasets"]
    assert dataset["results"] == str(results.resolve()) and "true_dbpv_pct" in dataset["reference"]
    assert dataset["n_pairs"] == 39 and dataset["bvl_slope"] == pytest.approx(1.0, abs=0.02)
    assert fit["c_tiv_ci95"][0] < fit["c_tiv"] < fit["c_tiv_ci95"][1] and 0 < fit["r2_scale"] <= 1
    assert fit["brainlossnet_version"] and fit["date"] and not fit["m_tiv_fixed"]
    plot = profile_path.with_name("site_fit.png")
    assert fit["plot"] == plot.name and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_column_of_the_results_and_a_fixed_m_tiv(tmp_path):
    results, _ = _write_results(tmp_path / "derivatives", seed=2)
    out = tmp_path / "p.json"
    code = calibrate.main([str(results), "--reference", "siena_pbvc", "-o", str(out), "--m-tiv", "0.85",
                           "--name", "vs-siena", "--no-plot"])
    assert code == 0
    profile = load_profile(out)
    assert profile.name == "vs-siena" and profile.m_tiv == 0.85 and profile.fit["m_tiv_fixed"]
    assert profile.fit["m_scale_ci95"][0] < M_SCALE < profile.fit["m_scale_ci95"][1]
    assert profile.fit["n_pairs"] == 40 and "siena_pbvc" in profile.fit["datasets"][0]["reference"]
    assert not (tmp_path / "p_fit.png").exists()


def test_missing_inputs_and_unusable_data_give_their_exit_codes(tmp_path, caplog):
    results, truth = _write_results(tmp_path / "derivatives", n=3)
    out = tmp_path / "p.json"
    assert calibrate.main([str(results), "--reference", "no_such_column", "-o", str(out)]) == 66
    assert "no_such_column" in caplog.text
    assert calibrate.main([str(tmp_path / "none.tsv"), "--reference", str(truth), "-o", str(out)]) == 66
    assert calibrate.main([str(results), "--reference", str(truth), "--reference-column", "x", "-o", str(out)]) == 66
    # 3 ok pairs, one without truth: 2 usable, too few for a line with an interval
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out)]) == 65
    assert "at least 3" in caplog.text
    assert calibrate.main([str(results)]) == 64
    assert not out.exists()


def _set_record(results: Path, entries: dict, only: str | None = None) -> None:
    """Add ``entries`` to the per-pair records next to ``results`` (or to sub-``only``'s)."""
    for path in sorted(results.parent.rglob("*_bvl.json")):
        record = json.loads(path.read_text())
        if only is None or record["participant_id"] == f"sub-{only}":
            path.write_text(json.dumps(record | entries))


def _set_options(results: Path, options: dict, only: str | None = None) -> None:
    """Write ``options`` into the per-pair records next to ``results`` (or into sub-``only``'s)."""
    _set_record(results, {"options": options}, only)


def test_the_refinement_budget_of_the_results_is_recorded_and_mixed_budgets_are_refused(tmp_path, caplog):
    results, truth = _write_results(tmp_path / "derivatives", n=6)
    _set_options(results, {"refine_steps": 30, "refine_fine_steps": 4, "refine_fine_learning_rate_vox": 0.05, "seed": 0})
    out = tmp_path / "p.json"
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 0
    assert load_profile(out).fit["refinement"] == {
        "refine_steps": 30, "refine_fine_steps": 4, "refine_fine_learning_rate_vox": 0.05}
    _set_options(results, {"refine_steps": 30, "refine_fine_steps": 4}, only="000")  # before the step size: 0.1
    out.unlink()
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 65
    assert "several refinement settings" in caplog.text and not out.exists()
    _set_options(results, {"refine_steps": 30}, only="000")  # a record from before fine steps: 0 of them
    caplog.clear()
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 65
    assert "several refinement settings" in caplog.text and not out.exists()
    _set_options(results, {"refine_steps": None}, only="000")
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 65
    assert "sub-000 01->02: the recorded refinement options None" in caplog.text and not out.exists()
    assert "are not numbers" in caplog.text


def test_the_parenchyma_definition_of_the_results_is_recorded_and_mixed_ones_are_refused(tmp_path, caplog):
    results, truth = _write_results(tmp_path / "derivatives", n=6)
    out = tmp_path / "p.json"
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 0
    assert "parenchyma_definition" not in load_profile(out).fit  # results of a release that did not record it
    out.unlink()
    _set_record(results, {"parenchyma_definition": "fraction-linear-partial-volume"})
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 0
    assert load_profile(out).fit["parenchyma_definition"] == "fraction-linear-partial-volume"
    out.unlink()
    _set_record(results, {"parenchyma_definition": "binary-mask"}, only="002")
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 65
    assert "several parenchyma definitions" in caplog.text and not out.exists()
    caplog.clear()
    _set_record(results, {"parenchyma_definition": None}, only="002")  # a record of a release before: a binary mask
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 65
    assert "several parenchyma definitions" in caplog.text and not out.exists()


def test_results_without_a_recorded_budget_give_a_profile_without_one(tmp_path):
    results, truth = _write_results(tmp_path / "derivatives", n=6)
    out = tmp_path / "p.json"
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(out), "--no-plot"]) == 0
    assert "refinement" not in load_profile(out).fit


def test_results_of_two_models_are_refused(tmp_path, caplog):
    results, truth = _write_results(tmp_path / "derivatives", n=6)
    record_path = pair_json_path(results.parent, "000", "01", "02")
    record_path.write_text(json.dumps(json.loads(record_path.read_text()) | {"model_version": "net-b"}))
    assert calibrate.main([str(results), "--reference", str(truth), "-o", str(tmp_path / "p.json")]) == 65
    assert "net-a" in caplog.text and "net-b" in caplog.text


def test_several_tables_are_fitted_together_each_against_its_own_reference(tmp_path, capsys):
    """Tables reuse participant labels; each matches only its own truth; the profile says how each fits."""
    low, _ = _write_results(tmp_path / "a" / "derivatives", seed=3, m_scale=0.3)
    high, _ = _write_results(tmp_path / "b" / "derivatives", seed=4, m_scale=0.5)
    out = tmp_path / "p.json"
    code = calibrate.main([str(low), str(high), "--reference", str(tmp_path / "a" / "truth.tsv"),
                           "--reference", str(tmp_path / "b" / "truth.tsv"), "-o", str(out), "--no-plot",
                           "--m-tiv", str(M_TIV)])
    assert code == 0
    profile = load_profile(out)
    assert 0.3 < profile.m_scale < 0.5
    assert profile.fit["n_pairs"] == 78 and profile.fit["n_excluded"] == {"status failed": 4, "no reference": 2}
    first, second = profile.fit["datasets"]
    assert first["results"] == str(low.resolve()) and second["results"] == str(high.resolve())
    assert first["bvl_slope"] == pytest.approx(0.3 / profile.m_scale, abs=0.03)
    assert second["bvl_slope"] == pytest.approx(0.5 / profile.m_scale, abs=0.03)
    assert "slope of BVL on the reference" in capsys.readouterr().out


def test_one_reference_column_serves_every_table_but_other_counts_are_refused(tmp_path, caplog):
    first, _ = _write_results(tmp_path / "a" / "derivatives", seed=5)
    second, _ = _write_results(tmp_path / "b" / "derivatives", seed=6)
    out = tmp_path / "p.json"
    assert calibrate.main([str(first), str(second), "--reference", "siena_pbvc", "-o", str(out), "--no-plot"]) == 0
    assert load_profile(out).fit["n_pairs"] == 80
    out.unlink()
    third, _ = _write_results(tmp_path / "c" / "derivatives", seed=7)
    code = calibrate.main([str(first), str(second), str(third), "--reference", "siena_pbvc",
                           "--reference", "siena_pbvc", "-o", str(out)])
    assert code == 64 and "2 references for 3 results tables" in caplog.text
    code = calibrate.main([str(first), str(first), "--reference", "siena_pbvc", "-o", str(out)])
    assert code == 64 and "given twice" in caplog.text
    assert not out.exists()


def test_a_table_without_usable_pairs_is_counted_and_has_no_slope(tmp_path):
    usable, _ = _write_results(tmp_path / "a" / "derivatives", seed=8)
    failed, _ = _write_results(tmp_path / "b" / "derivatives", seed=9, n=0)
    out = tmp_path / "p.json"
    code = calibrate.main([str(failed), str(usable), "--reference", "siena_pbvc", "-o", str(out), "--no-plot"])
    assert code == 0
    empty, full = load_profile(out).fit["datasets"]
    assert empty["n_pairs"] == 0 and empty["n_excluded"] == {"status failed": 2}
    assert empty["bvl_slope"] is None and empty["bvl_minus_reference_mean_pct"] is None
    assert full["n_pairs"] == 40 and full["bvl_slope"] == pytest.approx(1.0, abs=0.02)


def test_tables_of_two_models_are_refused(tmp_path, caplog):
    first, _ = _write_results(tmp_path / "a" / "derivatives", n=6)
    second, _ = _write_results(tmp_path / "b" / "derivatives", n=6, model="net-b")
    code = calibrate.main([str(first), str(second), "--reference", "siena_pbvc", "-o", str(tmp_path / "p.json")])
    assert code == 65 and "net-a" in caplog.text and "net-b" in caplog.text
