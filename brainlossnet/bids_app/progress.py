"""What a run tells its user while and after it works: progress, a log file, a summary.

* Progress is counted in pairs and in stages: each pair's stages run one after the other
  in a worker process, which tells the parent as each stage starts and finishes
  (:mod:`brainlossnet.workflows.stages`). On a terminal two tqdm bars are drawn on
  stderr, pairs and stages (beside it, the stage each running pair is in); otherwise (a
  batch job, a pipe) every stage started or finished and every finished pair is one log
  line. The log file receives those lines in both cases.
* Every run writes a log file ``output_dir/logs/<level>_<UTC time>_<pid>.log`` with the
  messages of the ``brainlossnet`` logger (the pid keeps concurrent array jobs apart).
* At the end, a one-screen summary: pairs ok, failed, with warnings, participants
  skipped, the time per pair and per stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from brainlossnet.workflows.stages import CACHED, DONE, FAILED, STAGES, STARTED, StageEvent

LOGGER = logging.getLogger("brainlossnet")
LOG_DIR = "logs"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MAX_LISTED = 8
"""Failed or warned pairs named in the summary (the rest are counted)."""

_log_handlers: list[logging.Handler] = []


def start_run_log(output_dir: Path, level: str) -> Path:
    """Copy the ``brainlossnet`` log of this run into a new file under output_dir/logs.

    Parameters
    ----------
    output_dir : Path
        A prepared output directory.
    level : str
        ``participant`` or ``group`` (first part of the file name).

    Returns
    -------
    Path
        ``output_dir/logs/<level>_<YYYYmmddTHHMMSSZ>_<pid>.log``; closed by
        :func:`stop_run_log`.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = output_dir / LOG_DIR / f"{level}_{stamp}_{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.DEBUG)
    LOGGER.addHandler(handler)
    _log_handlers.append(handler)
    return path


def stop_run_log() -> None:
    """Close the log files opened by :func:`start_run_log`.

    A log that cannot be flushed (the disk filled up during the run) is dropped: the run's
    outcome and its error were already reported on stderr and in the exit status.
    """
    while _log_handlers:
        handler = _log_handlers.pop()
        LOGGER.removeHandler(handler)
        try:
            handler.close()
        except OSError:
            pass


def _to_log_files(message: str) -> None:
    """Write one INFO line into this run's log files only (on a terminal a bar shows it)."""
    record = LOGGER.makeRecord(LOGGER.name, logging.INFO, __file__, 0, message, None, None)
    for handler in _log_handlers:
        handler.handle(record)


