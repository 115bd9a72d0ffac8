"""Entry point of the BIDS App: ``brainlossnet bids_dir output_dir {participant,group}``.

Exit codes (BIDS execution spec / sysexits): 0 every pair ok (or flagged); 1 some pair
failed in processing (its row in group_bvl.tsv says why); 64 usage error; 65 pairs failed
only because of their input data (a refused image); 66 input missing (no BIDS dataset, an
unknown participant, a filter that selects nothing, no subject with two sessions);
73 output_dir or the work dir cannot be created or written, or lie inside bids_dir;
74 writing the outputs failed with an I/O error (disk full, quota).

Subcommands (``brainlossnet demo ...``, ``train``, ``simulate``, ``calibrate``,
``slurm-script``; :data:`~brainlossnet.bids_app.cli.parser.SUBCOMMANDS`) are dispatched to
their own entry points.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib

from brainlossnet import geometry
from brainlossnet.bids_app.cli.parser import EXIT_USAGE, SUBCOMMANDS, parse_args
from brainlossnet.bids_app.derivatives import (
    PAIR_JSON_GLOB,
    OutputDirError,
    pair_prefix,
    prepare_output_dir,
    write_dataset_description,
    write_pair,
)
from brainlossnet.bids_app.group import merge_into_table, rebuild_table
from brainlossnet.bids_app.layout import (
    FilterFileError,
    InputMissingError,
    collect_sessions,
    load_bids_filters,
    open_layout,
)
from brainlossnet.bids_app.pairing import make_pairs
from brainlossnet.bids_app.progress import PairProgress, run_summary, start_run_log, stop_run_log
from brainlossnet.bids_app.reporting import sidecar_metadata, write_group_report, write_pair_report
from brainlossnet.bids_app.review import (
    crash_report_path,
    exit_status,
    refused_pair,
    review_result,
    write_crash_report,
)
from brainlossnet.bids_app.validation import validate_files
from brainlossnet.calibration import (
    fitted_for_another_model,
    fitted_for_another_parenchyma,
    fitted_parenchyma_definition,
    fitted_for_another_refinement,
    load_profile,
    profile_path,
    refinement_budget,
)
from brainlossnet.registration import REFINE_FINE_LEARNING_RATE_VOX, REFINE_FINE_STEPS, REFINE_STEPS
from brainlossnet.reports.flags import pair_warnings

LOGGER = logging.getLogger("brainlossnet")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73
EXIT_IOERR = 74

_IO_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG}


class CalibrationProfileError(ValueError):
    """The ``--calibration`` file is not a valid profile (usage error, exit status 64)."""


class OutputIOError(OutputDirError):
    """Writing into output_dir failed with an I/O error such as a full disk (exit status 74)."""


def _configure_logging(verbosity: int) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    LOGGER.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _prepare_work_dir(work_dir: Path, bids_dir: Path, output_dir: Path) -> None:
    if work_dir.resolve().is_relative_to(bids_dir.resolve()):
        raise OutputDirError(
            f"{work_dir}: work directory lies inside the BIDS dataset {bids_dir}; "
            "choose another -w/--work-dir"
        )
    if work_dir.resolve().is_relative_to(output_dir.resolve()):
        LOGGER.warning("%s: the work directory lies inside the output directory; "
                       "derivatives are easier to share without it", work_dir)
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"{work_dir}: cannot create work directory ({err.strerror})") from None


def _calibration(value: str, refinement: dict[str, Any]) -> str:
    """Check a ``--calibration`` value early; return it, as an absolute path if a file.

    A profile fitted for other weights, another refinement than the run's (``refinement``: the
    run's recorded refinement options) or another parenchyma definition than this release's
    is used, with a warning.
    """
    from brainlossnet.parenchyma import PARENCHYMA_DEFINITION
    from brainlossnet.registration import MODEL_VERSION

    try:
        path = profile_path(value)
    except FileNotFoundError as err:
        raise InputMissingError(str(err)) from None
    try:
        profile = load_profile(path)
    except ValueError as err:
        raise CalibrationProfileError(str(err)) from None
    if fitted_for_another_model(profile, MODEL_VERSION):
        LOGGER.warning("calibration profile %s was fitted for model %s, not for the installed %s: "
                       "its constants may not hold; refit with 'brainlossnet calibrate'",
                       profile.name, profile.model, MODEL_VERSION)
    if fitted_for_another_refinement(profile, refinement):
        LOGGER.warning("calibration profile %s was fitted for --refine-steps %d --refine-fine-steps %d (step %g), "
                       "not for this run's %d and %d (step %g): its m_scale does not hold (docs/registration.md); "
                       "use a profile fitted for these settings or refit with 'brainlossnet calibrate'",
                       profile.name, *refinement_budget(profile.fit["refinement"]), *refinement_budget(refinement))
    if fitted_for_another_parenchyma(profile, PARENCHYMA_DEFINITION):
        LOGGER.warning("calibration profile %s was fitted on parenchyma maps of another definition (%s), not this "
                       "release's %s: its m_scale does not hold; refit with 'brainlossnet calibrate'",
                       profile.name, fitted_parenchyma_definition(profile), PARENCHYMA_DEFINITION)
    return str(path) if Path(value).is_file() else value


def run_participant(opts: argparse.Namespace) -> int:
    """Participant level: compute every selected pair and write its derivatives.

    Parameters
    ----------
    opts : argparse.Namespace
        From :func:`brainlossnet.bids_app.cli.parser.parse_args`.

    Returns
    -------
    int
        0 when no pair failed, 65 when pairs failed only because of their input data,
        1 when some pair failed in processing (:func:`review.exit_status`).

    Raises
    ------
    InputMissingError, FilterFileError, OutputDirError, OutputIOError
        Mapped to exit codes 66, 64, 73 and 74 by :func:`main`.
    """
    layout = open_layout(opts.bids_dir, opts.participant_label)
    filters = load_bids_filters(opts.bids_filter_file) if opts.bids_filter_file else {}
    refine_steps = REFINE_STEPS if opts.refine_steps is None else opts.refine_steps
    refine_fine_steps = REFINE_FINE_STEPS if opts.refine_fine_steps is None else opts.refine_fine_steps
    refinement = {"refine_steps": refine_steps, "refine_fine_steps": refine_fine_steps,
                  "refine_fine_learning_rate_vox": REFINE_FINE_LEARNING_RATE_VOX}
    calibration = _calibration(opts.calibration, refinement)
    sessions = collect_sessions(layout, opts.participant_label, opts.session_label, filters)
    pairs, skipped = make_pairs(sessions, opts.pairing)
    for subject in skipped:
        LOGGER.warning("sub-%s skipped: %s", subject.subject, subject.reason)
    if not pairs:
        raise InputMissingError(
            f"{opts.bids_dir}: no selected participant has two sessions with a T1w image"
        )
    from brainlossnet.workflows.participant import PairResult, PipelineOptions, run_pairs

    prepare_output_dir(opts.output_dir, opts.bids_dir)
    _prepare_work_dir(opts.work_dir, opts.bids_dir, opts.output_dir)
    started = time.monotonic()
    LOGGER.info("log file %s", start_run_log(opts.output_dir, "participant"))
    LOGGER.info("%d pair(s) of %d participant(s), pairing %r; work dir %s",
                len(pairs), len({p.baseline.subject for p in pairs}), opts.pairing, opts.work_dir)
    options = PipelineOptions(device=opts.device, calibration=calibration,
                              crop_shape=opts.crop_shape, seed=opts.seed,
                              allow_skull_stripped=opts.allow_skull_stripped, **refinement,
                              sharpness_matching=opts.sharpness_matching)
    specs = [pair.spec for pair in pairs]
    problems = validate_files([p for s in specs for p in (s.t1w_bl, s.t1w_fu)], opts.nprocs)
    for line in problems.values():
        LOGGER.error("refused: %s", line)
    refused = {spec: result for spec in specs if (result := refused_pair(spec, problems))}
    to_run = [] if refused and opts.stop_on_first_crash else [s for s in specs if s not in refused]
    extra = {"stop_on_first_crash": True} if opts.stop_on_first_crash else {}
    try:
        with PairProgress(len(to_run)) as progress:
            results = run_pairs(to_run, work_dir=opts.work_dir, options=options, plugin=opts.plugin,
                                nprocs=opts.nprocs, plugin_args=opts.plugin_args, gpus=opts.gpus,
                                max_gpu_tasks_per_device=opts.max_gpu_tasks_per_device,
                                on_result=progress.update, on_stage=progress.stage, **extra) if to_run else []
    except Exception as err:  # the workflow engine itself failed: every pair failed
        LOGGER.exception("the workflow did not run")
        results = [PairResult(pair=spec, status="failed", message=f"workflow error: {_one_line(err)}",
                              metrics={}, files={}) for spec in to_run]
    by_spec = {**refused, **{result.pair: result for result in results}}

    recorded: dict[str, Any] = {
        "pairing": opts.pairing, "device": opts.device, "calibration": calibration,
        "crop_shape": list(opts.crop_shape), "seed": opts.seed,
        "allow_skull_stripped": opts.allow_skull_stripped, **refinement,
        "sharpness_matching": opts.sharpness_matching,
    }
    records, warnings = [], []
    n_not_run = 0
    try:
        write_dataset_description(opts.output_dir, opts.bids_dir)
        for pair, spec in zip(pairs, specs):
            name = pair_prefix(spec.subject, spec.session_bl, spec.session_fu)
            result = by_spec.get(spec)
            if result is None and opts.stop_on_first_crash:
                n_not_run += 1
                LOGGER.warning("%s: not run (--stop-on-first-crash)", name)
                continue
            if result is None:
                result = PairResult(pair=spec, status="failed", metrics={}, files={},
                                    message="the workflow returned no result for this pair")
            if result.status == "ok":
                sidecars = (layout.get_metadata(str(spec.t1w_bl)), layout.get_metadata(str(spec.t1w_fu)))
                voxel_sizes_mm = tuple(geometry.voxel_sizes_mm(nib.load(str(path)).affine)
                                       for path in (spec.t1w_bl, spec.t1w_fu))
                result = review_result(result, sidecars=sidecars, voxel_sizes_mm=voxel_sizes_mm,
                                       crop_shape=opts.crop_shape)
            if result.status == "ok":
                LOGGER.info("%s: BVL %s %%", name, result.metrics.get("bvl"))
            if result.message and result.status != "failed":
                LOGGER.warning("%s %s: %s", name, result.status, result.message)
            if result.status == "failed":
                report = write_crash_report(opts.output_dir, result, recorded, opts.work_dir)
                LOGGER.error("%s failed: %s (crash report: %s)", name, result.message, report)
            else:
                crash_report_path(opts.output_dir, spec).unlink(missing_ok=True)
            records.append(write_pair(opts.output_dir, pair, result, bids_dir=opts.bids_dir,
                                      options=recorded, save_intermediates=opts.save_intermediates))
            metadata = [sidecar_metadata(layout, side.t1w) for side in (pair.baseline, pair.followup)]
            write_pair_report(opts.output_dir, records[-1], result.files, *metadata)
            warnings.append(pair_warnings(records[-1], *metadata))
        table = merge_into_table(opts.output_dir, records)
    except OSError as err:
        kind = OutputIOError if err.errno in _IO_ERRNOS else OutputDirError
        raise kind(f"{opts.output_dir}: cannot write outputs ({_one_line(err)})") from err
    LOGGER.info("table %s; reports %s", table, opts.output_dir)
    if n_not_run:
        LOGGER.warning("%d pair(s) not run (--stop-on-first-crash)", n_not_run)
    for line in run_summary(records, warnings, wall_s=time.monotonic() - started,
                            skipped=[f"sub-{s.subject}: {s.reason}" for s in skipped]):
        LOGGER.info("%s", line)
    return exit_status((record["status"], record["message"]) for record in records)


def run_group(opts: argparse.Namespace) -> int:
    """Group level: rebuild ``group_bvl.tsv`` from the per-pair results in output_dir.

    Returns
    -------
    int
        0, or 1 when some result file could not be read (it is left out and named
        in the log).

    Raises
    ------
    InputMissingError
        If output_dir holds no per-pair result.
    """
    if opts.participant_label or opts.session_label:
        LOGGER.info("the group level gathers every pair in output_dir; label filters are ignored")
    if not any(opts.output_dir.glob(PAIR_JSON_GLOB)):
        raise InputMissingError(f"{opts.output_dir}: no per-pair results; "
                                "run the participant level first")
    LOGGER.info("log file %s", start_run_log(opts.output_dir, "group"))
    table, n_rows, problems = rebuild_table(opts.output_dir)
    for problem in problems:
        LOGGER.error("%s", problem)
    LOGGER.info("%s: %d pair(s)", table, n_rows)
    report = write_group_report(opts.output_dir, bids_dir=opts.bids_dir, problems=problems,
                                reference_column=opts.reference_column,
                                reference_table=opts.reference_table)
    LOGGER.info("group report %s", report)
    return EXIT_FAILURE if problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the BIDS App (or a subcommand) and return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``). A first
        argument ``demo`` or ``train`` runs that subcommand with the rest.

    Returns
    -------
    int
        Exit code, see the module docstring.
    """
    os.environ["NO_ET"] = "1"  # no Pydra/etelemetry version check over the network
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        entry = importlib.import_module(SUBCOMMANDS[args[0]][0])
        return int(entry.main(args[1:]) or 0)
    try:
        opts = parse_args(args)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code is None else int(exit_.code)
    _configure_logging(opts.verbose)
    try:
        if opts.analysis_level == "group":
            return run_group(opts)
        return run_participant(opts)
    except InputMissingError as err:
        LOGGER.error("%s", err)
        return EXIT_NOINPUT
    except (FilterFileError, CalibrationProfileError) as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    except OutputIOError as err:
        LOGGER.error("%s", err)
        return EXIT_IOERR
    except OutputDirError as err:
        LOGGER.error("%s", err)
        return EXIT_CANTCREAT
    finally:
        stop_run_log()
