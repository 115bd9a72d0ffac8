"""BIDS queries: which T1w image stands for each session, and when it was acquired.

The dataset is indexed with pybids (without validation, but a
``dataset_description.json`` is required). Each selected session contributes one T1w
image, chosen by the deterministic rule of :func:`t1w_preference` (documented in
docs/usage.md); its acquisition time is read from the sidecar JSON, then from the
``_scans.tsv`` and ``_sessions.tsv`` files (:func:`acquisition_datetime`).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bids import BIDSLayout, BIDSLayoutIndexer
from bids.layout import Query, parse_file_entities

LOGGER = logging.getLogger(__name__)

T1W_QUERY: dict[str, Any] = {
    "datatype": "anat",
    "suffix": "T1w",
    "extension": [".nii", ".nii.gz"],
}
"""Base pybids query of the T1w images; a ``--bids-filter-file`` updates it."""

_NOT_ANAT = re.compile(
    r"^/sub-[^/]+(/ses-[^/]+)?/(beh|dwi|eeg|fmap|func|ieeg|meg|micr|motion|nirs|perf|pet)(/|$)"
)
_NON_DATA = re.compile(r"^/(code|derivatives|models|sourcedata|stimuli)(/|$)")


class InputMissingError(Exception):
    """A needed input is absent or selects nothing (BIDS exit status 66)."""


class FilterFileError(ValueError):
    """The ``--bids-filter-file`` is not a valid filter (usage error, exit status 64)."""


@dataclass(frozen=True)
class SessionT1w:
    """The T1w image chosen to represent one session of one subject.

    Attributes
    ----------
    subject, session : str
        Labels without the ``sub-``/``ses-`` prefixes.
    t1w : Path
        Absolute path of the chosen image.
    acquired : datetime or None
        Acquisition time (naive, UTC where the source gave a time zone), or None
        when no source gives one.
    candidates : tuple of Path
        Every T1w image of the session that the query selected, the chosen one first.
    """

    subject: str
    session: str
    t1w: Path
    acquired: datetime | None
    candidates: tuple[Path, ...]


def load_bids_filters(path: Path) -> dict[str, Any]:
    """Read the T1w entity filters of an fMRIPrep-style ``--bids-filter-file``.

    Parameters
    ----------
    path : Path
        JSON file such as ``{"t1w": {"acquisition": "mprage", "run": [1, 2]}}``.
        Keys other than ``"t1w"`` (e.g. ``"bold"``) concern other tools and are
        ignored with a warning. A JSON ``null`` value means that the entity must be
        absent and ``"*"`` that it must be present (with any value), as in fMRIPrep.

    Returns
    -------
    dict
        pybids query arguments for the T1w images (empty if the file has no "t1w").

    Raises
    ------
    InputMissingError
        If the file does not exist.
    FilterFileError
        If it is not a JSON object of objects.
    """
    if not path.is_file():
        raise InputMissingError(f"{path}: BIDS filter file not found")
    try:
        filters = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FilterFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise FilterFileError(
            f'{path}: expected a JSON object of objects, e.g. {{"t1w": {{"acquisition": "mprage"}}}}'
        )
    for key in sorted(set(filters) - {"t1w"}):
        LOGGER.warning("%s: filter key %r ignored (brainlossnet reads only 't1w')", path, key)
    query = {}
    for entity, value in filters.get("t1w", {}).items():
        if value is None:
            value = Query.NONE
        elif value == "*":
            value = Query.ANY
        query[entity] = value
    return query


def open_layout(bids_dir: Path, participant_labels: Sequence[str] | None = None) -> BIDSLayout:
    """Index a BIDS dataset for T1w queries.

    Only the ``anat`` folders are indexed (and only those of ``participant_labels``
    when given), which keeps indexing fast on large datasets.

    Parameters
    ----------
    bids_dir : Path
        Dataset root.
    participant_labels : sequence of str, optional
        Subjects to index (labels without ``sub-``); all when None.

    Returns
    -------
    bids.BIDSLayout

    Raises
    ------
    InputMissingError
        If ``bids_dir`` is not a directory or has no ``dataset_description.json``.
    """
    if not bids_dir.is_dir():
        raise InputMissingError(f"{bids_dir}: BIDS directory not found")
    if not (bids_dir / "dataset_description.json").is_file():
        raise InputMissingError(
            f"{bids_dir}: no dataset_description.json, so this is not a BIDS dataset root"
        )
    ignore: list[Any] = [_NON_DATA, _NOT_ANAT]
    if participant_labels:
        alternatives = "|".join(re.escape(label) for label in participant_labels)
        ignore.append(re.compile(rf"^/sub-(?!({alternatives})(/|$))"))
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)
    return BIDSLayout(bids_dir, indexer=indexer)


def t1w_preference(path: Path) -> tuple:
    """Sort key ranking the T1w images of one session; the smallest key is chosen.

    The rule, in order of precedence:

    1. magnitude images (no ``part-`` entity, or ``part-mag``) before phase or
       real/imaginary parts;
    2. images without a contrast agent (no ``ce-``) first;
    3. images without ``rec-`` (the scanner's standard reconstruction) first;
    4. images without ``acq-`` first;
    5. images without ``echo-`` (single-echo or combined multi-echo) first, then the
       lowest echo;
    6. the highest ``run-`` (a repeated scan is usually repeated because an earlier one
       was unusable); no ``run-`` counts as run 0;
    7. the file name, alphabetically, as the final tie-break.

    Parameters
    ----------
    path : Path
        A BIDS T1w file name (only the name is parsed).

    Returns
    -------
    tuple
        Sort key; the image with the smallest key is chosen (see :func:`rank_t1w`).
    """
    entities = parse_file_entities(str(path))
    echo = entities.get("echo")
    return (
        entities.get("part", "mag") != "mag",
        "ceagent" in entities,
        "reconstruction" in entities,
        "acquisition" in entities,
        echo is not None,
        float(echo) if echo is not None else 0.0,
        -int(entities.get("run", 0)),
        Path(path).name,
    )


def rank_t1w(paths: Sequence[Path]) -> list[Path]:
    """Order the T1w images of one session by :func:`t1w_preference`, chosen one first.

    Parameters
    ----------
    paths : sequence of Path
        Non-empty list of candidate T1w images of one session.

    Returns
    -------
    list of Path
        The same images, best first.
    """
    if not paths:
        raise ValueError("rank_t1w needs at least one candidate")
    return sorted(paths, key=t1w_preference)


def parse_bids_datetime(text: str) -> datetime | None:
    """Parse a BIDS date-time (``YYYY-MM-DD[Thh:mm:ss[.ffffff]][Z|+hh:mm]``).

    Parameters
    ----------
    text : str
        Value from a sidecar or a TSV; ``"n/a"`` and empty strings give None.

    Returns
    -------
    datetime or None
        Naive datetime; times with a time zone are converted to UTC first, so that
        sessions with and without a zone can be compared.

    Raises
    ------
    ValueError
        If the text is neither empty, ``"n/a"``, nor an ISO 8601 date-time.
    """
    text = text.strip()
    if text in ("", "n/a"):
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _tsv_acq_time(table: Path, key_column: str, key: str) -> str | None:
    if not table.is_file():
        return None
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if (row.get(key_column) or "").strip() == key:
                return row.get("acq_time")
    return None


def acquisition_datetime(
    t1w: Path, metadata: Mapping[str, Any], bids_dir: Path
) -> datetime | None:
    """Acquisition time of a T1w image, from the first source that gives one.

    Sources, in order: the sidecar's ``AcquisitionDateTime``; its ``AcquisitionDate``
    (with ``AcquisitionTime`` when present); the ``acq_time`` of the image's row in
    ``sub-X[_ses-Y]_scans.tsv``; the ``acq_time`` of the session's row in
    ``sub-X_sessions.tsv``. Anonymised datasets often shift all dates of a subject by
    the same offset, which keeps their order.

    Parameters
    ----------
    t1w : Path
        Absolute path of the image inside ``bids_dir``.
    metadata : mapping
        Its sidecar metadata (with BIDS inheritance applied, as pybids returns it).
    bids_dir : Path
        Dataset root.

    Returns
    -------
    datetime or None
        See :func:`parse_bids_datetime`; None when no source gives a time or the
        value cannot be parsed (logged as a warning naming the file).
    """
    entities = parse_file_entities(str(t1w))
    subject, session = entities["subject"], entities.get("session")
    subject_dir = bids_dir / f"sub-{subject}"
    session_dir = subject_dir / f"ses-{session}" if session else subject_dir
    prefix = f"sub-{subject}_ses-{session}" if session else f"sub-{subject}"
    candidates: list[tuple[str, str | None]] = [
        ("sidecar AcquisitionDateTime", metadata.get("AcquisitionDateTime")),
    ]
    date = metadata.get("AcquisitionDate")
    if date:
        time = metadata.get("AcquisitionTime")
        candidates.append(("sidecar AcquisitionDate", f"{date}T{time}" if time else str(date)))
    scans = session_dir / f"{prefix}_scans.tsv"
    relative = t1w.relative_to(session_dir).as_posix()
    candidates.append((str(scans), _tsv_acq_time(scans, "filename", relative)))
    if session:
        sessions = subject_dir / f"sub-{subject}_sessions.tsv"
        candidates.append((str(sessions), _tsv_acq_time(sessions, "session_id", f"ses-{session}")))
    for source, value in candidates:
        if value is None:
            continue
        try:
            moment = parse_bids_datetime(str(value))
        except ValueError:
            LOGGER.warning("%s: acquisition time %r of %s is not ISO 8601; ignored",
                           source, value, t1w.name)
            continue
        if moment is not None:
            return moment
    return None


def collect_sessions(
    layout: BIDSLayout,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
    t1w_filters: Mapping[str, Any] | None = None,
) -> dict[str, list[SessionT1w]]:
    """One T1w image per selected session of each selected subject.

    Parameters
    ----------
    layout : bids.BIDSLayout
        From :func:`open_layout`.
    participant_labels : sequence of str, optional
        Subjects (without ``sub-``); all subjects of the dataset when None.
    session_labels : sequence of str, optional
        Sessions (without ``ses-``); all when None. Overrides a ``session`` key of
        the filters.
    t1w_filters : mapping, optional
        Extra pybids query arguments from :func:`load_bids_filters`.

    Returns
    -------
    dict
        Subject label -> its sessions with a T1w (in no particular order; see
        :mod:`brainlossnet.bids_app.pairing`). Selected subjects without any session
        holding a selected T1w map to an empty list. T1w images outside a session
        folder (cross-sectional data) are logged and left out.

    Raises
    ------
    InputMissingError
        If a requested participant does not exist, no requested session exists, or
        the query selects no T1w image at all.
    """
    subjects = sorted(layout.get_subjects())
    if participant_labels:
        unknown = sorted(set(participant_labels) - set(subjects))
        if unknown:
            raise InputMissingError(
                f"{layout.root}: no such participant(s): "
                + ", ".join(f"sub-{label}" for label in unknown)
            )
        subjects = sorted(set(participant_labels))
    if not subjects:
        raise InputMissingError(f"{layout.root}: the dataset has no sub-* folders")

    query = {**T1W_QUERY, **(t1w_filters or {})}
    query["subject"] = subjects
    if session_labels:
        query["session"] = list(session_labels)
    found = layout.get(return_type="object", **query)
    if session_labels:
        present = {f.entities.get("session") for f in found}
        if not present & set(session_labels):
            raise InputMissingError(
                f"{layout.root}: no T1w image in session(s) "
                + ", ".join(f"ses-{label}" for label in session_labels)
            )
    if not found:
        raise InputMissingError(
            f"{layout.root}: the query {query} selects no T1w image"
        )

    grouped: dict[tuple[str, str], list[Path]] = {}
    for bids_file in found:
        path = Path(bids_file.path)
        session = bids_file.entities.get("session")
        if session is None:
            LOGGER.info("%s: T1w outside a session folder; left out (no longitudinal pair)",
                        path.name)
            continue
        grouped.setdefault((bids_file.entities["subject"], session), []).append(path)

    bids_dir = Path(layout.root)
    by_subject: dict[str, list[SessionT1w]] = {subject: [] for subject in subjects}
    for (subject, session), paths in sorted(grouped.items()):
        ranked = rank_t1w(paths)
        chosen = ranked[0]
        if len(ranked) > 1:
            LOGGER.info(
                "sub-%s ses-%s: %d T1w images, chose %s (set aside: %s)",
                subject, session, len(ranked), chosen.name,
                ", ".join(p.name for p in ranked[1:]),
            )
        else:
            LOGGER.debug("sub-%s ses-%s: T1w %s", subject, session, chosen.name)
        acquired = acquisition_datetime(chosen, layout.get_metadata(str(chosen)), bids_dir)
        by_subject[subject].append(
            SessionT1w(subject, session, chosen, acquired, tuple(ranked))
        )
    return by_subject
