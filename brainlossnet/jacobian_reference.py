"""A classical reference: ANTs SyN between the halfway crops with Jacobian integration.

Jacobian integration (JI) is the established way to turn a non-linear registration into
a volume change: the determinant of the Jacobian of the map from one scan to the other
is the local ratio of volumes, and its integral over a tissue mask is that tissue's
volume in the other scan. The accuracy benchmark runs it on the same halfway images and
parenchyma maps as the pipeline, in the same two directions, so that the two methods
differ only in how the deformation is found and how the volume is read from it
(the paper's Discussion compares exactly these two ways).

For each direction, antsRegistration's SyN (``type_of_transform="SyNOnly"``: no rigid or
affine stage, since the crops are already rigidly aligned in halfway space and an affine
stage would absorb a global change) maps the fixed image's grid into the moving image;
the Jacobian determinant ``J`` of that map (``ants.create_jacobian_determinant_image``)
is the moving volume per fixed volume. Hence, with the volumes of
:mod:`brainlossnet.volumetry`:

* forward, fixed = BL, moving = FU: ``V_FU<-BL = sum(mask_BL * J)``, Eq. 1;
* backward, fixed = FU, moving = BL: ``V_BL<-FU = sum(mask_FU * J)``, Eq. 2;

both estimate the FU-versus-BL change (negative = loss) and are averaged as in Eq. 3.
No distortion correction is applied: this is a plain JI estimate.

Determinism: the registration is seeded, and ITK runs on one thread unless
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` is set before brainlossnet is first imported
(see :mod:`brainlossnet`), as for :mod:`brainlossnet.rigid`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass

import ants
import ants.config as ants_config
import numpy as np

from brainlossnet.geometry import voxel_sizes_mm
from brainlossnet.rigid import to_ants_image
from brainlossnet.volumetry import percent_change_backward, percent_change_forward, volume_ml


@dataclass(frozen=True)
class SynParameters:
    """Settings of the SyN stage; the defaults are those of ANTs' ``antsRegistrationSyN.sh``.

    Attributes
    ----------
    metric_radius_voxels
        Radius of the local cross-correlation window (``CC[fixed, moving, 1, radius]``).
    gradient_step
        SyN gradient step (``SyN[gradient_step, flow_sigma, total_sigma]``).
    flow_sigma_voxels, total_sigma_voxels
        Gaussian regularisation of the update field and of the total field.
    iterations
        Iterations per level, coarsest first; level k of n is shrunk by ``2**(n-1-k)`` and
        smoothed by ``n-1-k`` voxels (antspyx's schedule: 8x4x2x1 and 3x2x1x0 for four levels).
    """

    metric_radius_voxels: int = 4
    gradient_step: float = 0.1
    flow_sigma_voxels: float = 3.0
    total_sigma_voxels: float = 0.0
    iterations: tuple[int, ...] = (100, 70, 50, 20)

    def as_dict(self) -> dict[str, object]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


SYN_PRESETS: dict[str, SynParameters] = {
    "full": SynParameters(),
    "quick": SynParameters(metric_radius_voxels=2, iterations=(100, 70, 50, 0)),
}
"""Named settings. ``full``: ``antsRegistrationSyN.sh``'s SyN stage (CC radius 4, four levels
down to 1 mm). ``quick``: CC radius 2 and no iterations at full resolution (the field of the
2 mm level is upsampled), as ``antsRegistrationSyNQuick.sh`` skips that level; on a
176 x 208 x 208 crop with one thread it costs a fraction of ``full``'s time (see
docs/calibration.md for measured times)."""


@dataclass(frozen=True)
class JacobianVolumeChange:
    """Percent change of the masked tissue by JI, per direction and averaged (Eqs. 1-3)."""

    dbpv_fw: float
    dbpv_bw: float
    dbpv: float
    bpv_bl_ml: float
    bpv_fu_ml: float
    bpv_fu_from_bl_ml: float
    bpv_bl_from_fu_ml: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def syn_jacobian(
    fixed: np.ndarray,
    moving: np.ndarray,
    affine: np.ndarray,
    *,
    parameters: SynParameters = SynParameters(),
    seed: int = 0,
) -> np.ndarray:
    """Jacobian determinant of the SyN map from ``fixed``'s grid into ``moving``.

    Parameters
    ----------
    fixed, moving
        (X, Y, Z) images of one shape on one grid (the two halfway crops).
    affine
        Their common 4x4 RAS voxel-to-world matrix.
    parameters
        SyN settings (:class:`SynParameters`).
    seed
        Seed of antsRegistration.

    Returns
    -------
    numpy.ndarray
        float32 (X, Y, Z): moving volume per unit fixed volume at each fixed voxel
        (> 1 where the moving image is larger).

    Raises
    ------
    ValueError
        If the images differ in shape or are not 3D.
    """
    if np.shape(fixed) != np.shape(moving) or np.ndim(fixed) != 3:
        raise ValueError(f"fixed {np.shape(fixed)} and moving {np.shape(moving)} must be 3D arrays of one shape")
    fixed_image = to_ants_image(fixed, affine)
    moving_image = to_ants_image(moving, affine)
    # antspyx passes its global seed (not a keyword) to antsRegistration, as in rigid.py
    ants_config._random_seed = seed
    with tempfile.TemporaryDirectory(prefix="blnet-syn-") as scratch:
        result = ants.registration(
            fixed=fixed_image,
            moving=moving_image,
            type_of_transform="SyNOnly",
            outprefix=os.path.join(scratch, "syn_"),
            syn_metric="CC",
            syn_sampling=parameters.metric_radius_voxels,
            grad_step=parameters.gradient_step,
            flow_sigma=parameters.flow_sigma_voxels,
            total_sigma=parameters.total_sigma_voxels,
            reg_iterations=tuple(parameters.iterations),
        )
        warps = [path for path in result["fwdtransforms"] if path.endswith("Warp.nii.gz")]
        if len(warps) != 1:
            raise RuntimeError(f"antsRegistration returned no single warp field: {result['fwdtransforms']}")
        jacobian = ants.create_jacobian_determinant_image(fixed_image, warps[0], do_log=False, geom=False)
        return jacobian.numpy().astype(np.float32)


def jacobian_volume_change(
    bl: np.ndarray,
    fu: np.ndarray,
    bl_mask: np.ndarray,
    fu_mask: np.ndarray,
    affine: np.ndarray,
    *,
    parameters: SynParameters = SynParameters(),
    seed: int = 0,
) -> JacobianVolumeChange:
    """Percent change of the masked tissue from BL to FU by SyN and Jacobian integration.

    Parameters
    ----------
    bl, fu
        Halfway crops of one shape on one grid (rigidly aligned).
    bl_mask, fu_mask
        Tissue masks (binary or fractional, values in [0, 1]) of each crop: the same
        parenchyma maps (tissue fractions) the pipeline integrates over.
    affine
        Common 4x4 RAS voxel-to-world matrix (its voxel size gives the volumes in ml).
    parameters, seed
        See :func:`syn_jacobian`.

    Returns
    -------
    JacobianVolumeChange
        Forward (BL mask integrated with the BL -> FU Jacobian, Eq. 1), backward (FU
        mask with the FU -> BL Jacobian, Eq. 2), their mean (Eq. 3), and the volumes.

    Raises
    ------
    ValueError
        If shapes differ or a mask is empty.
    """
    shapes = {np.shape(a) for a in (bl, fu, bl_mask, fu_mask)}
    if len(shapes) != 1:
        raise ValueError(f"images and masks must share one shape, got {sorted(shapes)}")
    voxel_mm = voxel_sizes_mm(affine)
    bpv_bl_ml = volume_ml(bl_mask, voxel_mm)
    bpv_fu_ml = volume_ml(fu_mask, voxel_mm)
    if bpv_bl_ml <= 0 or bpv_fu_ml <= 0:
        raise ValueError(f"empty mask: BL {bpv_bl_ml} ml, FU {bpv_fu_ml} ml")
    jacobian_fw = syn_jacobian(bl, fu, affine, parameters=parameters, seed=seed)
    bpv_fu_from_bl_ml = volume_ml(np.asarray(bl_mask, dtype=np.float64) * jacobian_fw, voxel_mm)
    jacobian_bw = syn_jacobian(fu, bl, affine, parameters=parameters, seed=seed)
    bpv_bl_from_fu_ml = volume_ml(np.asarray(fu_mask, dtype=np.float64) * jacobian_bw, voxel_mm)
    dbpv_fw = percent_change_forward(bpv_bl_ml, bpv_fu_from_bl_ml)
    dbpv_bw = percent_change_backward(bpv_fu_ml, bpv_bl_from_fu_ml)
    return JacobianVolumeChange(
        dbpv_fw=dbpv_fw,
        dbpv_bw=dbpv_bw,
        dbpv=0.5 * (dbpv_fw + dbpv_bw),
        bpv_bl_ml=bpv_bl_ml,
        bpv_fu_ml=bpv_fu_ml,
        bpv_fu_from_bl_ml=bpv_fu_from_bl_ml,
        bpv_bl_from_fu_ml=bpv_bl_from_fu_ml,
    )
