"""The pair workflow can be built and inspected without running."""

from pathlib import Path

from pydra.engine.specs import LazyField

from brainlossnet.workflows.pair import init_pair_wf
from brainlossnet.workflows.participant import PairSpec, PipelineOptions, init_single_pair_wf
from brainlossnet.workflows.stages import STAGE_NODES, STAGES


def test_pair_workflow_has_every_stage_wired_file_to_file():
    wf = init_pair_wf(crop_shape=(96, 112, 112), device="cpu", seed=3, refine_steps=4, refine_fine_steps=2,
                      sharpness_matching=False)
    nodes = set(wf.name2obj)
    assert nodes == {node for group in STAGE_NODES.values() for node in group}
    assert tuple(STAGE_NODES) == STAGES
    edges = {
        (value.name, node)
        for node, task in wf.name2obj.items()
        for value in vars(task.inputs).values()
        if isinstance(value, LazyField) and value.name != wf.name
    }
    assert {
        ("reslice_bl", "crop_bl"), ("crop_bl", "rigid_halfway"), ("crop_fu", "rigid_halfway"),
        ("rigid_halfway", "segment_bl"), ("rigid_halfway", "register"),
        ("segment_fu", "volumes"), ("register", "volumes"), ("volumes", "correct"),
    } <= edges
    assert wf.crop_bl.inputs.crop_shape == (96, 112, 112)
    assert wf.register.inputs.device == "cpu"
    assert wf.register.inputs.refine_steps == 4
    assert wf.register.inputs.refine_fine_steps == 2
    assert wf.register.inputs.sharpness_matching is False
    assert wf.rigid_halfway.inputs.seed == 3
    outputs = {name for name, _ in wf._connections}
    assert {"result", "bl_halfway", "field_fw", "field_bw", "reslice_bl_s", "correct_s"} <= outputs


def test_single_pair_workflow_takes_the_pairs_scans_and_the_calibration_file(tmp_path):
    scans = []
    for name in ("a", "b"):
        scans.append(tmp_path / f"{name}.nii.gz")
        scans[-1].write_bytes(b"x")
    wf = init_single_pair_wf(PairSpec("01", "1", "2", scans[0], scans[1]),
                             options=PipelineOptions(calibration="paper", sharpness_matching=False))
    assert (Path(str(wf.inputs.t1w_bl)), Path(str(wf.inputs.t1w_fu))) == (scans[0], scans[1])
    assert Path(str(wf.inputs.calibration)).name == "paper.json"
    assert wf.register.inputs.sharpness_matching is False
