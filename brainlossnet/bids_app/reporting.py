"""Where the HTML reports go in output_dir, and writing them (atomically) from a run.

Layout (as fMRIPrep puts ``sub-X.html`` at the root, so that reports sit next to each
other and the group report links them with plain relative links)::

    output_dir/
      group_report.html                              brainlossnet BIDS OUT group
      sub-01_from-1_to-2_report.html                 one per pair, written by the participant level

Every report is one self-contained file (figures embedded), written through
:func:`brainlossnet.bids_app.derivatives.atomic_write_text`. A report that cannot be
drawn is logged as an error and does not fail its pair: the numbers are in the JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from brainlossnet.bids_app.derivatives import atomic_write_text, pair_prefix, read_pair_records
from brainlossnet.bids_app.group import TABLE_NAME
from brainlossnet.bids_app.layout import InputMissingError

LOGGER = logging.getLogger(__name__)

GROUP_REPORT_NAME = "group_report.html"
PAIR_REPORT_GLOB = "sub-*_from-*_to-*_report.html"


class ReferenceTableError(InputMissingError):
    """A reference column cannot be read (exit 66, like other missing input)."""


def pair_report_path(output_dir: Path, subject: str, session_bl: str, session_fu: str) -> Path:
    """``output_dir/sub-<subject>_from-<BL>_to-<FU>_report.html`` (labels without prefixes)."""
    return output_dir / f"{pair_prefix(subject, session_bl, session_fu)}_report.html"


def sidecar_metadata(layout: Any, path: Path | None) -> dict[str, Any]:
    """A T1w image's sidecar metadata with BIDS inheritance (pybids); empty if unavailable."""
    if layout is None or path is None:
        return {}
    try:
        return dict(layout.get_metadata(str(path)))
    except Exception as err:  # a report must never stop the run
        LOGGER.debug("%s: no sidecar metadata (%s)", path, err)
        return {}


def write_pair_report(
    output_dir: Path,
    record: Mapping[str, Any],
    files: Mapping[str, Path],
    metadata_bl: Mapping[str, Any] | None = None,
    metadata_fu: Mapping[str, Any] | None = None,
) -> Path | None:
    """Draw a pair's report from its record and intermediate files, and write it.

    Parameters
    ----------
    output_dir : Path
    record : mapping
        The pair's ``_bvl.json`` record.
    files : mapping
        ``PairResult.files`` (halfway images, masks, fields in the work dir); a failed
        pair has none and gets a report without figures.
    metadata_bl, metadata_fu : mapping, optional
        Sidecars of the two T1w images.

    Returns
    -------
    Path or None
        The report, or None when it could not be written (logged).
    """
    from brainlossnet.reports.pair_report import IMAGE_KEYS, load_pair_images, render_pair_report

    subject = str(record["participant_id"]).removeprefix("sub-")
    path = pair_report_path(output_dir, subject, str(record["session_bl"]), str(record["session_fu"]))
    try:
        images = None
        if record.get("status") != "failed" and all(key in files for key in IMAGE_KEYS):
            images = load_pair_images(files)
        atomic_write_text(path, render_pair_report(record, images, metadata_bl, metadata_fu))
    except Exception as err:  # a report must never fail a pair whose numbers are written
        LOGGER.error("%s: report not written: %s: %s", path.name, type(err).__name__, err)
        return None
    return path


def participant_ages(bids_dir: Path | None) -> dict[str, float]:
    """``participant_id -> age`` from ``bids_dir/participants.tsv`` (column ``age``), if any."""
    table_path = None if bids_dir is None else bids_dir / "participants.tsv"
    if table_path is None or not table_path.is_file():
        return {}
    try:
        table = pd.read_csv(table_path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        LOGGER.warning("%s: not read (%s); no ages in the group report", table_path, err)
        return {}
    if "participant_id" not in table or "age" not in table:
        return {}
    ages = pd.to_numeric(table["age"], errors="coerce")
    return {(pid if pid.startswith("sub-") else f"sub-{pid}"): float(age)
            for pid, age in zip(table["participant_id"], ages) if math.isfinite(age)}


def read_reference(table_path: Path, column: str) -> dict[tuple[str, str, str], float]:
    """Reference values per pair from a TSV with participant_id, session_bl, session_fu and ``column``.

    Labels may carry their ``sub-``/``ses-`` prefixes or not; ``n/a`` and empty cells
    are missing values.

    Raises
    ------
    ReferenceTableError
        If the file cannot be read or lacks a needed column.
    """
    try:
        table = pd.read_csv(table_path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ReferenceTableError(f"{table_path}: cannot be read as TSV ({err})") from None
    missing = [c for c in ("participant_id", "session_bl", "session_fu", column) if c not in table]
    if missing:
        raise ReferenceTableError(f"{table_path}: no column {', '.join(missing)}")
    values = pd.to_numeric(table[column].replace({"n/a": None, "": None}), errors="coerce")
    reference = {}
    for pid, bl, fu, value in zip(table["participant_id"], table["session_bl"], table["session_fu"], values):
        key = (pid if pid.startswith("sub-") else f"sub-{pid}", bl.removeprefix("ses-"), fu.removeprefix("ses-"))
        reference[key] = float(value)
    return reference


def write_group_report(
    output_dir: Path,
    *,
    bids_dir: Path | None = None,
    reference_column: str | None = None,
    reference_table: Path | None = None,
    problems: Sequence[str] = (),
) -> Path:
    """Draw the group report over every pair record in output_dir and write it.

    Parameters
    ----------
    output_dir : Path
    bids_dir : Path, optional
        For ages (participants.tsv) and the T1w sidecars (scanner check).
    reference_column : str, optional
        A reference BVL (%) per pair, e.g. ``siena_pbvc``: read from ``reference_table``,
        or from group_bvl.tsv when no table is given.
    reference_table : Path, optional
    problems : sequence of str
        Result files that could not be read.

    Returns
    -------
    Path
        ``output_dir/group_report.html``.

    Raises
    ------
    ReferenceTableError
        If the reference column cannot be read.
    """
    from brainlossnet.reports.flags import pair_warnings
    from brainlossnet.reports.group_report import pair_key, render_group_report

    records = read_pair_records(output_dir, lambda path, why: None)
    reference = None
    if reference_column:
        reference = read_reference(reference_table or output_dir / TABLE_NAME, reference_column)
    layout = _layout_or_none(bids_dir)
    warnings = {}
    links = {}
    for record in records:
        key = pair_key(record)
        sources = record.get("source_files") or {}
        metadata = [sidecar_metadata(layout, bids_dir / sources[side])
                    if layout is not None and bids_dir is not None and sources.get(side) else {}
                    for side in ("bl", "fu")]
        warnings[key] = pair_warnings(record, *metadata)  # no sidecars known: nothing compared
        report = pair_report_path(output_dir, key[0].removeprefix("sub-"), key[1], key[2])
        if report.is_file():
            links[key] = report.name
    html = render_group_report(records, age_years=participant_ages(bids_dir), reference=reference,
                               reference_name=reference_column, links=links, warnings=warnings,
                               problems=problems)
    path = output_dir / GROUP_REPORT_NAME
    atomic_write_text(path, html)
    return path


def _layout_or_none(bids_dir: Path | None) -> Any:
    if bids_dir is None:
        return None
    from brainlossnet.bids_app.layout import open_layout

    try:
        return open_layout(bids_dir)
    except Exception as err:  # the group report works without the source dataset
        LOGGER.info("%s: not read (%s); the group report has no scanner check", bids_dir, err)
        return None
