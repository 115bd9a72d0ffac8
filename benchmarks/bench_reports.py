"""Time to draw one pair report (and its size) on full-size 176 x 208 x 208 crops.

The pair is a synthetic head (brainlossnet.phantom) with 1 % atrophy, its true
parenchyma and intracranial masks, and a smooth forward field (a 1 % scaling plus a
random smooth part), so the numbers do not depend on a pipeline run. With
``--intermediates PREFIX`` the images, masks and forward field written by
``--save-intermediates`` for one pair are used instead.

    python benchmarks/bench_reports.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.ndimage

from brainlossnet import phantom
from brainlossnet.reports.figures import PairImages, forward_field_maps, pair_figures
from brainlossnet.reports.pair_report import load_pair_images, render_pair_report

SHAPE = (176, 208, 208)


def synthetic_pair(seed: int = 0) -> PairImages:
    pair = phantom.make_pair(seed, atrophy_pct=1.0, shape=SHAPE, reposition=False)
    grid = np.indices(SHAPE, dtype=np.float32)
    centre = (np.array(SHAPE, dtype=np.float32) - 1).reshape(3, 1, 1, 1) / 2
    rng = np.random.default_rng(seed)
    smooth = np.stack([scipy.ndimage.gaussian_filter(rng.normal(0, 1, SHAPE), 8) for _ in range(3)])
    field = (0.01 * (grid - centre) + 20.0 * smooth).astype(np.float32)
    return PairImages(
        bl=pair.bl.image, fu=pair.fu.image,
        bl_parenchyma=(pair.bl.parenchyma_frac > 0.5).astype(np.float32),
        fu_parenchyma=(pair.fu.parenchyma_frac > 0.5).astype(np.float32),
        bl_intracranial=(pair.bl.icv_frac > 0.5).astype(np.float32),
        fu_intracranial=(pair.fu.icv_frac > 0.5).astype(np.float32),
        field_fw=field, voxel_mm=np.ones(3),
    )


def from_intermediates(prefix: str) -> PairImages:
    """``prefix`` is ``OUT/sub-X/anat/sub-X_from-A_to-B``; the session files are found next to it."""
    from pathlib import Path

    base = Path(prefix)
    subject, pair = base.name.split("_", 1)
    bl, fu = pair.removeprefix("from-").split("_to-")
    files = {}
    for side, session in (("bl", bl), ("fu", fu)):
        stem = base.parent / f"{subject}_ses-{session}_{pair}_space-halfway"
        files[f"{side}_halfway"] = Path(f"{stem}_T1w.nii.gz")
        files[f"{side}_parenchyma"] = Path(f"{stem}_label-parenchyma_probseg.nii.gz")
        files[f"{side}_intracranial"] = Path(f"{stem}_label-intracranial_mask.nii.gz")
    files["field_fw"] = Path(f"{prefix}_mode-image_xfm.nii.gz")
    return load_pair_images(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--intermediates", default=None, metavar="PREFIX")
    args = parser.parse_args()
    images = from_intermediates(args.intermediates) if args.intermediates else synthetic_pair()
    record = {"participant_id": "sub-bench", "session_bl": "1", "session_fu": "2", "status": "ok",
              "bvl": -1.0, "bvl_fw": -1.0, "bvl_bw": -1.0, "dbpv": -1.0, "dtiv": 0.0}
    timings: dict[str, list[float]] = {"forward_field_maps": [], "pair_figures": [], "render_pair_report": []}
    size = 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        forward_field_maps(images)
        timings["forward_field_maps"].append(time.perf_counter() - start)
        start = time.perf_counter()
        pair_figures(images)
        timings["pair_figures"].append(time.perf_counter() - start)
        start = time.perf_counter()
        size = len(render_pair_report(record, images).encode())
        timings["render_pair_report"].append(time.perf_counter() - start)
    print(f"shape {images.bl.shape}, {args.repeats} repeats (median seconds)")
    for name, values in timings.items():
        print(f"  {name:20s} {statistics.median(values):6.2f} s")
    print(f"  report size          {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
