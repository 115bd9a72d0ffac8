"""``brainlossnet simulate SRC_T1w OUT_DIR``: BL/FU pairs with known truth made from one real scan.

From one T1w head scan with skull, this writes ``OUT_DIR/bids`` (a raw BIDS dataset: one
subject per simulated pair, sessions ``bl`` and ``fu``, int16 images of 12-bit counts, JSON
sidecars with ``AcquisitionDateTime``, ``scans.tsv``, ``sessions.tsv``, ``participants.tsv``) and ``OUT_DIR/truth.tsv`` beside it, outside the BIDS tree: the true
parenchyma and TIV change of every pair, measured by Jacobian integration
(:mod:`brainlossnet.simulation`; docs/simulate.md). Scenarios:

* ``atrophy``: prescribed parenchyma change of all tissue (``sub-atrophy1p00``: -1.00 %), of the
  frontal lobe (``sub-lobe1p00``) and around enlarging ventricles (``sub-ventricles1p00``);
* ``rescan``: no change (``sub-rescan1`` ...);
* ``distortion``: the follow-up scaled (isotropic 0.8 %, anisotropic up to 1 %), warped by a
  gradient-like field or blurred (a wider point-spread function, as from another protocol),
  without and with -1 % atrophy (``sub-scaleiso0p8``, ``sub-warpatrophy1p00``, ``sub-blur`` ...).

Every scan of every pair has its own rigid position, gain, bias field and noise, and is
interpolated once. A pair is a pure function of ``--seed`` and its subject label.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainlossnet import __version__, geometry, simulation
from brainlossnet.bids_app.demo import SIDECAR, TRUTH_COLUMNS

SCENARIOS: tuple[str, ...] = ("atrophy", "rescan", "distortion")
DEFAULT_ATROPHY_PCTS: tuple[float, ...] = (0.0, -0.25, -0.5, -1.0, -2.0)
DEFAULT_REGIONAL_PCTS: tuple[float, ...] = (-1.0,)
DEFAULT_DISTORTION_PCT = -1.0
"""Atrophy of the distortion pairs that have atrophy (``--distortion-pct``)."""

DISTORTIONS: tuple[tuple[str, tuple[float, float, float], bool, float], ...] = (
    ("scaleiso0p8", (1.008, 1.008, 1.008), False, 0.0),
    ("scaleaniso", (1.010, 0.995, 0.990), False, 0.0),
    ("warp", (1.0, 1.0, 1.0), True, 0.0),
    ("blur", (1.0, 1.0, 1.0), False, 0.1),
)
"""Follow-up distortions: label, scaling per world axis (1.008: the head looks 0.8 % larger),
gradient warp, blur (variance in mm² of a Gaussian: 0.1 is sigma 0.32 mm, about what a protocol
with other voxels or k-space filtering may give; docs/simulate.md)."""

EXTRA_COLUMNS: tuple[str, ...] = (
    "scenario", "region", "scaling", "nonlinear", "true_dbpv_spread_pct", "seed", "true_dbpv_ml",
    "true_dbpv_spread_ml", "amplitude",
    "min_jacobian", "source", "blur_mm2",
)
"""Columns of truth.tsv after :data:`brainlossnet.bids_app.demo.TRUTH_COLUMNS` (then one
``true_dbpv_pct_<definition>`` per tissue definition)."""

INT16_RANGE = 4095
"""Stored integers span 0..4095 (12 bits, as many scanners store magnitude images); one
scale factor per dataset maps the source's intensities onto that range."""

_FIRST_VISIT = datetime(2024, 2, 5, 8, 30, 0)
EXIT_USAGE, EXIT_NOINPUT, EXIT_CANTCREAT = 64, 66, 73


@dataclass(frozen=True)
class PairPlan:
    """One simulated pair: subject label, scenario, region, request and follow-up distortion."""

    label: str
    scenario: str
    region: str
    requested_pct: float
    scaling: tuple[float, float, float] = (1.0, 1.0, 1.0)
    nonlinear: bool = False
    blur_mm2: float = 0.0

    def seed(self, base_seed: int) -> int:
        """Seed of this pair: from the run's seed and the label, so it does not depend on which
        other pairs are made."""
        return int(np.random.SeedSequence([int(base_seed), zlib.crc32(self.label.encode())]).generate_state(1)[0])

    @property
    def scaling_text(self) -> str:
        """``"1.008x1.008x1.008"`` or ``"none"``."""
        return "none" if all(s == 1.0 for s in self.scaling) else "x".join(f"{s:.3f}" for s in self.scaling)


