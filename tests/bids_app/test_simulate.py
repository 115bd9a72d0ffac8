"""``brainlossnet simulate``: a BIDS dataset the app's own reader accepts, with the truth beside it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlossnet import phantom
from brainlossnet.bids_app import layout, simulate
from brainlossnet.bids_app.demo import TRUTH_COLUMNS
from brainlossnet.bids_app.run import main as run_main
from brainlossnet.sharpness import relative_blur_vox2

REQUIRED = [*TRUTH_COLUMNS, "scenario", "region", "scaling", "nonlinear", "true_dbpv_spread_pct", "seed"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("source")
    # a small head on a fine grid, brought to 1 mm by --scale 0.5
    head = phantom.make_head(5, scale=0.4, voxel_mm=(0.5, 0.5, 0.5), supersample=1, orientation="LAS")
    nib.save(nib.Nifti1Image(head.image_int16(), head.affine), root / "head.nii.gz")
    nib.save(nib.Nifti1Image((head.icv_frac > 0.5).astype(np.uint8), head.affine), root / "cavity.nii.gz")
    return root / "head.nii.gz", root / "cavity.nii.gz"


def _args(source: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["simulate", str(source[0]), str(out), "--cavity-mask", str(source[1]), "--scale", "0.5",
            "--seed", "3", "--no-pipeline-mask", "--distortion-pct", "-0.5", *extra]


@pytest.fixture(scope="module")
def dataset(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("simulated")
    code = run_main(_args(source, out, "--atrophy-pct", "0,-0.5", "--regional-pct", "", "--n-rescans", "1"))
    assert code == 0
    return out


def test_truth_table_has_the_contract_columns_and_numbers(dataset):
    truth = pd.read_csv(dataset / "truth.tsv", sep="\t", dtype={"session_bl": str, "session_fu": str})
    assert list(truth.columns[: len(REQUIRED)]) == REQUIRED
    assert not (dataset / "bids" / "truth.tsv").exists()
    rows = truth.set_index("participant_id")
    assert set(rows.index) == {
        "sub-atrophy0p00", "sub-atrophy0p50", "sub-rescan1",
        "sub-scaleiso0p8", "sub-scaleiso0p8atrophy0p50", "sub-scaleaniso", "sub-scaleanisoatrophy0p50",
        "sub-warp", "sub-warpatrophy0p50", "sub-blur", "sub-bluratrophy0p50",
    }
    assert rows.loc["sub-atrophy0p50", "true_dbpv_pct"] == pytest.approx(-0.5, abs=2e-3)
    assert rows.loc["sub-atrophy0p50", "region"] == "whole"
    assert rows.loc["sub-rescan1", "true_dbpv_pct"] == 0.0 and rows.loc["sub-rescan1", "scenario"] == "rescan"
    assert rows.loc["sub-atrophy0p00", "true_dbpv_spread_pct"] == 0.0
    # distortion: the truth is the anatomy's change only
    assert rows.loc["sub-scaleiso0p8", "true_dbpv_pct"] == 0.0
    assert rows.loc["sub-scaleiso0p8", "scaling"] == "1.008x1.008x1.008"
    assert rows.loc["sub-warpatrophy0p50", "true_dbpv_pct"] == rows.loc["sub-atrophy0p50", "true_dbpv_pct"]
    assert bool(rows.loc["sub-warp", "nonlinear"]) and not bool(rows.loc["sub-scaleaniso", "nonlinear"])
    assert rows.loc["sub-blur", "blur_mm2"] == 0.1 and rows.loc["sub-warp", "blur_mm2"] == 0.0
    assert rows.loc["sub-blur", "true_dbpv_pct"] == 0.0 and rows.loc["sub-blur", "true_dtiv_pct"] == 0.0
    assert (truth["session_bl"] == "bl").all() and (truth["session_fu"] == "fu").all()
    assert (truth["true_tiv_bl_ml"] > truth["true_bpv_bl_ml"]).all()


def test_the_blurred_follow_up_is_blurrier_by_the_planned_variance(dataset):
    """FU of ``blur`` read back by the registration's own estimate: about 0.1 mm² blurrier than BL."""
    images = {session: nib.load(dataset / "bids" / "sub-blur" / f"ses-{session}" / "anat" / f"sub-blur_ses-{session}_T1w.nii.gz")
              for session in ("bl", "fu")}
    voxel_mm = images["bl"].header.get_zooms()[:3]
    assert np.allclose(voxel_mm, 1.0)
    assert relative_blur_vox2(*(images[s].get_fdata(dtype=np.float32) for s in ("bl", "fu"))) == pytest.approx(0.1, abs=0.04)


