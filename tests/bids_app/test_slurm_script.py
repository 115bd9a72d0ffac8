"""``brainlossnet slurm-script``: a valid bash array script for the participants of the dataset."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from brainlossnet.bids_app.run import main

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for the syntax check")


@pytest.fixture
def dataset(bids_tree, t1w, tsv):
    """sub-01 and sub-10 with two sessions, sub-02 with one (no pair)."""
    root = bids_tree({t1w("01", "a"): None, t1w("01", "b"): None, t1w("10", "1"): None,
                      t1w("10", "2"): None, t1w("02", "1"): None})
    tsv(root / "participants.tsv", ["participant_id", "age"], [["sub-01", "70"], ["sub-02", "61"], ["sub-10", "66"]])
    return root


def _script(capsys, *argv: str) -> str:
    assert main(["slurm-script", *argv]) == 0
    return capsys.readouterr().out


def test_script_is_valid_bash_with_one_task_per_participant_with_a_pair(dataset, tmp_path, capsys):
    text = _script(capsys, str(dataset), str(tmp_path / "out"), "--image", str(tmp_path / "blnet.sif"),
                   "-w", str(tmp_path / "work"), "--max-parallel", "5")
    path = tmp_path / "run.sh"
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert text.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-1%5\n" in text
    assert "PARTICIPANTS=(01 10)\n" in text  # natural order; sub-02 has one session
    assert re.search(r"sbatch --parsable --dependency=afterany:\"\$array_id\"", text)
    assert "brainlossnet /data /out group" in text
    assert '--participant-label "$participant"' in text
    assert f"--bind {dataset}:/data:ro" in text and f"--bind {tmp_path / 'work'}:/work" in text
    assert "--cleanenv" in text and "--nv" not in text
    assert f"#SBATCH --output={tmp_path / 'work' / 'slurm-logs'}/brainlossnet_%A_%a.out" in text


def test_options_reach_the_script(dataset, tmp_path, capsys):
    text = _script(capsys, str(dataset), str(tmp_path / "out"), "--image", "img.sif", "-w", str(tmp_path / "w"),
                   "--nv", "--bind", "/scratch:/scratch", "--sbatch-option=--gres=gpu:1", "--cpus-per-task", "8",
                   "--participant-label", "sub-10", "--container-cmd", "singularity",
                   "--", "--device", "cuda", "--seed", "3")
    assert "PARTICIPANTS=(10)\n" in text and "#SBATCH --array=0-0\n" in text
    assert "#SBATCH --gres=gpu:1\n" in text and "#SBATCH --cpus-per-task=8\n" in text
    assert "EXEC_OPTIONS=(--cleanenv --nv " in text and "--bind /scratch:/scratch" in text
    assert "CONTAINER=singularity" in text and "--device cuda --seed 3\n" in text
    assert f"IMAGE={tmp_path.parent.parent}" not in text and "IMAGE=/" in text  # made absolute


def test_array_from_participants_tsv_lists_every_row(dataset, tmp_path, capsys):
    text = _script(capsys, str(dataset), str(tmp_path / "out"), "--image", "i.sif", "-w", str(tmp_path / "w"),
                   "--array-from-participants")
    assert "PARTICIPANTS=(01 02 10)\n" in text and "#SBATCH --array=0-2\n" in text


def test_errors_are_exit_codes(dataset, tmp_path, capsys):
    base = [str(tmp_path / "out"), "--image", "i.sif", "-w", str(tmp_path / "w")]
    assert main(["slurm-script", str(tmp_path / "missing"), *base]) == 66
    assert main(["slurm-script", str(dataset), *base, "--participant-label", "02"]) == 66
    assert main(["slurm-script", str(dataset), str(tmp_path / "out")]) == 64  # --image, -w missing
    assert "no participant" in capsys.readouterr().err
