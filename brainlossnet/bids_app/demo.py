"""``brainlossnet demo OUTDIR``: run the app on a synthetic BIDS dataset with known atrophy.

The demo writes ``OUTDIR/bids``, a small valid BIDS dataset of synthetic T1w head scans
(:mod:`brainlossnet.phantom`): subjects with two sessions each and a prescribed loss of
brain parenchyma between them (different per subject), and one subject with a single
session, which the app reports as skipped. The label-derived truth of every pair goes
to ``OUTDIR/truth.tsv``, beside the BIDS tree and not inside it. The participant level
then runs on the dataset (derivatives in ``OUTDIR/derivatives``, Pydra cache in
``OUTDIR/work`` unless ``-w`` says otherwise; a rerun reuses the dataset and the cache),
and the estimated BVL is printed next to the truth.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainlossnet import __version__, phantom

TRUTH_COLUMNS = (
    "participant_id",
    "session_bl",
    "session_fu",
    "true_dbpv_pct",
    "true_dtiv_pct",
    "requested_dbpv_pct",
    "true_bpv_bl_ml",
    "true_tiv_bl_ml",
)
"""Columns of the truth table: keys as in ``group_bvl.tsv`` (``sub-`` prefix on the
participant, bare session labels), true percent changes of parenchyma and TIV."""

SIDECAR = {
    "Manufacturer": "Siemens",
    "ManufacturersModelName": "Prisma_fit",
    "MagneticFieldStrength": 3,
    "RepetitionTime": 2.3,
    "InversionTime": 0.9,
    "EchoTime": 0.00296,
    "FlipAngle": 9,
    "PulseSequenceType": "MPRAGE",
    "SeriesDescription": "T1w MPRAGE simulated by brainlossnet.phantom (synthetic, not a scan)",
}
"""Acquisition metadata of every demo image: one protocol (a 3 T MPRAGE), as the method
requires for both sessions of a subject; the images themselves are simulated."""

_FIRST_VISIT = datetime(2023, 3, 14, 9, 12, 0)


def _atrophy_pcts(n_subjects: int) -> np.ndarray:
    """Prescribed parenchyma change per longitudinal subject: -0.5 % ... -1.5 %."""
    if n_subjects == 1:
        return np.array([-1.0])
    return np.linspace(-0.5, -1.5, n_subjects)


def _write_image(path: Path, head: phantom.SyntheticHead, acquired: datetime) -> None:
    """Write one T1w image as int16 with a scanner-like header, and its JSON sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(head.image_int16(), head.affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header.set_qform(head.affine, code=1)  # scanner coordinates
    header.set_sform(head.affine, code=1)
    header["descrip"] = b"brainlossnet phantom MPRAGE"
    nib.save(image, path)
    sidecar = dict(SIDECAR, AcquisitionDateTime=acquired.isoformat(timespec="microseconds"))
    sidecar_path = path.with_name(path.name.replace(".nii.gz", ".json"))
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")


def _write_tsv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build_demo_dataset(
    bids_dir: Path, *, n_subjects: int = 2, seed: int = 0, scale: float = 1.0
) -> pd.DataFrame:
    """Write a small BIDS dataset of synthetic heads with known atrophy.

    Subjects ``sub-01`` ... ``sub-<n_subjects>`` have sessions ``ses-01`` and ``ses-02``
    a year apart, the second with parenchyma loss prescribed from -0.5 % to -1.5 %
    (see ``phantom.make_pair``: own noise, bias, gain and a small repositioning), and
    one more subject has ``ses-01`` only. Every subject's second image is stored in LAS
    orientation and the others in RAS, so that a reader must honour the affine.

    Parameters
    ----------
    bids_dir
        Dataset root; created, must not exist or be empty.
    n_subjects
        Number of subjects with two sessions (at least 1).
    seed
        Seeds the subjects' anatomy, position, contrast and noise.
    scale
        Head size relative to an adult (0.5 for a fast, half-size dataset).

    Returns
    -------
    pandas.DataFrame
        One row per pair, columns ``TRUTH_COLUMNS``: true percent changes of the
        parenchyma and of the TIV, measured from the phantoms' label fractions.
    """
    bids_dir = Path(bids_dir)
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if bids_dir.exists() and any(bids_dir.iterdir()):
        raise FileExistsError(f"{bids_dir}: exists and is not empty; give a new directory")
    bids_dir.mkdir(parents=True, exist_ok=True)
    (bids_dir / "dataset_description.json").write_text(json.dumps({
        "Name": "brainlossnet demo: synthetic T1w heads with known atrophy",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{
            "Name": "brainlossnet",
            "Version": __version__,
            "Description": f"brainlossnet.bids_app.demo.build_demo_dataset(n_subjects={n_subjects}, "
                           f"seed={seed}, scale={scale})",
        }],
    }, indent=2) + "\n")
    (bids_dir / "README").write_text(
        "Synthetic T1w head images made by brainlossnet.phantom (no real person, no scanner).\n"
        "Subjects with two sessions lose a prescribed fraction of brain parenchyma between them;\n"
        "the true changes are kept outside this dataset (truth.tsv next to it). The last\n"
        "subject has one session only.\n"
    )
    rng = np.random.default_rng([int(seed), 7])
    n_total = n_subjects + 1
    width = max(2, len(str(n_total)))
    participants, truth = [], []
    for number, atrophy_pct in enumerate([*_atrophy_pcts(n_subjects), None], start=1):
        subject = f"{number:0{width}d}"
        subject_seed = 1000 * int(seed) + number
        days, minutes = int(rng.integers(0, 60)), int(rng.integers(0, 480))
        first = _FIRST_VISIT + timedelta(days=days, minutes=minutes)
        if atrophy_pct is None:
            heads = [phantom.make_head(subject_seed, scale=scale)]
        else:
            pair = phantom.make_pair(subject_seed, atrophy_pct=float(atrophy_pct), scale=scale)
            heads = [pair.bl, pair.fu.reoriented("LAS")]
            truth.append({
                "participant_id": f"sub-{subject}",
                "session_bl": "01",
                "session_fu": "02",
                "true_dbpv_pct": pair.true_dbpv_pct,
                "true_dtiv_pct": pair.true_dtiv_pct,
                "requested_dbpv_pct": float(atrophy_pct),
                "true_bpv_bl_ml": pair.bl.parenchyma_ml,
                "true_tiv_bl_ml": pair.bl.icv_ml,
            })
        sessions = []
        for index, head in enumerate(heads):
            session = f"{index + 1:02d}"
            acquired = first + timedelta(days=365 * index, minutes=int(rng.integers(-90, 90)) * index)
            name = f"sub-{subject}_ses-{session}_T1w.nii.gz"
            session_dir = bids_dir / f"sub-{subject}" / f"ses-{session}"
            _write_image(session_dir / "anat" / name, head, acquired)
            stamp = acquired.isoformat(timespec="seconds")
            _write_tsv(session_dir / f"sub-{subject}_ses-{session}_scans.tsv",
                       [{"filename": f"anat/{name}", "acq_time": stamp}])
            sessions.append({"session_id": f"ses-{session}", "acq_time": stamp})
        _write_tsv(bids_dir / f"sub-{subject}" / f"sub-{subject}_sessions.tsv", sessions)
        participants.append({
            "participant_id": f"sub-{subject}",
            "age": int(rng.integers(55, 80)),
            "sex": str(rng.choice(["F", "M"])),
        })
    _write_tsv(bids_dir / "participants.tsv", participants)
    (bids_dir / "participants.json").write_text(json.dumps({
        "age": {"Description": "age at the first session", "Units": "year"},
        "sex": {"Description": "sex of the participant", "Levels": {"F": "female", "M": "male"}},
    }, indent=2) + "\n")
    return pd.DataFrame(truth, columns=list(TRUTH_COLUMNS))