def test_dataset_is_read_by_the_app_layout(dataset):
    bids_dir = dataset / "bids"
    opened = layout.open_layout(bids_dir)
    sessions = layout.collect_sessions(opened)
    truth = pd.read_csv(dataset / "truth.tsv", sep="\t")
    assert {f"sub-{s}" for s in sessions} == set(truth["participant_id"])
    for subject, found in sessions.items():
        assert sorted(s.session for s in found) == ["bl", "fu"]
        bl, fu = sorted(found, key=lambda s: s.session)
        assert bl.acquired is not None and fu.acquired is not None and fu.acquired > bl.acquired
        image = nib.load(bl.t1w)
        assert image.get_data_dtype() == np.int16
        assert 1000 < np.asarray(image.dataobj.get_unscaled()).max() <= simulate.INT16_RANGE
        metadata = json.loads(bl.t1w.with_name(bl.t1w.name.replace(".nii.gz", ".json")).read_text())
        assert {"Manufacturer", "MagneticFieldStrength", "RepetitionTime", "AcquisitionDateTime"} <= set(metadata)
    participants = pd.read_csv(bids_dir / "participants.tsv", sep="\t")
    assert set(participants["participant_id"]) == set(truth["participant_id"])
    assert json.loads((bids_dir / "dataset_description.json").read_text())["DatasetType"] == "raw"


def test_seeded_rerun_is_bitwise_identical_per_pair(source, dataset, tmp_path):
    # a rerun of a subset gives the same files for its pairs: a pair depends on the seed and its label only
    assert run_main(_args(source, tmp_path, "--scenarios", "distortion", "--distortion-pct", "0")) == 0
    shared = ["sub-scaleiso0p8", "sub-scaleaniso", "sub-warp"]
    files = sorted(p.relative_to(tmp_path / "bids") for s in shared for p in (tmp_path / "bids" / s).rglob("*")
                   if p.is_file())
    assert len(files) == 3 * (2 * 3 + 1)  # image, sidecar, scans.tsv per session; sessions.tsv per subject
    for relative in files:
        assert (tmp_path / "bids" / relative).read_bytes() == (dataset / "bids" / relative).read_bytes(), relative
    first = pd.read_csv(dataset / "truth.tsv", sep="\t").set_index("participant_id")
    second = pd.read_csv(tmp_path / "truth.tsv", sep="\t").set_index("participant_id")
    pd.testing.assert_frame_equal(second.loc[shared], first.loc[shared])


def test_usage_errors_and_existing_output(source, dataset, tmp_path):
    assert run_main(_args(source, dataset)) == 73  # never overwrites a dataset
    assert run_main(["simulate", str(tmp_path / "missing.nii.gz"), str(tmp_path / "out")]) == 66
    assert run_main(_args(source, tmp_path / "out", "--scenarios", "atrophy,motion")) == 64
    assert run_main(_args(source, tmp_path / "out", "--scale", "2")) == 64


def test_plan_labels():
    plans = simulate.plan_pairs(("atrophy", "rescan"), (0.0, -0.25, 0.5), (-1.0,), 2)
    assert [p.label for p in plans] == ["atrophy0p00", "atrophy0p25", "atrophyplus0p50", "lobe1p00",
                                        "ventricles1p00", "rescan1", "rescan2"]
    assert plans[0].seed(0) == plans[0].seed(0) != plans[1].seed(0)
