"""The participant level for real on a tiny synthetic dataset: outputs, group table, cache."""

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainlossnet.bids_app.run import main
from brainlossnet.workflows.stages import STAGES


def task_results(work_dir: Path) -> dict[Path, float]:
    """Every cached task result in the work dir, with its modification time."""
    return {path: path.stat().st_mtime for path in work_dir.glob("FunctionTask_*/_result.pklz")}


def run_logs(output_dir: Path) -> str:
    """The log files of every participant run into output_dir, together."""
    return "".join(path.read_text() for path in sorted((output_dir / "logs").glob("participant_*.log")))


def test_participant_level_writes_every_number_for_each_pair(tiny_run):
    assert tiny_run.exit_code == 0
    table = pd.read_csv(tiny_run.output_dir / "group_bvl.tsv", sep="\t", dtype={"session_bl": str, "session_fu": str})
    required = {"participant_id", "session_bl", "session_fu", "bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv",
                "bpv_bl_ml", "tiv_bl_ml", "status", "message"}
    assert required <= set(table.columns)
    assert sorted(table["participant_id"]) == ["sub-01", "sub-02"]  # sub-03 has one session: skipped
    assert set(table["status"]) == {"ok"}
    assert np.all(np.isfinite(table[["bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv"]].to_numpy(float)))
    np.testing.assert_allclose(table["bvl"], (table["bvl_fw"] + table["bvl_bw"]) / 2, rtol=1e-9)
    for row in table.itertuples():
        truth = tiny_run.truth.set_index("participant_id").loc[row.participant_id]
        assert abs(row.tiv_bl_ml / truth.true_tiv_bl_ml - 1) < 0.06
        assert abs(row.bpv_bl_ml / truth.true_bpv_bl_ml - 1) < 0.12
    description = json.loads((tiny_run.output_dir / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    pair_jsons = sorted(tiny_run.output_dir.glob("sub-*/anat/*_bvl.json"))
    assert len(pair_jsons) == 2
    record = json.loads(pair_jsons[0].read_text())
    for key in ("bpv_bl_ml", "bpv_fu_ml", "bpv_fu_from_bl_ml", "bpv_bl_from_fu_ml", "tiv_bl_ml", "tiv_fu_ml",
                "tiv_fu_from_bl_ml", "tiv_bl_from_fu_ml", "dbpv_fw", "dbpv_bw", "dtiv_fw", "dtiv_bw",
                "bvl_fw", "bvl_bw", "bvl", "model_version", "calibration", "stage_seconds"):
        assert key in record, key
    assert record["parenchyma_definition"] == "fraction-linear-partial-volume"
    assert set(record["stage_seconds"]) == {"reslice", "crop", "rigid_halfway", "segment", "register",
                                            "volumes", "correct"}
    assert not list(tiny_run.output_dir.rglob(".*tmp*"))
    log = run_logs(tiny_run.output_dir)
    for stage in STAGES:
        assert re.search(rf"sub-01 01->02: {stage} done in \d+\.\d s \(\d/7 stages done\)", log), stage


def test_rerun_recomputes_nothing_and_a_changed_scan_recomputes_only_its_pair(tiny_run):
    before = task_results(tiny_run.work_dir)
    table_before = (tiny_run.output_dir / "group_bvl.tsv").read_text()
    assert main(tiny_run.app_args()) == 0
    assert task_results(tiny_run.work_dir) == before
    assert all(f"sub-01 01->02: {stage} reused from the work dir" in run_logs(tiny_run.output_dir) for stage in STAGES)
    assert (tiny_run.output_dir / "group_bvl.tsv").read_text() == table_before

    changed = next(tiny_run.bids_dir.glob("sub-02/ses-02/anat/*_T1w.nii.gz"))
    image = nib.load(str(changed))
    data = np.asarray(image.dataobj).copy()
    data[tuple(s // 2 for s in data.shape)] += 7
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(changed))
    assert main(tiny_run.app_args()) == 0
    after = task_results(tiny_run.work_dir)
    assert all(after[path] == mtime for path, mtime in before.items())
    new = set(after) - set(before)
    # Only nodes downstream of that one scan can run again: reslice_fu and crop_fu, the
    # halfway, both segmentations and registrations, volumes and correction (at most 9).
    assert 3 <= len(new) <= 9
    rows = pd.read_csv(tiny_run.output_dir / "group_bvl.tsv", sep="\t").set_index("participant_id")
    rows_before = pd.read_csv(pd.io.common.StringIO(table_before), sep="\t").set_index("participant_id")
    assert rows.loc["sub-01", "bvl"] == rows_before.loc["sub-01", "bvl"]
