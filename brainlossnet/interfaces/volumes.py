"""Pair stages: each mask's volume in the other session's space; correct and rescale the change."""

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pydra
from fileformats.generic import File

from brainlossnet.calibration import load_profile
from brainlossnet.geometry import voxel_sizes_mm
from brainlossnet.interfaces.nifti import load_image, load_json, save_json
from brainlossnet.jacobian import jacobian_determinant
from brainlossnet.volumetry import PairVolumes, brain_volume_loss, volume_ml


@pydra.mark.annotate({"return": {"volumes": File, "elapsed_s": float}})
def measure_volumes(
    bl_parenchyma: File,
    bl_intracranial: File,
    fu_parenchyma: File,
    fu_intracranial: File,
    field_fw: File,
    field_bw: File,
) -> tuple[Path, float]:
    """Native mask volumes and each mask's volume in the other space (ml), Eqs. 1-2.

    The volume a BL mask takes in FU space is the integral over the mask of the local
    volume ratio of the map from BL to FU, ``det(I + grad u_bw)`` (the backward field maps
    each BL voxel to its place in FU); likewise the FU masks with the forward field. This
    is the volume of the paper's warped mask, read by Jacobian integration instead of by
    summing a trilinearly resampled binary mask: no resampling of the mask's one-voxel edge,
    which left forward and backward 0.1-0.3 % apart (docs/registration.md). It needs the
    two fields to be each other's inverse, as the register stage makes them.
    """
    start = time.perf_counter()
    masks = {name: load_image(path) for name, path in (
        ("bpv_bl", bl_parenchyma), ("tiv_bl", bl_intracranial),
        ("bpv_fu", fu_parenchyma), ("tiv_fu", fu_intracranial),
    )}
    voxel_mm = voxel_sizes_mm(masks["bpv_bl"][1])
    bl_to_fu_ratio = jacobian_determinant(np.moveaxis(load_image(field_bw)[0], -1, 0))
    fu_to_bl_ratio = jacobian_determinant(np.moveaxis(load_image(field_fw)[0], -1, 0))
    volumes = PairVolumes(
        bpv_bl_ml=volume_ml(masks["bpv_bl"][0], voxel_mm),
        bpv_fu_ml=volume_ml(masks["bpv_fu"][0], voxel_mm),
        bpv_fu_from_bl_ml=volume_ml(masks["bpv_bl"][0] * bl_to_fu_ratio, voxel_mm),
        bpv_bl_from_fu_ml=volume_ml(masks["bpv_fu"][0] * fu_to_bl_ratio, voxel_mm),
        tiv_bl_ml=volume_ml(masks["tiv_bl"][0], voxel_mm),
        tiv_fu_ml=volume_ml(masks["tiv_fu"][0], voxel_mm),
        tiv_fu_from_bl_ml=volume_ml(masks["tiv_bl"][0] * bl_to_fu_ratio, voxel_mm),
        tiv_bl_from_fu_ml=volume_ml(masks["tiv_fu"][0] * fu_to_bl_ratio, voxel_mm),
    )
    return save_json(asdict(volumes), Path.cwd() / "volumes.json"), time.perf_counter() - start


@pydra.mark.annotate({"return": {"result": File, "elapsed_s": float}})
def correct(volumes: File, calibration: File) -> tuple[Path, float]:
    """Percent changes (Eqs. 1-4) and the corrected, rescaled BVL (Eqs. 6, 8-10).

    ``calibration`` is the profile's JSON file, so the cache follows its content.
    """
    start = time.perf_counter()
    pair_volumes = PairVolumes(**load_json(volumes))
    profile = load_profile(calibration)
    loss = brain_volume_loss(pair_volumes, m_tiv=profile.m_tiv, m_scale=profile.m_scale)
    document = {**asdict(pair_volumes), **loss.as_dict(), "calibration": profile.as_dict()}
    return save_json(document, Path.cwd() / "brain_volume_loss.json"), time.perf_counter() - start


measure_volumes_task = pydra.mark.task(measure_volumes)
correct_task = pydra.mark.task(correct)
