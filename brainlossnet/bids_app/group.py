"""The group table ``output_dir/group_bvl.tsv``: one row per pair.

The participant level merges the rows of the pairs it just ran into the table (rows
of the same pairs are replaced, all others kept), so that concurrent participant runs
(e.g. a Slurm array job) each add their own rows. The group level rebuilds the table
from the per-pair ``_bvl.json`` files. Both hold an exclusive ``fcntl`` lock on
``output_dir/.group_bvl.tsv.lock`` while reading and replacing the table, and the
table is replaced atomically.
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brainlossnet.bids_app.derivatives import atomic_write_text, read_pair_records
from brainlossnet.bids_app.pairing import natural_key

LOGGER = logging.getLogger(__name__)

TABLE_NAME = "group_bvl.tsv"
LOCK_NAME = ".group_bvl.tsv.lock"
KEY_COLUMNS = ("participant_id", "session_bl", "session_fu")
NUMBER_COLUMNS = (
    "bvl", "bvl_fw", "bvl_bw",
    "dbpv", "dbpv_fw", "dbpv_bw",
    "dtiv", "dtiv_fw", "dtiv_bw",
    "bpv_bl_ml", "bpv_fu_ml", "tiv_bl_ml", "tiv_fu_ml",
    "interval_days",
)
COLUMNS = KEY_COLUMNS + NUMBER_COLUMNS + ("status", "message", "flags")
"""Columns of group_bvl.tsv, in order (described in docs/outputs.md)."""


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "n/a"
    if isinstance(value, (list, tuple)):  # flags
        return ";".join(str(item) for item in value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return " ".join(str(value).replace('"', "'").split())  # one line, no tabs or quotes


def record_row(record: Mapping[str, Any]) -> dict[str, str]:
    """The table row of a per-pair record (as written by the derivatives writer).

    Parameters
    ----------
    record : mapping
        A ``_bvl.json`` record.

    Returns
    -------
    dict
        Column -> text; missing values (all numbers of a failed pair) are ``n/a``.
    """
    return {column: _cell(record.get(column)) for column in COLUMNS}


def _row_key(row: Mapping[str, str]) -> tuple[str, str, str]:
    return tuple(row[column] for column in KEY_COLUMNS)  # type: ignore[return-value]


def _sort_key(row: Mapping[str, str]) -> tuple:
    return tuple(natural_key(row[column]) for column in KEY_COLUMNS)


def read_table(path: Path) -> list[dict[str, str]]:
    """Read a group table; a missing file gives no rows.

    Columns the current version does not write are dropped; missing ones read ``n/a``.
    """
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{column: row.get(column) or "n/a" for column in COLUMNS} for row in rows]


def _table_text(rows: Iterable[Mapping[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, delimiter="\t",
                            lineterminator="\n", quoting=csv.QUOTE_NONE)
    writer.writeheader()
    writer.writerows(sorted(rows, key=_sort_key))
    return buffer.getvalue()


@contextmanager
def _table_lock(output_dir: Path) -> Iterator[None]:
    with (output_dir / LOCK_NAME).open("a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def merge_into_table(output_dir: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Put the rows of ``records`` into the group table, replacing rows of the same pairs.

    Parameters
    ----------
    output_dir : Path
    records : iterable of mapping
        Per-pair records of the pairs just run (ok or failed).

    Returns
    -------
    Path
        The table.
    """
    path = output_dir / TABLE_NAME
    new_rows = {_row_key(row): row for row in map(record_row, records)}
    with _table_lock(output_dir):
        kept = [row for row in read_table(path) if _row_key(row) not in new_rows]
        atomic_write_text(path, _table_text(kept + list(new_rows.values())))
    return path


def rebuild_table(output_dir: Path) -> tuple[Path, int, list[str]]:
    """Rebuild the group table from every per-pair ``_bvl.json`` in output_dir.

    Parameters
    ----------
    output_dir : Path

    Returns
    -------
    path : Path
        The table.
    n_rows : int
        Rows written (one per readable record).
    problems : list of str
        One line per result file that could not be read (left out of the table).
    """
    problems: list[str] = []
    path = output_dir / TABLE_NAME
    with _table_lock(output_dir):
        records = read_pair_records(output_dir, lambda p, why: problems.append(f"{p}: {why}"))
        rows = [record_row(record) for record in records]
        atomic_write_text(path, _table_text(rows))
    return path, len(rows), problems
