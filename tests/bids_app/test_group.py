"""group_bvl.tsv: rows from records, merge after participant runs, rebuild from JSONs."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

from brainlossnet.bids_app.derivatives import atomic_write_json, pair_json_path
from brainlossnet.bids_app.group import (
    COLUMNS,
    TABLE_NAME,
    merge_into_table,
    read_table,
    rebuild_table,
    record_row,
)

REQUIRED = ("participant_id", "session_bl", "session_fu", "bvl", "bvl_fw", "bvl_bw", "dbpv",
            "dtiv", "bpv_bl_ml", "tiv_bl_ml", "status", "message")


def _record(subject: str, bl: str, fu: str, bvl: float | None = -0.5) -> dict:
    if bvl is None:
        return {"participant_id": f"sub-{subject}", "session_bl": bl, "session_fu": fu,
                "status": "failed", "message": "crop: ValueError: head\tnot\nfound"}
    return {"participant_id": f"sub-{subject}", "session_bl": bl, "session_fu": fu,
            "status": "ok", "message": "", "bvl": bvl, "bvl_fw": bvl - 0.01, "bvl_bw": bvl + 0.01,
            "dbpv": 0.1 / 3, "dtiv": 0.02, "bpv_bl_ml": 1234.5678901234, "tiv_bl_ml": 1500.0,
            "interval_days": 365.25, "calibration": {"m_tiv": 0.9}}


def _raw_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_columns_include_the_required_ones():
    assert set(REQUIRED) <= set(COLUMNS)
    assert COLUMNS[:3] == ("participant_id", "session_bl", "session_fu")


def test_record_row_formats():
    row = record_row(_record("01", "1", "2"))
    assert row["bvl"] == "-0.5"
    assert float(row["dbpv"]) == 0.1 / 3  # exact round trip
    assert float(row["bpv_bl_ml"]) == 1234.5678901234
    assert row["dbpv_fw"] == "n/a" and row["message"] == "n/a" and row["status"] == "ok"
    failed = record_row(_record("01", "1", "2", bvl=None))
    assert failed["bvl"] == "n/a" and failed["status"] == "failed"
    assert failed["message"] == "crop: ValueError: head not found"  # one line, no tabs


def test_merge_replaces_rows_of_the_same_pairs(tmp_path):
    path = merge_into_table(tmp_path, [_record("10", "1", "2"), _record("2", "1", "2"),
                                       _record("2", "2", "10")])
    assert path == tmp_path / TABLE_NAME
    merge_into_table(tmp_path, [_record("2", "1", "2", bvl=None), _record("3", "a", "b", -1.25)])
    rows = read_table(path)
    assert [(r["participant_id"], r["session_bl"], r["session_fu"], r["status"]) for r in rows] == [
        ("sub-2", "1", "2", "failed"), ("sub-2", "2", "10", "ok"), ("sub-3", "a", "b", "ok"),
        ("sub-10", "1", "2", "ok")]
    raw = _raw_rows(path)
    assert tuple(raw[0]) == COLUMNS
    assert all(len(line) == len(COLUMNS) for line in raw)
    assert [p.name for p in tmp_path.iterdir()] and not [
        p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rebuild_from_records_matches_merged_table(tmp_path):
    records = [_record("01", "1", "2"), _record("01", "2", "3", bvl=None), _record("02", "a", "b")]
    for record in records:
        subject = record["participant_id"][4:]
        atomic_write_json(pair_json_path(tmp_path, subject, record["session_bl"],
                                         record["session_fu"]), record)
    merged = tmp_path / "merged"
    merged.mkdir()
    merge_into_table(merged, records)
    (tmp_path / TABLE_NAME).write_text("participant_id\tsession_bl\tsession_fu\nsub-99\t1\t2\n")
    path, n_rows, problems = rebuild_table(tmp_path)
    assert (n_rows, problems) == (3, [])
    assert path.read_text() == (merged / TABLE_NAME).read_text()  # the stale sub-99 row is gone


def test_rebuild_reports_unreadable_records(tmp_path):
    atomic_write_json(pair_json_path(tmp_path, "01", "1", "2"), _record("01", "1", "2"))
    broken = pair_json_path(tmp_path, "02", "1", "2")
    broken.parent.mkdir(parents=True)
    broken.write_text("{")
    _, n_rows, problems = rebuild_table(tmp_path)
    assert n_rows == 1
    assert len(problems) == 1 and str(broken) in problems[0]


def _merge_many(output_dir: str, subject: str) -> None:
    for session in range(8):
        merge_into_table(Path(output_dir), [_record(subject, str(session), str(session + 1))])


def test_concurrent_merges_lose_no_row(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_merge_many, args=(str(tmp_path), str(s))) for s in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(read_table(tmp_path / TABLE_NAME)) == 4 * 8
