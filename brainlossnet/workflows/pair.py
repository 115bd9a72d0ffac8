"""The Pydra workflow of one BL/FU pair: every stage of the method, wired file to file."""

from __future__ import annotations

import pydra
from fileformats.generic import File

from brainlossnet.geometry import CROP_SHAPE
from brainlossnet.interfaces.halfway import rigid_halfway_task
from brainlossnet.interfaces.preprocess import crop_task, reslice_task
from brainlossnet.interfaces.register import register_task
from brainlossnet.registration import REFINE_FINE_LEARNING_RATE_VOX, REFINE_FINE_STEPS, REFINE_STEPS
from brainlossnet.interfaces.segment import segment_task
from brainlossnet.interfaces.volumes import correct_task, measure_volumes_task
from brainlossnet.sharpness import SHARPNESS_MATCHING
from brainlossnet.workflows.stages import STAGE_NODES


def init_pair_wf(
    *,
    name: str = "pair_wf",
    crop_shape: tuple[int, int, int] = CROP_SHAPE,
    device: str = "auto",
    seed: int = 0,
    allow_skull_stripped: bool = False,
    refine_steps: int = REFINE_STEPS,
    refine_fine_steps: int = REFINE_FINE_STEPS,
    refine_fine_learning_rate_vox: float = REFINE_FINE_LEARNING_RATE_VOX,
    sharpness_matching: bool = SHARPNESS_MATCHING,
) -> pydra.Workflow:
    """Build (without running) the workflow that turns one BL/FU pair into a BVL.

    Inputs: ``t1w_bl``, ``t1w_fu`` (the source scans) and ``calibration`` (a profile
    JSON file). ``allow_skull_stripped`` lets the crop accept a skull-stripped scan;
    ``refine_steps`` and ``refine_fine_steps`` are the test-time refinement of the
    registration at half and at full resolution (both 0: the network alone), and
    ``refine_fine_learning_rate_vox`` the full-resolution stage's initial step;
    ``sharpness_matching`` blurs the sharper halfway image to the other's sharpness before
    the registration (:mod:`brainlossnet.sharpness`).
    Outputs: ``result`` (JSON with every volume and percent change),
    ``transform`` (rigid halfway), the halfway images, masks and displacement fields,
    ``fu_blur_mm2`` (how much blurrier FU is than BL, :mod:`brainlossnet.sharpness`),
    and ``<node>_s`` run times.
    """
    wf = pydra.Workflow(name=name, input_spec={"t1w_bl": File, "t1w_fu": File, "calibration": File})
    for session in ("bl", "fu"):
        source = getattr(wf.lzin, f"t1w_{session}")
        wf.add(reslice_task(name=f"reslice_{session}", in_file=source))
        wf.add(crop_task(
            name=f"crop_{session}",
            in_file=getattr(wf, f"reslice_{session}").lzout.out_file,
            crop_shape=tuple(crop_shape),
            source=source,
            allow_skull_stripped=allow_skull_stripped,
        ))
    wf.add(rigid_halfway_task(
        name="rigid_halfway",
        bl_crop=wf.crop_bl.lzout.out_file,
        fu_crop=wf.crop_fu.lzout.out_file,
        bl_source=wf.lzin.t1w_bl,
        fu_source=wf.lzin.t1w_fu,
        bl_crop_mask=wf.crop_bl.lzout.mask_file,
        fu_crop_mask=wf.crop_fu.lzout.mask_file,
        seed=seed,
    ))
    for session in ("bl", "fu"):
        wf.add(segment_task(
            name=f"segment_{session}",
            in_file=getattr(wf.rigid_halfway.lzout, f"{session}_halfway"),
            intracranial=getattr(wf.rigid_halfway.lzout, f"{session}_intracranial"),
        ))
    wf.add(register_task(
        name="register",
        bl=wf.rigid_halfway.lzout.bl_halfway,
        fu=wf.rigid_halfway.lzout.fu_halfway,
        device=device,
        refine_steps=refine_steps,
        refine_fine_steps=refine_fine_steps,
        refine_fine_learning_rate_vox=refine_fine_learning_rate_vox,
        sharpness_matching=sharpness_matching,
    ))
    wf.add(measure_volumes_task(
        name="volumes",
        bl_parenchyma=wf.segment_bl.lzout.parenchyma,
        bl_intracranial=wf.rigid_halfway.lzout.bl_intracranial,
        fu_parenchyma=wf.segment_fu.lzout.parenchyma,
        fu_intracranial=wf.rigid_halfway.lzout.fu_intracranial,
        field_fw=wf.register.lzout.field_fw,
        field_bw=wf.register.lzout.field_bw,
    ))
    wf.add(correct_task(name="correct", volumes=wf.volumes.lzout.volumes, calibration=wf.lzin.calibration))
    wf.set_output(
        [
            ("result", wf.correct.lzout.result),
            ("transform", wf.rigid_halfway.lzout.transform),
            ("bl_halfway", wf.rigid_halfway.lzout.bl_halfway),
            ("fu_halfway", wf.rigid_halfway.lzout.fu_halfway),
            ("bl_parenchyma", wf.segment_bl.lzout.parenchyma),
            ("fu_parenchyma", wf.segment_fu.lzout.parenchyma),
            ("bl_intracranial", wf.rigid_halfway.lzout.bl_intracranial),
            ("fu_intracranial", wf.rigid_halfway.lzout.fu_intracranial),
            ("field_fw", wf.register.lzout.field_fw),
            ("field_bw", wf.register.lzout.field_bw),
            ("fu_blur_mm2", wf.register.lzout.fu_blur_mm2),
            ("bl_surround_ratio", wf.crop_bl.lzout.surround_ratio),
            ("fu_surround_ratio", wf.crop_fu.lzout.surround_ratio),
        ]
        + [
            (f"{node}_s", getattr(wf, node).lzout.elapsed_s)
            for nodes in STAGE_NODES.values()
            for node in nodes
        ]
    )
    return wf
