"""``brainlossnet slurm-script``: print a Slurm array script that runs the App in its Apptainer image.

Pydra's slurm worker runs the host's Python, so it cannot enter a container. The
container way onto a cluster is therefore one array task per participant, each running
``brainlossnet ... participant --participant-label X`` with the ``cf`` worker inside the
image, and the group level as a job that waits for the whole array
(``--dependency=afterany``: it runs even when some participant failed, and lists that
pair's failure in the table).

The printed script is one file with two modes. ``bash script.sh`` (on a login node)
creates the log folder, submits the script itself as the array and then the group job;
under Slurm (``SLURM_ARRAY_TASK_ID`` set) it runs the participant of its array index.
The participants are listed when the script is written: those with at least two sessions
with a T1w (the App's own query), or with ``--array-from-participants`` every
``participant_id`` of ``participants.tsv`` (no indexing, for very large datasets).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from brainlossnet import __version__
from brainlossnet.bids_app.cli.parser import EXIT_USAGE
from brainlossnet.bids_app.layout import InputMissingError, collect_sessions, open_layout
from brainlossnet.bids_app.pairing import PAIRING_MODES, make_pairs

EXIT_NOINPUT = 66

CONTAINER_BIDS_DIR = "/data"
CONTAINER_OUTPUT_DIR = "/out"
CONTAINER_WORK_DIR = "/work"
"""Where the dataset, the derivatives and the Pydra cache are bound inside the image."""


def participants_with_pairs(
    bids_dir: Path, participant_labels: list[str] | None = None, pairing: str = "consecutive"
) -> list[str]:
    """Labels (without ``sub-``) of the participants that have at least one BL/FU pair, in order."""
    layout = open_layout(bids_dir, participant_labels)
    pairs, _ = make_pairs(collect_sessions(layout, participant_labels), pairing)
    return list(dict.fromkeys(pair.baseline.subject for pair in pairs))


def participants_from_tsv(bids_dir: Path) -> list[str]:
    """Labels (without ``sub-``) of every row of ``participants.tsv``, in file order."""
    path = bids_dir / "participants.tsv"
    if not path.is_file():
        raise InputMissingError(f"{path}: not found (needed by --array-from-participants)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and "participant_id" not in rows[0]:
        raise InputMissingError(f"{path}: no participant_id column")
    return [row["participant_id"].removeprefix("sub-") for row in rows if row["participant_id"]]


def render_script(
    *,
    participants: list[str],
    bids_dir: Path,
    output_dir: Path,
    work_dir: Path,
    image: Path,
    log_dir: Path,
    nv: bool = False,
    binds: list[str] | None = None,
    cpus_per_task: int = 4,
    mem: str = "16G",
    time_limit: str = "04:00:00",
    max_parallel: int | None = None,
    sbatch_options: list[str] | None = None,
    app_args: list[str] | None = None,
    container_cmd: str = "apptainer",
) -> str:
    """Text of the sbatch array script (see the module docstring); paths must be absolute.

    Parameters
    ----------
    participants
        One array task per label, in this order (array index = position).
    nv
        Add ``--nv`` (GPU nodes: the host's NVIDIA driver inside the container).
    binds
        Extra ``--bind`` specifications (e.g. a shared scratch or a license folder).
    cpus_per_task, mem, time_limit
        Resources of every array task; ``--nprocs`` inside is ``SLURM_CPUS_PER_TASK``.
    max_parallel
        At most this many array tasks at once (``--array=0-N%max_parallel``).
    sbatch_options
        Extra ``#SBATCH`` lines, e.g. ``--partition=gpu`` or ``--gres=gpu:1``.
    app_args
        Extra arguments of the participant level (e.g. ``--device cuda``).
    """
    if not participants:
        raise ValueError("no participant to run")
    array = f"0-{len(participants) - 1}" + (f"%{max_parallel}" if max_parallel else "")
    q = shlex.quote
    exec_options = ["--cleanenv"] + (["--nv"] if nv else []) + [
        f"--bind {q(f'{bids_dir}:{CONTAINER_BIDS_DIR}:ro')}",
        f"--bind {q(f'{output_dir}:{CONTAINER_OUTPUT_DIR}')}",
        f"--bind {q(f'{work_dir}:{CONTAINER_WORK_DIR}')}",
    ] + [f"--bind {q(bind)}" for bind in binds or []]
    header = [
        "#!/bin/bash",
        "#SBATCH --job-name=brainlossnet",
        f"#SBATCH --array={array}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --mem={mem}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={log_dir}/brainlossnet_%A_%a.out",
        *[f"#SBATCH {option}" for option in sbatch_options or []],
    ]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    extra = " ".join(q(arg) for arg in app_args or [])
    body = f"""
# Written by brainlossnet {__version__} slurm-script on {stamp}.
# Submit everything with:   bash {{this file}}
# (the array: one participant per task inside the image; then the group level, which
# waits for the whole array with --dependency=afterany and rebuilds group_bvl.tsv).
set -euo pipefail

CONTAINER={q(container_cmd)}
IMAGE={q(str(image))}
BIDS_DIR={q(str(bids_dir))}
OUTPUT_DIR={q(str(output_dir))}
WORK_DIR={q(str(work_dir))}   # Pydra cache: shared storage, reused by reruns
LOG_DIR={q(str(log_dir))}
PARTICIPANTS=({" ".join(q(label) for label in participants)})
EXEC_OPTIONS=({" ".join(exec_options)})

if [ -z "${{SLURM_ARRAY_TASK_ID:-}}" ]; then
    mkdir -p "$OUTPUT_DIR" "$WORK_DIR" "$LOG_DIR"
    array_id=$(sbatch --parsable "$(realpath "$0")")
    array_id=${{array_id%%;*}}
    group_cmd=$(printf '%q ' "$CONTAINER" exec "${{EXEC_OPTIONS[@]}}" "$IMAGE" \\
        brainlossnet {CONTAINER_BIDS_DIR} {CONTAINER_OUTPUT_DIR} group)
    group_id=$(sbatch --parsable --dependency=afterany:"$array_id" --job-name=brainlossnet-group \\
        --cpus-per-task=1 --mem=2G --time=00:30:00 --output="$LOG_DIR/brainlossnet-group_%j.out" \\
        --wrap="$group_cmd")
    echo "submitted array job $array_id (${{#PARTICIPANTS[@]}} participants) and group job ${{group_id%%;*}}"
    exit 0
fi

participant=${{PARTICIPANTS[$SLURM_ARRAY_TASK_ID]}}
echo "brainlossnet: sub-$participant on $(hostname), array task $SLURM_ARRAY_TASK_ID"
exec "$CONTAINER" exec "${{EXEC_OPTIONS[@]}}" "$IMAGE" \\
    brainlossnet {CONTAINER_BIDS_DIR} {CONTAINER_OUTPUT_DIR} participant --participant-label "$participant" \\
    -w {CONTAINER_WORK_DIR} --nprocs "${{SLURM_CPUS_PER_TASK:-1}}"{" " + extra if extra else ""}
"""
    return "\n".join(header) + "\n" + body


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainlossnet slurm-script",
        description="Print an sbatch array script that runs the participant level in the "
                    "Apptainer image, one participant per array task, and the group level "
                    "as a dependent job. Save it and submit with 'bash FILE'. See docs/scale_out.md.",
    )
    parser.add_argument("bids_dir", type=lambda p: Path(p).absolute())
    parser.add_argument("output_dir", type=lambda p: Path(p).absolute())
    parser.add_argument("--image", type=lambda p: Path(p).absolute(), required=True,
                        help="the Apptainer/Singularity image (.sif) on storage every node reads")
    parser.add_argument("-w", "--work-dir", type=lambda p: Path(p).absolute(), required=True,
                        help="Pydra cache on shared storage (reruns reuse it)")
    parser.add_argument("--log-dir", type=lambda p: Path(p).absolute(), default=None,
                        help="Slurm output files (default: WORK_DIR/slurm-logs)")
    parser.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL",
                        help="only these participants (with or without 'sub-')")
    parser.add_argument("--pairing", choices=PAIRING_MODES, default="consecutive",
                        help="passed to the App; also decides who has a pair")
    parser.add_argument("--array-from-participants", action="store_true",
                        help="one task per row of participants.tsv instead of per participant "
                             "with two T1w sessions (no dataset indexing)")
    parser.add_argument("--nv", action="store_true", help="GPU nodes: run the container with --nv")
    parser.add_argument("--bind", action="append", default=[], metavar="SPEC",
                        help="extra bind mount, e.g. /scratch:/scratch (repeatable)")
    parser.add_argument("--cpus-per-task", type=int, default=4)
    parser.add_argument("--mem", default="16G")
    parser.add_argument("--time", default="04:00:00")
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="at most this many array tasks at once")
    parser.add_argument("--sbatch-option", action="append", default=[], metavar="OPT",
                        help="extra #SBATCH option, e.g. --sbatch-option=--partition=gpu (repeatable)")
    parser.add_argument("--container-cmd", default="apptainer", choices=("apptainer", "singularity"))
    parser.epilog = ("Arguments after '--' go to the participant level of every array task, "
                     "e.g. '-- --device cuda --crop-shape 176 208 208'.")
    return parser


def main(argv: list[str]) -> int:
    """Print the script to stdout; return 0, 64 on a usage error, 66 if no participant is found."""
    app_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code in (None, 0) else EXIT_USAGE
    labels = [label.removeprefix("sub-") for label in args.participant_label] if args.participant_label else None
    try:
        if args.array_from_participants:
            participants = participants_from_tsv(args.bids_dir)
            if labels:
                participants = [label for label in participants if label in labels]
        else:
            participants = participants_with_pairs(args.bids_dir, labels, args.pairing)
    except InputMissingError as err:
        print(f"brainlossnet slurm-script: {err}", file=sys.stderr)
        return EXIT_NOINPUT
    if not participants:
        print(f"brainlossnet slurm-script: {args.bids_dir}: no participant to run", file=sys.stderr)
        return EXIT_NOINPUT
    if args.pairing != "consecutive":
        app_args = ["--pairing", args.pairing, *app_args]
    print(render_script(
        participants=participants, bids_dir=args.bids_dir, output_dir=args.output_dir,
        work_dir=args.work_dir, image=args.image, log_dir=args.log_dir or args.work_dir / "slurm-logs",
        nv=args.nv, binds=args.bind, cpus_per_task=args.cpus_per_task, mem=args.mem,
        time_limit=args.time, max_parallel=args.max_parallel, sbatch_options=args.sbatch_option,
        app_args=app_args, container_cmd=args.container_cmd,
    ), end="")
    return 0
