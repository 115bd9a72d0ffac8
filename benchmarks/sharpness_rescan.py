"""What a refinement setting reads on rescans (truth 0) whose scans differ in sharpness or only in noise.

Three pairs from one real head scan, made with ``pair_speed.make_rescan`` (the scan moved
rigidly by 2 degrees and 1.5 mm, resampled once with cubic interpolation, plus noise):

* ``sharperbl``: BL is the scan itself, FU the resampled scan, slightly blurrier than BL.
* ``sharperfu``: the same two images the other way round. With the same motion between the
  scans, a bias from the sharpness difference changes sign; one from the motion does not.
* ``noiseonly``: BL and FU both resampled the same way, with their own noise.

Each setting (arguments of the participant level) runs on the three pairs with one shared
work dir, so the stages before the registration are computed once. Prints dBPV, dTIV, BVL.

    python benchmarks/sharpness_rescan.py ../shared/data/chris_t1.nii.gz OUT \\
        --setting "--refine-fine-steps 0 --calibration pooled" --setting "--refine-fine-steps 2"
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from brainlossnet.accuracy_summary import to_markdown
from pair_speed import make_rescan  # benchmarks/pair_speed.py, next to this script


def write_dataset(scan: Path, root: Path) -> Path:
    """The BIDS dataset of the three rescan pairs under ``root/bids``."""
    bids = root / "bids"
    scratch = root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    resampled = {seed: make_rescan(scan, scratch / f"resampled_seed{seed}.nii.gz", seed=seed) for seed in (0, 1)}
    sessions = {"sharperbl": (scan, resampled[0]), "sharperfu": (resampled[0], scan),
                "noiseonly": (resampled[1], resampled[0])}
    for subject, (bl, fu) in sessions.items():
        for session, path in (("bl", bl), ("fu", fu)):
            folder = bids / f"sub-{subject}" / f"ses-{session}" / "anat"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / f"sub-{subject}_ses-{session}_T1w.nii.gz")
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "sharpness rescans", "BIDSVersion": "1.8.0"}))
    shutil.rmtree(scratch)
    return bids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scan", type=Path, help="real T1w head scan with skull")
    parser.add_argument("out", type=Path, help="gets bids/, work/ and one derivatives folder per setting")
    parser.add_argument("--setting", action="append", required=True, metavar="ARGS",
                        help="participant-level arguments of one setting, one string (repeatable)")
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()

    if (args.out / "bids").is_dir():
        raise SystemExit(f"{args.out / 'bids'} exists: give an empty OUT (its work/ may be reused by linking it)")
    bids = write_dataset(args.scan, args.out)
    rows = []
    for index, setting in enumerate(args.setting):
        derivatives = args.out / f"setting{index}"
        command = [sys.executable, "-m", "brainlossnet", str(bids), str(derivatives), "participant",
                   "-w", str(args.out / "work"), "--nprocs", str(args.nprocs), *shlex.split(setting)]
        if subprocess.call(command, stdout=subprocess.DEVNULL) != 0:
            raise SystemExit(f"setting {setting!r}: the participant level failed ({' '.join(command)})")
        table = pd.read_csv(derivatives / "group_bvl.tsv", sep="\t")
        for record in table.itertuples():
            rows.append({"setting": setting, "pair": record.participant_id.removeprefix("sub-"),
                         "status": record.status, "dBPV %": record.dbpv, "dTIV %": record.dtiv,
                         "BVL %": record.bvl})
    print(f"rescans of {args.scan.name} (truth 0)")
    print(to_markdown(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
