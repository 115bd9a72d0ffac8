"""Warp-and-measure and correction stages: a known field gives the known volume change."""

import json

import nibabel as nib
import numpy as np
import pytest

from brainlossnet.calibration import profile_path
from brainlossnet.interfaces.volumes import correct, measure_volumes


def ball(shape, radius):
    centre = (np.array(shape) - 1) / 2
    return (np.linalg.norm(np.indices(shape) - centre[:, None, None, None], axis=0) < radius).astype(np.uint8)


def scaling_field(shape, factor):
    """Pull-back field of a uniform scaling about the centre: x + u(x) = c + (x - c) / factor."""
    centre = (np.array(shape) - 1) / 2
    offsets = np.indices(shape) - centre[:, None, None, None]
    return np.moveaxis(offsets / factor - offsets, 0, -1).astype(np.float32)


def test_a_uniform_scaling_field_gives_the_known_volume_change(tmp_path, monkeypatch):
    """Jacobian integration reads a uniform scaling exactly, whatever the mask's edge."""
    monkeypatch.chdir(tmp_path)
    shape, factor = (48, 48, 48), 0.99  # FU is BL shrunk by 1 % per axis
    affine = np.eye(4)
    files = {}
    for name, radius in (("bpv_bl", 12.0), ("tiv_bl", 18.0), ("bpv_fu", 12.0 * factor), ("tiv_fu", 18.0 * factor)):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(ball(shape, radius), affine), str(files[name]))
    for name, f in (("fw", factor), ("bw", 1 / factor)):
        files[name] = tmp_path / f"field_{name}.nii.gz"
        nib.save(nib.Nifti1Image(scaling_field(shape, f), affine), str(files[name]))
    volumes_file, _ = measure_volumes(
        bl_parenchyma=files["bpv_bl"], bl_intracranial=files["tiv_bl"],
        fu_parenchyma=files["bpv_fu"], fu_intracranial=files["tiv_fu"],
        field_fw=files["fw"], field_bw=files["bw"],
    )
    volumes = json.loads(volumes_file.read_text())
    expected_pct = 100 * (factor**3 - 1)
    forward_pct = 100 * (volumes["bpv_fu_from_bl_ml"] - volumes["bpv_bl_ml"]) / volumes["bpv_bl_ml"]
    assert forward_pct == pytest.approx(expected_pct, rel=1e-4)
    result_file, _ = correct(volumes=volumes_file, calibration=profile_path("prior"))
    result = json.loads(result_file.read_text())
    assert result["dbpv"] == pytest.approx(expected_pct, rel=0.02)
    assert result["dtiv"] == pytest.approx(expected_pct, rel=0.02)
    # A pure scaling is distortion: with m_tiv = 1 the corrected BVL is much smaller than dBPV.
    assert abs(result["bvl"]) < 0.1 * abs(result["dbpv"])
    assert result["calibration"]["name"] == "prior"


def test_a_sub_voxel_translation_keeps_volumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shape = (40, 40, 40)
    files = {}
    for name, radius in (("bpv", 9.0), ("tiv", 14.0)):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(ball(shape, radius), np.eye(4)), str(files[name]))
    shift = np.zeros((*shape, 3), np.float32)
    shift[..., :] = [0.37, -0.21, 0.6]
    nib.save(nib.Nifti1Image(shift, np.eye(4)), str(tmp_path / "fw.nii.gz"))
    nib.save(nib.Nifti1Image(-shift, np.eye(4)), str(tmp_path / "bw.nii.gz"))
    volumes_file, _ = measure_volumes(
        bl_parenchyma=files["bpv"], bl_intracranial=files["tiv"],
        fu_parenchyma=files["bpv"], fu_intracranial=files["tiv"],
        field_fw=tmp_path / "fw.nii.gz", field_bw=tmp_path / "bw.nii.gz",
    )
    volumes = json.loads(volumes_file.read_text())
    assert volumes["bpv_fu_from_bl_ml"] == pytest.approx(volumes["bpv_bl_ml"], rel=1e-6)
    assert volumes["tiv_bl_from_fu_ml"] == pytest.approx(volumes["tiv_fu_ml"], rel=1e-6)
