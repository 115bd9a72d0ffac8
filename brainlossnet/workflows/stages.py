"""The stages of a pair, and the events that tell which stage each running pair is in.

The pair workflow (:mod:`brainlossnet.workflows.pair`) is made of nodes, grouped into the
stages of the method. While pairs run, the Pydra worker of each pair reports its nodes
(:mod:`brainlossnet.workflows.reporting_worker`) as :class:`NodeEvent`; in the parent
process :class:`StageTracker` turns them into one :class:`StageEvent` per stage, with a
count of the pair's stages finished, for a progress display. Plain data, no Pydra: the
command line imports this without the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

STAGES: tuple[str, ...] = ("reslice", "crop", "rigid_halfway", "segment", "register", "volumes", "correct")
"""Stage names, in order, as reported in the per-stage timings and the progress."""

STAGE_NODES: dict[str, tuple[str, ...]] = {
    "reslice": ("reslice_bl", "reslice_fu"),
    "crop": ("crop_bl", "crop_fu"),
    "rigid_halfway": ("rigid_halfway",),
    "segment": ("segment_bl", "segment_fu"),
    "register": ("register",),
    "volumes": ("volumes",),
    "correct": ("correct",),
}
"""The workflow nodes that make up each stage (BL and FU, or one for the pair)."""

NODE_STAGE: dict[str, str] = {node: stage for stage, nodes in STAGE_NODES.items() for node in nodes}
"""The stage of each node of the pair workflow."""

STARTED, DONE, CACHED, FAILED = "started", "done", "cached", "failed"
"""What happened to a node or stage: it started; it finished (computed in this run); it
was reused from the work dir without running; it raised."""


@dataclass(frozen=True)
class NodeEvent:
    """One node of one pair's workflow started, finished, was cached or failed.

    ``seconds`` is the node's own run time (its ``elapsed_s`` output; for a cached node
    that of the run that made it), None for ``started`` and ``failed``.
    """

    pair: Hashable
    node: str
    status: str
    seconds: float | None = None


@dataclass(frozen=True)
class StageEvent:
    """One stage of one pair started, finished, was reused from the work dir, or failed.

    Attributes
    ----------
    pair : hashable
        The pair (a :class:`~brainlossnet.workflows.participant.PairSpec`).
    stage : str
        One of :data:`STAGES`.
    status : str
        :data:`STARTED`, :data:`DONE` (computed, at least in part, in this run),
        :data:`CACHED` (every node reused) or :data:`FAILED`.
    seconds : float or None
        For :data:`DONE`, the run time of the stage's nodes computed in this run (BL and
        FU summed; with none reused, the pair's ``stage_seconds`` of that stage); else None.
    finished : int
        Stages of this pair done or cached so far, this one included.
    total : int
        Stages of a pair.
    """

    pair: Hashable
    stage: str
    status: str
    seconds: float | None
    finished: int
    total: int = len(STAGES)


@dataclass
class _PairStages:
    node_status: dict[str, str] = field(default_factory=dict)
    node_seconds: dict[str, float] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    finished: list[str] = field(default_factory=list)


class StageTracker:
    """Turn the node events of every running pair into stage events, in the parent process.

    A stage starts with the first of its nodes that runs (a stage whose nodes are all
    cached never "starts"), and is finished when each of its nodes is done or cached.

    Parameters
    ----------
    on_stage : callable
        Called with each :class:`StageEvent`.
    """

    def __init__(self, on_stage: Callable[[StageEvent], None]) -> None:
        self._on_stage = on_stage
        self._pairs: dict[Hashable, _PairStages] = {}

    def node_event(self, event: NodeEvent) -> None:
        """Take one node event of a pair (events of unknown nodes are ignored)."""
        stage = NODE_STAGE.get(event.node)
        if stage is None:
            return
        pair = self._pairs.setdefault(event.pair, _PairStages())
        if event.status == STARTED:
            if stage not in pair.started:
                pair.started.add(stage)
                self._emit(event.pair, pair, stage, STARTED, None)
            return
        if event.status == FAILED:
            if stage not in pair.failed:  # both BL and FU nodes may fail: one event for the stage
                pair.failed.add(stage)
                self._emit(event.pair, pair, stage, FAILED, None)
            return
        pair.node_status[event.node] = event.status
        if event.status == DONE and event.seconds is not None:
            pair.node_seconds[event.node] = event.seconds
        nodes = STAGE_NODES[stage]
        if stage not in pair.finished and all(node in pair.node_status for node in nodes):
            pair.finished.append(stage)
            if all(pair.node_status[node] == CACHED for node in nodes):
                self._emit(event.pair, pair, stage, CACHED, None)
            else:
                seconds = sum(pair.node_seconds.get(node, 0.0) for node in nodes)
                self._emit(event.pair, pair, stage, DONE, round(seconds, 3))

    def pair_finished(self, pair_key: Hashable, ok: bool) -> None:
        """Close a pair; when it succeeded, its stages not yet seen are reported cached.

        A pair whose whole workflow is in the work dir runs no node at all, and node
        events reach the parent before the pair's result does, so a stage of a
        successful pair not finished by then was reused.
        """
        pair = self._pairs.pop(pair_key, _PairStages())
        if ok:
            for stage in STAGES:
                if stage not in pair.finished:
                    pair.finished.append(stage)
                    self._emit(pair_key, pair, stage, CACHED, None)

    def _emit(self, key: Hashable, pair: _PairStages, stage: str, status: str, seconds: float | None) -> None:
        self._on_stage(StageEvent(key, stage, status, seconds, finished=len(pair.finished)))

