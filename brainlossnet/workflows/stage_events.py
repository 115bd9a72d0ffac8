"""Which stage each pair is in: node events from the Pydra worker, turned into stage events.

A pair's stages run one after the other inside one worker process, and the parent of
that process would otherwise hear of the pair only when it is finished. To tell the user
more, the *Pydra worker* that runs the pair's nodes is wrapped (:func:`reporting_worker`),
not the nodes: it reports each node it starts, finishes, or finds finished in the cache,
and leaves the tasks, their inputs and so their content hashes as they are (a rerun with
the same work dir still recomputes nothing). :class:`StageTracker`, in the parent, turns
these node events into one event per stage (:data:`~brainlossnet.workflows.pair.STAGES`)
with a count of the pair's stages finished.

A node counts as cached when its result is already in the work dir as it is handed to
the Pydra worker (one small pickle read). A node that another pair is computing at that
moment is waited for and then reported as done, with the time of the run that made it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pydra.engine.core import TaskBase
from pydra.engine.workers import WORKERS, Worker

from brainlossnet.workflows.pair import STAGE_NODES, STAGES

STARTED, DONE, CACHED, FAILED = "started", "done", "cached", "failed"
"""What happened to a node or stage: it started; it finished (computed in this run); it
was reused from the work dir without running; it raised."""

NODE_STAGE: dict[str, str] = {node: stage for stage, nodes in STAGE_NODES.items() for node in nodes}
"""The stage of each node of the pair workflow."""

NodeReport = Callable[[str, str, "float | None"], None]
"""``report(node, status, seconds)``: how a :func:`reporting_worker` tells of a node."""


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
        One of :data:`~brainlossnet.workflows.pair.STAGES`.
    status : str
        :data:`STARTED`, :data:`DONE` (computed, at least in part, in this run),
        :data:`CACHED` (every node reused) or :data:`FAILED`.
    seconds : float or None
        For :data:`DONE`, the run time of the stage's nodes computed in this run (BL and
        FU summed), the time the ``stage_seconds`` of the pair's JSON record; else None.
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


class _ReportingWorker:
    """Mixin over a Pydra worker class: report each node handed to ``run_el``."""

    def __init__(self, *, report: NodeReport, **kwargs: Any) -> None:
        self._report = report
        super().__init__(**kwargs)

    def run_el(self, runnable: Any, **kwargs: Any) -> Awaitable[Any]:
        running = super().run_el(runnable, **kwargs)
        if isinstance(runnable, TaskBase) and runnable.name in NODE_STAGE:
            return self._reported(runnable, running)
        return running

    async def _reported(self, task: TaskBase, running: Awaitable[Any]) -> Any:
        cached = _finished_result(task)
        if cached is not None:
            self._report(task.name, CACHED, _elapsed(cached))
            return await running
        self._report(task.name, STARTED, None)
        try:
            outcome = await running
        except BaseException:
            self._report(task.name, FAILED, None)
            raise
        result = _finished_result(task)
        self._report(task.name, DONE if result is not None else FAILED,
                     _elapsed(result) if result is not None else None)
        return outcome


def reporting_worker(plugin: str) -> type[Worker]:
    """The Pydra worker class of ``plugin``, reporting every node of a pair workflow it runs.

    Parameters
    ----------
    plugin : str
        A Pydra plugin name (``serial``, ``slurm``, ...).

    Returns
    -------
    type
        A subclass of that worker to give to ``pydra.Submitter(plugin=...)``; the
        submitter's keyword ``report`` (a :data:`NodeReport`) is called as each node of
        :data:`NODE_STAGE` starts (after its inputs are known), and as it is done, failed
        or found cached.
    """
    base = WORKERS[plugin]
    return type(f"Reporting{base.__name__}", (_ReportingWorker, base), {})


def _finished_result(task: TaskBase) -> Any:
    """The task's successful result in the cache, or None (also when it cannot be looked up).

    Looking up hashes the task's inputs, as Pydra does right after; a lookup that fails
    (an unreadable input) must not change how the node itself fails, so it counts as
    "not finished".
    """
    try:
        result = task.result()
    except Exception:
        return None
    return result if result is not None and not result.errored else None


def _elapsed(result: Any) -> float | None:
    seconds = getattr(result.output, "elapsed_s", None)
    return float(seconds) if isinstance(seconds, (int, float)) else None


@dataclass
class _PairStages:
    node_status: dict[str, str] = field(default_factory=dict)
    node_seconds: dict[str, float] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
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

