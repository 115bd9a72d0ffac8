"""The paper's equations 1-4, 6 and 8-10, against hand-computed values."""

import numpy as np
import pytest

from brainlossnet import volumetry


def test_volume_ml_sums_fractional_values_times_voxel_volume():
    mask = np.zeros((10, 10, 10))
    mask[:5] = 1.0
    mask[5] = 0.5
    assert volumetry.volume_ml(mask, (2.0, 1.0, 1.0)) == pytest.approx((500 + 50) * 2.0 / 1000)


def test_forward_and_backward_changes_follow_equations_1_and_2():
    assert volumetry.percent_change_forward(1000.0, 990.0) == pytest.approx(-1.0)
    assert volumetry.percent_change_backward(990.0, 1000.0) == pytest.approx(-1.0)
    assert volumetry.percent_change_backward(990.0, 995.0) == pytest.approx(100 * -5 / 995)


def test_brain_volume_loss_matches_hand_computation():
    volumes = volumetry.PairVolumes(
        bpv_bl_ml=1200.0, bpv_fu_ml=1188.0, bpv_fu_from_bl_ml=1190.0, bpv_bl_from_fu_ml=1199.0,
        tiv_bl_ml=1500.0, tiv_fu_ml=1503.0, tiv_fu_from_bl_ml=1501.5, tiv_bl_from_fu_ml=1500.0,
    )
    loss = volumetry.brain_volume_loss(volumes, m_tiv=0.95, m_scale=0.30)
    dbpv_fw = 100 * (1190 - 1200) / 1200
    dbpv_bw = 100 * (1188 - 1199) / 1199
    dtiv_fw = 100 * (1501.5 - 1500) / 1500
    dtiv_bw = 100 * (1503 - 1500) / 1500
    assert loss.dbpv_fw == pytest.approx(dbpv_fw)
    assert loss.dbpv_bw == pytest.approx(dbpv_bw)
    assert loss.dbpv == pytest.approx((dbpv_fw + dbpv_bw) / 2)
    assert loss.dtiv == pytest.approx((dtiv_fw + dtiv_bw) / 2)
    assert loss.bvl_fw == pytest.approx((dbpv_fw - 0.95 * dtiv_fw) / 0.30)
    assert loss.bvl_bw == pytest.approx((dbpv_bw - 0.95 * dtiv_bw) / 0.30)
    # Eq. 9 equals correcting the averaged changes (Eqs. 3, 4, 6, 8).
    assert loss.bvl == pytest.approx((loss.dbpv - 0.95 * loss.dtiv) / 0.30)
    assert set(loss.as_dict()) == {
        "dbpv_fw", "dbpv_bw", "dbpv", "dtiv_fw", "dtiv_bw", "dtiv", "bvl_fw", "bvl_bw", "bvl",
    }


def test_distortion_correction_removes_a_pure_scaling_when_m_tiv_is_one():
    scale = 1.008 ** 3  # FU 0.8 % larger in every direction: brain and TIV grow alike
    volumes = volumetry.PairVolumes(
        bpv_bl_ml=1200.0, bpv_fu_ml=1200.0 * scale, bpv_fu_from_bl_ml=1200.0 * scale, bpv_bl_from_fu_ml=1200.0,
        tiv_bl_ml=1500.0, tiv_fu_ml=1500.0 * scale, tiv_fu_from_bl_ml=1500.0 * scale, tiv_bl_from_fu_ml=1500.0,
    )
    loss = volumetry.brain_volume_loss(volumes, m_tiv=1.0, m_scale=1.0)
    assert loss.dbpv == pytest.approx(100 * (scale - 1))
    assert loss.bvl == pytest.approx(0.0, abs=1e-12)


def test_pair_volumes_integrates_the_other_directions_jacobian_over_each_mask():
    shape = (12, 12, 12)
    grid = np.indices(shape, dtype=np.float32) - 5.5
    bl_to_fu_scale = 0.98  # every length in FU is 0.98 of BL: volumes 0.98**3
    # pull-back fields: FU->BL field samples FU at x + u_bw, i.e. at 0.98 x; BL->FU at x / 0.98
    field_bw = (bl_to_fu_scale - 1.0) * grid
    field_fw = (1.0 / bl_to_fu_scale - 1.0) * grid
    parenchyma = np.zeros(shape, dtype=np.float32)
    parenchyma[3:9, 3:9, 3:9] = 1.0
    intracranial = np.zeros(shape, dtype=np.float32)
    intracranial[2:10, 2:10, 2:10] = 1.0
    volumes = volumetry.pair_volumes(
        parenchyma, intracranial, parenchyma * 0.5, intracranial, field_fw, field_bw, (2.0, 1.0, 1.0)
    )
    ratio = bl_to_fu_scale**3
    assert volumes.bpv_bl_ml == pytest.approx(216 * 2.0 / 1000)
    assert volumes.bpv_fu_ml == pytest.approx(108 * 2.0 / 1000)
    assert volumes.bpv_fu_from_bl_ml == pytest.approx(volumes.bpv_bl_ml * ratio, rel=1e-5)
    assert volumes.bpv_bl_from_fu_ml == pytest.approx(volumes.bpv_fu_ml / ratio, rel=1e-5)
    assert volumes.tiv_fu_from_bl_ml == pytest.approx(volumes.tiv_bl_ml * ratio, rel=1e-5)
    assert volumes.tiv_bl_from_fu_ml == pytest.approx(volumes.tiv_fu_ml / ratio, rel=1e-5)
