"""Progress over pairs, the per-run log file and the end-of-run summary."""

import io
import logging
from pathlib import Path

from brainlossnet.bids_app import progress
from brainlossnet.workflows.participant import PairResult, PairSpec


def _result(subject, status="ok", bvl=-0.4, seconds=(10.0, 20.0)):
    spec = PairSpec(subject, "1", "2", Path("bl.nii.gz"), Path("fu.nii.gz"))
    metrics = {"bvl": bvl, "stage_seconds": {"register": seconds[0], "segment": seconds[1]}} if status == "ok" else {}
    return PairResult(pair=spec, status=status, message="" if status == "ok" else "crop: no head", metrics=metrics)


def test_plain_lines_when_not_a_terminal(caplog):
    stream = io.StringIO()  # not a TTY
    with caplog.at_level(logging.INFO, logger="brainlossnet"), progress.PairProgress(2, stream=stream) as bar:
        bar.update(_result("01"))
        bar.update(_result("02", status="failed"))
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("[1/2, ") and lines[0].endswith("sub-01 1->2: ok, BVL -0.400 %, 30 s")
    assert lines[1].startswith("[2/2, ") and lines[1].endswith("sub-02 1->2: failed: crop: no head")


def test_a_bar_when_asked(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="brainlossnet"), progress.PairProgress(3, stream=stream, bar=True) as bar:
        bar.update(_result("01"))
    assert "1/3" in stream.getvalue() and "pair" in stream.getvalue()
    assert not caplog.records


def test_run_log_file_receives_the_messages_of_the_run(tmp_path):
    path = progress.start_run_log(tmp_path, "participant")
    logging.getLogger("brainlossnet.anything").warning("a message for the log")
    progress.stop_run_log()
    logging.getLogger("brainlossnet").warning("after the run")
    assert path.parent == tmp_path / "logs" and path.name.startswith("participant_") and path.suffix == ".log"
    text = path.read_text()
    assert "a message for the log" in text and "after the run" not in text


def test_summary_counts_times_and_names():
    records = [
        {"participant_id": "sub-01", "session_bl": "1", "session_fu": "2", "status": "ok",
         "stage_seconds": {"register": 10.0, "segment": 20.0}},
        {"participant_id": "sub-02", "session_bl": "1", "session_fu": "2", "status": "ok",
         "stage_seconds": {"register": 30.0, "segment": 40.0}},
        {"participant_id": "sub-03", "session_bl": "1", "session_fu": "2", "status": "ok",
         "stage_seconds": {"register": 12.0, "segment": 22.0}},
        {"participant_id": "sub-04", "session_bl": "a", "session_fu": "b", "status": "failed",
         "message": "reslice: 2D image"},
    ]
    warnings = [[], ["apparent TIV change 2.00 %"], [], ["status failed: reslice: 2D image"]]
    lines = progress.run_summary(records, warnings, skipped=["sub-09: one session"], wall_s=125.0)
    assert lines[0] == ("summary: 4 pair(s): 3 ok, 1 failed, 1 flagged; 1 participant(s) skipped; "
                        "wall time 2 min 05 s")
    assert lines[1] == "time per pair (sum of its stages): median 34.0 s, range 30.0-70.0 s"
    assert lines[2] == "median per stage: register 12.0 s, segment 22.0 s"
    assert "  failed: sub-04 a->b: reslice: 2D image" in lines
    assert "  flagged: sub-02 1->2: apparent TIV change 2.00 %" in lines
    assert "  skipped: sub-09: one session" in lines
    assert len(lines) <= 24  # one screen
