"""Pair stage: rigid registration of the two crops and resampling of both scans into halfway space."""

import time
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet import geometry
from brainlossnet.interfaces.nifti import load_image, save_image, save_json, stage_image_path
from brainlossnet.rigid import register_rigid_both_ways


@pydra.mark.annotate(
    {"return": {
        "bl_halfway": File, "fu_halfway": File,
        "bl_intracranial": File, "fu_intracranial": File,
        "transform": File, "elapsed_s": float,
    }}
)
def rigid_halfway(
    bl_crop: File, fu_crop: File, bl_source: File, fu_source: File,
    bl_crop_mask: File, fu_crop_mask: File, seed: int = 0,
) -> tuple[Path, Path, Path, Path, Path, float]:
    """Register the BL and FU crops rigidly both ways (side by side); resample each source scan once.

    The transform is the log-domain mean of the registration FU->BL and the inverse of
    BL->FU (:func:`geometry.symmetric_rigid`), so exchanging BL and FU gives the same
    halfway images, exchanged. Each halfway image is interpolated (cubic B-spline) straight
    from the original scan, through the composition of its voxel grid, half of the rigid
    transform and the halfway crop grid: one interpolation per scan.

    Each session's intracranial (TIV) mask, found by deepbet in the crop stage, follows its
    image through the same half transform (linear interpolation, kept where it exceeds one
    half), so the TIV mask of a halfway image is deepbet's without running deepbet twice.
    """
    start = time.perf_counter()
    bl_image, bl_affine = load_image(bl_crop)
    fu_image, fu_affine = load_image(fu_crop)
    fu_to_bl = geometry.symmetric_rigid(*register_rigid_both_ways(bl_image, bl_affine, fu_image, fu_affine, seed=seed))
    crop_shape = bl_image.shape
    halfway_affine = geometry.halfway_grid_affine(
        geometry.grid_center_mm(bl_image.shape, bl_affine),
        geometry.grid_center_mm(fu_image.shape, fu_affine),
        fu_to_bl,
        crop_shape,
    )
    images, masks = [], []
    for name, source_file, mask_file, halfway_to_source in (
        ("bl", bl_source, bl_crop_mask, geometry.rigid_power(fu_to_bl, 0.5)),
        ("fu", fu_source, fu_crop_mask, geometry.rigid_power(fu_to_bl, -0.5)),
    ):
        source, source_affine = load_image(source_file)
        halfway = geometry.resample(
            source, source_affine, crop_shape, halfway_affine, world_transform=halfway_to_source, order=3
        )
        images.append(save_image(np.clip(halfway, 0, None), halfway_affine, stage_image_path(f"{name}_halfway")))
        crop_mask, crop_mask_affine = load_image(mask_file)
        mask = geometry.resample(
            crop_mask, crop_mask_affine, crop_shape, halfway_affine, world_transform=halfway_to_source, order=1
        )
        mask_path = stage_image_path(f"{name}_halfway_intracranial_mask")
        masks.append(save_image(mask > 0.5, halfway_affine, mask_path, np.uint8))
    transform = save_json(
        {
            "fu_to_bl_world_ras": fu_to_bl.tolist(),
            "halfway_affine": halfway_affine.tolist(),
            "rotation_deg": float(np.degrees(np.arccos(np.clip((np.trace(fu_to_bl[:3, :3]) - 1) / 2, -1, 1)))),
            "translation_mm": float(np.linalg.norm(fu_to_bl[:3, 3])),
        },
        Path.cwd() / "rigid_halfway.json",
    )
    return images[0], images[1], masks[0], masks[1], transform, time.perf_counter() - start


rigid_halfway_task = pydra.mark.task(rigid_halfway)
