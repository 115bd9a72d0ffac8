"""The derivatives writer: names, atomic writes, dataset_description, per-pair records."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainlossnet import __version__
from brainlossnet.bids_app.derivatives import (
    OutputDirError,
    atomic_copy,
    atomic_write_json,
    container_info,
    intermediate_paths,
    pair_json_path,
    prepare_output_dir,
    read_pair_records,
    write_dataset_description,
    write_pair,
)
from brainlossnet.bids_app.layout import SessionT1w
from brainlossnet.bids_app.pairing import SessionPair
from brainlossnet.workflows.participant import PairResult

INTERMEDIATES = ("bl_halfway", "fu_halfway", "bl_parenchyma", "fu_parenchyma",
                 "bl_intracranial", "fu_intracranial", "field_fw", "field_bw")


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_names():
    out = Path("/out")
    assert pair_json_path(out, "01", "bl", "m12") == out / "sub-01/anat/sub-01_from-bl_to-m12_bvl.json"
    names = {k: v.relative_to(out).as_posix() for k, v in intermediate_paths(out, "01", "1", "2").items()}
    assert names == {
        "bl_halfway": "sub-01/anat/sub-01_ses-1_from-1_to-2_space-halfway_T1w.nii.gz",
        "fu_halfway": "sub-01/anat/sub-01_ses-2_from-1_to-2_space-halfway_T1w.nii.gz",
        "bl_parenchyma": "sub-01/anat/sub-01_ses-1_from-1_to-2_space-halfway_label-parenchyma_probseg.nii.gz",
        "fu_parenchyma": "sub-01/anat/sub-01_ses-2_from-1_to-2_space-halfway_label-parenchyma_probseg.nii.gz",
        "bl_intracranial": "sub-01/anat/sub-01_ses-1_from-1_to-2_space-halfway_label-intracranial_mask.nii.gz",
        "fu_intracranial": "sub-01/anat/sub-01_ses-2_from-1_to-2_space-halfway_label-intracranial_mask.nii.gz",
        "field_fw": "sub-01/anat/sub-01_from-1_to-2_mode-image_xfm.nii.gz",
        "field_bw": "sub-01/anat/sub-01_from-2_to-1_mode-image_xfm.nii.gz",
        "transform": "sub-01/anat/sub-01_from-1_to-2_desc-halfway_xfm.json",
    }


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": np.float32(2.5), "nan": float("nan"), "p": Path("/p"),
                               "n": np.int64(3), "nested": [np.float64(np.inf)]})
    assert json.loads(target.read_text()) == {"x": 2.5, "nan": None, "p": "/p", "n": 3,
                                              "nested": [None]}
    assert _listing(tmp_path) == ["a/b.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_copy_leaves_target_untouched(tmp_path):
    target = tmp_path / "out" / "image.nii.gz"
    target.parent.mkdir()
    target.write_bytes(b"old")
    unreadable = tmp_path / "a_directory.nii.gz"
    unreadable.mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_copy(unreadable, target)
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path / "out") == ["image.nii.gz"]


def test_copy_compresses_uncompressed_nifti_deterministically(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    source = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(data, np.diag([2, 2, 2, 1])), source)
    atomic_copy(source, tmp_path / "one.nii.gz")
    atomic_copy(source, tmp_path / "two.nii.gz")
    copy = nib.load(tmp_path / "one.nii.gz")
    np.testing.assert_array_equal(copy.get_fdata(), data)
    np.testing.assert_array_equal(copy.affine, np.diag([2, 2, 2, 1]))
    assert (tmp_path / "one.nii.gz").read_bytes() == (tmp_path / "two.nii.gz").read_bytes()
    atomic_copy(tmp_path / "one.nii.gz", tmp_path / "three.nii.gz")  # gz to gz: plain copy
    assert (tmp_path / "three.nii.gz").read_bytes() == (tmp_path / "one.nii.gz").read_bytes()


def test_prepare_output_dir(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    for bad in (bids, bids / "out", bids / "sub-01" / "derivatives"):
        with pytest.raises(OutputDirError, match="inside the BIDS dataset"):
            prepare_output_dir(bad, bids)
    prepare_output_dir(bids / "derivatives" / "brainlossnet", bids)
    assert (bids / "derivatives" / "brainlossnet").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputDirError, match="cannot create"):
        prepare_output_dir(blocker / "out", bids)
    other = tmp_path / "fmriprep"
    other.mkdir()
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep", "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.0"}]}))
    with pytest.raises(OutputDirError, match="fMRIPrep"):
        prepare_output_dir(other, bids)


def test_dataset_description(tmp_path, monkeypatch):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "src", "BIDSVersion": "1.9.0", "DatasetDOI": "doi:10.1/xyz"}))
    out = tmp_path / "out"
    for variable in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER",
                     "BRAINLOSSNET_CONTAINER_TYPE", "BRAINLOSSNET_CONTAINER_TAG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/brainlossnet_0.1.0.sif")
    prepare_output_dir(out, bids)
    description = json.loads(write_dataset_description(out, bids).read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "brainlossnet"
    assert description["GeneratedBy"][0]["Version"] == __version__
    assert description["GeneratedBy"][0]["Container"] == {"Type": "apptainer",
                                                           "Tag": "brainlossnet_0.1.0.sif"}
    assert description["SourceDatasets"] == [{"URL": bids.resolve().as_uri(), "DOI": "doi:10.1/xyz"}]
    prepare_output_dir(out, bids)  # our own derivatives: accepted again

    monkeypatch.delenv("APPTAINER_CONTAINER")
    monkeypatch.setenv("BRAINLOSSNET_CONTAINER_TYPE", "docker")
    monkeypatch.setenv("BRAINLOSSNET_CONTAINER_TAG", "brainlossnet:0.1.0")
    assert container_info() == {"Type": "docker", "Tag": "brainlossnet:0.1.0"}


def _pair(tmp_path: Path) -> SessionPair:
    bids = tmp_path / "bids"
    files = [bids / f"sub-01/ses-{s}/anat/sub-01_ses-{s}_T1w.nii.gz" for s in ("1", "2")]
    other = bids / "sub-01/ses-2/anat/sub-01_ses-2_acq-fast_T1w.nii.gz"
    return SessionPair(
        SessionT1w("01", "1", files[0], datetime(2020, 1, 1), (files[0],)),
        SessionT1w("01", "2", files[1], datetime(2021, 1, 1, 12), (files[1], other)),
    )


def _result(pair: SessionPair, tmp_path: Path, status: str = "ok") -> PairResult:
    work = tmp_path / "work"
    files = {}
    for key in INTERMEDIATES:
        files[key] = work / f"{key}.nii"
        files[key].parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.full((2, 2, 2), len(key), np.float32), np.eye(4)), files[key])
    files["transform"] = work / "rigid_halfway.json"
    files["transform"].write_text('{"rotation_deg": 1.5}')
    metrics = {"bvl": np.float64(-0.75), "bvl_fw": -0.7, "bvl_bw": -0.8, "dbpv": -0.3,
               "bpv_bl_ml": 1200.5, "calibration": {"name": "default", "m_tiv": 0.9},
               "model_version": "m1", "stage_seconds": {"register": 3.25},
               "options": {"crop_shape": [32, 32, 32], "seed": 0}}
    if status == "ok":
        return PairResult(pair=pair.spec, status="ok", message="", metrics=metrics, files=files)
    return PairResult(pair=pair.spec, status="failed", message="segment: ValueError: empty mask",
                      metrics={}, files={})


def test_write_pair_record_and_intermediates(tmp_path):
    pair = _pair(tmp_path)
    out = tmp_path / "out"
    options = {"pairing": "consecutive", "device": "cpu", "calibration": "default",
               "crop_shape": [32, 32, 32], "seed": 0}
    record = write_pair(out, pair, _result(pair, tmp_path), bids_dir=tmp_path / "bids",
                        options=options, save_intermediates=True)
    stored = json.loads(pair_json_path(out, "01", "1", "2").read_text())
    assert stored == json.loads(json.dumps(record))
    assert stored["participant_id"] == "sub-01"
    assert (stored["session_bl"], stored["session_fu"], stored["status"]) == ("1", "2", "ok")
    assert stored["bvl"] == -0.75 and stored["bpv_bl_ml"] == 1200.5
    assert stored["calibration"] == {"name": "default", "m_tiv": 0.9}
    assert stored["model_version"] == "m1" and stored["stage_seconds"] == {"register": 3.25}
    assert stored["source_files"] == {"bl": "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
                                      "fu": "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz"}
    assert stored["t1w_candidates"]["fu"][1] == "sub-01/ses-2/anat/sub-01_ses-2_acq-fast_T1w.nii.gz"
    assert stored["acquisition_time"] == {"bl": "2020-01-01T00:00:00", "fu": "2021-01-01T12:00:00"}
    assert stored["interval_days"] == pytest.approx(366.5)
    assert stored["options"] == options
    assert stored["generated_by"]["Version"] == __version__
    targets = intermediate_paths(out, "01", "1", "2")
    assert stored["intermediates"] == {k: p.relative_to(out).as_posix() for k, p in targets.items()}
    for key in INTERMEDIATES:
        assert nib.load(targets[key]).get_fdata()[0, 0, 0] == len(key)
    assert json.loads(targets["transform"].read_text()) == {"rotation_deg": 1.5}
    assert len(_listing(out)) == len(targets) + 1

    # a rerun without --save-intermediates leaves only the record of this run
    write_pair(out, pair, _result(pair, tmp_path), bids_dir=tmp_path / "bids", options=options)
    assert _listing(out) == ["sub-01/anat/sub-01_from-1_to-2_bvl.json"]
    assert json.loads(pair_json_path(out, "01", "1", "2").read_text())["intermediates"] == {}


def test_the_binary_masks_of_an_earlier_release_are_removed_when_the_pair_is_written_again(tmp_path):
    pair = _pair(tmp_path)
    out = tmp_path / "out"
    legacy = [out / f"sub-01/anat/sub-01_ses-{s}_from-1_to-2_space-halfway_label-parenchyma_mask.nii.gz" for s in "12"]
    for path in legacy:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
    write_pair(out, pair, _result(pair, tmp_path), bids_dir=tmp_path / "bids", options={}, save_intermediates=True)
    assert not any(path.exists() for path in legacy)
    assert intermediate_paths(out, "01", "1", "2")["bl_parenchyma"].exists()


def test_failed_pair_record_replaces_old_result(tmp_path):
    pair = _pair(tmp_path)
    out = tmp_path / "out"
    write_pair(out, pair, _result(pair, tmp_path), bids_dir=tmp_path / "bids", options={},
               save_intermediates=True)
    record = write_pair(out, pair, _result(pair, tmp_path, "failed"), bids_dir=tmp_path / "bids",
                        options={}, save_intermediates=True)
    assert record["status"] == "failed"
    assert record["message"] == "segment: ValueError: empty mask"
    assert "bvl" not in record and record["intermediates"] == {}
    assert _listing(out) == ["sub-01/anat/sub-01_from-1_to-2_bvl.json"]


def test_read_pair_records_reports_bad_files(tmp_path):
    pair = _pair(tmp_path)
    out = tmp_path / "out"
    write_pair(out, pair, _result(pair, tmp_path), bids_dir=tmp_path / "bids", options={})
    bad = out / "sub-02/anat/sub-02_from-1_to-2_bvl.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{truncated")
    alien = out / "sub-03/anat/sub-03_from-1_to-2_bvl.json"
    alien.parent.mkdir(parents=True)
    alien.write_text("{}")
    problems = []
    records = read_pair_records(out, lambda path, why: problems.append((path, why)))
    assert [r["participant_id"] for r in records] == ["sub-01"]
    assert [p for p, _ in problems] == [bad, alien]
