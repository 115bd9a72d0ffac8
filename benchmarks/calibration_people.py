"""How a calibration profile carries from the people it was fitted on to other people.

A profile (m_TIV, m_scale; docs/calibration.md) is fitted on simulated pairs of some people
and applied to everyone. Because the same deformation changes a binary parenchyma mask by a
person-specific multiple of the soft tissue map's change (``benchmarks/truth_definitions.py``),
a profile fitted on one person reads others high or low. This script measures that spread
on several people's simulated datasets:

- ``own m_scale``: m_scale fitted on the person's pairs alone (what a perfect per-person
  calibration would use);
- for each profile, the least-squares slope of the calibrated BVL (Eq. 8) on the truth
  ``true_dbpv_pct`` over the person's atrophy pairs (whole-brain and regional, no scanner
  distortion; the scenario every simulated person has), as in the accuracy benchmark:
  ``shipped PROFILE`` (``--calibration``, e.g. the installed ``default``), with the 95th
  percentile of |BVL - truth| over the same pairs, and
  ``fitted on the others``: m_scale fitted on the pairs of all calibration people except
  this one (leave-one-out for a calibration person; all of them for a ``--held-out`` one).

m_TIV is fixed in every refit at the value of ``--calibration`` (atrophy pairs barely move
the TIV, so Eq. 5 cannot be fitted on them); the refits use all ok pairs of each person
that have a truth. With two calibration people, "fitted on the others" of each is the other
one's own m_scale. The last rows give the spread over people.

    python benchmarks/calibration_people.py SIM_A SIM_B SIM_C SIM_D SIM_E --held-out SIM_D SIM_E
    python benchmarks/calibration_people.py SIM_A SIM_B --derivatives OUT_A OUT_B

Each SIM_DIR holds ``truth.tsv`` (its ``source`` column names the person) and, unless
``--derivatives`` says otherwise, the participant level's output in
``SIM_DIR/accuracy/derivatives`` (as ``benchmarks/accuracy.py`` leaves it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import KEYS, read_truth  # benchmarks/accuracy.py, next to this script

from brainlossnet.calibration import CalibrationProfile, load_profile
from brainlossnet.calibration_fit import bvl_slope, fit_calibration
from brainlossnet.volumetry import distortion_corrected


def person_pairs(sim_dir: Path, derivatives: Path) -> pd.DataFrame:
    """The ok pairs of one person with their truth, raw changes and scenario (maybe none)."""
    truth = read_truth(sim_dir / "truth.tsv")
    results = pd.read_csv(derivatives / "group_bvl.tsv", sep="\t", dtype={k: str for k in KEYS})
    pairs = truth.merge(results[[*KEYS, "dbpv", "dtiv", "status"]], on=KEYS, how="inner")
    numbers = np.isfinite(pairs["dbpv"].astype(float)) & np.isfinite(pairs["dtiv"].astype(float))
    return pairs[(pairs["status"] == "ok") & numbers]


def m_scale_on(pairs: pd.DataFrame, m_tiv: float) -> float:
    """m_scale of Eq. 7 fitted on ``pairs`` with m_TIV fixed."""
    return fit_calibration(pairs["dbpv"], pairs["dtiv"], pairs["true_dbpv_pct"], m_tiv=m_tiv).m_scale


def atrophy_slope(pairs: pd.DataFrame, m_tiv: float, m_scale: float) -> float:
    """Slope of BVL on the truth over the person's atrophy pairs (NaN for fewer than 3)."""
    atrophy = pairs[pairs["scenario"] == "atrophy"]
    return bvl_slope(atrophy["dbpv"].to_numpy(float), atrophy["dtiv"].to_numpy(float),
                     atrophy["true_dbpv_pct"].to_numpy(float), m_tiv, m_scale)


def atrophy_p95_error(pairs: pd.DataFrame, m_tiv: float, m_scale: float) -> float:
    """95th percentile of |BVL - truth| (%) over the person's atrophy pairs (NaN for none)."""
    atrophy = pairs[pairs["scenario"] == "atrophy"]
    if atrophy.empty:
        return float("nan")
    bvl = distortion_corrected(atrophy["dbpv"].astype(float), atrophy["dtiv"].astype(float), m_tiv, m_scale)
    return float(np.percentile(np.abs(bvl - atrophy["true_dbpv_pct"].astype(float)), 95))


