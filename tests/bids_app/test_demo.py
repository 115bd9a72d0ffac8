"""The demo dataset: valid BIDS, the metadata the app reads, and a consistent truth table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import bids
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlossnet import phantom
from brainlossnet.bids_app import demo

SCALE = 0.25  # tiny heads: the dataset's layout and metadata are under test, not the anatomy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("demo") / "bids"
    truth = demo.build_demo_dataset(root, n_subjects=2, seed=4, scale=SCALE)
    return root, truth


def test_pybids_finds_subjects_sessions_and_images(dataset):
    root, _ = dataset
    layout = bids.BIDSLayout(root)
    assert layout.get_subjects() == ["01", "02", "03"]
    assert layout.get_sessions(subject="01") == ["01", "02"]
    assert layout.get_sessions(subject="03") == ["01"]
    images = layout.get(suffix="T1w", extension=".nii.gz", return_type="filename")
    assert len(images) == 5
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["DatasetType"] == "raw"
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02", "sub-03"]


def test_sidecars_carry_the_acquisition_and_agree_with_scans_tsv(dataset):
    root, _ = dataset
    layout = bids.BIDSLayout(root)
    for subject in ("01", "02"):
        times = []
        for session in ("01", "02"):
            (image,) = layout.get(subject=subject, session=session, suffix="T1w", extension=".nii.gz")
            metadata = image.get_metadata()
            for key in ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength",
                        "RepetitionTime", "InversionTime", "FlipAngle", "AcquisitionDateTime"):
                assert key in metadata, (image.path, key)
            scans = root / f"sub-{subject}" / f"ses-{session}" / f"sub-{subject}_ses-{session}_scans.tsv"
            with scans.open() as handle:
                (row,) = list(csv.DictReader(handle, delimiter="\t"))
            assert row["filename"] == f"anat/{image.filename}"
            assert metadata["AcquisitionDateTime"].startswith(row["acq_time"])
            times.append(pd.Timestamp(row["acq_time"]))
        assert pd.Timedelta(days=300) < times[1] - times[0] < pd.Timedelta(days=430)


def test_images_are_int16_with_scanner_headers_and_follow_ups_in_las(dataset):
    root, _ = dataset
    for path in sorted(root.glob("sub-*/ses-*/anat/*_T1w.nii.gz")):
        image = nib.load(path)
        assert image.get_data_dtype() == np.int16
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        assert image.header.get_xyzt_units() == ("mm", "sec")
        expected = ("L", "A", "S") if "ses-02" in path.name else ("R", "A", "S")
        assert nib.aff2axcodes(image.affine) == expected
        assert np.asanyarray(image.dataobj).max() > 100  # a real image, not empty


def test_baseline_file_is_the_phantom_of_its_seed(dataset):
    root, truth = dataset
    head = phantom.make_head(1000 * 4 + 1, scale=SCALE)
    stored = np.asanyarray(nib.load(root / "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz").dataobj)
    np.testing.assert_array_equal(stored, head.image_int16())
    row = truth.set_index("participant_id").loc["sub-01"]
    assert row["true_tiv_bl_ml"] == pytest.approx(head.icv_ml)
    assert row["true_bpv_bl_ml"] == pytest.approx(head.parenchyma_ml)


def test_truth_table(dataset):
    root, truth = dataset
    assert list(truth.columns) == list(demo.TRUTH_COLUMNS)
    assert list(truth["participant_id"]) == ["sub-01", "sub-02"]
    assert set(truth["session_bl"]) == {"01"} and set(truth["session_fu"]) == {"02"}
    assert list(truth["requested_dbpv_pct"]) == [-0.5, -1.5]
    np.testing.assert_allclose(truth["true_dbpv_pct"], truth["requested_dbpv_pct"], atol=0.2)
    assert truth["true_dbpv_pct"].iloc[1] < truth["true_dbpv_pct"].iloc[0] < 0
    assert np.all(np.abs(truth["true_dtiv_pct"]) < 0.05)
    assert not any(root.rglob("*truth*"))  # the truth stays outside the BIDS tree


def test_existing_dataset_is_not_overwritten(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(FileExistsError):
        demo.build_demo_dataset(root, scale=SCALE)
    with pytest.raises(ValueError):
        demo.build_demo_dataset(tmp_path / "none", n_subjects=0, scale=SCALE)


def test_compare_with_truth_pairs_estimates_with_truth():
    truth = pd.DataFrame({
        "participant_id": ["sub-01", "sub-02", "sub-03"], "session_bl": ["01"] * 3,
        "session_fu": ["02"] * 3, "true_dbpv_pct": [-0.5, -1.5, -1.0],
    })
    group = pd.DataFrame({
        "participant_id": ["sub-02", "sub-01"], "session_bl": ["01", "01"], "session_fu": ["02", "02"],
        "bvl": ["-1.25", "n/a"], "status": ["ok", "failed"],
    })
    report = demo.compare_with_truth(truth, group)
    assert list(report["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert list(report["status"]) == ["failed", "ok", "missing"]
    assert np.isnan(report["bvl"].iloc[0]) and np.isnan(report["bvl"].iloc[2])
    assert report["error_pct"].iloc[1] == pytest.approx(0.25)


def test_main_usage(capsys):
    assert demo.main([]) == 64
    assert demo.main(["--help"]) == 0
    assert "OUTDIR" in capsys.readouterr().out
