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
from brainlossnet.volumetry import PairVolumes, brain_volume_loss, pair_volumes


@pydra.mark.annotate({"return": {"volumes": File, "elapsed_s": float}})
def measure_volumes(
    bl_parenchyma: File,
    bl_intracranial: File,
    fu_parenchyma: File,
    fu_intracranial: File,
    field_fw: File,
    field_bw: File,
) -> tuple[Path, float]:
    """Native volumes of the parenchyma fraction maps and TIV masks, and each one's volume in
    the other space (ml), Eqs. 1-2.

    Read by Jacobian integration of the other direction's field
    (:func:`~brainlossnet.volumetry.pair_volumes`).
    """
    start = time.perf_counter()
    masks = {name: load_image(path) for name, path in (
        ("bl_parenchyma", bl_parenchyma), ("bl_intracranial", bl_intracranial),
        ("fu_parenchyma", fu_parenchyma), ("fu_intracranial", fu_intracranial),
    )}
    volumes = pair_volumes(
        **{name: image for name, (image, _) in masks.items()},
        field_fw_vox=np.moveaxis(load_image(field_fw)[0], -1, 0),
        field_bw_vox=np.moveaxis(load_image(field_bw)[0], -1, 0),
        voxel_mm=voxel_sizes_mm(masks["bl_parenchyma"][1]),
    )
    return save_json(asdict(volumes), Path.cwd() / "volumes.json"), time.perf_counter() - start


@pydra.mark.annotate({"return": {"result": File, "elapsed_s": float}})
def correct(volumes: File, calibration: File) -> tuple[Path, float]:
    """Percent changes (Eqs. 1-4) and the corrected, rescaled BVL (Eqs. 6, 8-10).

    ``calibration`` is the profile's JSON file, so the cache follows its content.
    """
    start = time.perf_counter()
    measured = PairVolumes(**load_json(volumes))
    profile = load_profile(calibration)
    loss = brain_volume_loss(measured, m_tiv=profile.m_tiv, m_scale=profile.m_scale)
    document = {**asdict(measured), **loss.as_dict(), "calibration": profile.as_dict()}
    return save_json(document, Path.cwd() / "brain_volume_loss.json"), time.perf_counter() - start


measure_volumes_task = pydra.mark.task(measure_volumes)
correct_task = pydra.mark.task(correct)
