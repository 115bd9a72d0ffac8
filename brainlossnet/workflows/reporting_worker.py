"""A Pydra worker that tells which node of a pair workflow it runs, leaving the tasks alone.

A pair's stages run one after the other inside one worker process, and the parent of
that process would otherwise hear of the pair only when it is finished. To tell the user
more, the *Pydra worker* that runs the pair's nodes is wrapped (:func:`reporting_worker`),
not the nodes: it reports each node it starts, finishes, or finds finished in the work
dir, and leaves the tasks, their inputs and so their content hashes as they are (a rerun
with the same work dir still recomputes nothing). The reports become
:class:`~brainlossnet.workflows.stages.NodeEvent` and then stage events
(:class:`~brainlossnet.workflows.stages.StageTracker`) in :func:`~brainlossnet.workflows.participant.run_pairs`.

A node counts as cached when its result is already in the work dir as it is handed to
the Pydra worker (one small pickle read). A node that another pair is computing at that
moment is waited for and then reported as done, with the time of the run that made it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydra.engine.core import TaskBase
from pydra.engine.workers import WORKERS, Worker

from brainlossnet.workflows.stages import CACHED, DONE, FAILED, NODE_STAGE, STARTED

NodeReport = Callable[[str, str, "float | None"], None]
"""``report(node, status, seconds)``: how a :func:`reporting_worker` tells of a node."""


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
        :data:`~brainlossnet.workflows.stages.NODE_STAGE` starts (after its inputs are known), and as it is done, failed
        or found cached.
    """
    base = WORKERS[plugin]
    # Same name as the wrapped worker: Pydra names the worker's folders after its class
    # (``SlurmWorker_scripts`` in the work dir holds the sbatch scripts and job logs).
    return type(base.__name__, (_ReportingWorker, base), {})


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
