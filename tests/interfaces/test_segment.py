"""Segment stage: TIV and parenchyma masks of a synthetic head against its labels."""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet.interfaces.preprocess import crop, reslice
from brainlossnet.interfaces.segment import segment


def test_segment_masks_match_the_phantom_volumes(tmp_path, monkeypatch, small_pair_files, small_crop):
    monkeypatch.chdir(tmp_path)
    resliced, _ = reslice(in_file=small_pair_files["bl"])
    cropped, _, _, _ = crop(in_file=resliced, crop_shape=small_crop)
    intracranial, parenchyma, _ = segment(in_file=cropped)
    assert intracranial.name == "crop_1mm_intracranial_mask.nii.gz"
    cavity = nib.load(str(intracranial)).get_fdata() > 0.5
    tissue = nib.load(str(parenchyma)).get_fdata() > 0.5
    truth = small_pair_files["pair"].bl
    assert cavity.sum() / 1000 == pytest.approx(truth.icv_ml, rel=0.06)
    assert tissue.sum() / 1000 == pytest.approx(truth.parenchyma_ml, rel=0.10)
    assert not np.any(tissue & ~cavity)
