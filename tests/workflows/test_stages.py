"""Stage events: what the reporting Pydra worker tells of each node, and the stages made of them."""

from pathlib import Path

import pydra
import pytest

from brainlossnet.workflows.reporting_worker import reporting_worker
from brainlossnet.workflows.stages import (
    CACHED, DONE, FAILED, STAGES, STARTED, NodeEvent, StageEvent, StageTracker,
)


def test_node_events_become_one_event_per_stage_with_a_count():
    events: list[StageEvent] = []
    tracker = StageTracker(events.append)
    for node, status, seconds in [
        ("reslice_bl", STARTED, None), ("reslice_bl", DONE, 1.0),
        ("reslice_fu", STARTED, None), ("reslice_fu", DONE, 2.0),
        ("crop_bl", CACHED, 5.0), ("crop_fu", STARTED, None), ("crop_fu", DONE, 4.0),
        ("rigid_halfway", CACHED, 30.0),
        ("segment_bl", STARTED, None), ("segment_bl", FAILED, None),
    ]:
        tracker.node_event(NodeEvent("a", node, status, seconds))
    tracker.pair_finished("a", ok=False)
    assert [(e.stage, e.status, e.seconds, e.finished) for e in events] == [
        ("reslice", STARTED, None, 0), ("reslice", DONE, 3.0, 1),
        ("crop", STARTED, None, 1), ("crop", DONE, 4.0, 2),  # only the FU crop ran in this run
        ("rigid_halfway", CACHED, None, 3),
        ("segment", STARTED, None, 3), ("segment", FAILED, None, 3),
    ]
    assert {e.pair for e in events} == {"a"} and {e.total for e in events} == {len(STAGES)}


def test_a_stage_whose_bl_and_fu_nodes_both_fail_fails_once():
    events: list[StageEvent] = []
    tracker = StageTracker(events.append)
    for node in ("crop_bl", "crop_fu"):
        tracker.node_event(NodeEvent("c", node, STARTED, None))
        tracker.node_event(NodeEvent("c", node, FAILED, None))
    assert [(e.stage, e.status) for e in events] == [("crop", STARTED), ("crop", FAILED)]


def test_a_successful_pair_that_ran_no_node_was_reused_whole():
    events: list[StageEvent] = []
    tracker = StageTracker(events.append)
    tracker.node_event(NodeEvent("b", "reslice_bl", CACHED, 1.0))
    tracker.node_event(NodeEvent("b", "reslice_fu", CACHED, 1.0))
    tracker.pair_finished("b", ok=True)
    tracker.pair_finished("c", ok=True)
    assert [(e.pair, e.stage, e.status, e.finished) for e in events] == (
        [("b", stage, CACHED, n) for n, stage in enumerate(STAGES, start=1)]
        + [("c", stage, CACHED, n) for n, stage in enumerate(STAGES, start=1)]
    )


@pydra.mark.task
@pydra.mark.annotate({"return": {"out": int, "elapsed_s": float}})
def double(x: int) -> tuple[int, float]:
    """A node with the ``elapsed_s`` output of the pipeline's stages; fails on a negative x."""
    if x < 0:
        raise ValueError("negative")
    return 2 * x, 0.25


def _run(cache_dir: Path, x: int, y: int, plugin: str | type = "serial", **kwargs) -> None:
    wf = pydra.Workflow(name="wf", input_spec=["x", "y"], x=x, y=y, cache_dir=cache_dir)
    wf.add(double(name="reslice_bl", x=wf.lzin.x))
    wf.add(double(name="reslice_fu", x=wf.lzin.y))
    wf.set_output([("bl", wf.reslice_bl.lzout.out), ("fu", wf.reslice_fu.lzout.out)])
    with pydra.Submitter(plugin=plugin, **kwargs) as submitter:
        submitter(wf)


def test_the_reporting_worker_tells_run_cached_and_failed_nodes_and_keeps_the_cache(tmp_path):
    events: dict[str, list[tuple[str, float | None]]] = {}  # per node, in order (either node may run first)

    def report(node: str, status: str, seconds: float | None) -> None:
        events.setdefault(node, []).append((status, seconds))

    def run(x: int, y: int) -> dict[str, list[tuple[str, float | None]]]:
        events.clear()
        _run(tmp_path, x, y, reporting_worker("serial"), report=report)
        return events

    ran = [(STARTED, None), (DONE, 0.25)]
    assert run(1, 2) == {"reslice_bl": ran, "reslice_fu": ran}
    assert run(1, 3) == {"reslice_bl": [(CACHED, 0.25)], "reslice_fu": ran}
    assert run(1, 3) == {}  # the whole workflow is in the cache: no node runs
    with pytest.raises(Exception, match="negative"):
        run(1, -1)
    assert events == {"reslice_bl": [(CACHED, 0.25)], "reslice_fu": [(STARTED, None), (FAILED, None)]}
    nodes = set(tmp_path.glob("FunctionTask_*"))
    _run(tmp_path, 1, 2)  # a plain Pydra worker finds what the reporting one computed
    assert set(tmp_path.glob("FunctionTask_*")) == nodes
