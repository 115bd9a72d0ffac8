"""Command-line parser: defaults, label prefixes, usage errors exiting 64."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainlossnet import __version__
from brainlossnet.bids_app.cli.parser import EXIT_USAGE, get_parser, parse_args


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opts = parse_args(["in", "out", "participant"])
    assert opts.bids_dir == tmp_path / "in"
    assert opts.output_dir == tmp_path / "out"
    assert opts.analysis_level == "participant"
    assert opts.work_dir == tmp_path / "work"
    assert opts.participant_label is None and opts.session_label is None
    assert opts.bids_filter_file is None
    assert opts.pairing == "consecutive"
    assert opts.plugin == "cf" and opts.plugin_args is None
    assert opts.nprocs >= 1
    assert opts.device == "auto"
    assert opts.calibration == "default"
    assert opts.crop_shape == (176, 208, 208)
    assert opts.seed == 0
    assert opts.save_intermediates is False
    assert opts.refine_steps is None and opts.refine_fine_steps is None  # the release's settings
    assert opts.sharpness_matching is True


def test_labels_with_and_without_prefix():
    opts = parse_args(["in", "out", "participant", "--participant-label", "sub-01", "02",
                       "--session-label", "ses-bl", "m12"])
    assert opts.participant_label == ["01", "02"]
    assert opts.session_label == ["bl", "m12"]


def test_underscore_spelling_of_participant_label():
    assert parse_args(["in", "out", "group", "--participant_label", "7"]).participant_label == ["7"]


def test_options_are_parsed():
    opts = parse_args([
        "in", "out", "participant", "-w", "/tmp/cache", "--nprocs", "3", "--pairing", "all",
        "--device", "cuda:1", "--calibration", "siena", "--seed", "7",
        "--crop-shape", "48", "56", "40", "--save-intermediates",
        "--refine-steps", "12", "--refine-fine-steps", "0", "--no-sharpness-matching",
        "--plugin", "slurm", "--plugin-args", '{"max_jobs": 4}',
        "--sbatch-args=--partition=gpu --gres=gpu:1",
    ])
    assert opts.work_dir == Path("/tmp/cache")
    assert opts.nprocs == 3
    assert opts.pairing == "all"
    assert opts.device == "cuda:1"
    assert opts.calibration == "siena"
    assert opts.seed == 7
    assert opts.crop_shape == (48, 56, 40)
    assert opts.save_intermediates
    assert (opts.refine_steps, opts.refine_fine_steps) == (12, 0)
    assert opts.sharpness_matching is False
    assert opts.plugin_args == {"max_jobs": 4, "sbatch_args": "--partition=gpu --gres=gpu:1"}


def test_plugin_args_from_file(tmp_path):
    args_file = tmp_path / "plugin.json"
    args_file.write_text(json.dumps({"max_jobs": 2, "poll_delay": 5}))
    opts = parse_args(["in", "out", "participant", "--plugin", "slurm",
                       "--plugin-args", str(args_file)])
    assert opts.plugin_args == {"max_jobs": 2, "poll_delay": 5}


@pytest.mark.parametrize("argv", [
    ["in", "out"],                                                   # no analysis level
    ["in", "out", "session"],                                        # bad analysis level
    ["in", "out", "participant", "--participant-label", "sub-0_1"],  # not a BIDS label
    ["in", "out", "participant", "--session-label", "ses-"],
    ["in", "out", "participant", "--pairing", "random"],
    ["in", "out", "participant", "--device", "gpu"],
    ["in", "out", "participant", "--device", "cuda:x"],
    ["in", "out", "participant", "--nprocs", "0"],
    ["in", "out", "participant", "--refine-fine-steps", "-1"],
    ["in", "out", "participant", "--crop-shape", "10", "10"],
    ["in", "out", "participant", "--crop-shape", "10", "-1", "10"],
    ["in", "out", "participant", "--plugin", "dask"],
    ["in", "out", "participant", "--plugin-args", "[1, 2]"],
    ["in", "out", "participant", "--plugin-args", "{not json"],
    ["in", "out", "participant", "--sbatch-args=--time=1:00:00"],    # needs --plugin slurm
    ["in", "out", "participant", "--no-such-option"],
])
def test_usage_errors_exit_64(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == EXIT_USAGE == 64
    assert "error:" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        get_parser().parse_args(["--version"])
    assert caught.value.code == 0
    assert __version__ in capsys.readouterr().out
