"""Several runs writing one output_dir at once: no lost rows, no corrupt or partial files.

Real processes (forked), real files and locks; ``run_pairs`` is the stand-in of
test_run.py inside each process, since only the writing is under test here.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

import brainlossnet.workflows.participant as participant
from brainlossnet.bids_app.derivatives import atomic_write_json
from brainlossnet.bids_app.group import TABLE_NAME, merge_into_table, read_table
from brainlossnet.bids_app.run import main
from tests.bids_app.test_run import StandInRunPairs

FORK = multiprocessing.get_context("fork")
N_WRITERS = 4


def _merge_many(output_dir: Path, writer: int, n_rows: int) -> None:
    for index in range(n_rows):
        merge_into_table(output_dir, [{"participant_id": f"sub-w{writer}", "session_bl": f"{index}",
                                       "session_fu": f"{index + 1}", "status": "ok", "bvl": -0.5 * writer}])


def test_concurrent_merges_lose_no_row(tmp_path):
    processes = [FORK.Process(target=_merge_many, args=(tmp_path, writer, 15)) for writer in range(N_WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    rows = read_table(tmp_path / TABLE_NAME)
    assert len(rows) == N_WRITERS * 15  # a read-modify-write without the lock loses rows
    assert {(row["participant_id"], row["bvl"]) for row in rows} == {
        (f"sub-w{w}", repr(-0.5 * w)) for w in range(N_WRITERS)}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _write_json_many(path: Path, writer: int) -> None:
    for index in range(40):
        atomic_write_json(path, {"writer": writer, "index": index, "payload": [writer] * 20000})


def _read_json_many(path: Path, failures) -> None:
    for _ in range(400):
        try:
            document = json.loads(path.read_text())
            if document["payload"] != [document["writer"]] * 20000:
                failures.put("interleaved content")
        except (json.JSONDecodeError, KeyError) as err:
            failures.put(repr(err))


def test_concurrent_writes_of_one_file_are_never_seen_partial(tmp_path):
    path = tmp_path / "sub-01_from-1_to-2_bvl.json"
    atomic_write_json(path, {"writer": -1, "index": 0, "payload": [-1] * 20000})
    failures = FORK.Queue()
    processes = [FORK.Process(target=_write_json_many, args=(path, w)) for w in range(N_WRITERS)]
    processes.append(FORK.Process(target=_read_json_many, args=(path, failures)))
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert failures.empty(), failures.get()
    assert json.loads(path.read_text())["index"] == 39
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def _run_app(bids_dir: Path, output_dir: Path, work_dir: Path, label: str, codes) -> None:
    participant.run_pairs = StandInRunPairs()
    codes.put((label, main([str(bids_dir), str(output_dir), "participant", "-w", str(work_dir),
                            "--participant-label", label, "--pairing", "all"])))


def test_concurrent_participant_runs_share_one_output_dir(tmp_path, bids_tree, t1w):
    labels = [f"0{i}" for i in range(1, N_WRITERS + 1)]
    dataset = bids_tree({t1w(label, str(k)): None for label in labels for k in (1, 2, 3)})
    out, codes = tmp_path / "out", FORK.Queue()
    processes = [FORK.Process(target=_run_app, args=(dataset, out, tmp_path / f"work{label}", label, codes))
                 for label in labels]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert sorted(codes.get() for _ in labels) == [(label, 0) for label in labels]
    rows = read_table(out / TABLE_NAME)
    assert sorted((r["participant_id"], r["session_bl"], r["session_fu"]) for r in rows) == sorted(
        (f"sub-{label}", a, b) for label in labels for a, b in (("1", "2"), ("1", "3"), ("2", "3")))
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
