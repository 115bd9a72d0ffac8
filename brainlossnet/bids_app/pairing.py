"""Pairing of sessions into baseline/follow-up pairs.

Sessions of a subject are put in time order: by acquisition time when every session
has one, else by the natural order of their labels (``2`` before ``10``,
``m6`` before ``m12``). Three pairings are offered:

``consecutive``
    each session with the next one (n - 1 pairs);
``baseline``
    the first session with each later one (n - 1 pairs);
``all``
    every ordered pair i < j (n (n - 1) / 2 pairs).

A subject with fewer than two sessions cannot be paired; it is reported as skipped.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brainlossnet.bids_app.layout import SessionT1w

if TYPE_CHECKING:  # the workflow package imports torch and pydra; load it only when used
    from brainlossnet.workflows.participant import PairSpec

LOGGER = logging.getLogger(__name__)

PAIRING_MODES = ("consecutive", "baseline", "all")

_CHUNKS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class SessionPair:
    """A baseline and a follow-up session of one subject, in time order."""

    baseline: SessionT1w
    followup: SessionT1w

    @property
    def spec(self) -> PairSpec:
        """The workflow's description of this pair."""
        from brainlossnet.workflows.participant import PairSpec

        return PairSpec(
            subject=self.baseline.subject,
            session_bl=self.baseline.session,
            session_fu=self.followup.session,
            t1w_bl=self.baseline.t1w,
            t1w_fu=self.followup.t1w,
        )


@dataclass(frozen=True)
class SkippedSubject:
    """A selected subject that yields no pair, and why."""

    subject: str
    reason: str


def natural_key(label: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: ``"2" < "10"``, ``"m6" < "m12"``.

    Parameters
    ----------
    label : str

    Returns
    -------
    tuple
        Chunks as ``(0, number)`` or ``(1, text)``, so numbers and text never get
        compared with each other.
    """
    return tuple(
        (0, int(chunk)) if chunk.isdigit() else (1, chunk.lower())
        for chunk in _CHUNKS.split(label)
        if chunk
    )


def order_sessions(sessions: Sequence[SessionT1w]) -> list[SessionT1w]:
    """Put the sessions of one subject in time order.

    Parameters
    ----------
    sessions : sequence of SessionT1w

    Returns
    -------
    list of SessionT1w
        Ordered by acquisition time when all sessions have one (ties broken by
        label), otherwise by :func:`natural_key` of the session labels.
    """
    if sessions and all(s.acquired is not None for s in sessions):
        return sorted(sessions, key=lambda s: (s.acquired, natural_key(s.session)))
    if any(s.acquired is not None for s in sessions):
        LOGGER.info(
            "sub-%s: acquisition time missing for some sessions; ordering sessions by label",
            sessions[0].subject,
        )
    return sorted(sessions, key=lambda s: natural_key(s.session))


def pair_indices(n_sessions: int, mode: str) -> list[tuple[int, int]]:
    """Index pairs (baseline, follow-up) of ``n_sessions`` time-ordered sessions.

    Parameters
    ----------
    n_sessions : int
    mode : {"consecutive", "baseline", "all"}

    Returns
    -------
    list of (int, int)
        Pairs with baseline index < follow-up index.
    """
    if mode == "consecutive":
        return [(i, i + 1) for i in range(n_sessions - 1)]
    if mode == "baseline":
        return [(0, j) for j in range(1, n_sessions)]
    if mode == "all":
        return list(itertools.combinations(range(n_sessions), 2))
    raise ValueError(f"unknown pairing mode {mode!r}; expected one of {PAIRING_MODES}")


def make_pairs(
    sessions_by_subject: Mapping[str, Sequence[SessionT1w]], mode: str = "consecutive"
) -> tuple[list[SessionPair], list[SkippedSubject]]:
    """Pair the sessions of every subject.

    Parameters
    ----------
    sessions_by_subject : mapping
        Subject label -> its sessions, as from
        :func:`brainlossnet.bids_app.layout.collect_sessions`.
    mode : {"consecutive", "baseline", "all"}

    Returns
    -------
    pairs : list of SessionPair
        In order of subject (natural order), then baseline, then follow-up.
    skipped : list of SkippedSubject
        Subjects with fewer than two sessions.
    """
    pairs: list[SessionPair] = []
    skipped: list[SkippedSubject] = []
    for subject in sorted(sessions_by_subject, key=natural_key):
        ordered = order_sessions(sessions_by_subject[subject])
        if len(ordered) < 2:
            found = ", ".join(f"ses-{s.session}" for s in ordered) or "none"
            skipped.append(
                SkippedSubject(subject, f"fewer than two sessions with a T1w (found: {found})")
            )
            continue
        pairs.extend(SessionPair(ordered[i], ordered[j]) for i, j in pair_indices(len(ordered), mode))
    return pairs, skipped
