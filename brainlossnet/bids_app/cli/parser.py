"""Command-line parser of the BIDS App, laid out like fMRIPrep's.

``brainlossnet bids_dir output_dir {participant,group} [options]`` follows the BIDS Apps
convention. Usage errors exit with code 64 (``EX_USAGE`` of the BIDS execution spec)
instead of argparse's 2. The subcommands of :data:`SUBCOMMANDS` (``brainlossnet demo
...``) are dispatched by :func:`brainlossnet.bids_app.run.main` before this parser sees
the arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Callable, NoReturn

from brainlossnet import __version__
from brainlossnet.bids_app.pairing import PAIRING_MODES
from brainlossnet.cpus import available_cpus
from brainlossnet.workflows.device_slots import parse_gpu_ids

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("brainlossnet.bids_app.demo", "build a synthetic dataset with known atrophy and run on it"),
    "simulate": ("brainlossnet.bids_app.simulate", "make BL/FU pairs with known truth from a real scan"),
    "calibrate": ("brainlossnet.bids_app.calibrate", "fit a calibration profile against a reference"),
    "train": ("brainlossnet.bids_app.cli.train", "train the registration network"),
    "slurm-script": ("brainlossnet.bids_app.slurm_script", "print an sbatch array script for the container"),
}
"""First-argument subcommands: the module whose ``main(argv)`` runs each, and what it does."""

EXIT_USAGE = 64
"""Exit status for a command-line usage error (sysexits ``EX_USAGE``)."""

PLUGINS = ("cf", "slurm", "serial")
DEFAULT_CROP_SHAPE = (176, 208, 208)

_LABEL = re.compile(r"^[a-zA-Z0-9]+$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


class BidsAppArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with status 64 instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage()
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _label(prefix: str):
    """Return an argparse type that strips an optional BIDS entity prefix."""

    def parse(value: str) -> str:
        label = value[len(prefix):] if value.startswith(prefix) else value
        if not _LABEL.match(label):
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a BIDS label (letters and digits, optionally "
                f"prefixed with {prefix!r})"
            )
        return label

    parse.__name__ = f"{prefix}label"
    return parse


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not one of auto, cpu, cuda, cuda:N"
        )
    return value


def _gpu_ids(value: str) -> tuple[int, ...]:
    try:
        return parse_gpu_ids(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer not below ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} is below {minimum}")
        return number

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _json_object(value: str) -> dict:
    """Parse ``--plugin-args``: a JSON object given inline or as a path to a JSON file."""
    text = Path(value).read_text() if os.path.isfile(value) else value
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a JSON object nor a path to a JSON file ({err})"
        ) from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"{value!r} is not a JSON object")
    return parsed


def get_parser() -> argparse.ArgumentParser:
    """Build the BIDS App parser.

    Returns
    -------
    argparse.ArgumentParser
        Parser whose namespace holds ``bids_dir``, ``output_dir`` (absolute
        :class:`~pathlib.Path`), ``analysis_level``, ``participant_label`` and
        ``session_label`` (lists of labels without prefix, or None),
        ``bids_filter_file`` (Path or None), ``pairing``, ``work_dir`` (absolute Path),
        ``nprocs``, ``plugin``, ``plugin_args`` (dict or None), ``sbatch_args``,
        ``device``, ``gpus`` (tuple of ints or None), ``max_gpu_tasks_per_device``,
        ``calibration``, ``save_intermediates``, ``seed``, ``crop_shape``
        (tuple of three ints), ``reference_column``, ``reference_table``,
        ``stop_on_first_crash``, ``allow_skull_stripped`` and ``verbose``.
    """
    parser = BidsAppArgumentParser(
        prog="brainlossnet",
        description=(
            "BrainLossNet: percent brain volume change (BVL) between pairs of T1w "
            "sessions of a BIDS dataset."
        ),
        epilog=(
            "Subcommands (each with --help): "
            + "; ".join(f"'brainlossnet {name}' ({text})" for name, (_, text) in SUBCOMMANDS.items())
            + ". "
            "Exit codes: 0 all pairs ok, 1 some pair failed in processing, 64 usage error, "
            "65 some pair failed because of its input data, 66 input missing, "
            "73 output cannot be created, 74 output write error (disk full). See docs/usage.md."
        ),
    )
    parser.add_argument(
        "bids_dir", type=lambda p: Path(p).absolute(),
        help="root of the BIDS dataset (holds dataset_description.json)",
    )
    parser.add_argument(
        "output_dir", type=lambda p: Path(p).absolute(),
        help="derivatives folder to write (must not lie inside bids_dir, except "
        "under bids_dir/derivatives/)",
    )
    parser.add_argument(
        "analysis_level", choices=("participant", "group"),
        help="'participant': compute every selected pair; 'group': rebuild "
        "group_bvl.tsv from the per-pair results already in output_dir",
    )
    parser.add_argument("--version", action="version", version=f"brainlossnet {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more log messages (-v: debug)",
    )

    select = parser.add_argument_group("Selecting inputs")
    select.add_argument(
        "--participant-label", "--participant_label", nargs="+", type=_label("sub-"),
        metavar="LABEL", default=None,
        help="participants to process, with or without 'sub-' (default: all)",
    )
    select.add_argument(
        "--session-label", "--session_label", nargs="+", type=_label("ses-"),
        metavar="LABEL", default=None,
        help="only these sessions, with or without 'ses-' (default: all)",
    )
    select.add_argument(
        "--bids-filter-file", type=lambda p: Path(p).absolute(), metavar="FILE",
        default=None,
        help="JSON file in fMRIPrep's format selecting the T1w images, e.g. "
        '{"t1w": {"acquisition": "mprage", "reconstruction": null}}; null means '
        'the entity must be absent, "*" that it must be present',
    )
    select.add_argument(
        "--pairing", choices=PAIRING_MODES, default="consecutive",
        help="which session pairs: each with the next ('consecutive'), the first with "
        "each later one ('baseline'), or every ordered pair ('all'); default: consecutive",
    )

    perf = parser.add_argument_group("Execution")
    perf.add_argument(
        "-w", "--work-dir", type=lambda p: Path(p).absolute(),
        default=Path("work").absolute(),
        help="Pydra cache; rerunning with the same work dir reuses finished stages "
        "(default: ./work in the current directory)",
    )
    perf.add_argument(
        "--nprocs", "--n-cpus", type=_positive_int, default=available_cpus(),
        help="worker processes for the 'cf' plugin (default: CPUs available)",
    )
    perf.add_argument(
        "--plugin", choices=PLUGINS, default="cf",
        help="Pydra worker: 'cf' (processes on this machine), 'slurm' (one job per "
        "task; the work dir must be on a shared filesystem), 'serial'; default: cf",
    )
    perf.add_argument(
        "--plugin-args", type=_json_object, default=None, metavar="JSON",
        help="extra keyword arguments of the Pydra worker, as a JSON object or a path "
        "to a JSON file, e.g. '{\"max_jobs\": 50}'",
    )
    perf.add_argument(
        "--sbatch-args", default=None, metavar="ARGS",
        help="arguments added to every sbatch call (plugin 'slurm' only), "
        "written with '=' because the value starts with '-': "
        "--sbatch-args='--partition=gpu --gres=gpu:1 --time=1:00:00'",
    )
    perf.add_argument(
        "--device", type=_device, default="auto",
        help="torch device of the network stages: auto (default), cpu, cuda or cuda:N",
    )
    perf.add_argument(
        "--stop-on-first-crash", action="store_true",
        help="start no further pair after the first failed one (input refused or stage "
        "crashed); pairs already running finish; exit nonzero",
    )
    perf.add_argument(
        "--gpus", type=_gpu_ids, default=None, metavar="IDS",
        help="spread the pairs over these CUDA devices, e.g. 0,1 (plugin 'cf'; "
        "--device auto or cuda); see docs/scale_out.md",
    )
    perf.add_argument(
        "--max-gpu-tasks-per-device", type=_positive_int, default=1, metavar="K",
        help="with --gpus: at most K pairs on one GPU at the same time (default 1); "
        "--nprocs still caps the total",
    )

    method = parser.add_argument_group("Method")
    method.add_argument(
        "--calibration", default="default", metavar="PROFILE",
        help="calibration profile (m_TIV, m_scale): a name shipped in the package or a "
        "path to a profile JSON (default: 'default')",
    )
    method.add_argument(
        "--refine-steps", type=_non_negative_int, default=None, metavar="N",
        help="test-time refinement of the registration on each pair: N optimiser steps on "
        "one velocity for both directions (default: the setting chosen for the shipped "
        "weights, see docs/registration.md; about 32 s of one CPU core per full-size pair; "
        "0 = the network alone)",
    )
    method.add_argument(
        "--refine-fine-steps", type=_non_negative_int, default=None, metavar="N",
        help="further refinement steps with the similarity at full resolution, after the "
        "--refine-steps ones (default: 4, of initial step 0.05 half-resolution voxels; each "
        "costs 10-16 times a half-resolution step on a CPU). The 'default' calibration profile "
        "was fitted with 4: use 0 with '--calibration pooled', or calibrate for your choice "
        "(docs/registration.md)",
    )
    method.add_argument(
        "--no-sharpness-matching", dest="sharpness_matching", action="store_false",
        help="register the two scans as they are, without first blurring the sharper one to "
        "the other's sharpness (on by default: a sharpness difference between the scans, as "
        "from another scanner or protocol, otherwise reads as volume change; "
        "docs/registration.md). For comparison with results made before it existed",
    )
    method.add_argument(
        "--seed", type=int, default=0,
        help="random seed; the same inputs and options give the same numbers (default: 0)",
    )
    method.add_argument(
        "--crop-shape", nargs=3, type=_positive_int, metavar=("X", "Y", "Z"),
        default=DEFAULT_CROP_SHAPE,
        help="advanced: crop box in 1 mm voxels (default: 176 208 208); changing it "
        "invalidates the calibration and is meant for tests on small synthetic heads",
    )
    method.add_argument(
        "--allow-skull-stripped", action="store_true",
        help="compute skull-stripped scans (refused by default) without distortion "
        "correction (the TIV cannot be measured); their rows are flagged",
    )

    outputs = parser.add_argument_group("Outputs")
    outputs.add_argument(
        "--save-intermediates", action="store_true",
        help="also write the halfway images, parenchyma fraction maps, intracranial masks and "
        "both displacement fields of each pair",
    )
    outputs.add_argument(
        "--reference-column", default=None, metavar="NAME",
        help="group level: a column of reference BVL values in %% per pair (e.g. "
        "siena_pbvc) compared with brainlossnet in the group report (scatter, "
        "Bland-Altman, ICC); read from --reference-table, else from group_bvl.tsv",
    )
    outputs.add_argument(
        "--reference-table", type=lambda p: Path(p).absolute(), default=None, metavar="FILE",
        help="TSV with participant_id, session_bl, session_fu and the reference column",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the BIDS App arguments.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        As described in :func:`get_parser`, with ``crop_shape`` as a tuple and
        ``sbatch_args`` folded into ``plugin_args``.

    Raises
    ------
    SystemExit
        Status 64 on a usage error, 0 after ``--help`` or ``--version``.
    """
    parser = get_parser()
    opts = parser.parse_args(argv)
    opts.crop_shape = tuple(opts.crop_shape)
    if opts.sbatch_args is not None:
        if opts.plugin != "slurm":
            parser.error("--sbatch-args needs --plugin slurm")
        opts.plugin_args = {**(opts.plugin_args or {}), "sbatch_args": opts.sbatch_args}
    if opts.gpus is not None:
        if opts.plugin == "slurm":
            parser.error("--gpus needs --plugin cf or serial (under Slurm, request GPUs "
                         "with --sbatch-args='--gres=gpu:1')")
        if opts.device not in ("auto", "cuda"):
            parser.error(f"--gpus cannot be combined with --device {opts.device}")
    return opts
