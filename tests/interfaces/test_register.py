"""Register stage: a displacement field in the fixed grid, from the packaged network."""

import nibabel as nib
import numpy as np

from brainlossnet.interfaces.register import register, resolve_device


def test_register_writes_a_field_on_the_fixed_grid_and_near_zero_for_identical_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    shape = (32, 48, 32)
    image = np.zeros(shape, np.float32)
    image[8:24, 10:38, 8:24] = 100 + rng.normal(0, 5, (16, 28, 16))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [5, -7, 3]
    for name in ("moving", "fixed"):
        nib.save(nib.Nifti1Image(image, affine), str(tmp_path / f"{name}.nii.gz"))
    field_file, _ = register(moving=tmp_path / "moving.nii.gz", fixed=tmp_path / "fixed.nii.gz", device="cpu")
    assert field_file.name == "moving_to_fixed_displacement.nii.gz"
    field = nib.load(str(field_file))
    assert field.shape == (*shape, 3)
    np.testing.assert_allclose(field.affine, affine)
    assert np.all(np.isfinite(field.get_fdata()))
    assert np.abs(field.get_fdata()).max() < 0.5


def test_auto_device_is_cpu_without_a_gpu():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
