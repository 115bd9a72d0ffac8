"""The nipype interface of one BL/FU pair: its specs, and a failed pair raising with the file's name."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

pytest.importorskip("nipype")

from nipype.interfaces.base import Undefined  # noqa: E402
from traits.api import TraitError  # noqa: E402

from brainlossnet.bids_app.nipype_interface import (  # noqa: E402
    DEFAULT_WORK_DIR,
    PERCENT_CHANGES,
    RESULT_JSON,
    BrainLossNetPair,
)
from brainlossnet.volumetry import BrainVolumeLoss  # noqa: E402
from brainlossnet.workflows.participant import INTERMEDIATE_OUTPUTS  # noqa: E402


def test_input_spec_defaults_and_mandatory_images(tmp_path: Path) -> None:
    inputs = BrainLossNetPair().inputs
    assert inputs.calibration == "default"
    assert inputs.device == "auto"
    assert inputs.crop_shape == (176, 208, 208)
    assert inputs.seed == 0
    assert inputs.work_dir is Undefined
    mandatory = {name for name, trait in inputs.traits(mandatory=True).items()}
    assert mandatory == {"t1w_bl", "t1w_fu"}
    with pytest.raises(TraitError):
        inputs.t1w_bl = str(tmp_path / "missing_T1w.nii.gz")  # File(exists=True)
    with pytest.raises(TraitError):
        inputs.crop_shape = (16, 16)
    with pytest.raises(ValueError, match="t1w_bl"):
        BrainLossNetPair().run(cwd=str(tmp_path))


def test_output_spec_has_numbers_and_every_intermediate_file() -> None:
    outputs = BrainLossNetPair().output_spec().get()
    assert set(PERCENT_CHANGES) <= {f.name for f in fields(BrainVolumeLoss)}
    assert set(outputs) == {*PERCENT_CHANGES, "result_json", *INTERMEDIATE_OUTPUTS}
    spec = BrainLossNetPair.output_spec()
    for name in PERCENT_CHANGES:
        assert spec.trait(name).trait_type.__class__.__name__ == "Float"
    for name in ("result_json", *INTERMEDIATE_OUTPUTS):
        assert spec.trait(name).trait_type.__class__.__name__ == "File"


def test_failed_pair_raises_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.nii.gz"
    bad.write_bytes(b"not a nifti")
    interface = BrainLossNetPair(t1w_bl=str(bad), t1w_fu=str(bad), crop_shape=(16, 16, 16), device="cpu")
    with pytest.raises(RuntimeError) as raised:
        interface.run(cwd=str(tmp_path))
    message = str(raised.value)
    assert "failed on the pair" in message
    cause = message.split(": ", 1)[1]  # the pipeline's own one-line reason, after the pair
    assert bad.name in cause
    assert "\n" not in message
    assert (tmp_path / DEFAULT_WORK_DIR).is_dir()  # the Pydra cache defaults to the node's cwd
    assert not (tmp_path / RESULT_JSON).exists()
