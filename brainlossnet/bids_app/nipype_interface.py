"""A nipype interface that runs brainlossnet on one baseline/follow-up pair.

For people who compose nipype workflows: :class:`BrainLossNetPair` takes the two T1w
images and gives the percent brain volume change (BVL) and the pair's intermediate
files. Inside, the pair runs as brainlossnet's Pydra workflow
(:func:`brainlossnet.workflows.participant.run_pairs`), cached in ``work_dir``, so a
rerun with the same work dir reuses every finished stage.

nipype is an optional dependency: ``pip install brainlossnet[nipype]``.

Example
-------
>>> from nipype import Node
>>> from brainlossnet.bids_app.nipype_interface import BrainLossNetPair
>>> bvl = Node(BrainLossNetPair(device="cuda"), name="bvl")  # doctest: +SKIP
>>> bvl.inputs.t1w_bl = "sub-01_ses-1_T1w.nii.gz"  # doctest: +SKIP
>>> bvl.inputs.t1w_fu = "sub-01_ses-2_T1w.nii.gz"  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network

from nipype.interfaces.base import (  # noqa: E402  (after NIPYPE_NO_ET)
    BaseInterface,
    BaseInterfaceInputSpec,
    Directory,
    File,
    TraitedSpec,
    traits,
)

from brainlossnet import __version__  # noqa: E402
from brainlossnet.bids_app.derivatives import atomic_write_json  # noqa: E402
from brainlossnet.calibration import DEFAULT_PROFILE  # noqa: E402
from brainlossnet.geometry import CROP_SHAPE  # noqa: E402
from brainlossnet.workflows.participant import PairSpec, PipelineOptions, run_pairs  # noqa: E402

RESULT_JSON = "brainlossnet_pair.json"
"""Name of the JSON file, in the interface's working directory, holding every number."""

DEFAULT_WORK_DIR = "brainlossnet_work"
"""The Pydra cache's folder in the interface's working directory when ``work_dir`` is unset."""

PERCENT_CHANGES: tuple[str, ...] = ("bvl", "bvl_fw", "bvl_bw", "dbpv", "dtiv")
"""Percent changes given as float outputs (the JSON holds every other number too)."""


class BrainLossNetPairInputSpec(BaseInterfaceInputSpec):
    """Inputs of :class:`BrainLossNetPair`."""

    t1w_bl = File(exists=True, mandatory=True, desc="baseline T1w image (NIfTI)")
    t1w_fu = File(exists=True, mandatory=True, desc="follow-up T1w image (NIfTI), same person")
    work_dir = Directory(
        desc="Pydra cache of the pair's stages; reruns reuse it "
        f"(default: {DEFAULT_WORK_DIR}/ in the interface's working directory)"
    )
    calibration = traits.Str(
        DEFAULT_PROFILE, usedefault=True,
        desc="calibration profile (m_TIV, m_scale): a name shipped in the package or a path "
        "to a profile JSON",
    )
    device = traits.Str(
        "auto", usedefault=True,
        desc="torch device of the network stages: auto, cpu, cuda or cuda:N",
    )
    crop_shape = traits.Tuple(
        tuple(CROP_SHAPE), traits.Int, traits.Int, traits.Int, usedefault=True,
        desc="crop box in 1 mm voxels; another shape invalidates the calibration (tests only)",
    )
    seed = traits.Int(0, usedefault=True, desc="random seed; same inputs and options give the same numbers")


class BrainLossNetPairOutputSpec(TraitedSpec):
    """Outputs of :class:`BrainLossNetPair`; images lie in the Pydra cache (``work_dir``)."""

    bvl = traits.Float(desc="percent brain volume change, corrected and rescaled (mean of both directions)")
    bvl_fw = traits.Float(desc="BVL of the forward direction (BL -> FU)")
    bvl_bw = traits.Float(desc="BVL of the backward direction (FU -> BL)")
    dbpv = traits.Float(desc="raw percent parenchyma volume change (mean of both directions)")
    dtiv = traits.Float(desc="apparent percent intracranial volume change (mean of both directions)")
    result_json = File(exists=True, desc="every volume, percent change, calibration and stage timing")
    bl_halfway = File(exists=True, desc="baseline image in the halfway space")
    fu_halfway = File(exists=True, desc="follow-up image in the halfway space")
    bl_parenchyma = File(exists=True, desc="baseline parenchyma fraction map (halfway space)")
    fu_parenchyma = File(exists=True, desc="follow-up parenchyma fraction map (halfway space)")
    bl_intracranial = File(exists=True, desc="baseline intracranial (TIV) mask (halfway space)")
    fu_intracranial = File(exists=True, desc="follow-up intracranial (TIV) mask (halfway space)")
    field_fw = File(exists=True, desc="displacement field BL -> FU (voxels, pull-back)")
    field_bw = File(exists=True, desc="displacement field FU -> BL (voxels, pull-back)")
    transform = File(exists=True, desc="rigid halfway transform and grid (JSON)")


class BrainLossNetPair(BaseInterface):
    """Percent brain volume change between a baseline and a follow-up T1w (BrainLossNet).

    Runs every stage of the method on one pair (reslice, crop, rigid halfway
    registration, segmentation, CNN registration both ways, volumes, distortion
    correction and rescaling) and raises ``RuntimeError`` naming both images and the
    failed stage when the pair fails.
    """

    input_spec = BrainLossNetPairInputSpec
    output_spec = BrainLossNetPairOutputSpec
    _version = __version__

    def _run_interface(self, runtime: Any) -> Any:
        cwd = Path(runtime.cwd)
        work_dir = Path(self.inputs.work_dir) if self.inputs.work_dir else cwd / DEFAULT_WORK_DIR
        t1w_bl = Path(self.inputs.t1w_bl).absolute()
        t1w_fu = Path(self.inputs.t1w_fu).absolute()
        # Labels only name the pair in brainlossnet's own reports; nothing is computed from them.
        pair = PairSpec(subject="nipype", session_bl="bl", session_fu="fu", t1w_bl=t1w_bl, t1w_fu=t1w_fu)
        options = PipelineOptions(
            device=self.inputs.device,
            calibration=self.inputs.calibration,
            crop_shape=tuple(int(n) for n in self.inputs.crop_shape),
            seed=int(self.inputs.seed),
        )
        (result,) = run_pairs([pair], work_dir=work_dir, options=options, nprocs=1)
        if result.status != "ok":
            raise RuntimeError(
                f"brainlossnet failed on the pair t1w_bl={t1w_bl}, t1w_fu={t1w_fu}: {result.message}"
            )
        result_json = cwd / RESULT_JSON
        atomic_write_json(result_json, {"t1w_bl": t1w_bl, "t1w_fu": t1w_fu, **result.metrics})
        self._results: dict[str, Any] = {name: float(result.metrics[name]) for name in PERCENT_CHANGES}
        self._results["result_json"] = str(result_json)
        self._results.update({name: str(path) for name, path in result.files.items()})
        return runtime

    def _list_outputs(self) -> dict[str, Any]:
        return dict(getattr(self, "_results", {}))
