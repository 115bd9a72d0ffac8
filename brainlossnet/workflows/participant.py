"""All BL/FU pairs of a run: one Pydra pair workflow per pair, pairs spread over workers.

Each pair's workflow runs in its own worker process (``nprocs`` at a time) against the
shared cache, so a failed pair cannot stop the others: it becomes a failed result with
one line naming the stage and the problem. The worker process tells the parent of each
stage it starts and finishes (:mod:`brainlossnet.workflows.reporting_worker`) through a queue
that the pool hands to it when it starts. (Pydra 0.25 can split one workflow over all
pairs, but a failed node inside such a split leaves its submitter looping forever in
``DiGraph.remove_successors_nodes``; per-pair submission avoids that.)
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import multiprocessing
import multiprocessing.queues
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pydra

from brainlossnet.calibration import DEFAULT_PROFILE, profile_path
from brainlossnet.cpus import limit_to_share, share_per_task
from brainlossnet.geometry import CROP_SHAPE
from brainlossnet.interfaces.nifti import load_json
from brainlossnet.parenchyma import PARENCHYMA_DEFINITION
from brainlossnet.registration import REFINE_FINE_LEARNING_RATE_VOX, REFINE_FINE_STEPS, REFINE_STEPS
from brainlossnet.sharpness import SHARPNESS_MATCHING
from brainlossnet.workflows.device_slots import assign_slots, device_slots
from brainlossnet.workflows.pair import init_pair_wf
from brainlossnet.workflows.reporting_worker import NodeReport, reporting_worker
from brainlossnet.workflows.stages import STAGE_NODES, NodeEvent, StageEvent, StageTracker

os.environ.setdefault("NO_ET", "1")

INTERMEDIATE_OUTPUTS: tuple[str, ...] = (
    "bl_halfway", "fu_halfway", "bl_parenchyma", "fu_parenchyma",
    "bl_intracranial", "fu_intracranial", "field_fw", "field_bw", "transform",
)


@dataclass(frozen=True)
class PairSpec:
    """One baseline/follow-up pair of a participant (labels without ``sub-``/``ses-``)."""

    subject: str
    session_bl: str
    session_fu: str
    t1w_bl: Path
    t1w_fu: Path


@dataclass(frozen=True)
class PipelineOptions:
    """Options that change what the pipeline computes (and so key the cache)."""

    device: str = "auto"
    calibration: str = DEFAULT_PROFILE
    crop_shape: tuple[int, int, int] = CROP_SHAPE
    seed: int = 0
    allow_skull_stripped: bool = False
    refine_steps: int = REFINE_STEPS
    refine_fine_steps: int = REFINE_FINE_STEPS
    refine_fine_learning_rate_vox: float = REFINE_FINE_LEARNING_RATE_VOX
    sharpness_matching: bool = SHARPNESS_MATCHING


@dataclass
class PairResult:
    """What one pair produced: status, every number, and the intermediate files in the work dir."""

    pair: PairSpec
    status: str
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    traceback: str = ""


def init_single_pair_wf(pair: PairSpec, *, options: PipelineOptions) -> pydra.Workflow:
    """The pair workflow with one pair's scans and the calibration file as inputs (built, not run)."""
    wf = init_pair_wf(crop_shape=options.crop_shape, device=options.device, seed=options.seed,
                      allow_skull_stripped=options.allow_skull_stripped, refine_steps=options.refine_steps,
                      refine_fine_steps=options.refine_fine_steps,
                      refine_fine_learning_rate_vox=options.refine_fine_learning_rate_vox,
                      sharpness_matching=options.sharpness_matching)
    wf.inputs.t1w_bl = Path(pair.t1w_bl).resolve()
    wf.inputs.t1w_fu = Path(pair.t1w_fu).resolve()
    wf.inputs.calibration = profile_path(options.calibration)
    return wf


