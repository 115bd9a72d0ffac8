"""Reslice and crop stages: orientation, voxel size, box shape and containment, refusals."""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet import geometry, phantom
from brainlossnet.interfaces.preprocess import crop, reslice


def test_reslice_makes_1mm_ras_from_a_flipped_anisotropic_scan(tmp_path, monkeypatch, save_head):
    monkeypatch.chdir(tmp_path)
    head = phantom.make_head(1, scale=0.5, voxel_mm=(1.2, 1.0, 1.1)).reoriented("LPS")
    source = save_head(head, tmp_path / "las.nii.gz")
    out_file, elapsed_s = reslice(in_file=source)
    resliced = nib.load(str(out_file))
    np.testing.assert_allclose(resliced.affine[:3, :3], np.eye(3))
    assert nib.aff2axcodes(resliced.affine) == ("R", "A", "S")
    assert elapsed_s >= 0
    # The same anatomy at the same place: intensity integral and centre of mass in world mm.
    source_image = head.image_int16().astype(float)
    resliced_image = resliced.get_fdata()
    assert resliced_image.sum() == pytest.approx(source_image.sum() * np.prod(head.voxel_mm), rel=0.01)

    def centre_mm(image, affine):
        weights = image / image.sum()
        voxel = np.array([np.sum(weights * grid) for grid in np.indices(image.shape)])
        return affine[:3, :3] @ voxel + affine[:3, 3]

    np.testing.assert_allclose(
        centre_mm(resliced_image, resliced.affine), centre_mm(source_image, head.affine), atol=0.3
    )


def test_reslice_refuses_a_4d_image_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), str(path))
    with pytest.raises(ValueError, match="bold.nii.gz.*3D"):
        reslice(in_file=path)


def test_crop_holds_the_whole_cavity_in_a_box_of_the_requested_shape(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    resliced, _ = reslice(in_file=small_pair_files["bl"])
    out_file, mask_file, _, _ = crop(in_file=resliced, crop_shape=small_crop)
    box = nib.load(str(out_file))
    mask = nib.load(str(mask_file)).get_fdata() > 0.5
    assert box.shape == small_crop
    assert geometry.faces_touched(mask) == []
    truth_ml = small_pair_files["pair"].bl.icv_ml
    assert mask.sum() / 1000 == pytest.approx(truth_ml, rel=0.06)


def test_crop_refuses_a_scan_whose_field_of_view_cuts_the_skull_top(tmp_path, monkeypatch, small_crop):
    monkeypatch.chdir(tmp_path)
    head = phantom.make_head(2, scale=0.5)
    cavity_top = np.flatnonzero(np.any(np.isin(head.labels, list(phantom.INTRACRANIAL_LABELS)), axis=(0, 1)))[-1]
    image = head.image_int16()[:, :, : cavity_top - 8]
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(image, head.affine), str(path))
    resliced, _ = reslice(in_file=path)
    with pytest.raises(ValueError, match=r"resliced_1mm\.nii.*superior edge"):
        crop(in_file=resliced, crop_shape=small_crop)
