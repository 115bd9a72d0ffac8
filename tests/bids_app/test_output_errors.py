"""A read-only or full output directory: one clear error, exit 73 or 74, nothing partial left.

Real filesystems: small tmpfs mounts (needs root and mount permission, else skipped);
``run_pairs`` is the stand-in of test_run.py, as the failure is in writing the outputs.
"""

from __future__ import annotations

import errno
import logging
import subprocess
from pathlib import Path

import pytest

import brainlossnet.workflows.participant as participant
from brainlossnet.bids_app.run import main
from tests.bids_app.test_run import StandInRunPairs


@pytest.fixture
def mount_tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


@pytest.fixture
def dataset(bids_tree, t1w):
    return bids_tree({t1w("01", "1"): None, t1w("01", "2"): None})


def test_read_only_output_dir_exits_73(tmp_path, dataset, mount_tmpfs, monkeypatch, caplog):
    monkeypatch.setattr(participant, "run_pairs", StandInRunPairs())
    read_only = mount_tmpfs("ro", "ro,size=1m")
    with caplog.at_level(logging.ERROR, logger="brainlossnet"):
        code = main([str(dataset), str(read_only / "out"), "participant", "-w", str(tmp_path / "work")])
    assert code == 73
    assert f"{read_only / 'out'}: cannot create output directory (Read-only file system)" in caplog.text


def test_full_output_dir_exits_74_and_leaves_no_partial_file(tmp_path, dataset, mount_tmpfs, monkeypatch, caplog):
    monkeypatch.setattr(participant, "run_pairs", StandInRunPairs())
    disk = mount_tmpfs("full", "size=256k")
    out = disk / "out"
    out.mkdir()
    with open(disk / "filler", "wb", buffering=0) as filler:  # fill the disk to the last block
        with pytest.raises(OSError) as full:
            while True:
                filler.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
    with caplog.at_level(logging.ERROR, logger="brainlossnet"):
        code = main([str(dataset), str(out), "participant", "-w", str(tmp_path / "work")])
    assert code == 74
    assert f"{out}: cannot write outputs (OSError: [Errno 28] No space left on device" in caplog.text
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != ".group_bvl.tsv.lock"]
