"""All BL/FU pairs of a run: the pair workflow split over pairs, run by a Pydra worker.

Failures are isolated per pair: when the split run stops on an error, every pair is run
again on its own in a child process against the same cache, so finished stages are reused,
the good pairs complete, and each failed pair gets one line that names the stage and the
problem.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pydra

from brainlossnet.calibration import DEFAULT_PROFILE, profile_path
from brainlossnet.geometry import CROP_SHAPE
from brainlossnet.interfaces.nifti import load_json
from brainlossnet.workflows.pair import STAGE_NODES, init_pair_wf

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


@dataclass
class PairResult:
    """What one pair produced: status, every number, and the intermediate files in the work dir."""

    pair: PairSpec
    status: str
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def init_participant_wf(
    pairs: list[PairSpec], *, options: PipelineOptions, name: str = "participant_wf"
) -> pydra.Workflow:
    """The pair workflow split over ``pairs`` (built, not run)."""
    wf = init_pair_wf(name=name, crop_shape=options.crop_shape, device=options.device, seed=options.seed)
    calibration = profile_path(options.calibration)
    wf.split(
        ("t1w_bl", "t1w_fu"),
        t1w_bl=[Path(p.t1w_bl).resolve() for p in pairs],
        t1w_fu=[Path(p.t1w_fu).resolve() for p in pairs],
    )
    wf.inputs.calibration = calibration
    return wf


@contextlib.contextmanager
def _kept_working_directory() -> Iterator[None]:
    """Pydra changes the process's working directory while it runs tasks; restore it."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


def _submit(wf: pydra.Workflow, work_dir: Path, plugin: str, nprocs: int, plugin_args: dict | None) -> None:
    worker_args = dict(plugin_args or {})
    if plugin == "cf":
        worker_args.setdefault("n_procs", nprocs)
    wf.cache_dir = work_dir
    with _kept_working_directory(), pydra.Submitter(plugin=plugin, **worker_args) as submitter:
        submitter(wf)


def _pair_result(pair: PairSpec, outputs: Any, options: PipelineOptions) -> PairResult:
    from brainlossnet.registration import MODEL_VERSION

    metrics = load_json(outputs.result)
    metrics["model_version"] = MODEL_VERSION
    metrics["stage_seconds"] = {
        stage: round(sum(float(getattr(outputs, f"{node}_s")) for node in nodes), 3)
        for stage, nodes in STAGE_NODES.items()
    }
    metrics["options"] = {"crop_shape": list(options.crop_shape), "seed": options.seed}
    files = {name: Path(str(getattr(outputs, name))) for name in INTERMEDIATE_OUTPUTS}
    return PairResult(pair=pair, status="ok", metrics=metrics, files=files)


def failure_message(error: BaseException) -> str:
    """One line naming the failed stage and the root cause of a Pydra error chain."""
    stage = None
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        found = re.search(r"Tasks? \[?'?(\w+)'?\]? raised an error", str(current))
        if found and stage is None:
            stage = found.group(1)
        current = current.__cause__ or current.__context__
    root = chain[-1]
    text = str(root).strip().splitlines()[-1] if str(root).strip() else type(root).__name__
    return f"{stage + ': ' if stage else ''}{type(root).__name__}: {text}"


def _run_one_pair(
    pair: PairSpec, work_dir: Path, options: PipelineOptions, plugin: str, plugin_args: dict | None
) -> PairResult:
    """Run a single pair (in a child process) and turn any failure into a failed result."""
    try:
        wf = init_participant_wf([pair], options=options)
        _submit(wf, work_dir, "serial" if plugin == "cf" else plugin, 1, plugin_args)
        return _pair_result(pair, wf.result(return_inputs=False)[0].output, options)
    except Exception as error:  # every failure of a pair is reported, never raised
        return PairResult(pair=pair, status="failed", message=failure_message(error))


def run_pairs(
    pairs: list[PairSpec],
    *,
    work_dir: Path,
    options: PipelineOptions,
    plugin: str = "cf",
    nprocs: int = 1,
    plugin_args: dict | None = None,
) -> list[PairResult]:
    """Run the pipeline on all pairs; ``work_dir`` is the Pydra cache (reruns reuse it).

    Returns one result per pair, in order; a failed pair has ``status == "failed"`` and a
    one-line ``message``, and never stops the others.
    """
    if not pairs:
        return []
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    wf = init_participant_wf(pairs, options=options)
    try:
        _submit(wf, work_dir, plugin, nprocs, plugin_args)
        results = wf.result(return_inputs=False)
        return [_pair_result(pair, result.output, options) for pair, result in zip(pairs, results)]
    except Exception:
        pass  # isolate below: each pair alone, finished stages come from the cache
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, nprocs), mp_context=context) as pool:
        futures = [pool.submit(_run_one_pair, pair, work_dir, options, plugin, plugin_args) for pair in pairs]
        return [future.result() for future in futures]

