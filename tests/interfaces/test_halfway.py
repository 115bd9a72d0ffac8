"""Rigid halfway stage: one interpolation per scan, and symmetric in BL and FU."""

import json
import os

import nibabel as nib
import numpy as np

from brainlossnet.interfaces.halfway import rigid_halfway
from brainlossnet.interfaces.preprocess import crop, reslice


def crops_of(pair_files, tmp_path, small_crop):
    crops = {}
    for session in ("bl", "fu"):
        folder = tmp_path / f"crop_{session}"
        folder.mkdir()
        os.chdir(folder)
        resliced, _ = reslice(in_file=pair_files[session])
        crops[session] = crop(in_file=resliced, crop_shape=small_crop)[:2]
    return crops


def dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def test_swapping_baseline_and_followup_swaps_the_halfway_images(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    crops = crops_of(small_pair_files, tmp_path, small_crop)
    outputs = {}
    for order in (("bl", "fu"), ("fu", "bl")):
        folder = tmp_path / "_".join(order)
        folder.mkdir()
        os.chdir(folder)
        outputs[order] = rigid_halfway(
            bl_crop=crops[order[0]][0], fu_crop=crops[order[1]][0],
            bl_source=small_pair_files[order[0]], fu_source=small_pair_files[order[1]],
            bl_crop_mask=crops[order[0]][1], fu_crop_mask=crops[order[1]][1], seed=0,
        )
    bl_first, fu_first, _, _, transform_first, _ = outputs[("bl", "fu")]
    fu_second, bl_second, _, _, transform_second, _ = outputs[("fu", "bl")]
    # The halfway construction is exactly symmetric; what remains is ANTs' own run-to-run
    # variation of a few hundredths of a mm.
    forward = np.array(json.loads(transform_first.read_text())["fu_to_bl_world_ras"])
    backward = np.array(json.loads(transform_second.read_text())["fu_to_bl_world_ras"])
    np.testing.assert_allclose((forward @ backward)[:3, 3], 0.0, atol=0.05)
    np.testing.assert_allclose((forward @ backward)[:3, :3], np.eye(3), atol=1e-3)
    for a, b in ((bl_first, bl_second), (fu_first, fu_second)):
        image_a, image_b = nib.load(str(a)), nib.load(str(b))
        assert image_a.shape == small_crop
        np.testing.assert_allclose(image_a.affine, image_b.affine, atol=0.05)
        assert np.corrcoef(image_a.get_fdata().ravel(), image_b.get_fdata().ravel())[0, 1] > 0.999


def test_halfway_images_of_a_repositioned_pair_are_aligned(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    crops = crops_of(small_pair_files, tmp_path, small_crop)
    os.chdir(tmp_path)
    bl, fu, bl_tiv, fu_tiv, transform, _ = rigid_halfway(
        bl_crop=crops["bl"][0], fu_crop=crops["fu"][0],
        bl_source=small_pair_files["bl"], fu_source=small_pair_files["fu"],
        bl_crop_mask=crops["bl"][1], fu_crop_mask=crops["fu"][1],
    )
    bl_image, fu_image = nib.load(str(bl)).get_fdata(), nib.load(str(fu)).get_fdata()
    crop_bl, crop_fu = nib.load(str(crops["bl"][0])).get_fdata(), nib.load(str(crops["fu"][0])).get_fdata()
    aligned = np.corrcoef(bl_image.ravel(), fu_image.ravel())[0, 1]
    unaligned = np.corrcoef(crop_bl.ravel(), crop_fu.ravel())[0, 1]
    assert aligned > 0.97
    assert aligned > unaligned
    assert json.loads(transform.read_text())["translation_mm"] > 0.1
    # Each TIV mask follows its image: on the halfway grid, the same cavity in both sessions.
    masks = [nib.load(str(f)) for f in (bl_tiv, fu_tiv)]
    for mask in masks:
        assert mask.shape == small_crop
        np.testing.assert_allclose(mask.affine, nib.load(str(bl)).affine)
    bl_cavity, fu_cavity = (np.asarray(m.dataobj) > 0 for m in masks)
    crop_cavities = [np.asarray(nib.load(str(crops[s][1])).dataobj) > 0 for s in ("bl", "fu")]
    assert dice(bl_cavity, fu_cavity) > 0.97
    assert dice(bl_cavity, fu_cavity) > dice(*crop_cavities)
    cavity_mean = bl_image[bl_cavity].mean()
    assert cavity_mean > 2 * bl_image[~bl_cavity].mean()
