"""How far the forward and backward fields of finished pairs are from each other's inverse.

Reads the intermediates that ``--save-intermediates`` left in a derivatives folder (halfway
crops' masks and both displacement fields) and prints, per pair:

- the forward change read two ways: Jacobian integration of the backward field over the BL
  mask (the pipeline's way, :func:`brainlossnet.volumetry.pair_volumes`) and the sum of the
  BL mask warped with the forward field (the paper's way); likewise the backward change. With
  exactly inverse fields the two readings of each direction agree;
- the residual ``|u_fw(x) + u_bw(x + u_fw(x))|`` in voxels inside the BL parenchyma (mean and
  99th percentile), against the mean |u_fw| there;
- the 1st and 99th percentiles of the local volume ratio ``det(I + grad u_fw)`` inside the
  BL parenchyma: how rough the field is.

    python benchmarks/field_consistency.py SIM/chris/accuracy/derivatives sub-lobe1p00 sub-atrophy2p00
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from brainlossnet.bids_app.derivatives import intermediate_paths
from brainlossnet.interfaces.nifti import load_image
from brainlossnet.jacobian import jacobian_determinant
from brainlossnet.registration import warp
from brainlossnet.volumetry import percent_change_backward, percent_change_forward


def field(path: Path) -> np.ndarray:
    """A stored (X, Y, Z, 3) displacement as (3, X, Y, Z)."""
    return np.moveaxis(load_image(path)[0], -1, 0)


def consistency_row(derivatives: Path, subject: str, session_bl: str, session_fu: str) -> dict[str, float]:
    """The numbers of one pair (see the module docstring); volumes in voxels."""
    paths = intermediate_paths(derivatives, subject, session_bl, session_fu)
    bl_mask = load_image(paths["bl_parenchyma"])[0].astype(np.float64)
    fu_mask = load_image(paths["fu_parenchyma"])[0].astype(np.float64)
    forward, backward = field(paths["field_fw"]), field(paths["field_bw"])
    bl_in_fu_jacobian = float(np.sum(bl_mask * jacobian_determinant(backward)))
    fu_in_bl_jacobian = float(np.sum(fu_mask * jacobian_determinant(forward)))
    bl_in_fu_warped = float(np.sum(warp(bl_mask, forward)))
    fu_in_bl_warped = float(np.sum(warp(fu_mask, backward)))
    inside = bl_mask > 0.5
    composed = forward + np.stack([warp(backward[axis], forward) for axis in range(3)])
    residual_vox = np.linalg.norm(composed, axis=0)[inside]
    volume_ratio = jacobian_determinant(forward)[inside]
    return {
        "fw_jacobian_pct": percent_change_forward(bl_mask.sum(), bl_in_fu_jacobian),
        "fw_warped_pct": percent_change_forward(bl_mask.sum(), bl_in_fu_warped),
        "bw_jacobian_pct": percent_change_backward(fu_mask.sum(), fu_in_bl_jacobian),
        "bw_warped_pct": percent_change_backward(fu_mask.sum(), fu_in_bl_warped),
        "residual_mean_vox": float(residual_vox.mean()),
        "residual_p99_vox": float(np.percentile(residual_vox, 99)),
        "displacement_mean_vox": float(np.linalg.norm(forward, axis=0)[inside].mean()),
        "volume_ratio_p1": float(np.percentile(volume_ratio, 1)),
        "volume_ratio_p99": float(np.percentile(volume_ratio, 99)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("derivatives", type=Path, help="output folder of a participant run with --save-intermediates")
    parser.add_argument("subjects", nargs="+", help="participant labels (with or without sub-)")
    parser.add_argument("--sessions", nargs=2, default=("bl", "fu"), metavar=("BL", "FU"), help="session labels")
    args = parser.parse_args(argv)
    print("pair | fw % (Jacobian / warped) | bw % (Jacobian / warped) | residual vox mean / p99 | mean |u| vox"
          " | volume ratio p1 / p99")
    for subject in args.subjects:
        label = subject.removeprefix("sub-")
        row = consistency_row(args.derivatives, label, *args.sessions)
        print(f"{label} | {row['fw_jacobian_pct']:+.3f} / {row['fw_warped_pct']:+.3f} | "
              f"{row['bw_jacobian_pct']:+.3f} / {row['bw_warped_pct']:+.3f} | "
              f"{row['residual_mean_vox']:.4f} / {row['residual_p99_vox']:.3f} | {row['displacement_mean_vox']:.3f} | "
              f"{row['volume_ratio_p1']:.3f} / {row['volume_ratio_p99']:.3f}", flush=True)


if __name__ == "__main__":
    main()