def people_table(people: dict[str, pd.DataFrame], held_out: set[str], profile: CalibrationProfile) -> pd.DataFrame:
    """One row per person: own m_scale, and the BVL slope under the shipped and the refitted profile."""
    calibration_people = [name for name in people if name not in held_out]
    rows = []
    for name, pairs in people.items():
        others = pd.concat([people[other] for other in calibration_people if other != name])
        others_m_scale = m_scale_on(others, profile.m_tiv)
        rows.append({
            "person": name + (" (held out)" if name in held_out else ""),
            "pairs": len(pairs),
            "atrophy pairs": int((pairs["scenario"] == "atrophy").sum()),
            "own m_scale": m_scale_on(pairs, profile.m_tiv),
            f"slope, shipped {profile.name}": atrophy_slope(pairs, profile.m_tiv, profile.m_scale),
            f"p95 error (%), shipped {profile.name}": atrophy_p95_error(pairs, profile.m_tiv, profile.m_scale),
            "m_scale fitted on the others": others_m_scale,
            "slope, fitted on the others": atrophy_slope(pairs, profile.m_tiv, others_m_scale),
        })
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """The table, then the spread (min, max, largest |slope - 1|) of each slope column."""
    lines = ["| " + " | ".join(table.columns) + " |", "|---" * len(table.columns) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    for label, reduce in (("min", np.min), ("max", np.max), ("max \\|slope - 1\\|", lambda v: np.max(np.abs(v - 1)))):
        cells = [label, "", ""]
        for column in table.columns[3:]:
            slopes = table[column].to_numpy(float)
            cells.append(f"{reduce(slopes[np.isfinite(slopes)]):.3f}" if column.startswith("slope") else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Read each person's truth and results, print the table; 0, or 2 on bad arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sim_dirs", type=Path, nargs="+", metavar="SIM_DIR", help="output(s) of 'brainlossnet simulate'")
    parser.add_argument("--derivatives", type=Path, nargs="+", default=None,
                        help="participant-level outputs, one per SIM_DIR (default SIM_DIR/accuracy/derivatives)")
    parser.add_argument("--held-out", type=Path, nargs="*", default=[], metavar="SIM_DIR",
                        help="people never used to fit (the accuracy benchmark's)")
    parser.add_argument("--calibration", default="default", help="the shipped profile to compare with (and its m_TIV)")
    args = parser.parse_args(argv)
    derivatives = args.derivatives or [d / "accuracy" / "derivatives" for d in args.sim_dirs]
    if len(derivatives) != len(args.sim_dirs):
        parser.error("give one --derivatives folder per SIM_DIR")
    held_out_dirs = {d.resolve() for d in args.held_out}
    if not held_out_dirs <= {d.resolve() for d in args.sim_dirs}:
        parser.error("every --held-out SIM_DIR must also be one of the SIM_DIRs")
    people: dict[str, pd.DataFrame] = {}
    held_out: set[str] = set()
    for sim_dir, folder in zip(args.sim_dirs, derivatives):
        pairs = person_pairs(sim_dir, folder)
        if pairs.empty:
            parser.error(f"{folder / 'group_bvl.tsv'}: no ok pair with a truth in {sim_dir / 'truth.tsv'}")
        name = str(pairs["source"].iloc[0]) if "source" in pairs else sim_dir.name
        if name in people:
            parser.error(f"{sim_dir}: person {name!r} is already given by another SIM_DIR")
        people[name] = pairs
        if sim_dir.resolve() in held_out_dirs:
            held_out.add(name)
    if len(people) - len(held_out) < 2:
        parser.error("leave-one-out needs at least two calibration people")
    profile = load_profile(args.calibration)
    print(f"profile {profile.name}: m_tiv {profile.m_tiv:.4f} (fixed in the refits), m_scale {profile.m_scale:.4f}; "
          f"model {profile.model}")
    print(to_markdown(people_table(people, held_out, profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