def pct_label(pct: float) -> str:
    """Label part of a percent change: -1.0 -> ``1p00``, 0.25 -> ``plus0p25``."""
    text = f"{abs(pct):.2f}".replace(".", "p")
    return f"plus{text}" if pct > 0 else text


def plan_pairs(scenarios: tuple[str, ...], atrophy_pcts: tuple[float, ...], regional_pcts: tuple[float, ...],
               n_rescans: int, distortion_pct: float = DEFAULT_DISTORTION_PCT) -> list[PairPlan]:
    """The pairs of a run, in order: atrophy (whole, lobe, ventricles), rescans, distortions."""
    plans: list[PairPlan] = []
    if "atrophy" in scenarios:
        plans += [PairPlan(f"atrophy{pct_label(p)}", "atrophy", "whole", p) for p in atrophy_pcts]
        for region in ("lobe", "ventricles"):
            plans += [PairPlan(f"{region}{pct_label(p)}", "atrophy", region, p) for p in regional_pcts]
    if "rescan" in scenarios:
        plans += [PairPlan(f"rescan{k}", "rescan", "none", 0.0) for k in range(1, n_rescans + 1)]
    if "distortion" in scenarios:
        for name, scaling, nonlinear, blur_mm2 in DISTORTIONS:
            plans.append(PairPlan(name, "distortion", "none", 0.0, scaling, nonlinear, blur_mm2))
            plans.append(PairPlan(f"{name}atrophy{pct_label(distortion_pct)}", "distortion", "whole",
                                  distortion_pct, scaling, nonlinear, blur_mm2))
    labels = [p.label for p in plans]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two pairs share a subject label: {labels}")
    return plans


def load_source(path: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The source scan in the closest canonical (RAS) orientation, downsampled by ``scale`` < 1.

    Reorientation only permutes and flips axes (no interpolation); a ``scale`` below 1 resamples
    (trilinear) onto voxels ``1 / scale`` times larger, for fast tests.
    """
    image = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(image.get_fdata(dtype=np.float32))
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D image, got shape {data.shape}")
    affine = image.affine
    if scale != 1.0:
        shape = tuple(max(2, int(round(n * scale))) for n in data.shape)
        target = affine.copy()
        target[:3, :3] = affine[:3, :3] / scale
        target[:3, 3] = affine[:3, :3] @ (np.full(3, 0.5 / scale - 0.5)) + affine[:3, 3]
        data = geometry.resample(data, affine, shape, target, order=1)
        affine = target
    return np.clip(data, 0.0, None), affine


def _resample_mask(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    mask = nib.load(path)
    values = geometry.resample(np.asarray(mask.get_fdata(dtype=np.float32)), mask.affine, shape, affine, order=1)
    return values > 0.5


def _write_image(path: Path, image: np.ndarray, affine: np.ndarray, slope: float, acquired: datetime,
                 description: str) -> None:
    """int16 image of ``image / slope`` (scanner-like 12-bit counts), qform/sform code 1, and its JSON sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = np.clip(np.rint(image / slope), 0, INT16_RANGE).astype(np.int16)
    nifti = nib.Nifti1Image(counts, affine)
    header = nifti.header
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["descrip"] = b"brainlossnet simulate MPRAGE"
    nib.save(nifti, path)
    sidecar = dict(SIDECAR, SeriesDescription=description,
                   AcquisitionDateTime=acquired.isoformat(timespec="microseconds"))
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar, indent=2) + "\n")


def _write_tsv(path: Path, rows: list[dict[str, object]]) -> None:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, lineterminator="\n")


