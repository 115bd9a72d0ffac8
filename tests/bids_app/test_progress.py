"""Progress over pairs, the per-run log file and the end-of-run summary."""

import io
import logging
from pathlib import Path

from brainlossnet.bids_app import progress
from brainlossnet.workflows.participant import PairResult, PairSpec
from brainlossnet.workflows.stages import CACHED, DONE, FAILED, STARTED, StageEvent


def _spec(subject):
    return PairSpec(subject, "1", "2", Path("bl.nii.gz"), Path("fu.nii.gz"))


def _result(subject, status="ok", bvl=-0.4, seconds=(10.0, 20.0)):
    spec = _spec(subject)
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


def test_stage_lines_when_not_a_terminal(caplog):
    events = [StageEvent(_spec("01"), "register", STARTED, None, 4),
              StageEvent(_spec("01"), "register", DONE, 18.23, 5),
              StageEvent(_spec("02"), "crop", CACHED, None, 2),
              StageEvent(_spec("02"), "rigid_halfway", FAILED, None, 2)]
    with caplog.at_level(logging.INFO, logger="brainlossnet"), progress.PairProgress(2, stream=io.StringIO()) as bar:
        for event in events:
            bar.stage(event)
    assert [r.getMessage() for r in caplog.records] == [
        "sub-01 1->2: register started (4/7 stages done)",
        "sub-01 1->2: register done in 18.2 s (5/7 stages done)",
        "sub-02 1->2: crop reused from the work dir (2/7 stages done)",
        "sub-02 1->2: rigid_halfway failed",
    ]


def test_on_a_terminal_the_stage_bar_shows_running_stages_and_the_log_file_the_lines(caplog, tmp_path):
    stream = io.StringIO()
    log = progress.start_run_log(tmp_path, "participant")
    try:
        with caplog.at_level(logging.INFO, logger="brainlossnet"), \
                progress.PairProgress(2, stream=stream, bar=True) as bar:
            bar.stage(StageEvent(_spec("01"), "register", STARTED, None, 4))
            assert "stages" in stream.getvalue() and "0/14" in stream.getvalue()
            assert "sub-01 1->2: register 5/7" in stream.getvalue()
            bar.stage(StageEvent(_spec("01"), "register", DONE, 18.2, 5))
            assert "1/14" in stream.getvalue()
            bar.update(_result("02", status="failed"))  # its 7 stages will never run
            assert "1/7" in stream.getvalue()
    finally:
        progress.stop_run_log()
    assert not caplog.records  # the bars show it all on the terminal
    text = log.read_text()
    assert "sub-01 1->2: register started (4/7 stages done)" in text
    assert "sub-01 1->2: register done in 18.2 s (5/7 stages done)" in text
    assert "sub-02 1->2: failed: crop: no head" in text


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
        {"participant_id": "sub-05", "session_bl": "1", "session_fu": "2", "status": "flagged",
         "stage_seconds": {"register": 11.0, "segment": 21.0}},
    ]
    warnings = [[], ["apparent TIV change 2.00 %"], [], ["status failed: reslice: 2D image"],
                ["status flagged: |dtiv| = 3.9 % > 3.5 %"]]
    lines = progress.run_summary(records, warnings, skipped=["sub-09: one session"], wall_s=125.0)
    assert lines[0] == ("summary: 5 pair(s): 3 ok, 1 flagged, 1 failed; 2 with warnings; "
                        "1 participant(s) skipped; wall time 2 min 05 s")
    assert lines[1] == "time per pair (sum of its stages): median 34.0 s, range 30.0-70.0 s"
    assert lines[2] == "median per stage: register 12.0 s, segment 22.0 s"
    assert "  failed: sub-04 a->b: reslice: 2D image" in lines
    assert "  warning: sub-02 1->2: apparent TIV change 2.00 %" in lines
    assert "  warning: sub-05 1->2: status flagged: |dtiv| = 3.9 % > 3.5 %" in lines
    assert "  skipped: sub-09: one session" in lines
    assert len(lines) <= 24  # one screen