def compare_with_truth(truth: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    """Estimated BVL next to the true parenchyma change, one row per pair of the truth.

    Parameters
    ----------
    truth
        From :func:`build_demo_dataset`.
    group
        The app's ``group_bvl.tsv`` (columns ``participant_id``, ``session_bl``,
        ``session_fu``, ``bvl``, ``status``, ...), read with string session labels.

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, ``session_bl``, ``session_fu``, ``true_dbpv_pct``,
        ``bvl`` (estimate; NaN for a failed or missing pair), ``error_pct``
        (``bvl - true_dbpv_pct``), ``status`` ("missing" when the app wrote no row).
    """
    keys = ["participant_id", "session_bl", "session_fu"]
    estimates = group.loc[:, [*keys, "bvl", "status"]].astype({k: str for k in keys})
    merged = truth.loc[:, [*keys, "true_dbpv_pct"]].astype({k: str for k in keys}).merge(
        estimates, on=keys, how="left"
    )
    merged["bvl"] = pd.to_numeric(merged["bvl"], errors="coerce")
    merged["error_pct"] = merged["bvl"] - merged["true_dbpv_pct"]
    merged["status"] = merged["status"].fillna("missing")
    return merged.loc[:, [*keys, "true_dbpv_pct", "bvl", "error_pct", "status"]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainlossnet demo",
        description="Build a synthetic BIDS dataset with known atrophy in OUTDIR/bids, run the "
                    "participant level on it and print the estimated BVL next to the truth.",
    )
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="directory for the dataset, "
                        "truth.tsv, derivatives and (by default) the work dir")
    parser.add_argument("--n-subjects", type=int, default=2,
                        help="subjects with two sessions (default 2); one single-session "
                             "subject is added")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic subjects (default 0)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="head size relative to an adult (default 1.0; 0.5 is faster)")
    parser.add_argument("-w", "--work-dir", type=Path, default=None,
                        help="Pydra cache (default OUTDIR/work)")
    parser.add_argument("--nprocs", type=int, default=None, help="worker processes (passed to the app)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (passed to the app)")
    return parser


