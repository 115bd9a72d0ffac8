"""Register stage: forward and backward fields on the halfway grid, each other's inverse."""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet.interfaces.register import register, register_task, resolve_device
from brainlossnet.registration import MODEL_VERSION, REFINE_FINE_STEPS, REFINE_NCC_KERNEL_VOX, REFINE_SMOOTHNESS_WEIGHT


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
    forward_file, backward_file, _ = register(
        bl=tmp_path / "bl.nii.gz", fu=tmp_path / "fu.nii.gz", device="cpu", refine_steps=3
    )
    assert forward_file.name == "bl_to_fu_displacement.nii.gz"
    assert backward_file.name == "fu_to_bl_displacement.nii.gz"
    fields = [nib.load(str(f)) for f in (forward_file, backward_file)]
    for field in fields:
        assert field.shape == (*shape, 3)
        np.testing.assert_allclose(field.affine, affine)
        assert np.all(np.isfinite(field.get_fdata()))
        assert np.abs(field.get_fdata()).max() < 0.5
    # one velocity for both directions: for identical images, forward = -backward
    np.testing.assert_allclose(fields[0].get_fdata(), -fields[1].get_fdata(), atol=1e-3)


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
    """A work dir filled by another release must miss: the objective and the weights are inputs."""
    bl, fu = _two_images(tmp_path)
    release = register_task(bl=bl, fu=fu, device="cpu")
    same = register_task(bl=bl, fu=fu, device="cpu", refine_smoothness_weight=REFINE_SMOOTHNESS_WEIGHT)
    assert release.inputs.model_version == MODEL_VERSION
    assert release.checksum == same.checksum
    others = [
        register_task(bl=bl, fu=fu, device="cpu", refine_smoothness_weight=REFINE_SMOOTHNESS_WEIGHT / 10),
        register_task(bl=bl, fu=fu, device="cpu", refine_ncc_kernel_vox=REFINE_NCC_KERNEL_VOX - 4),
        register_task(bl=bl, fu=fu, device="cpu", refine_fine_steps=REFINE_FINE_STEPS + 1),
        register_task(bl=bl, fu=fu, device="cpu", model_version="blnet-reg-0.0.0+000000000000"),
    ]
    assert len({release.checksum, *(task.checksum for task in others)}) == 5


def test_register_refuses_weights_other_than_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bl, fu = _two_images(tmp_path)
    with pytest.raises(ValueError, match="blnet-reg-0.0.0"):
        register(bl=bl, fu=fu, device="cpu", refine_steps=0, model_version="blnet-reg-0.0.0+000000000000")
    assert not list(tmp_path.glob("*_displacement.nii.gz"))
