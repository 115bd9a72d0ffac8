"""Segment stage: the parenchyma fraction of a synthetic head (inside its crop-stage TIV mask) against its labels."""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet.interfaces.preprocess import crop, reslice
from brainlossnet.interfaces.segment import segment


def test_segment_maps_match_the_phantom_volumes(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    resliced, _ = reslice(in_file=small_pair_files["bl"])
    cropped, intracranial, _, _ = crop(in_file=resliced, crop_shape=small_crop)
    parenchyma, _ = segment(in_file=cropped, intracranial=intracranial)
    assert parenchyma.name == "crop_1mm_parenchyma_fraction.nii"
    cavity = nib.load(str(intracranial)).get_fdata() > 0.5
    fraction_image = nib.load(str(parenchyma))
    assert fraction_image.get_data_dtype() == np.float32
    fraction = fraction_image.get_fdata()
    truth = small_pair_files["pair"].bl
    assert cavity.sum() / 1000 == pytest.approx(truth.icv_ml, rel=0.06)
    assert fraction.sum() / 1000 == pytest.approx(truth.parenchyma_ml, rel=0.10)
    assert fraction.min() >= 0.0 and fraction.max() <= 1.0
    assert not np.any(fraction[~cavity])


def test_segment_refuses_a_mask_on_another_grid(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    resliced, _ = reslice(in_file=small_pair_files["bl"])
    cropped, intracranial, _, _ = crop(in_file=resliced, crop_shape=small_crop)
    mask = nib.load(str(intracranial))
    shifted = tmp_path / "shifted_mask.nii.gz"
    moved_affine = mask.affine.copy()
    moved_affine[:3, 3] += 1.0
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), moved_affine), str(shifted))
    with pytest.raises(ValueError, match="not on the voxel grid"):
        segment(in_file=cropped, intracranial=shifted)


def test_the_cache_key_changes_with_the_parenchyma_definition(tmp_path):
    """A work dir filled by a release with another definition (binary masks) must miss."""
    from brainlossnet.interfaces.segment import segment_task

    image, mask = tmp_path / "image.nii", tmp_path / "mask.nii"
    for path in (image, mask):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(path))
    release = segment_task(in_file=image, intracranial=mask)
    assert release.inputs.definition == "fraction-linear-partial-volume"
    same = segment_task(in_file=image, intracranial=mask, definition="fraction-linear-partial-volume")
    other = segment_task(in_file=image, intracranial=mask, definition="binary-mask")
    assert release.checksum == same.checksum != other.checksum


def test_segment_refuses_another_parenchyma_definition(tmp_path, monkeypatch, small_pair_files, small_crop):
    """The definition is a cache-key input: a request for another one must not pass silently."""
    monkeypatch.chdir(tmp_path)
    resliced, _ = reslice(in_file=small_pair_files["bl"])
    cropped, intracranial, _, _ = crop(in_file=resliced, crop_shape=small_crop)
    with pytest.raises(ValueError, match="parenchyma definition 'binary'"):
        segment(in_file=cropped, intracranial=intracranial, definition="binary")