class PairProgress:
    """Progress over pairs and their stages: bars on a terminal, log lines otherwise.

    On a terminal, one bar counts finished pairs (beside it the last one and its BVL),
    a second counts the stages finished of all pairs (beside it each running pair and
    its stage); the lines that would be logged go to the run's log files only. Otherwise
    each stage started or finished and each finished pair is an INFO line of the
    ``brainlossnet`` logger::

        sub-01 1->2: register started (4/7 stages done)
        sub-01 1->2: register done in 18.2 s (5/7 stages done)
        sub-01 1->2: crop reused from the work dir (2/7 stages done)
        [1/40, 1 min 20 s] sub-01 1->2: ok, BVL -0.412 %, 76 s

    Parameters
    ----------
    total : int
        Pairs to run.
    stream : file, optional
        Where the bar goes (default: stderr); the bar is used only if it is a TTY,
        unless ``bar`` says otherwise.
    bar : bool, optional
        Force the bar on or off.
    """

    def __init__(self, total: int, stream: IO[str] | None = None, bar: bool | None = None) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        use_bar = bar if bar is not None else bool(getattr(stream, "isatty", lambda: False)())
        self._stack = contextlib.ExitStack()
        self._bars: tuple[tqdm, tqdm] | None = None
        self._stages_finished: dict[Any, int] = {}
        self._running: dict[Any, str] = {}
        if use_bar:
            self._stack.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger()]))
            self._bars = (
                self._stack.enter_context(tqdm(total=total, unit="pair", file=stream, dynamic_ncols=True,
                                               desc="pairs", position=0)),
                self._stack.enter_context(tqdm(total=total * len(STAGES), unit="stage", file=stream,
                                               dynamic_ncols=True, desc="stages", position=1)),
            )

    def stage(self, event: StageEvent) -> None:
        """Show one stage of a pair (a ``StageEvent``) starting, finishing, reused or failing."""
        name = _pair_name(event.pair)
        count = f"({event.finished}/{event.total} stages done)"
        self._say(f"{name}: " + {
            STARTED: f"{event.stage} started {count}",
            DONE: f"{event.stage} done in {_format(event.seconds, '.1f')} s {count}",
            CACHED: f"{event.stage} reused from the work dir {count}",
            FAILED: f"{event.stage} failed",
        }[event.status])
        self._stages_finished[event.pair] = event.finished
        if self._bars is None:
            return
        stage_bar = self._bars[1]
        if event.status == STARTED:
            self._running[event.pair] = f"{name}: {event.stage} {event.finished + 1}/{event.total}"
        elif event.status in (DONE, CACHED):
            stage_bar.update(1)
        stage_bar.set_postfix_str("; ".join(self._running.values())[:80], refresh=True)

    def update(self, result: Any) -> None:
        """Count one finished pair (a ``PairResult``) and show its outcome."""
        self.done += 1
        name = _pair_name(result.pair)
        if result.status == "ok":
            outcome = f"ok, BVL {_format(result.metrics.get('bvl'), '.3f')} %"
            seconds = sum(float(v) for v in (result.metrics.get("stage_seconds") or {}).values())
            outcome += f", {seconds:.0f} s"
        else:
            outcome = f"{result.status}: {result.message}"
        self._say(f"[{self.done}/{self.total}, {_duration(time.monotonic() - self.started)}] {name}: {outcome}")
        if self._bars is None:
            return
        pair_bar, stage_bar = self._bars
        self._running.pop(result.pair, None)
        stage_bar.total -= len(STAGES) - self._stages_finished.pop(result.pair, 0)  # stages a failed pair never ran
        stage_bar.set_postfix_str("; ".join(self._running.values())[:80], refresh=True)
        pair_bar.set_postfix_str(f"{name}: {outcome}"[:60], refresh=False)
        pair_bar.update(1)

    def _say(self, line: str) -> None:
        """Log a line: into the log files only when bars show it, else also on the console."""
        if self._bars is None:
            LOGGER.info("%s", line)
        else:
            _to_log_files(line)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PairProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _format(value: Any, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "n/a"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _pair_name(pair: Any) -> str:
    """``sub-01 1->2`` for a ``PairSpec``."""
    return f"sub-{pair.subject} {pair.session_bl}->{pair.session_fu}"


def _name(record: Mapping[str, Any]) -> str:
    return f"{record['participant_id']} {record['session_bl']}->{record['session_fu']}"


def run_summary(
    records: Sequence[Mapping[str, Any]],
    warnings: Sequence[Sequence[str]],
    *,
    skipped: Sequence[str] = (),
    wall_s: float | None = None,
) -> list[str]:
    """The end-of-run summary, one screen of lines.

    Parameters
    ----------
    records : sequence of mapping
        The per-pair records written by this run.
    warnings : sequence of sequences of str
        Each record's warnings (:func:`brainlossnet.reports.flags.pair_warnings`).
    skipped : sequence of str
        One line per participant that yielded no pair.
    wall_s : float, optional
        Wall-clock time of the run.

    Returns
    -------
    list of str
        Counts by status (ok, flagged, failed: as in group_bvl.tsv) and of the pairs
        not failed that have a warning, time per pair (median and range of the sum of
        its stage times, which for stages reused from the cache is their original time)
        and median per stage, then the failed pairs and the pairs with warnings by name.
    """
    failed = [r for r in records if r.get("status") == "failed"]
    warned = [(r, w) for r, w in zip(records, warnings) if r.get("status") != "failed" and w]
    ok = [r for r in records if r.get("status") == "ok"]
    flagged = [r for r in records if r.get("status") == "flagged"]
    lines = [
        f"summary: {len(records)} pair(s): {len(ok)} ok, {len(flagged)} flagged, {len(failed)} failed; "
        f"{len(warned)} with warnings; {len(skipped)} participant(s) skipped"
        + (f"; wall time {_duration(wall_s)}" if wall_s is not None else "")
    ]
    stage_times = [r.get("stage_seconds") or {} for r in ok]
    totals = [sum(float(v) for v in times.values()) for times in stage_times if times]
    if totals:
        lines.append(f"time per pair (sum of its stages): median {statistics.median(totals):.1f} s, "
                     f"range {min(totals):.1f}-{max(totals):.1f} s")
        stages = list(dict.fromkeys(stage for times in stage_times for stage in times))
        lines.append("median per stage: " + ", ".join(
            f"{stage} {statistics.median(float(t[stage]) for t in stage_times if stage in t):.1f} s"
            for stage in stages))
    for title, items in (("failed", [(r, [str(r.get("message"))]) for r in failed]), ("warning", warned)):
        for record, reasons in items[:MAX_LISTED]:
            lines.append(f"  {title}: {_name(record)}: {'; '.join(reasons)}")
        if len(items) > MAX_LISTED:
            lines.append(f"  ... and {len(items) - MAX_LISTED} more {title} pair(s)")
    lines.extend(f"  skipped: {line}" for line in skipped[:MAX_LISTED])
    return lines