def build_dataset(
    anatomy: simulation.Anatomy,
    out_dir: Path,
    plans: list[PairPlan],
    *,
    seed: int,
    source_label: str,
    log=print,
) -> pd.DataFrame:
    """Simulate every planned pair and write ``out_dir/bids`` and ``out_dir/truth.tsv``.

    The dataset is written under a temporary name and renamed when complete. A pair whose
    change this anatomy cannot take without folding is skipped (and said so).

    Returns
    -------
    pandas.DataFrame
        The truth table (:data:`TRUTH_COLUMNS`, :data:`EXTRA_COLUMNS`, per-definition changes).

    Raises
    ------
    FileExistsError
        If ``out_dir/bids`` or ``out_dir/truth.tsv`` already exists.
    """
    bids_dir, truth_path = out_dir / "bids", out_dir / "truth.tsv"
    for existing in (bids_dir, truth_path):
        if existing.exists():
            raise FileExistsError(f"{existing}: exists; give a new OUT_DIR")
    partial = out_dir / ".bids.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    slope = float(anatomy.image.max()) * 1.25 / INT16_RANGE
    velocities: dict[str, np.ndarray] = {}
    solved: dict[tuple[str, float], simulation.Atrophy | ValueError] = {}
    rows, participants = [], []
    for plan in plans:
        started = time.perf_counter()
        pair_seed = plan.seed(seed)
        key = (plan.region, plan.requested_pct)
        if key not in solved:
            velocity = None
            if plan.requested_pct:
                if plan.region not in velocities:
                    velocities[plan.region] = simulation.unit_velocity(anatomy, plan.region)
                velocity = velocities[plan.region]
            try:
                solved[key] = simulation.solve_amplitude(anatomy, velocity, plan.requested_pct)
            except ValueError as err:  # this anatomy cannot take that change without folding
                solved[key] = err
        atrophy = solved[key]
        if isinstance(atrophy, ValueError):
            log(f"sub-{plan.label}: skipped: {atrophy}")
            continue
        distortion = simulation.Distortion(plan.scaling, blur_mm2=plan.blur_mm2)
        if plan.nonlinear:
            distortion = simulation.with_warp(distortion, pair_seed)
        pair = simulation.simulate_pair(anatomy, atrophy, pair_seed, distortion)
        subject = plan.label
        first = _FIRST_VISIT + timedelta(minutes=int(pair_seed % (90 * 24 * 60)))
        sessions = []
        for session, image, acquired in (("bl", pair.baseline, first),
                                         ("fu", pair.followup, first + timedelta(days=365, minutes=-23))):
            name = f"sub-{subject}_ses-{session}_T1w.nii.gz"
            session_dir = partial / f"sub-{subject}" / f"ses-{session}"
            _write_image(session_dir / "anat" / name, image, anatomy.affine, slope, acquired,
                         f"T1w simulated by brainlossnet simulate from {source_label} (not a scan)")
            stamp = acquired.isoformat(timespec="seconds")
            _write_tsv(session_dir / f"sub-{subject}_ses-{session}_scans.tsv",
                       [{"filename": f"anat/{name}", "acq_time": stamp}])
            sessions.append({"session_id": f"ses-{session}", "acq_time": stamp})
        _write_tsv(partial / f"sub-{subject}" / f"sub-{subject}_sessions.tsv", sessions)
        participants.append({"participant_id": f"sub-{subject}", "scenario": plan.scenario})
        truth = pair.truth
        row = {
            "participant_id": f"sub-{subject}", "session_bl": "bl", "session_fu": "fu",
            "true_dbpv_pct": truth.dbpv_pct["soft"], "true_dtiv_pct": truth.dtiv_pct,
            "requested_dbpv_pct": plan.requested_pct, "true_bpv_bl_ml": truth.bpv_bl_ml,
            "true_tiv_bl_ml": truth.tiv_bl_ml, "scenario": plan.scenario, "region": plan.region,
            "scaling": plan.scaling_text, "nonlinear": plan.nonlinear, "blur_mm2": plan.blur_mm2,
            "true_dbpv_spread_pct": truth.spread_pct, "seed": pair_seed,
            "true_dbpv_ml": truth.dbpv_ml["soft"],
            "true_dbpv_spread_ml": max(truth.dbpv_ml.values()) - min(truth.dbpv_ml.values()),
            "amplitude": pair.amplitude,
            "min_jacobian": truth.min_jacobian, "source": source_label,
        }
        row.update({f"true_dbpv_pct_{name}": value for name, value in truth.dbpv_pct.items()})
        rows.append(row)
        log(f"sub-{subject}: true dBPV {truth.dbpv_pct['soft']:+.4f} % (requested {plan.requested_pct:+.2f}, "
            f"spread {truth.spread_pct:.4f}), dTIV {truth.dtiv_pct:+.5f} %, {time.perf_counter() - started:.1f} s")
    (partial / "dataset_description.json").write_text(json.dumps({
        "Name": f"brainlossnet simulate: BL/FU pairs with known truth from {source_label}",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "brainlossnet", "Version": __version__,
                         "Description": f"brainlossnet simulate (seed {seed}); truth in ../truth.tsv"}],
    }, indent=2) + "\n")
    (partial / "README").write_text(
        f"Simulated longitudinal T1w pairs made by brainlossnet simulate from one scan ({source_label}).\n"
        "Each subject is one pair (sessions bl and fu) of one scenario: atrophy, rescan or distortion.\n"
        "The true changes are kept outside this dataset, in truth.tsv next to it.\n")
    _write_tsv(partial / "participants.tsv", participants)
    (partial / "participants.json").write_text(json.dumps({
        "scenario": {"Description": "what the pair simulates: atrophy, rescan or distortion"},
    }, indent=2) + "\n")
    if not rows:
        shutil.rmtree(partial)
        raise ValueError("no pair could be simulated from this anatomy")
    table = pd.DataFrame(rows)
    columns = [*TRUTH_COLUMNS, *EXTRA_COLUMNS]
    table = table[columns + [c for c in table.columns if c not in columns]]
    table.to_csv(out_dir / ".truth.tsv.partial", sep="\t", index=False, float_format="%.6f", lineterminator="\n")
    partial.rename(bids_dir)
    (out_dir / ".truth.tsv.partial").rename(truth_path)
    return table


