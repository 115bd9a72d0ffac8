"""The real pipeline on awkward data: orientation, a refused subject, SIGKILL and resume, determinism.

Built on the tiny demo run shared by the suite (``tiny_run`` of tests/conftest.py:
half-size synthetic heads, 96 x 112 x 112 crops), whose sub-01 is the canonical copy:

* a second dataset holds **the same voxel data** of that sub-01 stored oblique and
  flipped: axes permuted and flipped (negative determinant) and the affine rotated in
  world space (the head tilted in the scanner) for both sessions, the FU also zero-padded
  to another matrix size; and a sub-03 whose FU is a truncated file, refused before any
  stage. It is run once (module fixture);
* sub-01 of the demo is run again into a fresh work dir, killed with SIGKILL in the middle
  of a stage, resumed, and compared bit for bit with the first run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from brainlossnet.bids_app.group import read_table
from brainlossnet.bids_app.run import main

TINY = ["--crop-shape", "96", "112", "112", "--device", "cpu"]


def _rotation(angles_deg: tuple[float, float, float], center: np.ndarray) -> np.ndarray:
    """4x4 world rotation about ``center`` (x, then y, then z axis)."""
    rx, ry, rz = np.radians(angles_deg)
    x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    rotation = np.eye(4)
    rotation[:3, :3] = z @ y @ x
    rotation[:3, 3] = center - rotation[:3, :3] @ center
    return rotation


def _t1w(root: Path, subject: str, session: str) -> Path:
    return root / f"sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}_T1w.nii.gz"


def _write(path: Path, data: np.ndarray, affine: np.ndarray, sidecar: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(sidecar.read_text())
    return path


def build_dataset(root: Path, demo: Path) -> Path:
    """sub-01: demo sub-01 oblique, flipped, permuted (FU padded); sub-03: demo sub-01, FU truncated."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "faults", "BIDSVersion": "1.9.0"}))
    sources = {session: _t1w(demo, "01", f"0{session}") for session in ("1", "2")}
    first = nib.load(str(sources["1"]))
    center = first.affine[:3, :3] @ (np.array(first.shape) / 2) + first.affine[:3, 3]
    tilt = _rotation((12.0, -5.0, 8.0), center)
    for session, source in sources.items():
        image = nib.load(str(source))
        sidecar = source.with_name(source.name.replace(".nii.gz", ".json"))
        data = np.asarray(image.dataobj)
        transform = nio.ornt_transform(nio.io_orientation(image.affine), nio.axcodes2ornt(tuple("PIL")))
        flipped = nio.apply_orientation(data, transform)  # permuted axes, flips: no interpolation
        affine = tilt @ image.affine @ nio.inv_ornt_aff(transform, data.shape)
        assert np.linalg.det(affine[:3, :3]) < 0 and nib.aff2axcodes(affine) != ("R", "A", "S")
        if session == "2":  # another matrix size: zero padding, the affine keeps the world place
            flipped = np.pad(flipped, ((3, 0), (0, 5), (2, 2)))
            affine = affine @ np.array([[1, 0, 0, -3], [0, 1, 0, 0], [0, 0, 1, -2], [0, 0, 0, 1.0]])
        _write(_t1w(root, "01", session), flipped, affine, sidecar)
        copy = _write(_t1w(root, "03", session), data, image.affine, sidecar)
        if session == "2":
            copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])
    return root


@dataclass
class Run:
    bids_dir: Path
    output_dir: Path
    work_dir: Path
    exit_code: int

    def record(self, subject: str) -> dict:
        return json.loads((self.output_dir / f"sub-{subject}/anat/sub-{subject}_from-1_to-2_bvl.json").read_text())


def demo_record(tiny_run) -> dict:
    return json.loads((tiny_run.output_dir / "sub-01/anat/sub-01_from-01_to-02_bvl.json").read_text())


@pytest.fixture(scope="module")
def faults_run(tmp_path_factory, tiny_run) -> Run:
    root = tmp_path_factory.mktemp("faults")
    bids = build_dataset(root / "bids", tiny_run.bids_dir)
    run = Run(bids, root / "out", root / "work", -1)
    run.exit_code = main([str(bids), str(run.output_dir), "participant", "-w", str(run.work_dir),
                          "--nprocs", "1", *TINY])
    return run


