"""Register stage: forward and backward fields on the halfway grid, each other's inverse."""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet.interfaces.register import register, register_task, resolve_device
from brainlossnet.registration import (
    MODEL_VERSION,
    REFINE_FINE_LEARNING_RATE_VOX,
    REFINE_FINE_STEPS,
    REFINE_NCC_KERNEL_VOX,
    REFINE_SMOOTHNESS_WEIGHT,
    load_registration_model,
    predict_displacement_pair,
)
from brainlossnet.sharpness import SHARPNESS_MATCHING, gaussian_blur


def test_register_writes_both_fields_on_the_grid_and_near_zero_for_identical_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    shape = (32, 48, 32)
    image = np.zeros(shape, np.float32)
    image[8:24, 10:38, 8:24] = 100 + rng.normal(0, 5, (16, 28, 16))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [5, -7, 3]
    for name in ("bl", "fu"):
        nib.save(nib.Nifti1Image(image, affine), str(tmp_path / f"{name}.nii.gz"))
    forward_file, backward_file, fu_blur_mm2, _ = register(
        bl=tmp_path / "bl.nii.gz", fu=tmp_path / "fu.nii.gz", device="cpu", refine_steps=3
    )
    assert forward_file.name == "bl_to_fu_displacement.nii"
    assert backward_file.name == "fu_to_bl_displacement.nii"
    fields = [nib.load(str(f)) for f in (forward_file, backward_file)]
    for field in fields:
        assert field.shape == (*shape, 3)
        np.testing.assert_allclose(field.affine, affine)
        assert np.all(np.isfinite(field.get_fdata()))
        assert np.abs(field.get_fdata()).max() < 0.5
    # one velocity for both directions: for identical images, forward = -backward
    np.testing.assert_allclose(fields[0].get_fdata(), -fields[1].get_fdata(), atol=1e-3)
    assert fu_blur_mm2 == pytest.approx(0.0, abs=1e-9)


def test_the_sharper_scan_is_blurred_to_the_other_before_registration(tmp_path, monkeypatch):
    """With matching, the fields are those of the pair whose sharper scan (here BL) was blurred first."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    bl = np.zeros((32, 48, 32), np.float32)
    bl[8:24, 10:38, 8:24] = 100 + rng.normal(0, 10, (16, 28, 16))
    fu = gaussian_blur(np.roll(bl, 1, axis=0), 0.3)
    for name, image in (("bl", bl), ("fu", fu)):
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    paths = {"bl": tmp_path / "bl.nii.gz", "fu": tmp_path / "fu.nii.gz", "device": "cpu", "refine_steps": 0}
    matched_fw, _, fu_blur_mm2, _ = register(**paths)
    matched_fw = np.moveaxis(nib.load(str(matched_fw)).get_fdata(dtype=np.float32), -1, 0)
    assert fu_blur_mm2 == pytest.approx(0.3, abs=0.03)
    expected_fw, _ = predict_displacement_pair(load_registration_model("cpu"), gaussian_blur(bl, fu_blur_mm2), fu,
                                               refine_steps=0)
    np.testing.assert_allclose(matched_fw, expected_fw, atol=1e-6)
    plain_fw, _, plain_blur_mm2, _ = register(**paths, sharpness_matching=False)
    assert plain_blur_mm2 == fu_blur_mm2  # measured either way, for the report
    assert not np.allclose(np.moveaxis(nib.load(str(plain_fw)).get_fdata(dtype=np.float32), -1, 0), expected_fw,
                           atol=1e-6)


def test_auto_device_is_cpu_without_a_gpu():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def _two_images(folder):
    image = np.zeros((16, 16, 16), np.float32)
    image[4:12, 4:12, 4:12] = 1.0
    paths = []
    for name in ("bl", "fu"):
        paths.append(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(paths[-1]))
    return paths


def test_the_cache_key_changes_with_the_refinement_objective_and_the_weights(tmp_path):
    """A work dir filled by another release must miss: the objective, the input matching and the weights are inputs."""
    bl, fu = _two_images(tmp_path)
    release = register_task(bl=bl, fu=fu, device="cpu")
    same = register_task(bl=bl, fu=fu, device="cpu", refine_smoothness_weight=REFINE_SMOOTHNESS_WEIGHT)
    assert release.inputs.model_version == MODEL_VERSION
    assert release.checksum == same.checksum
    others = [
        register_task(bl=bl, fu=fu, device="cpu", refine_smoothness_weight=REFINE_SMOOTHNESS_WEIGHT / 10),
        register_task(bl=bl, fu=fu, device="cpu", refine_ncc_kernel_vox=REFINE_NCC_KERNEL_VOX - 4),
        register_task(bl=bl, fu=fu, device="cpu", refine_fine_steps=REFINE_FINE_STEPS + 1),
        register_task(bl=bl, fu=fu, device="cpu", refine_fine_learning_rate_vox=REFINE_FINE_LEARNING_RATE_VOX / 2),
        register_task(bl=bl, fu=fu, device="cpu", sharpness_matching=not SHARPNESS_MATCHING),
        register_task(bl=bl, fu=fu, device="cpu", model_version="blnet-reg-0.0.0+000000000000"),
    ]
    assert len({release.checksum, *(task.checksum for task in others)}) == 7


def test_register_passes_its_refinement_inputs_to_the_registration(tmp_path, monkeypatch):
    from brainlossnet.interfaces import register as register_module

    monkeypatch.chdir(tmp_path)
    bl, fu = _two_images(tmp_path)
    received = {}

    def recording_pair(model, bl_image, fu_image, **refinement):
        received.update(refinement)
        return np.zeros((3, *bl_image.shape), np.float32), np.zeros((3, *bl_image.shape), np.float32)

    monkeypatch.setattr(register_module, "predict_displacement_pair", recording_pair)
    register(bl=bl, fu=fu, device="cpu", refine_steps=3, refine_fine_steps=5, refine_fine_learning_rate_vox=0.02,
             refine_smoothness_weight=0.7, refine_ncc_kernel_vox=9)
    assert received == {"refine_steps": 3, "refine_fine_steps": 5, "refine_fine_learning_rate_vox": 0.02,
                        "refine_smoothness_weight": 0.7, "refine_ncc_kernel_vox": 9}


def test_register_refuses_weights_other_than_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bl, fu = _two_images(tmp_path)
    with pytest.raises(ValueError, match="blnet-reg-0.0.0"):
        register(bl=bl, fu=fu, device="cpu", refine_steps=0, model_version="blnet-reg-0.0.0+000000000000")
    assert not list(tmp_path.glob("*_displacement.nii*"))
