"""Which tissue definition the pipeline's raw change follows, person by person.

``brainlossnet simulate`` reports the true change of several tissue definitions
(``true_dbpv_pct`` of the soft tissue map, ``true_dbpv_pct_p0.5`` of that map thresholded at
1/2, ``true_dbpv_pct_pipeline`` of the pipeline's own parenchyma map (binary until 2026-12-07, a
tissue fraction since); docs/simulate.md).
The same deformation changes them by different amounts, and the ratio between them depends on
the person's partial-volume layout. This script puts each person's raw (uncalibrated) dBPV
of the participant level beside each definition, on the pairs without scanner distortion
(``scenario`` atrophy, truth not zero), and prints per person:

- the ratio of the pipeline mask's true change to the soft map's (a property of the person
  and the simulation, not of the registration);
- the slope through the origin of raw dBPV on each definition's truth (what the registration
  reads of that change);
- the slope of the calibrated BVL on ``true_dbpv_pct`` (what the accuracy table reports).

When the raw slope on the pipeline mask's truth is about the same for every person while
the slope on the soft truth is not, a calibration fitted on one person carries that person's
ratio to the others (docs/accuracy.md, "What is still short").

    python benchmarks/truth_definitions.py SIM_A SIM_B SIM_C
    python benchmarks/truth_definitions.py SIM_A --derivatives OTHER/derivatives

Each SIM_DIR holds ``truth.tsv`` and, unless ``--derivatives`` says otherwise, the participant
level's output in ``SIM_DIR/accuracy/derivatives`` (as ``benchmarks/accuracy.py`` leaves it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import KEYS, read_truth  # benchmarks/accuracy.py, next to this script

DEFINITIONS = {"soft": "true_dbpv_pct", "p0.5": "true_dbpv_pct_p0.5", "pipeline mask": "true_dbpv_pct_pipeline"}


def slope_through_origin(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Least-squares slope of ``estimate`` on ``truth`` with no intercept."""
    return float(np.dot(truth, estimate) / np.dot(truth, truth))


def person_rows(sim_dir: Path, derivatives: Path) -> pd.DataFrame:
    """Truth and the participant level's results of the atrophy pairs with a non-zero truth."""
    truth = read_truth(sim_dir / "truth.tsv")
    results = pd.read_csv(derivatives / "group_bvl.tsv", sep="\t", dtype={k: str for k in KEYS})
    pairs = truth.merge(results[[*KEYS, "dbpv", "bvl", "status"]], on=KEYS, how="inner")
    keep = (pairs["scenario"] == "atrophy") & (pairs["true_dbpv_pct"] != 0) & (pairs["status"] == "ok")
    return pairs[keep]


def summary(pairs: pd.DataFrame) -> dict[str, float]:
    """One person's ratios and slopes (see the module docstring)."""
    soft = pairs[DEFINITIONS["soft"]].to_numpy(float)
    row = {"pairs": float(len(pairs)),
           "pipeline mask / soft truth": float(np.median(pairs[DEFINITIONS["pipeline mask"]] / pairs[DEFINITIONS["soft"]]))}
    for name, column in DEFINITIONS.items():
        row[f"raw dBPV on {name} truth"] = slope_through_origin(pairs[column].to_numpy(float), pairs["dbpv"].to_numpy(float))
    row["calibrated BVL on soft truth"] = slope_through_origin(soft, pairs["bvl"].to_numpy(float))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sim_dirs", type=Path, nargs="+", metavar="SIM_DIR", help="output(s) of 'brainlossnet simulate'")
    parser.add_argument("--derivatives", type=Path, nargs="+", default=None,
                        help="participant-level outputs, one per SIM_DIR (default SIM_DIR/accuracy/derivatives)")
    args = parser.parse_args(argv)
    derivatives = args.derivatives or [d / "accuracy" / "derivatives" for d in args.sim_dirs]
    if len(derivatives) != len(args.sim_dirs):
        parser.error("give one --derivatives folder per SIM_DIR")
    table = {}
    for sim_dir, folder in zip(args.sim_dirs, derivatives):
        pairs = person_rows(sim_dir, folder)
        if pairs.empty:
            print(f"{sim_dir}: no atrophy pair with a result")
            continue
        person = str(pairs["source"].iloc[0]) if "source" in pairs else sim_dir.name
        table[person] = summary(pairs)
    frame = pd.DataFrame(table)
    print("| | " + " | ".join(frame.columns) + " |")
    print("|---|" + "---|" * len(frame.columns))
    for name, values in frame.iterrows():
        cells = [f"{int(v)}" if name == "pairs" else f"{v:.3f}" for v in values]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
