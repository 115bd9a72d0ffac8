"""Registration settings weighed on simulated truth: calibrated on one person, measured on others.

Each setting of the test-time refinement (steps, initial step size, smoothness weight, NCC
window, full-resolution steps: :func:`brainlossnet.registration.predict_displacement_pair`) is
run on the halfway crops and masks that ``benchmarks/accuracy.py`` left in
``SIM_DIR/accuracy/derivatives`` (the pipeline's own intermediates, so rigid alignment and
segmentation are held fixed and only the registration varies), after the register stage's
sharpness matching (the setting ``sharpness_matching``, on as in the release; until 2026-12-07
this script left it out, so its ``release`` column differed from the pipeline's fields on pairs
with a sharpness difference). Volumes are read as the pipeline reads them
(:func:`brainlossnet.volumetry.pair_volumes`). For every setting the calibration (Eqs. 5, 7) is
fitted on the ``--calibrate-on`` datasets (against ``true_dbpv_pct``), as the shipped
``default`` profile is (``--m-tiv``: m_TIV held, for calibration pairs without distortion), and
the accuracy table of ``benchmarks/accuracy.py``
(:func:`brainlossnet.accuracy_summary.accuracy_table`) is computed on the ``--measure-on``
datasets with that calibration, one column per setting. Rows added: the fitted m_TIV and
m_scale, the fit's residual SD, the raw (uncalibrated) slope of dBPV on the truth of the
measured atrophy pairs, and per measured dataset (person) the slope of BVL on the truth of its
atrophy pairs, with the largest distance of these from 1. Choosing settings on the calibration
person and reading the table on the others keeps the choice from fitting the measured pairs.

Results are cached per setting and pair in ``--cache-dir`` (JSON with the setting and the
model version), so settings can be run by separate processes side by side and one last
call prints the table of all of them. Seconds are CPU seconds of the registration alone
(``time.process_time``, one torch thread).

    python benchmarks/registration_settings.py --calibrate-on SIM/myconnectome \\
        --measure-on SIM/chris SIM/niivue --cache-dir /tmp/settings \\
        --setting release: --setting steps25:steps=25 --setting smooth0.01:smoothness=0.01 \\
        --setting run6:weights=RUN6/registration_unet.pt \\
        --out settings.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainlossnet import registration
from brainlossnet.accuracy_summary import accuracy_table, to_markdown
from brainlossnet.bids_app.derivatives import intermediate_paths, pair_prefix
from brainlossnet.calibration_fit import bvl_slope, fit_calibration
from brainlossnet.geometry import voxel_sizes_mm
from brainlossnet.interfaces.nifti import load_image
from brainlossnet.sharpness import SHARPNESS_MATCHING, match_sharpness, relative_blur_vox2
from brainlossnet.volumetry import brain_volume_loss, distortion_corrected, pair_volumes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import KEYS, read_truth  # noqa: E402  (the accuracy benchmark's truth reader)


@dataclasses.dataclass(frozen=True)
class RefinementSetting:
    """One choice of the refinement's budget and objective (defaults: the release's)."""

    steps: int = registration.REFINE_STEPS
    learning_rate_vox: float = registration.REFINE_LEARNING_RATE_VOX
    smoothness: float = registration.REFINE_SMOOTHNESS_WEIGHT
    window_vox: int = registration.REFINE_NCC_KERNEL_VOX
    fine_steps: int = registration.REFINE_FINE_STEPS
    fine_learning_rate_vox: float = registration.REFINE_FINE_LEARNING_RATE_VOX
    weights: str = ""
    """A weights file of ``brainlossnet train --export``; empty: the packaged weights."""
    sharpness_matching: bool = SHARPNESS_MATCHING
    """Blur the sharper scan to the other's sharpness first, as the register stage does."""

    def weights_bytes(self) -> bytes | None:
        """The candidate weights file's bytes, ``None`` for the packaged weights."""
        return Path(self.weights).read_bytes() if self.weights else None

    def model_version(self) -> str:
        """Identity of the network this setting runs (the packaged one's or the candidate file's)."""
        candidate = self.weights_bytes()
        return registration.MODEL_VERSION if candidate is None else registration.model_version(candidate)

    @classmethod
    def parse(cls, text: str) -> tuple[str, RefinementSetting]:
        """``name:key=value,key=value`` (keys: the field names) -> (name, setting)."""
        name, _, assignments = text.partition(":")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, float | int] = {}
        for item in filter(None, assignments.split(",")):
            key, _, value = item.partition("=")
            if key not in types:
                raise SystemExit(f"--setting {text}: unknown key {key!r} (known: {', '.join(types)})")
            values[key] = {"int": int, "float": float, "str": str, "bool": parse_bool}[types[key]](value)
        if not name:
            raise SystemExit(f"--setting {text}: give it a name before ':'")
        return name, cls(**values)


