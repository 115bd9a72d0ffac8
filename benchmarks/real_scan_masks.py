"""Crop containment and masks on real head scans: prints a table and draws docs/masks_real_scans.png.

Runs the pipeline's own per-session stages (reslice, crop, segment) on each scan given and
checks that the intracranial mask touches no face of the 176x208x208 box.

    python benchmarks/real_scan_masks.py ../shared/data/*.nii.gz --figure docs/masks_real_scans.png
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from brainlossnet import geometry  # noqa: E402
from brainlossnet.interfaces.nifti import load_image  # noqa: E402
from brainlossnet.interfaces.preprocess import crop, reslice  # noqa: E402
from brainlossnet.interfaces.segment import segment  # noqa: E402


def process(scan: Path, scratch: Path) -> dict:
    """Reslice, crop and segment one scan in ``scratch``; return arrays and numbers."""
    os.chdir(scratch)
    resliced, _ = reslice(in_file=scan)
    cropped, intracranial_file, _, _ = crop(in_file=resliced)
    parenchyma_file, _ = segment(in_file=cropped, intracranial=intracranial_file)
    image, affine = load_image(cropped)
    cavity = load_image(intracranial_file)[0] > 0.5
    fraction = load_image(parenchyma_file)[0]
    voxel_ml = float(np.prod(geometry.voxel_sizes_mm(affine))) / 1000
    return {
        "image": image, "cavity": cavity, "tissue": fraction > 0.5,
        "tiv_ml": cavity.sum() * voxel_ml, "bpv_ml": float(fraction.sum()) * voxel_ml,
        "faces": geometry.faces_touched(cavity),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", nargs="+", type=Path)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    scans = [scan.resolve() for scan in args.scans]
    figure_path = args.figure.resolve() if args.figure else None
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for scan in scans:
            folder = Path(scratch) / scan.name.split(".")[0]
            folder.mkdir()
            results[scan.name] = process(scan, folder)
    print(f"{'scan':32s} {'TIV ml':>8s} {'BPV ml':>8s} {'BPV/TIV':>8s}  mask touches box faces")
    for name, result in results.items():
        print(f"{name:32s} {result['tiv_ml']:8.0f} {result['bpv_ml']:8.0f} "
              f"{result['bpv_ml'] / result['tiv_ml']:8.2f}  {', '.join(result['faces']) or 'none'}")
    if figure_path is None:
        return
    fig, axes = plt.subplots(len(results), 3, figsize=(10, 3.4 * len(results)))
    for row, (name, result) in zip(np.atleast_2d(axes), results.items()):
        centre = [int(np.mean(np.flatnonzero(np.any(result["cavity"], axis=tuple(a for a in range(3) if a != k)))))
                  for k in range(3)]
        for ax, (label, take) in zip(row, (
            ("sagittal", lambda a: a[centre[0]].T),
            ("coronal", lambda a: a[:, centre[1]].T),
            ("axial", lambda a: a[:, :, centre[2]].T),
        )):
            ax.imshow(take(result["image"]), cmap="gray", origin="lower")
            ax.contour(take(result["cavity"]).astype(float), [0.5], colors="tab:red", linewidths=0.8)
            ax.contour(take(result["tissue"]).astype(float), [0.5], colors="tab:cyan", linewidths=0.6)
            ax.set_title(f"{name.split('.')[0]} {label}", fontsize=8)
            ax.axis("off")
    fig.suptitle("176x208x208 crops: intracranial (red, deepbet) and parenchyma (cyan, N4 + Gaussian mixture)")
    fig.tight_layout()
    fig.savefig(figure_path, dpi=80)
    print(f"figure: {figure_path}")


if __name__ == "__main__":
    main()
