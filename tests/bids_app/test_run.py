"""run.main: exit codes, subcommand dispatch, and the participant/group bookkeeping.

The bookkeeping tests replace ``run_pairs`` by a stand-in that returns fixed results,
so they check only what run.py does with results (files, rows, exit codes), not the
method; the end-to-end test of the real pipeline lives with the workflows.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import brainlossnet.workflows.participant as participant
from brainlossnet.bids_app.group import read_table
from brainlossnet.bids_app.run import main
from brainlossnet.registration import REFINE_FINE_LEARNING_RATE_VOX, REFINE_FINE_STEPS, REFINE_STEPS


@pytest.fixture
def dataset(bids_tree, t1w):
    """sub-01: three dated sessions; sub-02: sessions 1, 2 and 10 (undated); sub-03: one."""
    files = {
        t1w("01", "a"): {"AcquisitionDateTime": "2021-01-01T10:00:00"},
        t1w("01", "b"): {"AcquisitionDateTime": "2019-01-01T10:00:00"},
        t1w("01", "c"): {"AcquisitionDateTime": "2020-01-01T10:00:00"},
        t1w("02", "1"): None, t1w("02", "2"): None, t1w("02", "10"): None,
        t1w("02", "2", "run-2"): None,
        t1w("03", "1"): None,
    }
    return bids_tree(files)


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_help_and_version_exit_0(capsys):
    assert main(["--help"]) == 0
    assert main(["--version"]) == 0
    assert "brainlossnet" in capsys.readouterr().out


def test_usage_error_exits_64(tmp_path):
    assert main([str(tmp_path), str(tmp_path / "out"), "participant", "--pairing", "x"]) == 64


def test_missing_inputs_exit_66(tmp_path, dataset):
    out, work = str(tmp_path / "out"), str(tmp_path / "work")
    assert main([str(tmp_path / "nowhere"), out, "participant", "-w", work]) == 66
    not_bids = tmp_path / "not_bids"
    not_bids.mkdir()
    assert main([str(not_bids), out, "participant", "-w", work]) == 66
    assert main([str(dataset), out, "participant", "-w", work, "--participant-label", "sub-09"]) == 66
    assert main([str(dataset), out, "participant", "-w", work, "--participant-label", "03"]) == 66
    assert main([str(dataset), out, "participant", "-w", work, "--session-label", "zz"]) == 66
    assert main([str(dataset), out, "participant", "-w", work,
                 "--bids-filter-file", str(tmp_path / "absent.json")]) == 66
    selective = tmp_path / "filter.json"
    selective.write_text(json.dumps({"t1w": {"acquisition": "none_such"}}))
    assert main([str(dataset), out, "participant", "-w", work, "--bids-filter-file", str(selective)]) == 66
    assert main([str(dataset), out, "participant", "-w", work,
                 "--calibration", str(tmp_path / "absent_profile.json")]) == 66
    assert main([str(dataset), out, "participant", "-w", work, "--calibration", "no_such_profile"]) == 66
    assert main([str(dataset), out, "group"]) == 66  # nothing to gather yet
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_invalid_calibration_profile_exits_64_naming_the_file(tmp_path, dataset, caplog):
    bad = tmp_path / "site.json"
    bad.write_text(json.dumps({"name": "site", "typo": 1}))
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--calibration", str(bad)]) == 64
    assert "site.json: not a valid calibration profile" in caplog.text


def test_bad_filter_file_exits_64(tmp_path, dataset):
    bad = tmp_path / "filter.json"
    bad.write_text("{oops")
    assert main([str(dataset), str(tmp_path / "out"), "participant",
                 "--bids-filter-file", str(bad)]) == 64


def test_unusable_output_or_work_dir_exits_73(tmp_path, dataset):
    work = str(tmp_path / "work")
    assert main([str(dataset), str(dataset / "out"), "participant", "-w", work]) == 73
    assert main([str(dataset), str(dataset), "participant", "-w", work]) == 73
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(dataset / "work")]) == 73
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main([str(dataset), str(blocker / "out"), "participant", "-w", work]) == 73
    assert not (dataset / "out").exists() and not (dataset / "work").exists()


def test_subcommands_are_dispatched(monkeypatch):
    seen = {}

    def entry(name):
        def main_(argv):
            seen[name] = argv
            return 3
        return types.SimpleNamespace(main=main_)

    monkeypatch.setitem(sys.modules, "brainlossnet.bids_app.demo", entry("demo"))
    monkeypatch.setitem(sys.modules, "brainlossnet.bids_app.cli.train", entry("train"))
    assert main(["demo", "--out", "x"]) == 3
    assert main(["train", "--epochs", "1"]) == 3
    assert seen == {"demo": ["--out", "x"], "train": ["--epochs", "1"]}


class StandInRunPairs:
    """Replaces run_pairs: records its arguments, returns fixed results for each pair.

    Pairs of subjects in ``fail`` fail; the others are ok with a BVL made from their
    session labels and small intermediate images written into the work dir.
    """

    def __init__(self, fail: tuple[str, ...] = ()):
        self.fail = fail
        self.calls: list[dict] = []

    def __call__(self, pairs, *, work_dir, options, plugin="cf", nprocs=1, plugin_args=None, on_result=None,
                 on_stage=None, gpus=None, max_gpu_tasks_per_device=1, stop_on_first_crash=False):
        self.calls.append(dict(pairs=list(pairs), work_dir=work_dir, options=options,
                               plugin=plugin, nprocs=nprocs, plugin_args=plugin_args, gpus=gpus,
                               stop_on_first_crash=stop_on_first_crash))
        results = []
        for pair in pairs:
            if pair.subject in self.fail:
                results.append(participant.PairResult(
                    pair=pair, status="failed", message=f"{pair.t1w_fu}: crop: no head found",
                    metrics={}, files={}))
                continue
            files = {}
            for key in ("bl_halfway", "fu_halfway", "bl_parenchyma", "fu_parenchyma",
                        "bl_intracranial", "fu_intracranial", "field_fw", "field_bw"):
                files[key] = Path(work_dir) / f"{pair.subject}{pair.session_bl}{pair.session_fu}_{key}.nii.gz"
                nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), files[key])
            bvl = -float(len(pair.session_bl + pair.session_fu))
            results.append(participant.PairResult(
                pair=pair, status="ok", message="",
                metrics={"bvl": bvl, "bvl_fw": bvl, "bvl_bw": bvl, "dbpv": 0.5, "dtiv": 0.1,
                         "bpv_bl_ml": 1100.0, "bpv_fu_ml": 1090.0, "tiv_bl_ml": 1500.0,
                         "tiv_fu_ml": 1500.0, "model_version": "stand-in"},
                files=files))
        for result in results if on_result else ():
            on_result(result)
        return results


def test_participant_bookkeeping_with_stand_in_run_pairs(tmp_path, dataset, monkeypatch, caplog):
    stand_in = StandInRunPairs(fail=("02",))
    monkeypatch.setattr(participant, "run_pairs", stand_in)
    out, work = tmp_path / "out", tmp_path / "work"
    with caplog.at_level(logging.INFO, logger="brainlossnet"):
        code = main([str(dataset), str(out), "participant", "-w", str(work), "--nprocs", "2",
                     "--device", "cpu", "--crop-shape", "32", "48", "40", "--seed", "3",
                     "--refine-fine-steps", "0", "--save-intermediates"])
    assert code == 1  # sub-02 failed
    assert os.environ["NO_ET"] == "1"
    call, = stand_in.calls
    assert (call["work_dir"], call["plugin"], call["nprocs"]) == (work, "cf", 2)
    assert call["options"] == participant.PipelineOptions(
        device="cpu", calibration="default", crop_shape=(32, 48, 40), seed=3, refine_fine_steps=0)
    pairs = [(p.subject, p.session_bl, p.session_fu, p.t1w_fu.name) for p in call["pairs"]]
    assert pairs == [  # sub-01 by date (b, c, a); sub-02 by label (1, 2, 10), run-2 chosen
        ("01", "b", "c", "sub-01_ses-c_T1w.nii.gz"), ("01", "c", "a", "sub-01_ses-a_T1w.nii.gz"),
        ("02", "1", "2", "sub-02_ses-2_run-2_T1w.nii.gz"), ("02", "2", "10", "sub-02_ses-10_T1w.nii.gz")]
    assert "sub-03 skipped" in caplog.text
    assert (f"calibration profile default was fitted for --refine-steps 30 --refine-fine-steps {REFINE_FINE_STEPS} "
            f"(step {REFINE_FINE_LEARNING_RATE_VOX:g}), not for this run's 30 and 0 (step 0)") in caplog.text

    rows = read_table(out / "group_bvl.tsv")
    assert [(r["participant_id"], r["session_bl"], r["session_fu"], r["status"], r["bvl"]) for r in rows] == [
        ("sub-01", "b", "c", "ok", "-2.0"), ("sub-01", "c", "a", "ok", "-2.0"),
        ("sub-02", "1", "2", "failed", "n/a"), ("sub-02", "2", "10", "failed", "n/a")]
    assert rows[2]["message"].endswith("sub-02_ses-2_run-2_T1w.nii.gz: crop: no head found")

    files = _listing(out)
    assert "dataset_description.json" in files and "group_bvl.tsv" in files
    assert [f for f in files if f.endswith("_bvl.json")] == [
        "sub-01/anat/sub-01_from-b_to-c_bvl.json", "sub-01/anat/sub-01_from-c_to-a_bvl.json",
        "sub-02/anat/sub-02_from-1_to-2_bvl.json", "sub-02/anat/sub-02_from-2_to-10_bvl.json"]
    assert len([f for f in files if f.endswith(".nii.gz")]) == 2 * 8  # the ok pairs only
    assert not [f for f in files if f.startswith("sub-02") and f.endswith(".nii.gz")]
    assert not [f for f in files if Path(f).name.startswith(".") and f != ".group_bvl.tsv.lock"]
    record = json.loads((out / "sub-01/anat/sub-01_from-b_to-c_bvl.json").read_text())
    assert record["source_files"]["fu"] == "sub-01/ses-c/anat/sub-01_ses-c_T1w.nii.gz"
    assert record["options"]["pairing"] == "consecutive" and record["model_version"] == "stand-in"
    assert (record["options"]["refine_steps"], record["options"]["refine_fine_steps"]) == (REFINE_STEPS, 0)
    assert record["options"]["refine_fine_learning_rate_vox"] == REFINE_FINE_LEARNING_RATE_VOX

    # sub-02 again, now ok: its rows are replaced, sub-01's kept
    monkeypatch.setattr(participant, "run_pairs", StandInRunPairs())
    assert main([str(dataset), str(out), "participant", "-w", str(work),
                 "--participant-label", "02"]) == 0
    table = (out / "group_bvl.tsv").read_text()
    rows = read_table(out / "group_bvl.tsv")
    assert [(r["participant_id"], r["status"]) for r in rows] == [
        ("sub-01", "ok"), ("sub-01", "ok"), ("sub-02", "ok"), ("sub-02", "ok")]
    assert not [f for f in _listing(out) if f.startswith("sub-02") and f.endswith(".nii.gz")]

    # the group level rebuilds the same table from the per-pair records
    (out / "group_bvl.tsv").unlink()
    assert main([str(dataset), str(out), "group"]) == 0
    assert (out / "group_bvl.tsv").read_text() == table


def test_profile_fitted_for_other_weights_is_used_with_a_warning(tmp_path, dataset, monkeypatch, caplog):
    from brainlossnet.calibration import load_profile

    other = tmp_path / "retrained.json"
    other.write_text(json.dumps(load_profile().as_dict() | {"name": "old-fit", "model": "blnet-reg-0.0.1+123"}))
    monkeypatch.setattr(participant, "run_pairs", StandInRunPairs())
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--participant-label", "01", "--calibration", str(other)]) == 0
    assert "calibration profile old-fit was fitted for model blnet-reg-0.0.1+123" in caplog.text
    caplog.clear()
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--participant-label", "01"]) == 0
    assert "was fitted for model" not in caplog.text


def test_profile_fitted_on_another_parenchyma_definition_is_used_with_a_warning(tmp_path, dataset, monkeypatch,
                                                                                caplog):
    from brainlossnet.calibration import load_profile

    shipped = load_profile().as_dict()
    other = tmp_path / "binary.json"
    other.write_text(json.dumps(shipped | {"name": "binary-fit",
                                           "fit": shipped["fit"] | {"parenchyma_definition": "binary-mask"}}))
    monkeypatch.setattr(participant, "run_pairs", StandInRunPairs())
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--participant-label", "01", "--calibration", str(other)]) == 0
    assert "calibration profile binary-fit was fitted on parenchyma maps of another definition (binary-mask)" \
        in caplog.text
    caplog.clear()
    assert main([str(dataset), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--participant-label", "01"]) == 0
    assert "another definition" not in caplog.text


def test_engine_failure_fails_every_pair(tmp_path, dataset, monkeypatch):
    def broken_run_pairs(pairs, **kwargs):
        raise RuntimeError("worker pool died")

    monkeypatch.setattr(participant, "run_pairs", broken_run_pairs)
    out = tmp_path / "out"
    assert main([str(dataset), str(out), "participant", "-w", str(tmp_path / "work"),
                 "--participant-label", "01", "--pairing", "all"]) == 1
    rows = read_table(out / "group_bvl.tsv")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"failed"}
    assert {r["message"] for r in rows} == {"workflow error: RuntimeError: worker pool died"}
