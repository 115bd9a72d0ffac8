"""Volumes of masks and the percent changes of the paper's equations 1-4 and 6, 8-10.

Everything here is arithmetic on numbers and arrays; the constants of the distortion
correction and rescaling come from a calibration profile (see :mod:`calibration`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from brainlossnet.jacobian import jacobian_determinant


def volume_ml(mask: np.ndarray, voxel_mm: tuple[float, float, float] | np.ndarray) -> float:
    """Volume of a (possibly interpolated, fractional) mask: sum of its values times voxel volume.

    Summing interpolated values, not counting voxels, is what makes a warped mask's volume
    sensitive to sub-voxel boundary shifts (paper, "Computation of brain volume loss").
    """
    voxel_ml = float(np.prod(np.asarray(voxel_mm, dtype=float))) / 1000.0
    return float(np.sum(mask, dtype=np.float64)) * voxel_ml


def percent_change_forward(bl_ml: float, fu_from_bl_ml: float) -> float:
    """Forward change, Eq. 1: 100 (V_FU<-BL - V_BL) / V_BL."""
    return 100.0 * (fu_from_bl_ml - bl_ml) / bl_ml


def percent_change_backward(fu_ml: float, bl_from_fu_ml: float) -> float:
    """Backward change, Eq. 2: 100 (V_FU - V_BL<-FU) / V_BL<-FU."""
    return 100.0 * (fu_ml - bl_from_fu_ml) / bl_from_fu_ml


@dataclass(frozen=True)
class PairVolumes:
    """The eight volumes (ml) that one BL/FU pair yields: both masks, native and warped."""

    bpv_bl_ml: float
    bpv_fu_ml: float
    bpv_fu_from_bl_ml: float
    bpv_bl_from_fu_ml: float
    tiv_bl_ml: float
    tiv_fu_ml: float
    tiv_fu_from_bl_ml: float
    tiv_bl_from_fu_ml: float


def pair_volumes(
    bl_parenchyma: np.ndarray,
    bl_intracranial: np.ndarray,
    fu_parenchyma: np.ndarray,
    fu_intracranial: np.ndarray,
    field_fw_vox: np.ndarray,
    field_bw_vox: np.ndarray,
    voxel_mm: tuple[float, float, float] | np.ndarray,
) -> PairVolumes:
    """Native volumes and each map's volume in the other session's space (Eqs. 1-2).

    The volume a BL map takes in FU space is the integral over the map of the local
    volume ratio of the map from BL to FU, ``det(I + grad u_bw)`` (the backward field maps
    each BL voxel to its place in FU); likewise the FU maps with the forward field. This
    is the volume of the paper's warped mask, read by Jacobian integration instead of by
    summing a trilinearly resampled binary mask: no resampling of the mask's one-voxel edge,
    which left forward and backward 0.1-0.3 % apart (docs/registration.md). It needs the
    two fields to be each other's inverse, as the inverse-consistent registration makes them.

    Parameters
    ----------
    bl_parenchyma, bl_intracranial, fu_parenchyma, fu_intracranial
        Tissue maps on the halfway grid, shape (X, Y, Z): fractions in [0, 1] (the
        parenchyma's, :mod:`brainlossnet.parenchyma`) or binary masks (the TIV's).
    field_fw_vox, field_bw_vox
        Pull-back displacements BL->FU and FU->BL in voxels, shape (3, X, Y, Z).
    voxel_mm
        Voxel edge lengths of the halfway grid.
    """
    bl_to_fu_ratio = jacobian_determinant(field_bw_vox)
    fu_to_bl_ratio = jacobian_determinant(field_fw_vox)
    return PairVolumes(
        bpv_bl_ml=volume_ml(bl_parenchyma, voxel_mm),
        bpv_fu_ml=volume_ml(fu_parenchyma, voxel_mm),
        bpv_fu_from_bl_ml=volume_ml(bl_parenchyma * bl_to_fu_ratio, voxel_mm),
        bpv_bl_from_fu_ml=volume_ml(fu_parenchyma * fu_to_bl_ratio, voxel_mm),
        tiv_bl_ml=volume_ml(bl_intracranial, voxel_mm),
        tiv_fu_ml=volume_ml(fu_intracranial, voxel_mm),
        tiv_fu_from_bl_ml=volume_ml(bl_intracranial * bl_to_fu_ratio, voxel_mm),
        tiv_bl_from_fu_ml=volume_ml(fu_intracranial * fu_to_bl_ratio, voxel_mm),
    )


@dataclass(frozen=True)
class BrainVolumeLoss:
    """Percent changes of one pair: raw (Eqs. 1-4) and corrected and rescaled (Eqs. 6, 8-10)."""

    dbpv_fw: float
    dbpv_bw: float
    dbpv: float
    dtiv_fw: float
    dtiv_bw: float
    dtiv: float
    bvl_fw: float
    bvl_bw: float
    bvl: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def distortion_corrected(dbpv_pct: float, dtiv_pct: float, m_tiv: float, m_scale: float) -> float:
    """BVL from a volume change and the apparent TIV change, Eqs. 6 and 8 (or 10 per direction).

    The TIV cannot change between two scans, so its apparent change measures relative
    distortion; ``m_tiv`` says how much of it leaks into the brain change and ``m_scale``
    rescales the residual to percent brain volume change.
    """
    return (dbpv_pct - m_tiv * dtiv_pct) / m_scale


def brain_volume_loss(volumes: PairVolumes, m_tiv: float, m_scale: float) -> BrainVolumeLoss:
    """All percent changes of a pair from its volumes and a calibration (Eqs. 1-4, 6, 8-10).

    The final BVL is the mean of forward and backward estimates (Eq. 9), which equals
    correcting the averaged changes of Eqs. 3-4 (the correction is linear).
    """
    dbpv_fw = percent_change_forward(volumes.bpv_bl_ml, volumes.bpv_fu_from_bl_ml)
    dbpv_bw = percent_change_backward(volumes.bpv_fu_ml, volumes.bpv_bl_from_fu_ml)
    dtiv_fw = percent_change_forward(volumes.tiv_bl_ml, volumes.tiv_fu_from_bl_ml)
    dtiv_bw = percent_change_backward(volumes.tiv_fu_ml, volumes.tiv_bl_from_fu_ml)
    bvl_fw = distortion_corrected(dbpv_fw, dtiv_fw, m_tiv, m_scale)
    bvl_bw = distortion_corrected(dbpv_bw, dtiv_bw, m_tiv, m_scale)
    return BrainVolumeLoss(
        dbpv_fw=dbpv_fw,
        dbpv_bw=dbpv_bw,
        dbpv=0.5 * (dbpv_fw + dbpv_bw),
        dtiv_fw=dtiv_fw,
        dtiv_bw=dtiv_bw,
        dtiv=0.5 * (dtiv_fw + dtiv_bw),
        bvl_fw=bvl_fw,
        bvl_bw=bvl_bw,
        bvl=0.5 * (bvl_fw + bvl_bw),
    )