@contextlib.contextmanager
def _kept_working_directory() -> Iterator[None]:
    """Pydra changes the process's working directory while it runs tasks; restore it."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


def _submit(wf: pydra.Workflow, work_dir: Path, plugin: str, plugin_args: dict | None, report: NodeReport) -> None:
    wf.cache_dir = work_dir
    with _kept_working_directory(), pydra.Submitter(
            plugin=reporting_worker(plugin), report=report, **dict(plugin_args or {})) as submitter:
        submitter(wf)


_node_events: multiprocessing.queues.SimpleQueue | None = None
"""In a worker process of :func:`run_pairs`: where :func:`run_one_pair` sends its node events."""


def _init_worker(queue: multiprocessing.queues.SimpleQueue, cpus_per_pair: int) -> None:
    """Initialise a worker process of :func:`run_pairs`: where its node events go (the queue is
    passed on at its start), and its share of the CPUs (:func:`brainlossnet.cpus.limit_to_share`),
    which also caps torch's threads (never raising them above ``OMP_NUM_THREADS``'s)."""
    import torch

    global _node_events
    _node_events = queue
    limit_to_share(cpus_per_pair)
    torch.set_num_threads(min(torch.get_num_threads(), cpus_per_pair))


def _report_node(pair: PairSpec, node: str, status: str, seconds: float | None) -> None:
    """Send one node event of ``pair`` to the parent; nowhere outside a :func:`run_pairs` worker.

    A ``SimpleQueue`` writes to its pipe before ``put`` returns, so every event of a pair
    is in the pipe before the pair's result is sent.
    """
    if _node_events is not None:
        _node_events.put(NodeEvent(pair, node, status, seconds))


def _pair_result(pair: PairSpec, outputs: Any, options: PipelineOptions) -> PairResult:
    from brainlossnet.registration import MODEL_VERSION

    metrics = load_json(outputs.result)
    metrics["model_version"] = MODEL_VERSION
    metrics["parenchyma_definition"] = PARENCHYMA_DEFINITION
    metrics["stage_seconds"] = {
        stage: round(sum(float(getattr(outputs, f"{node}_s")) for node in nodes), 3)
        for stage, nodes in STAGE_NODES.items()
    }
    metrics["options"] = {"crop_shape": list(options.crop_shape), "seed": options.seed,
                          "refine_steps": options.refine_steps, "refine_fine_steps": options.refine_fine_steps,
                          "refine_fine_learning_rate_vox": options.refine_fine_learning_rate_vox,
                          "sharpness_matching": options.sharpness_matching}
    metrics["fu_blur_mm2"] = float(outputs.fu_blur_mm2)
    metrics["surround_ratio"] = {"bl": float(outputs.bl_surround_ratio), "fu": float(outputs.fu_surround_ratio)}
    files = {name: Path(str(getattr(outputs, name))) for name in INTERMEDIATE_OUTPUTS}
    return PairResult(pair=pair, status="ok", metrics=metrics, files=files)


def failure_message(error: BaseException) -> str:
    """One line: the stage that failed and the root cause (type and message, which name the file).

    The stage is the outermost frame of the root cause's traceback that lies in
    ``brainlossnet/interfaces`` (the stage function itself).
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    root = chain[-1]
    stages = [
        frame.name for frame in traceback.extract_tb(root.__traceback__)
        if f"{os.sep}interfaces{os.sep}" in frame.filename and not frame.name.startswith("_")
    ]
    lines = str(root).strip().splitlines()
    text = " ".join(" ".join(lines).split()) if lines else type(root).__name__
    return f"{stages[0] + ': ' if stages else ''}{type(root).__name__}: {text}"


def run_one_pair(
    pair: PairSpec, work_dir: Path, options: PipelineOptions, plugin: str = "serial", plugin_args: dict | None = None
) -> PairResult:
    """Run one pair's workflow in this process; any failure becomes a failed result."""
    try:
        wf = init_single_pair_wf(pair, options=options)
        _submit(wf, Path(work_dir).resolve(), plugin, plugin_args, functools.partial(_report_node, pair))
        return _pair_result(pair, wf.result(return_inputs=False).output, options)
    except Exception as error:  # every failure of a pair is reported, never raised
        return PairResult(pair=pair, status="failed", message=failure_message(error),
                          traceback="".join(traceback.format_exception(error)))


ABANDONED_LOCK_AGE_S = 2.0
"""An empty Pydra lock file older than this was left by a killed process (filelock itself
gives an unreadable lock file the same 2 s before breaking it)."""
LOCK_SWEEP_PERIOD_S = 5.0
"""How often :func:`run_pairs` looks for abandoned locks while pairs run."""
STAGE_EVENT_POLL_S = 0.25
"""How often :func:`run_pairs` passes on the stage events of the running pairs."""


def clear_abandoned_locks(location: Path | None = None, *, age_s: float = ABANDONED_LOCK_AGE_S) -> list[Path]:
    """Remove the empty lock files that a killed run left in a Pydra cache folder.

    Pydra guards each entry of its persistent hash cache (``location`` None: the folder
    ``PYDRA_HASH_CACHE`` names, by default in the user's cache directory) and each task
    directory of a work dir with a ``filelock.SoftFileLock``. The lock's owner creates the
    file and then writes its PID into it; a process killed between the two (SIGKILL, an
    out-of-memory kill, a Slurm time limit) leaves an empty file, which filelock treats as
    held for ever, so the next run would wait on it without end. A live owner fills its
    lock within microseconds, so an empty lock older than ``age_s`` seconds is abandoned.

    Returns
    -------
    list of Path
        The lock files removed.
    """
    from pydra.utils.hash import PersistentCache

    folder = Path(location) if location is not None else Path(PersistentCache.location_default())
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for lock in folder.glob("*.lock"):
        try:
            status = lock.stat()
            if status.st_size == 0 and now - status.st_mtime > age_s:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:  # released or removed by another run meanwhile
            continue
    return removed