def main(argv: list[str]) -> int:
    """Run the demo; return the participant level's exit code (see ``run.main``)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code in (None, 0) else 64
    from brainlossnet.bids_app.run import main as run_main

    outdir = args.outdir.resolve()
    bids_dir, truth_path = outdir / "bids", outdir / "truth.tsv"
    if (bids_dir / "dataset_description.json").is_file() and truth_path.is_file():
        print(f"reusing the demo dataset {bids_dir} and {truth_path}")
        truth = pd.read_csv(truth_path, sep="\t", dtype={"session_bl": str, "session_fu": str})
    else:
        try:
            truth = build_demo_dataset(bids_dir, n_subjects=args.n_subjects, seed=args.seed,
                                       scale=args.scale)
        except (FileExistsError, ValueError) as err:
            print(f"brainlossnet demo: {err}")
            return 64
        truth.to_csv(truth_path, sep="\t", index=False, float_format="%.6f")
        print(f"wrote {bids_dir} and {truth_path}")
    output_dir = outdir / "derivatives"
    work_dir = args.work_dir if args.work_dir is not None else outdir / "work"
    run_args = [str(bids_dir), str(output_dir), "participant", "-w", str(work_dir)]
    if args.nprocs is not None:
        run_args += ["--nprocs", str(args.nprocs)]
    if args.device is not None:
        run_args += ["--device", args.device]
    code = run_main(run_args)
    table = output_dir / "group_bvl.tsv"
    if not table.is_file():
        print(f"brainlossnet demo: the app wrote no {table} (exit code {code})")
        return code or 1
    group = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    report = compare_with_truth(truth, group)
    print()
    print("Estimated BVL (%) beside the true parenchyma change of the phantoms:")
    print(report.to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
    return code


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