def parse_bool(text: str) -> bool:
    """``true``/``1``/``yes`` or ``false``/``0``/``no`` (any case)."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise SystemExit(f"--setting: {text!r} is not a truth value (true or false)")


def measure_pair(paths: dict[str, Path], setting: RefinementSetting, model: registration.RegistrationUNet) -> dict:
    """Raw forward/backward dBPV and dTIV (%) of one pair under ``setting``, and CPU seconds."""
    bl, affine = load_image(paths["bl_halfway"])
    fu, _ = load_image(paths["fu_halfway"])
    if setting.sharpness_matching:
        bl, fu = match_sharpness(bl, fu, relative_blur_vox2(bl, fu))
    masks = {name: load_image(paths[name])[0] for name in
             ("bl_parenchyma", "bl_intracranial", "fu_parenchyma", "fu_intracranial")}
    start = time.process_time()
    forward, backward = registration.predict_displacement_pair(
        model, bl, fu, refine_steps=setting.steps, refine_learning_rate_vox=setting.learning_rate_vox,
        refine_smoothness_weight=setting.smoothness, refine_ncc_kernel_vox=setting.window_vox,
        refine_fine_steps=setting.fine_steps, refine_fine_learning_rate_vox=setting.fine_learning_rate_vox,
    )
    seconds = time.process_time() - start
    volumes = pair_volumes(**masks, field_fw_vox=forward, field_bw_vox=backward, voxel_mm=voxel_sizes_mm(affine))
    raw = brain_volume_loss(volumes, m_tiv=1.0, m_scale=1.0)
    return {"dbpv_fw": raw.dbpv_fw, "dbpv_bw": raw.dbpv_bw, "dtiv_fw": raw.dtiv_fw, "dtiv_bw": raw.dtiv_bw,
            "cpu_seconds": seconds}


def run_setting(name: str, setting: RefinementSetting, sim_dirs: list[Path], cache_dir: Path,
                model: registration.RegistrationUNet) -> pd.DataFrame:
    """Every pair of ``sim_dirs`` under one setting (cached); one row per pair."""
    stamp = {"setting": dataclasses.asdict(setting), "model": setting.model_version()}
    rows = []
    for sim_dir in sim_dirs:
        truth = read_truth(sim_dir / "truth.tsv")
        derivatives = sim_dir / "accuracy" / "derivatives"
        for key in truth[KEYS].itertuples(index=False, name=None):
            subject = key[0].removeprefix("sub-")
            paths = intermediate_paths(derivatives, subject, key[1], key[2])
            if not paths["bl_halfway"].is_file():
                continue  # the pipeline refused or failed this pair
            stored = cache_dir / name / sim_dir.name / f"{pair_prefix(subject, key[1], key[2])}.json"
            document = json.loads(stored.read_text()) if stored.is_file() else {}
            if document.get("stamp") != stamp:
                document = {"stamp": stamp, "result": measure_pair(paths, setting, model)}
                stored.parent.mkdir(parents=True, exist_ok=True)
                stored.write_text(json.dumps(document, indent=2) + "\n")
                r = document["result"]
                print(f"{name} {sim_dir.name} {subject}: dBPV {(r['dbpv_fw'] + r['dbpv_bw']) / 2:+.3f} "
                      f"dTIV {(r['dtiv_fw'] + r['dtiv_bw']) / 2:+.3f} ({r['cpu_seconds']:.0f} CPU s)", flush=True)
            rows.append({"dataset": sim_dir.name, **dict(zip(KEYS, key)), **document["result"]})
    return pd.DataFrame(rows)


def with_truth(results: pd.DataFrame, sim_dirs: list[Path]) -> pd.DataFrame:
    """Per-pair results joined to their truth tables."""
    truth = pd.concat([read_truth(d / "truth.tsv").assign(dataset=d.name) for d in sim_dirs], ignore_index=True)
    if "source" not in truth.columns:
        truth["source"] = truth["dataset"]
    return truth.merge(results, on=["dataset", *KEYS], how="inner")


def settings_table(calibration_pairs: dict[str, pd.DataFrame], measured_pairs: dict[str, pd.DataFrame],
                   m_tiv: float | None = None) -> pd.DataFrame:
    """The accuracy table of the measured pairs, one column per setting, each with its own calibration.

    ``m_tiv``: hold m_TIV at this value and fit m_scale alone (calibration pairs without distortion).
    """
    merged: pd.DataFrame | None = None
    extra_rows: dict[str, dict[str, float]] = {}
    for name in calibration_pairs:
        dev = calibration_pairs[name]
        fit = fit_calibration((dev.dbpv_fw + dev.dbpv_bw) / 2, (dev.dtiv_fw + dev.dtiv_bw) / 2, dev.true_dbpv_pct,
                              m_tiv=m_tiv)
        test = measured_pairs[name]
        columns = {
            f"{name}_fw_pct": distortion_corrected(test.dbpv_fw, test.dtiv_fw, fit.m_tiv, fit.m_scale),
            f"{name}_bw_pct": distortion_corrected(test.dbpv_bw, test.dtiv_bw, fit.m_tiv, fit.m_scale),
            f"{name}_seconds": test.cpu_seconds,
        }
        columns[f"{name}_pct"] = (columns[f"{name}_fw_pct"] + columns[f"{name}_bw_pct"]) / 2
        block = test.drop(columns=["dbpv_fw", "dbpv_bw", "dtiv_fw", "dtiv_bw", "cpu_seconds"]).assign(**columns)
        merged = block if merged is None else merged.merge(block)
        atrophy = test[(test.scenario == "atrophy")]
        extra_rows[name] = {
            "calibration: m_TIV": fit.m_tiv,
            "calibration: m_scale": fit.m_scale,
            "calibration: SD of BVL - truth on its pairs (%)": fit.bvl_minus_reference_sd_pct,
            "raw slope of dBPV on truth, atrophy": bvl_slope(  # m_TIV 0 and m_scale 1: the raw dBPV
                (atrophy.dbpv_fw + atrophy.dbpv_bw) / 2, atrophy.dtiv_fw, atrophy.true_dbpv_pct, 0.0, 1.0),
        }
        per_dataset = {
            dataset: bvl_slope((group.dbpv_fw + group.dbpv_bw) / 2, (group.dtiv_fw + group.dtiv_bw) / 2,
                               group.true_dbpv_pct, fit.m_tiv, fit.m_scale)
            for dataset, group in atrophy.groupby("dataset", sort=False)
        }
        extra_rows[name].update({f"slope of BVL on truth, atrophy, {dataset}": slope for dataset, slope in per_dataset.items()})
        distances = [abs(v - 1.0) for v in per_dataset.values() if np.isfinite(v)]
        extra_rows[name]["largest |slope - 1| over the datasets, atrophy"] = max(distances, default=float("nan"))
    table = accuracy_table(merged, {name: name for name in calibration_pairs})
    extra = pd.DataFrame([{"metric": metric, "scenario": "calibration" if metric.startswith("cal") else "atrophy",
                           **{name: extra_rows[name][metric] for name in extra_rows}}
                          for metric in next(iter(extra_rows.values()))])
    return pd.concat([table, extra], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate-on", type=Path, nargs="+", required=True, metavar="SIM_DIR",
                        help="simulated datasets (with accuracy/derivatives from benchmarks/accuracy.py) to fit on")
    parser.add_argument("--measure-on", type=Path, nargs="+", required=True, metavar="SIM_DIR",
                        help="simulated datasets to measure on")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                        help="a refinement setting; keys: " + ", ".join(f.name for f in dataclasses.fields(RefinementSetting))
                        + " (omitted keys: the release's value)")
    parser.add_argument("--cache-dir", type=Path, required=True, help="per-setting, per-pair results")
    parser.add_argument("--out", type=Path, help="write the table here (markdown)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--m-tiv", type=float, metavar="M",
                        help="hold m_TIV at M and fit m_scale alone (calibration pairs without distortion)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = dict(RefinementSetting.parse(text) for text in args.setting)
    dev_dirs, test_dirs = [d.resolve() for d in args.calibrate_on], [d.resolve() for d in args.measure_on]
    calibration_pairs, measured_pairs = {}, {}
    for name, setting in settings.items():
        model = registration.load_registration_model("cpu", setting.weights_bytes())
        calibration_pairs[name] = with_truth(run_setting(name, setting, dev_dirs, args.cache_dir, model), dev_dirs)
        measured_pairs[name] = with_truth(run_setting(name, setting, test_dirs, args.cache_dir, model), test_dirs)
    table = settings_table(calibration_pairs, measured_pairs, args.m_tiv)
    legend = [f"- `{name}`: {json.dumps(dataclasses.asdict(s))}" for name, s in settings.items()]
    models = ", ".join(sorted({s.model_version() for s in settings.values()}))
    context = (f"Model(s) {models}; calibrated on {', '.join(d.name for d in dev_dirs)} "
               f"({len(next(iter(calibration_pairs.values())))} pairs"
               f"{'' if args.m_tiv is None else f', m_TIV held at {args.m_tiv}'}), measured on "
               f"{', '.join(d.name for d in test_dirs)} ({len(next(iter(measured_pairs.values())))} pairs); "
               f"seconds: CPU of the registration, {args.threads} torch thread(s), load {os.getloadavg()[0]:.1f}.")
    markdown = context + "\n\n" + "\n".join(legend) + "\n\n" + to_markdown(table) + "\n"
    print("\n" + markdown)
    if args.out is not None:
        args.out.write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
