"""A tiny synthetic BIDS dataset, run once through the whole participant level.

Half-size synthetic heads with skull (two subjects with two sessions and known atrophy,
one subject with a single session) in 96x112x112 crops: the real pipeline, every stage,
small enough for CI.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

TINY_CROP = ("96", "112", "112")


@dataclass
class TinyRun:
    bids_dir: Path
    output_dir: Path
    work_dir: Path
    truth: pd.DataFrame
    exit_code: int

    def app_args(self) -> list[str]:
        return [
            str(self.bids_dir), str(self.output_dir), "participant", "-w", str(self.work_dir),
            "--crop-shape", *TINY_CROP, "--nprocs", "2", "--device", "cpu",
        ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from brainlossnet.bids_app.demo import build_demo_dataset
    from brainlossnet.bids_app.run import main

    root = tmp_path_factory.mktemp("tiny_run")
    truth = build_demo_dataset(root / "bids", n_subjects=2, seed=0, scale=0.5)
    run = TinyRun(root / "bids", root / "out", root / "work", truth, exit_code=-1)
    run.exit_code = main(run.app_args())
    return run