def _pcts(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def _scenarios(text: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}")
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainlossnet simulate",
        description="Make a BIDS dataset of BL/FU pairs with known parenchyma change (atrophy, rescans, "
                    "scanner distortion) from one T1w head scan with skull; the truth goes to OUT_DIR/truth.tsv.",
    )
    parser.add_argument("source", type=Path, metavar="SRC_T1w", help="T1w head scan with skull (NIfTI)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="gets bids/ and truth.tsv")
    parser.add_argument("--scenarios", type=_scenarios, default=SCENARIOS,
                        help="comma-separated subset of atrophy,rescan,distortion (default all)")
    parser.add_argument("--atrophy-pct", type=_pcts, default=DEFAULT_ATROPHY_PCTS,
                        help="whole-brain parenchyma changes in %% (default 0,-0.25,-0.5,-1,-2)")
    parser.add_argument("--regional-pct", type=_pcts, default=DEFAULT_REGIONAL_PCTS,
                        help="changes of the lobe and ventricle pairs in %% (default -1; empty for none)")
    parser.add_argument("--distortion-pct", type=float, default=DEFAULT_DISTORTION_PCT,
                        help="whole-brain change of the distortion pairs with atrophy, in %% (default -1)")
    parser.add_argument("--n-rescans", type=int, default=5, help="rescan pairs (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of positions, intensities and warps (default 0)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="downsampling factor of the source (0.5: voxels twice as large; for fast tests)")
    parser.add_argument("--source-label", default=None, help="name of the source in the dataset (default: file name)")
    parser.add_argument("--cavity-mask", type=Path, default=None,
                        help="intracranial mask of SRC_T1w (default: computed by deepbet)")
    parser.add_argument("--no-pipeline-mask", action="store_true",
                        help="leave the pipeline's own parenchyma map (brainlossnet.parenchyma) "
                             "out of the truth's spread")
    return parser


def main(argv: list[str]) -> int:
    """Run ``brainlossnet simulate``; 0 on success, 1 no pair possible, 64 usage, 66 missing input,
    73 output exists."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code in (None, 0) else EXIT_USAGE
    if not 0.0 < args.scale <= 1.0 or args.n_rescans < 0:
        print("brainlossnet simulate: --scale must be in (0, 1] and --n-rescans non-negative")
        return EXIT_USAGE
    for path in (args.source, args.cavity_mask):
        if path is not None and not path.is_file():
            print(f"brainlossnet simulate: {path}: no such file")
            return EXIT_NOINPUT
    out_dir = args.out_dir.resolve()
    if (out_dir / "bids").exists() or (out_dir / "truth.tsv").exists():
        print(f"brainlossnet simulate: {out_dir}: already holds bids/ or truth.tsv; give a new OUT_DIR")
        return EXIT_CANTCREAT
    source_label = args.source_label or args.source.name.split(".")[0]
    started = time.perf_counter()
    image, affine = load_source(args.source, args.scale)
    if args.cavity_mask is not None:
        cavity = _resample_mask(args.cavity_mask, image.shape, affine)
    else:
        from brainlossnet.intracranial import intracranial_mask

        cavity = intracranial_mask(image)
    extra = {}
    if not args.no_pipeline_mask:
        from brainlossnet.parenchyma import parenchyma_fraction

        extra["pipeline"] = parenchyma_fraction(image, cavity)
    anatomy = simulation.prepare_anatomy(image, affine, cavity, extra)
    print(f"{args.source}: {image.shape} voxels of {np.round(anatomy.voxel_mm, 3).tolist()} mm, "
          f"cavity {anatomy.cavity.sum() * anatomy.voxel_ml:.1f} ml, "
          f"tissue {anatomy.tissue.sum() * anatomy.voxel_ml:.1f} ml "
          f"({time.perf_counter() - started:.1f} s)")
    plans = plan_pairs(args.scenarios, args.atrophy_pct, args.regional_pct, args.n_rescans, args.distortion_pct)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        table = build_dataset(anatomy, out_dir, plans, seed=args.seed, source_label=source_label)
    except ValueError as err:
        print(f"brainlossnet simulate: {err}")
        return 1
    print(f"wrote {len(table)} pair(s) to {out_dir / 'bids'} and the truth to {out_dir / 'truth.tsv'} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
