"""Bad input: each refused file gives one line naming it, its pairs fail, the others run, exit 65.

The app-level tests here replace ``run_pairs`` by the stand-in of test_run.py (which
records the pairs it is given), because the refusals happen before any stage runs; the
real pipeline on a dataset with a refused subject is exercised in test_faults_end_to_end.py.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import brainlossnet.workflows.participant as participant
from brainlossnet.bids_app.group import read_table
from brainlossnet.bids_app.run import main
from brainlossnet.bids_app.validation import file_problem, validate_files
from tests.bids_app.test_run import StandInRunPairs


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _good(path: Path, shape: tuple[int, int, int] = (8, 9, 10)) -> Path:
    return _save(path, np.random.default_rng(0).integers(0, 1000, shape).astype(np.int16))


def _with_scaling(path: Path, slope: float, intercept: float) -> Path:
    """An int16 image whose raw header holds the given scl_slope / scl_inter (nibabel would reset them)."""
    raw = path.with_suffix("")  # .nii
    _good(raw)
    data = bytearray(raw.read_bytes())
    data[112:120] = struct.pack("<ff", slope, intercept)
    raw.unlink()
    path.write_bytes(gzip.compress(bytes(data)))
    return path


def _truncated(path: Path) -> Path:
    _good(path, (32, 32, 32))  # the header survives, the data end early
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _corrupt(path: Path) -> Path:
    _good(path)
    data = bytearray(path.read_bytes())
    data[30:60] = bytes(30)  # zeros in the middle of the deflate stream
    path.write_bytes(bytes(data))
    return path


def _lfs(path: Path) -> Path:
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
    return path


def _annex_link(path: Path) -> Path:
    path.symlink_to("../../../.git/annex/objects/Xk/Pq/MD5E-s1234--abc.nii.gz/MD5E-s1234--abc.nii.gz")
    return path


def _annex_pointer(path: Path) -> Path:
    path.write_text("/annex/objects/MD5E-s1234--0123456789abcdef.nii.gz\n")
    return path


BAD_FILES = {
    "zero-byte": (lambda p: p.write_bytes(b"") and p or p, "zero-byte file"),
    "lfs pointer": (_lfs, "Git LFS pointer"),
    "annex pointer file": (_annex_pointer, "git-annex pointer"),
    "annex broken link": (_annex_link, "git-annex symbolic link whose content is not present"),
    "truncated": (_truncated, "truncated or corrupt gzip stream"),
    "corrupt": (_corrupt, "truncated or corrupt gzip stream|not a readable NIfTI"),
    "not gzip": (lambda p: p.write_bytes(b"\x00" * 2000) and p or p, "not gzip-compressed"),
    "4D": (lambda p: _save(p, np.ones((8, 8, 8, 3), np.float32)), "4D image with 3 volumes"),
    "2D": (lambda p: _save(p, np.ones((8, 8), np.float32)), "2D image"),
    "NaN": (lambda p: _save(p, np.where(np.eye(8)[:, :, None] > 0, np.nan, 1.0) * np.ones((8, 8, 8), np.float32)),
            "64 NaN and 0 infinite"),
    "Inf": (lambda p: _save(p, np.pad(np.full((1, 1, 1), np.inf, np.float32), ((0, 7),) * 3, constant_values=1)),
            "0 NaN and 1 infinite"),
    "all-zero": (lambda p: _save(p, np.zeros((8, 8, 8), np.int16)), "all-zero image"),
    "constant": (lambda p: _save(p, np.full((8, 8, 8), 300, np.int16)), r"constant \(300\)"),
    "inf slope": (lambda p: _with_scaling(p, np.inf, 0.0), "broken scaling header: scl_slope = inf"),
    "inf intercept": (lambda p: _with_scaling(p, 2.0, np.inf), "broken scaling header: scl_inter = inf"),
    "intercept without slope": (lambda p: _with_scaling(p, 0.0, 5.0), "scl_inter = 5 but scl_slope = 0.0"),
    "4 mm voxels": (lambda p: _save(p, np.arange(512, dtype=np.int16).reshape(8, 8, 8), np.diag([1, 4, 1, 1.0])),
                    "voxels of 1 x 4 x 1 mm"),
    "anisotropy": (lambda p: _save(p, np.arange(512, dtype=np.int16).reshape(8, 8, 8), np.diag([0.9, 0.9, 3, 1.0])),
                   "anisotropy 3.3:1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_bad_file_gives_one_line_naming_the_problem(tmp_path, case):
    make, expected = BAD_FILES[case]
    path = make(tmp_path / "sub-01_ses-1_T1w.nii.gz")
    problem = file_problem(path)
    assert problem is not None and "\n" not in problem
    assert re.search(expected, problem), problem
    assert validate_files([path, path]) == {path: f"{path}: {problem}"}


def test_good_files_pass(tmp_path):
    assert file_problem(_good(tmp_path / "a.nii.gz")) is None
    assert file_problem(_with_scaling(tmp_path / "b.nii.gz", 0.5, -3.0)) is None
    flipped = np.diag([-1.0, 1.0, -1.2, 1.0])
    assert file_problem(_save(tmp_path / "c.nii", np.ones((8, 8, 8), np.float32) * np.arange(8), flipped)) is None
    assert file_problem(tmp_path / "missing.nii.gz") == "file not found"


@pytest.fixture
def messy(bids_tree, t1w):
    """sub-01 fine; sub-02 ses-2 truncated; sub-03 ses-1 an LFS pointer (3 sessions);
    sub-04 one session; sub-05 ses-2 with a session folder but no T1w."""
    root = bids_tree({t1w("01", "1"): None, t1w("01", "2"): None, t1w("02", "1"): None,
                      t1w("02", "2"): None, t1w("03", "1"): None, t1w("03", "2"): None,
                      t1w("03", "3"): None, t1w("04", "1"): None, t1w("05", "1"): None})
    _truncated(root / t1w("02", "2"))
    _lfs(root / t1w("03", "1"))
    (root / "sub-05/ses-2/anat").mkdir(parents=True)
    (root / "sub-05/ses-2/anat/sub-05_ses-2_T2w.json").write_text("{}")
    return root


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_refused_files_fail_only_their_pairs_and_exit_65(tmp_path, messy, t1w, monkeypatch, caplog):
    stand_in = StandInRunPairs()
    monkeypatch.setattr(participant, "run_pairs", stand_in)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="brainlossnet"):
        code = main([str(messy), str(out), "participant", "-w", str(tmp_path / "work")])
    assert code == 65
    call, = stand_in.calls
    assert [(p.subject, p.session_bl, p.session_fu) for p in call["pairs"]] == [("01", "1", "2"), ("03", "2", "3")]
    rows = {(r["participant_id"], r["session_bl"], r["session_fu"]): r for r in read_table(out / "group_bvl.tsv")}
    assert sorted(rows) == [("sub-01", "1", "2"), ("sub-02", "1", "2"), ("sub-03", "1", "2"), ("sub-03", "2", "3")]
    assert [rows[k]["status"] for k in sorted(rows)] == ["ok", "failed", "failed", "ok"]
    assert rows[("sub-02", "1", "2")]["message"] == (
        f"input check: InputDataError: {messy / t1w('02', '2')}: truncated or corrupt gzip stream "
        "(EOFError: Compressed file ended before the end-of-stream marker was reached)")
    assert rows[("sub-03", "1", "2")]["message"].endswith(
        f"{messy / t1w('03', '1')}: a Git LFS pointer file, not an image (fetch the content: git lfs pull)")
    assert rows[("sub-02", "1", "2")]["bvl"] == "n/a"
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused: ")]
    assert len(refused) == 2  # one line per refused file
    assert "sub-04 skipped" in caplog.text and "sub-05 skipped" in caplog.text
    files = _listing(out)
    assert sorted(f for f in files if f.startswith("logs/") and f.endswith("_crash.txt")) == [
        "logs/sub-02_from-1_to-2_crash.txt", "logs/sub-03_from-1_to-2_crash.txt"]
    report = (out / "logs/sub-02_from-1_to-2_crash.txt").read_text()
    assert "stage: input check" in report and f"t1w_fu: {messy / t1w('02', '2')}" in report
    assert "kind: input data" in report and "truncated or corrupt gzip stream" in report
    assert not [f for f in files if ".tmp" in f]


def test_stop_on_first_crash_runs_nothing_after_a_refused_file(tmp_path, messy, monkeypatch):
    stand_in = StandInRunPairs()
    monkeypatch.setattr(participant, "run_pairs", stand_in)
    out = tmp_path / "out"
    assert main([str(messy), str(out), "participant", "-w", str(tmp_path / "work"),
                 "--stop-on-first-crash"]) == 65
    assert stand_in.calls == []
    rows = read_table(out / "group_bvl.tsv")
    assert [(r["participant_id"], r["status"]) for r in rows] == [("sub-02", "failed"), ("sub-03", "failed")]


@pytest.mark.parametrize("messages, expected", [
    (["crop: InputDataError: x.nii.gz: looks skull-stripped"], 65),
    (["segment: RuntimeError: Atropos died"], 1),
    (["crop: InputDataError: x.nii.gz: the field of view cuts the skull", "register: MemoryError: "], 1),
])
def test_exit_code_says_whether_data_or_processing_failed(tmp_path, bids_tree, t1w, monkeypatch,
                                                         messages, expected):
    dataset = bids_tree({t1w(s, str(k)): None for s in ("01", "02") for k in (1, 2)})
    failing = dict(zip(("01", "02"), messages))

    def run_pairs(pairs, **kwargs):
        return [participant.PairResult(pair=p, status="failed", message=failing[p.subject],
                                       traceback="Traceback (most recent call last):\n  boom\n")
                if p.subject in failing else StandInRunPairs()([p], **kwargs)[0] for p in pairs]

    monkeypatch.setattr(participant, "run_pairs", run_pairs)
    out = tmp_path / "out"
    assert main([str(dataset), str(out), "participant", "-w", str(tmp_path / "work")]) == expected
    report = (out / "logs/sub-01_from-1_to-2_crash.txt").read_text()
    assert f"stage: {messages[0].split(':')[0]}" in report and "Traceback (most recent call last):" in report


def test_stop_on_first_crash_in_the_real_worker_pool(tmp_path):
    """Real run_pairs: after the first failed pair no further pair starts."""
    missing = [tmp_path / f"absent_{i}.nii.gz" for i in range(4)]
    pairs = [participant.PairSpec("01", str(i), str(i + 1), missing[i], missing[i]) for i in range(4)]
    results = participant.run_pairs(pairs, work_dir=tmp_path / "work", options=participant.PipelineOptions(),
                                    nprocs=1, stop_on_first_crash=True)
    assert 1 <= len(results) < len(pairs)
    assert results[0].pair == pairs[0] and results[0].status == "failed"
    assert "absent_0.nii.gz" in results[0].message and results[0].traceback.startswith("Traceback")
