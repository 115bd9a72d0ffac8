"""Accuracy and time of test-time refinement of the registration field, by number of steps.

Synthetic pairs with known truth: ``brainlossnet.phantom.make_pair`` (no repositioning, so
BL and FU share one grid and the rigid stage is skipped), cut to a crop whose axes are
multiples of 16 around the intracranial cavity. For each number of refinement steps both
directions are registered: by default with one inverse-consistent refinement
(``registration.predict_displacement_pair``) and the warped volumes by Jacobian integration
(``jacobian_determinant`` of the other direction's field summed over each
binary parenchyma mask); with ``--one-sided`` each direction alone
(``predict_displacement(..., inverse_consistent=False)``) and the masks warped with their
fields, as in the paper. Forward, backward and mean percent changes follow ``volumetry``
(Eqs. 1-3).

Optionally a real scan is checked for invented change: BL is the 1 mm crop of the scan plus
noise; FU is the same crop moved by a fraction of a voxel (cubic) with its own noise, and its
parenchyma fraction (N4 + mixture on BL) is moved the same way (linear, volume kept): the true
change is 0.

Prints one line per pair and number of steps, then a summary table per number of steps:
mean estimate per requested atrophy (truth in the header), the slope of the estimate on the
truth, the largest |fw - bw|, and the median CPU seconds (``time.process_time``) for both
directions of a pair (median over ``--repeats`` runs, then over pairs).

    python benchmarks/refinement.py --steps 0 10 25 50 100 --threads 1 \
        --real-scan ../shared/data/chris_t1.nii.gz --cache-dir /tmp/refinement_pairs
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch

from brainlossnet import geometry, registration, volumetry
from brainlossnet.jacobian import jacobian_determinant
from brainlossnet.models.registration_unet import RegistrationUNet
from brainlossnet.phantom import PARENCHYMA_LABELS, make_pair

PairArrays = dict[str, np.ndarray]


def phantom_pair(seed: int, atrophy_pct: float, scale: float, cache_dir: Path | None) -> PairArrays:
    """BL/FU images and binary parenchyma masks of a phantom pair, cropped; ``true`` = true dBPV (%)."""
    cached = cache_dir / f"phantom_s{seed}_a{atrophy_pct:+.2f}_x{scale:.2f}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        return dict(np.load(cached))
    pair = make_pair(seed, atrophy_pct=atrophy_pct, scale=scale, reposition=False)
    shape = tuple(int(16 * np.ceil(n * scale / 16)) for n in geometry.CROP_SHAPE)
    start = geometry.crop_box_start(pair.bl.icv_frac > 0.5, shape)

    def cut(array: np.ndarray) -> np.ndarray:
        return geometry.crop(np.asarray(array, dtype=np.float32), pair.bl.affine, start, shape)[0]

    arrays = {
        "bl": cut(pair.bl.image),
        "fu": cut(pair.fu.image),
        "bl_mask": cut(np.isin(pair.bl.labels, PARENCHYMA_LABELS)),
        "fu_mask": cut(np.isin(pair.fu.labels, PARENCHYMA_LABELS)),
        "true": np.float64(pair.true_dbpv_pct),
    }
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **arrays)
    return arrays


def rescan_pair(scan: Path, shift_vox: tuple[float, float, float], noise_frac: float, seed: int) -> PairArrays:
    """A no-change pair from one real scan: sub-voxel move and independent noise (true change 0)."""
    import nibabel as nib

    from brainlossnet.intracranial import intracranial_mask
    from brainlossnet.parenchyma import parenchyma_fraction

    image = nib.load(str(scan))
    iso, iso_affine = geometry.reslice_to_isotropic(image.get_fdata(dtype=np.float32), image.affine)
    cavity = intracranial_mask(iso)
    start = geometry.crop_box_start(cavity)
    crop = geometry.crop(iso, iso_affine, start)[0].astype(np.float32)
    tissue = parenchyma_fraction(crop, geometry.crop(cavity, iso_affine, start)[0])
    # moved(x) = crop(x - shift): the BL->FU field is +shift
    moved = scipy.ndimage.shift(crop, shift_vox, order=3, mode="constant")
    moved_tissue = scipy.ndimage.shift(tissue, shift_vox, order=1, mode="constant")
    rng = np.random.default_rng(seed)
    sigma = noise_frac * float(np.percentile(crop[crop > 0], 99))

    def noisy(a: np.ndarray) -> np.ndarray:
        return np.clip(a + rng.normal(0.0, sigma, a.shape), 0.0, None).astype(np.float32)

    return {"bl": noisy(crop), "fu": noisy(moved), "bl_mask": tissue, "fu_mask": moved_tissue, "true": np.float64(0.0)}


def measure(pair: PairArrays, model: RegistrationUNet, steps: int, repeats: int, inverse_consistent: bool) -> dict[str, float]:
    """Forward/backward/mean dBPV (%) and median CPU seconds per pair for one number of steps.

    Warped masks (paper, Eqs. 1-2) and, for inverse-consistent fields, Jacobian integration
    (``jacobian_determinant`` of the other direction's field over each mask).
    """
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        if inverse_consistent:
            forward, backward = registration.predict_displacement_pair(model, pair["bl"], pair["fu"], refine_steps=steps)
        else:
            forward, backward = (
                registration.predict_displacement(model, moving, fixed, refine_steps=steps, inverse_consistent=False)
                for moving, fixed in ((pair["bl"], pair["fu"]), (pair["fu"], pair["bl"]))
            )
        seconds.append(time.process_time() - start)
    voxel_mm = (1.0, 1.0, 1.0)
    bl_ml, fu_ml = (volumetry.volume_ml(pair[k], voxel_mm) for k in ("bl_mask", "fu_mask"))
    fw = volumetry.percent_change_forward(bl_ml, volumetry.volume_ml(registration.warp(pair["bl_mask"], forward), voxel_mm))
    bw = volumetry.percent_change_backward(fu_ml, volumetry.volume_ml(registration.warp(pair["fu_mask"], backward), voxel_mm))
    result = {"fw": fw, "bw": bw, "mean": (fw + bw) / 2.0, "seconds": statistics.median(seconds)}
    if inverse_consistent:
        fw_jac = volumetry.percent_change_forward(
            bl_ml, volumetry.volume_ml(pair["bl_mask"] * jacobian_determinant(backward), voxel_mm))
        bw_jac = volumetry.percent_change_backward(
            fu_ml, volumetry.volume_ml(pair["fu_mask"] * jacobian_determinant(forward), voxel_mm))
        result.update(fw=fw_jac, bw=bw_jac, mean=(fw_jac + bw_jac) / 2.0, fw_mask=fw, bw_mask=bw)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--atrophy", type=float, nargs="+", default=[0.0, -0.5, -1.0, -2.0], help="requested dBPV (%%)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10, 25, 50, 100])
    parser.add_argument("--scale", type=float, default=1.0, help="phantom size (1 = adult head, 176x208x208 crop)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each pair (median time)")
    parser.add_argument("--real-scan", type=Path, help="a real T1w scan for the no-change rescan check")
    parser.add_argument("--cache-dir", type=Path, help="keep the cropped phantom pairs here (outside the repository)")
    parser.add_argument("--one-sided", action="store_true",
                        help="refine each direction alone and warp masks (default: inverse-consistent, Jacobian integration)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = registration.load_registration_model("cpu")
    pairs: dict[str, PairArrays] = {}
    for seed in args.seeds:
        for atrophy in args.atrophy:
            pairs[f"phantom s{seed} {atrophy:+.1f}%"] = phantom_pair(seed, atrophy, args.scale, args.cache_dir)
    if args.real_scan is not None:
        pairs[f"rescan {args.real_scan.name}"] = rescan_pair(args.real_scan, (0.3, -0.4, 0.25), 0.02, seed=0)
    registration.predict_displacement(model, *(next(iter(pairs.values()))[k] for k in ("bl", "fu")), refine_steps=1)  # warm-up
    mode = "one-sided, warped masks" if args.one_sided else "inverse-consistent, Jacobian integration"

    print(f"model {registration.MODEL_VERSION}, {mode}, torch threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'pair':36s} {'steps':>5s} {'true %':>7s} {'fw %':>7s} {'bw %':>7s} {'mean %':>7s} {'cpu s':>6s}", flush=True)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for name, pair in pairs.items():
        for steps in args.steps:
            r = measure(pair, model, steps, args.repeats, not args.one_sided)
            results[name, steps] = r
            print(f"{name:36s} {steps:5d} {float(pair['true']):+7.3f} {r['fw']:+7.3f} {r['bw']:+7.3f} "
                  f"{r['mean']:+7.3f} {r['seconds']:6.1f}", flush=True)

    phantoms = [n for n in pairs if n.startswith("phantom")]
    levels = sorted(set(args.atrophy), reverse=True)
    truth = {a: statistics.mean(float(pairs[f"phantom s{s} {a:+.1f}%"]["true"]) for s in args.seeds) for a in levels}
    header = " ".join(f"{f'{truth[a]:+.2f}':>7s}" for a in levels)
    extra = f" {'rescan':>7s}" if args.real_scan is not None else ""
    print(f"\nmean dBPV (%) over {len(args.seeds)} phantom subject(s); columns = true change")
    print(f"{'steps':>5s} {header}{extra} {'slope':>6s} {'max|fw-bw|':>10s} {'cpu s':>6s}")
    for steps in args.steps:
        estimates = [statistics.mean(results[f"phantom s{s} {a:+.1f}%", steps]["mean"] for s in args.seeds) for a in levels]
        x = np.array([float(pairs[n]["true"]) for n in phantoms])
        y = np.array([results[n, steps]["mean"] for n in phantoms])
        slope = float(np.polyfit(x, y, 1)[0])
        spread = max(abs(results[n, steps]["fw"] - results[n, steps]["bw"]) for n in pairs)
        seconds = statistics.median(results[n, steps]["seconds"] for n in pairs)
        rescan = f" {results[f'rescan {args.real_scan.name}', steps]['mean']:+7.3f}" if args.real_scan is not None else ""
        print(f"{steps:5d} " + " ".join(f"{e:+7.3f}" for e in estimates) + f"{rescan} {slope:6.2f} {spread:10.3f} {seconds:6.1f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (timings are inflated on a shared machine)")


if __name__ == "__main__":
    main()
