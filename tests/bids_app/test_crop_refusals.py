"""The crop stage refuses skull-stripped scans and fields of view that cut the posterior fossa,
naming the source file; the workflow's failure message marks them as data errors.

(Kept out of tests/interfaces/: the failure message names the outermost frame under an
``interfaces`` folder as the stage, which there would be this test.)"""

import nibabel as nib
import numpy as np
import pytest

from brainlossnet import image_checks, phantom
from brainlossnet.bids_app.review import is_data_error
from brainlossnet.image_checks import InputDataError
from brainlossnet.interfaces.preprocess import crop, reslice
from brainlossnet.workflows.participant import failure_message


SMALL_CROP = (96, 112, 112)


@pytest.fixture
def small_crop():
    return SMALL_CROP


@pytest.fixture(scope="module")
def head():
    return phantom.make_head(5, scale=0.5)


def _resliced(tmp_path, monkeypatch, image, affine, name):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / name
    nib.save(nib.Nifti1Image(image, affine), str(source))
    return source, reslice(in_file=source)[0]


def test_skull_stripped_scan_is_refused_unless_allowed(tmp_path, monkeypatch, head, small_crop):
    stripped = np.where(head.icv_frac > 0.5, head.image_int16(), 0).astype(np.int16)
    source, resliced = _resliced(tmp_path, monkeypatch, stripped, head.affine, "sub-01_ses-1_T1w.nii.gz")
    with pytest.raises(InputDataError, match=r"sub-01_ses-1_T1w.nii.gz: looks skull-stripped") as refused:
        crop(in_file=resliced, crop_shape=small_crop, source=source)
    message = failure_message(refused.value)
    assert message.startswith("crop: InputDataError: ") and is_data_error(message)
    _, _, ratio, _ = crop(in_file=resliced, crop_shape=small_crop, source=source, allow_skull_stripped=True)
    assert image_checks.looks_skull_stripped(ratio)


def test_whole_head_passes_with_a_high_surround_ratio(tmp_path, monkeypatch, head, small_crop):
    source, resliced = _resliced(tmp_path, monkeypatch, head.image_int16(), head.affine, "head.nii.gz")
    _, _, ratio, _ = crop(in_file=resliced, crop_shape=small_crop, source=source)
    assert ratio > 3 * image_checks.SKULL_STRIPPED_MAX_SURROUND


def test_field_of_view_ending_in_the_posterior_fossa_is_refused(tmp_path, monkeypatch, head, small_crop):
    cavity = np.isin(head.labels, list(phantom.INTRACRANIAL_LABELS))
    areas = np.count_nonzero(cavity, axis=(0, 1))
    fossa = int(np.argmax(areas > 0.5 * areas.max()))  # well above the foramen magnum
    source, resliced = _resliced(tmp_path, monkeypatch, head.image_int16()[:, :, fossa:],
                                 head.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, fossa], [0, 0, 0, 1.0]]),
                                 "cut.nii.gz")
    with pytest.raises(InputDataError, match=r"cut.nii.gz: the field of view cuts the skull or brainstem.*inferior"):
        crop(in_file=resliced, crop_shape=small_crop, source=source)