NUMBERS = ("bvl", "bvl_fw", "bvl_bw", "dbpv_fw", "dbpv_bw", "dtiv_fw", "dtiv_bw",
           "bpv_bl_ml", "bpv_fu_ml", "tiv_bl_ml", "tiv_fu_ml")


def test_refused_subject_fails_alone_with_exit_65(faults_run):
    assert faults_run.exit_code == 65
    rows = {row["participant_id"]: row for row in read_table(faults_run.output_dir / "group_bvl.tsv")}
    assert {key: row["status"] for key, row in rows.items()} == {"sub-01": "ok", "sub-03": "failed"}
    truncated = _t1w(faults_run.bids_dir, "03", "2")
    assert rows["sub-03"]["message"].startswith(f"input check: InputDataError: {truncated}: truncated or corrupt gzip")
    assert (faults_run.output_dir / "logs/sub-03_from-1_to-2_crash.txt").is_file()
    assert not (faults_run.output_dir / "logs/sub-01_from-1_to-2_crash.txt").exists()


def test_oblique_flipped_copy_gives_the_same_bvl_as_the_canonical_one(faults_run, tiny_run):
    canonical, oblique = demo_record(tiny_run), faults_run.record("01")
    assert canonical["status"] == oblique["status"] == "ok" and oblique["flags"] == []
    # Same voxels on a tilted, flipped grid: the 1 mm reslice interpolates them differently,
    # and deepbet finds the TIV mask on that reslice, which moves the masks of these half-size
    # heads (details below the voxel size) by up to about 2.5 % in volume (measured 2.3 %);
    # the percent changes, measured within each pair, agree to 0.05 points: the reslice makes
    # the oblique copy a noise-free "rescan" of the canonical one, which the refined
    # registration reads as a change of a few hundredths of a percent (measured 0.04 for BVL
    # on a -0.5 % pair), a third of the rescan target of 0.15 %.
    for key in ("bpv_bl_ml", "bpv_fu_ml", "tiv_bl_ml", "tiv_fu_ml"):
        assert oblique[key] == pytest.approx(canonical[key], rel=0.03), key
    for key in ("bvl", "dbpv", "dtiv"):
        assert abs(oblique[key] - canonical[key]) < 0.05, (key, oblique[key], canonical[key])


def _task_results(work_dir: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in work_dir.glob("FunctionTask_*/_result.pklz")}


def test_sigkill_mid_pair_then_resume_and_bitwise_determinism(tiny_run, tmp_path):
    """Kill a run of sub-01 (fresh work dir) during a stage; the rerun completes, reuses the
    finished stages, never leaves a partial file, and gives bit-identical numbers to the
    first, independent run (two CPU runs, two work dirs)."""
    out, work = tmp_path / "out", tmp_path / "work"
    args = [sys.executable, "-m", "brainlossnet", str(tiny_run.bids_dir), str(out), "participant",
            "-w", str(work), "--participant-label", "01", "--nprocs", "1", *TINY]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(args, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        # wait until the rigid halfway stage runs: reslices and crops done (4 results), a 5th task started
        while time.monotonic() < deadline and process.poll() is None:
            tasks = list(work.glob("FunctionTask_*"))
            if len(_task_results(work)) >= 4 and len(tasks) > len(_task_results(work)):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    finished = _task_results(work)
    assert len(finished) >= 4
    assert len(list(work.glob("FunctionTask_*"))) > len(finished)  # killed inside a stage
    assert not list(out.rglob("*_bvl.json")) and not list(out.rglob("*.tmp"))

    assert main(args[3:]) == 0
    after = _task_results(work)
    assert all(after[path] == mtime for path, mtime in finished.items())  # reused, not recomputed
    assert len(after) > len(finished)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or (p.name.startswith(".") and "lock" not in p.name)]
    resumed = json.loads((out / "sub-01/anat/sub-01_from-01_to-02_bvl.json").read_text())
    first = demo_record(tiny_run)
    assert {key: resumed[key] for key in NUMBERS} == {key: first[key] for key in NUMBERS}  # bitwise
    assert read_table(out / "group_bvl.tsv")[0]["bvl"] == repr(first["bvl"])