@contextlib.contextmanager
def _abandoned_locks_swept(work_dir: Path) -> Iterator[None]:
    """Clear abandoned locks in the hash cache and ``work_dir`` now and every few seconds.

    A run resumed right after a kill may find a lock that is not yet old enough to count as
    abandoned; a worker waiting on it goes on once a later sweep removes it.
    """
    stop = threading.Event()

    def sweep() -> None:
        while True:
            for folder in (None, work_dir):
                clear_abandoned_locks(folder)
            if stop.wait(LOCK_SWEEP_PERIOD_S):
                return

    sweeper = threading.Thread(target=sweep, name="lock-sweeper", daemon=True)
    sweeper.start()
    try:
        yield
    finally:
        stop.set()
        sweeper.join()


def run_pairs(
    pairs: list[PairSpec],
    *,
    work_dir: Path,
    options: PipelineOptions,
    plugin: str = "cf",
    nprocs: int = 1,
    plugin_args: dict | None = None,
    gpus: Sequence[int] | None = None,
    max_gpu_tasks_per_device: int = 1,
    on_result: Callable[[PairResult], None] | None = None,
    on_stage: Callable[[StageEvent], None] | None = None,
    stop_on_first_crash: bool = False,
) -> list[PairResult]:
    """Run the pipeline on all pairs; ``work_dir`` is the Pydra cache (reruns reuse it).

    ``plugin`` ``cf`` (or ``serial``) runs ``nprocs`` pairs at once, each pair's stages one
    after the other in a fresh worker process (CUDA is only ever initialised there); any
    other Pydra plugin (``slurm``) submits each pair's stages through that worker, for
    ``nprocs`` pairs at once. Each worker may use its share of this process's CPUs
    (:func:`brainlossnet.cpus.share_per_task` of the number of workers), so that a stage it
    runs starts no helper process for a CPU that another pair is using (stages that a Slurm
    plugin submits run in their own jobs, whose CPUs Slurm sets). With ``gpus`` the pairs are
    spread over those CUDA devices, at most ``max_gpu_tasks_per_device`` at once on each (see
    :mod:`brainlossnet.workflows.device_slots`); the device reaches the register stage as
    ``cuda:<id>``. Returns one result per pair, in order; a failed pair has
    ``status == "failed"`` and a one-line ``message``, and never stops the others, unless
    ``stop_on_first_crash``: then no pair starts after the first failure, and the pairs
    that never started are left out of the results. ``on_result`` (e.g. a progress bar)
    is called in this process with each result as its pair finishes, and ``on_stage`` with
    each stage of a pair that starts, finishes, is reused from the work dir or fails (within
    a quarter of a second; all of a pair's before its result).
    """
    if not pairs:
        return []
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    pair_plugin = "serial" if plugin in ("cf", "serial") else plugin
    slots = device_slots(options.device, gpus, max_gpu_tasks_per_device, nprocs)[: len(pairs)]
    queues = [collections.deque(indices) for indices in assign_slots(len(pairs), len(slots))]
    results: list[PairResult | None] = [None] * len(pairs)
    stopped = False
    context = multiprocessing.get_context("spawn")
    node_events = context.SimpleQueue()
    stages = StageTracker(on_stage or (lambda event: None))
    with _abandoned_locks_swept(work_dir), concurrent.futures.ProcessPoolExecutor(
            max_workers=len(slots), mp_context=context,
            initializer=_init_worker, initargs=(node_events, share_per_task(len(slots)))) as pool:
        running: dict[concurrent.futures.Future, tuple[int, int]] = {}

        def start_next(slot: int) -> None:
            if queues[slot] and not stopped:
                index = queues[slot].popleft()
                slot_options = dataclasses.replace(options, device=slots[slot])
                future = pool.submit(run_one_pair, pairs[index], work_dir, slot_options, pair_plugin, plugin_args)
                running[future] = (slot, index)

        for slot in range(len(slots)):
            start_next(slot)
        while running:
            done, _ = concurrent.futures.wait(running, timeout=STAGE_EVENT_POLL_S,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            while not node_events.empty():
                stages.node_event(node_events.get())
            for future in done:
                slot, index = running.pop(future)
                results[index] = future.result()
                stages.pair_finished(pairs[index], results[index].status == "ok")
                if on_result is not None:
                    on_result(results[index])
                stopped = stopped or (stop_on_first_crash and results[index].status == "failed")
                start_next(slot)
    return [result for result in results if result is not None]
