"""What a run tells its user while and after it works: progress, a log file, a summary.

* Progress is counted in pairs: each pair's stages run one after the other in a worker
  process, and the parent learns of a pair when it finishes (stage times then come with
  its result). On a terminal a tqdm bar is drawn on stderr; otherwise (a batch job, a
  pipe) every finished pair is one log line.
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
    """Close the log files opened by :func:`start_run_log`."""
    while _log_handlers:
        handler = _log_handlers.pop()
        LOGGER.removeHandler(handler)
        handler.close()


class PairProgress:
    """Progress over pairs: a bar on a terminal, one log line per finished pair otherwise.

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
        self._bar = None
        if use_bar:
            self._stack.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger()]))
            self._bar = self._stack.enter_context(
                tqdm(total=total, unit="pair", file=stream, dynamic_ncols=True, desc="pairs"))

    def update(self, result: Any) -> None:
        """Count one finished pair (a ``PairResult``) and show its outcome."""
        self.done += 1
        pair = result.pair
        name = f"sub-{pair.subject} {pair.session_bl}->{pair.session_fu}"
        if result.status == "ok":
            outcome = f"ok, BVL {_format(result.metrics.get('bvl'), '.3f')} %"
            seconds = sum(float(v) for v in (result.metrics.get("stage_seconds") or {}).values())
            outcome += f", {seconds:.0f} s"
        else:
            outcome = f"{result.status}: {result.message}"
        if self._bar is not None:
            self._bar.set_postfix_str(f"{name}: {outcome}"[:60], refresh=False)
            self._bar.update(1)
        else:
            elapsed = time.monotonic() - self.started
            LOGGER.info("[%d/%d, %s] %s: %s", self.done, self.total, _duration(elapsed), name, outcome)

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
        Counts (ok, failed, flagged: ok pairs with a warning or a ``flagged``
        status), time per pair (median and range of the sum of its stage times, which
        for stages reused from the cache is their original time) and median per
        stage, then the failed and flagged pairs by name.
    """
    failed = [r for r in records if r.get("status") == "failed"]
    flagged = [(r, w) for r, w in zip(records, warnings) if r.get("status") != "failed" and w]
    ok = [r for r in records if r.get("status") == "ok"]
    lines = [
        f"summary: {len(records)} pair(s): {len(ok)} ok, {len(failed)} failed, "
        f"{len(flagged)} flagged; {len(skipped)} participant(s) skipped"
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
    for title, items in (("failed", [(r, [str(r.get("message"))]) for r in failed]), ("flagged", flagged)):
        for record, reasons in items[:MAX_LISTED]:
            lines.append(f"  {title}: {_name(record)}: {'; '.join(reasons)}")
        if len(items) > MAX_LISTED:
            lines.append(f"  ... and {len(items) - MAX_LISTED} more {title} pair(s)")
    lines.extend(f"  skipped: {line}" for line in skipped[:MAX_LISTED])
    return lines

