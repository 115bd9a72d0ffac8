"""run_pairs: swapping baseline and follow-up negates the result; failures stay per pair."""

from pathlib import Path

from brainlossnet.workflows.participant import PairSpec, PipelineOptions, _init_worker, run_pairs


def test_swapping_baseline_and_followup_negates_bvl(tiny_run):
    scans = sorted(tiny_run.bids_dir.glob("sub-01/ses-*/anat/*_T1w.nii.gz"))
    forward = PairSpec("01", "01", "02", scans[0], scans[1])
    swapped = PairSpec("01", "02", "01", scans[1], scans[0])
    options = PipelineOptions(device="cpu", crop_shape=(96, 112, 112))
    results = run_pairs([forward, swapped], work_dir=tiny_run.work_dir, options=options, nprocs=2)
    assert [r.status for r in results] == ["ok", "ok"]
    assert abs(results[0].metrics["bvl"] + results[1].metrics["bvl"]) < 0.05
    assert results[0].files["field_fw"].is_file()


def test_a_broken_scan_fails_its_pair_with_one_line_and_the_other_pair_completes(tiny_run, tmp_path):
    scans = sorted(tiny_run.bids_dir.glob("sub-01/ses-*/anat/*_T1w.nii.gz"))
    broken = tmp_path / "sub-09_ses-01_T1w.nii.gz"
    broken.write_bytes(b"not a nifti")
    good = PairSpec("01", "01", "02", scans[0], scans[1])
    bad = PairSpec("09", "01", "02", broken, scans[1])
    options = PipelineOptions(device="cpu", crop_shape=(96, 112, 112))
    results = run_pairs([good, bad], work_dir=tiny_run.work_dir, options=options, nprocs=2)
    assert [r.status for r in results] == ["ok", "failed"]
    assert results[1].message.startswith("reslice: ")
    assert "sub-09_ses-01_T1w.nii.gz" in results[1].message
    assert "\n" not in results[1].message
    assert results[1].metrics == {}
    assert isinstance(results[0].metrics["bvl"], float)
    assert Path(results[0].files["bl_halfway"]).is_file()


def test_empty_locks_left_by_a_killed_run_are_removed_and_live_ones_kept(tmp_path):
    import os
    import time

    from brainlossnet.workflows.participant import clear_abandoned_locks

    abandoned, fresh, owned = (tmp_path / f"{name}.lock" for name in ("abandoned", "fresh", "owned"))
    abandoned.touch()
    fresh.touch()
    owned.write_text("12345\nhost\n")
    old = time.time() - 60
    for path in (abandoned, owned):
        os.utime(path, (old, old))
    assert clear_abandoned_locks(tmp_path) == [abandoned]
    assert not abandoned.exists() and fresh.exists() and owned.exists()
    assert clear_abandoned_locks(tmp_path / "missing") == []


def test_a_worker_takes_its_share_of_the_cpus(monkeypatch):
    """With as many pairs at once as CPUs, a worker may use one, for torch's threads too; the
    rigid stage reads this share (available_cpus) to decide on its second process."""
    import multiprocessing
    import os

    import torch

    from brainlossnet import cpus
    from brainlossnet.workflows import participant

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(participant, "_node_events", None)
    two_at_once, one_at_a_time = cpus.share_per_task(2), cpus.share_per_task(1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _init_worker(multiprocessing.get_context("spawn").SimpleQueue(), two_at_once)
        assert cpus.available_cpus() == 1
        assert torch.get_num_threads() == 1
        _init_worker(multiprocessing.get_context("spawn").SimpleQueue(), one_at_a_time)
        assert cpus.available_cpus() == 2
        assert torch.get_num_threads() == 1  # never raised
    finally:
        cpus.limit_to_share(None)
        torch.set_num_threads(threads)
