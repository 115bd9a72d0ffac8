"""Calibration profiles: shipped ones load, user files load, bad ones fail clearly."""

import json

import pytest

from brainlossnet import calibration


def test_shipped_profiles_include_default_and_the_papers_marked_as_its_network():
    assert {"default", "paper"} <= set(calibration.shipped_profiles())
    paper = calibration.load_profile("paper")
    assert (paper.m_tiv, paper.m_scale) == (0.95, 0.30)
    assert "NOT valid" in paper.description
    default = calibration.load_profile()
    assert default.name == "default"
    assert calibration.profile_path("default").is_file()
    prior = calibration.load_profile("prior")
    assert (prior.m_tiv, prior.m_scale) == (1.0, 1.0)


def test_shipped_default_is_a_fit_for_the_shipped_weights_with_m_tiv_held_at_the_prior():
    """Retrained weights must come with a refitted default profile (m_TIV held: docs/calibration.md)."""
    from brainlossnet.registration import MODEL_VERSION

    default = calibration.load_profile()
    assert default.model == MODEL_VERSION
    assert not calibration.fitted_for_another_model(default, MODEL_VERSION)
    fit = default.fit
    assert fit["m_tiv_fixed"] and default.m_tiv == 1.0
    assert fit["n_pairs"] >= 10
    assert fit["m_scale_ci95"][0] <= default.m_scale <= fit["m_scale_ci95"][1]


def test_shipped_pooled_is_a_fit_for_the_shipped_weights_without_full_resolution_steps():
    """The profile for --refine-fine-steps 0: both constants fitted, each inside its interval."""
    from brainlossnet.registration import MODEL_VERSION

    pooled = calibration.load_profile("pooled")
    assert pooled.model == MODEL_VERSION
    fit = pooled.fit
    assert fit["n_pairs"] >= 10
    assert fit["m_tiv_ci95"][0] <= pooled.m_tiv <= fit["m_tiv_ci95"][1]
    assert fit["m_scale_ci95"][0] <= pooled.m_scale <= fit["m_scale_ci95"][1]
    assert "--refine-fine-steps 0" in pooled.description


def _refinement(steps: int, fine_steps: int, fine_learning_rate_vox: float) -> dict:
    return {"refine_steps": steps, "refine_fine_steps": fine_steps, "refine_fine_learning_rate_vox": fine_learning_rate_vox}


def test_a_profile_recognises_another_refinement_budget_and_unrecorded_ones_are_not_judged():
    from brainlossnet.registration import REFINE_FINE_LEARNING_RATE_VOX, REFINE_FINE_STEPS, REFINE_STEPS

    default, pooled = calibration.load_profile(), calibration.load_profile("pooled")
    assert not calibration.fitted_for_another_refinement(
        default, _refinement(REFINE_STEPS, REFINE_FINE_STEPS, REFINE_FINE_LEARNING_RATE_VOX))  # the release's
    assert calibration.fitted_for_another_refinement(default, _refinement(30, 0, REFINE_FINE_LEARNING_RATE_VOX))
    assert calibration.fitted_for_another_refinement(default, _refinement(15, REFINE_FINE_STEPS, REFINE_FINE_LEARNING_RATE_VOX))
    assert calibration.fitted_for_another_refinement(  # the same steps of another size
        default, _refinement(REFINE_STEPS, REFINE_FINE_STEPS, 2 * REFINE_FINE_LEARNING_RATE_VOX))
    assert not calibration.fitted_for_another_refinement(pooled, _refinement(REFINE_STEPS, 0, REFINE_FINE_LEARNING_RATE_VOX))
    assert calibration.fitted_for_another_refinement(pooled, _refinement(30, 2, 0.1))
    for name in ("prior", "paper"):
        assert not calibration.fitted_for_another_refinement(calibration.load_profile(name), _refinement(7, 7, 0.7))
    older = calibration.profile_from_dict(default.as_dict() | {"fit": {"refinement": {"refine_steps": 30}}})
    assert not calibration.fitted_for_another_refinement(older, _refinement(30, 0, 0.05))  # before fine steps existed
    two_of_the_old_size = calibration.profile_from_dict(  # fitted before the step size was recorded: 0.1
        default.as_dict() | {"fit": {"refinement": {"refine_steps": 30, "refine_fine_steps": 2}}})
    assert not calibration.fitted_for_another_refinement(two_of_the_old_size, _refinement(30, 2, 0.1))
    assert calibration.fitted_for_another_refinement(two_of_the_old_size, _refinement(30, 2, 0.05))


def test_the_refinement_budget_reads_older_records_as_they_were_computed():
    assert calibration.refinement_budget({}) is None
    assert calibration.refinement_budget({"refine_steps": 30}) == (30, 0, 0.0)
    before_the_step_size = calibration.refinement_budget({"refine_steps": 30, "refine_fine_steps": 2})
    assert before_the_step_size == (30, 2, calibration.LEGACY_FINE_LEARNING_RATE_VOX)
    assert calibration.refinement_budget(
        {"refine_steps": 30, "refine_fine_steps": 4, "refine_fine_learning_rate_vox": 0.05}) == (30, 4, 0.05)
    assert calibration.refinement_budget(  # no full-resolution step: its size changes nothing
        {"refine_steps": 30, "refine_fine_steps": 0, "refine_fine_learning_rate_vox": 0.05}) == (30, 0, 0.0)
    with pytest.raises(ValueError):
        calibration.refinement_budget({"refine_steps": 30, "refine_fine_steps": 4, "refine_fine_learning_rate_vox": "x"})


def test_the_shipped_fits_record_this_releases_parenchyma_and_other_definitions_are_recognised():
    from brainlossnet.parenchyma import PARENCHYMA_DEFINITION

    for name in ("default", "pooled"):
        profile = calibration.load_profile(name)
        assert profile.fit["parenchyma_definition"] == PARENCHYMA_DEFINITION
        assert not calibration.fitted_for_another_parenchyma(profile, PARENCHYMA_DEFINITION)
        assert calibration.fitted_for_another_parenchyma(profile, "binary-mask")
    for name in ("prior", "paper"):  # constants, not fits: not judged
        assert not calibration.fitted_for_another_parenchyma(calibration.load_profile(name), "binary-mask")
    default = calibration.load_profile().as_dict()
    unrecorded = {key: value for key, value in default["fit"].items() if key != "parenchyma_definition"}
    older = calibration.profile_from_dict(default | {"fit": unrecorded})  # fitted by calibrate before the fraction
    assert calibration.fitted_parenchyma_definition(older) == calibration.LEGACY_PARENCHYMA_DEFINITION
    assert calibration.fitted_for_another_parenchyma(older, PARENCHYMA_DEFINITION)


def test_a_profile_of_other_weights_is_recognised_and_unversioned_ones_are_not():
    other = calibration.load_profile().as_dict() | {"model": "blnet-reg-0.1.0+000000000000"}
    profile = calibration.profile_from_dict(other)
    assert calibration.fitted_for_another_model(profile, "blnet-reg-0.1.0+acb931569afc")
    assert not calibration.fitted_for_another_model(profile, "blnet-reg-0.1.0+000000000000")
    for name in ("prior", "paper"):
        assert not calibration.fitted_for_another_model(calibration.load_profile(name), "blnet-reg-x")


def test_user_profile_from_file(tmp_path):
    document = calibration.load_profile("paper").as_dict() | {"name": "site-a", "m_scale": 0.5}
    path = tmp_path / "site-a.json"
    path.write_text(json.dumps(document))
    profile = calibration.load_profile(path)
    assert (profile.name, profile.m_scale) == ("site-a", 0.5)
    assert calibration.profile_path(str(path)) == path.resolve()


def test_unknown_or_invalid_profiles_fail_with_the_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        calibration.load_profile("no-such")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        calibration.load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "typo": 1}))
    with pytest.raises(ValueError, match="bad.json"):
        calibration.load_profile(bad)
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps(calibration.load_profile("paper").as_dict() | {"m_scale": 0.0}))
    with pytest.raises(ValueError, match="m_scale"):
        calibration.load_profile(zero)


# --- fitting a profile (brainlossnet.calibration_fit, Eqs. 5-8) ---------------------------

import numpy as np  # noqa: E402

from brainlossnet import calibration_fit, volumetry  # noqa: E402


def _simulated_pairs(n: int, m_tiv: float, m_scale: float, c_tiv: float, seed: int):
    """Volumes of n pairs whose raw changes follow Eqs. 5 and 7 with known constants.

    Each direction measures ``m_scale * truth + m_tiv * distortion + c_tiv`` plus its own
    noise; the volumes go through volumetry.brain_volume_loss as at inference.
    """
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-2.0, 0.0, n)
    dtiv_true = rng.normal(0.0, 0.6, n)
    pairs = []
    for t, d in zip(truth, dtiv_true):
        dbpv_fw, dbpv_bw = m_scale * t + m_tiv * d + c_tiv + rng.normal(0, 0.03, 2)
        dtiv_fw, dtiv_bw = d + rng.normal(0, 0.01, 2)
        bpv_bl, tiv_bl = 1200.0, 1500.0
        bpv_fu = bpv_bl * (1 + (m_scale * t + m_tiv * d + c_tiv) / 100)
        tiv_fu = tiv_bl * (1 + d / 100)
        pairs.append(volumetry.PairVolumes(
            bpv_bl_ml=bpv_bl, bpv_fu_ml=bpv_fu,
            bpv_fu_from_bl_ml=bpv_bl * (1 + dbpv_fw / 100),
            bpv_bl_from_fu_ml=bpv_fu / (1 + dbpv_bw / 100),
            tiv_bl_ml=tiv_bl, tiv_fu_ml=tiv_fu,
            tiv_fu_from_bl_ml=tiv_bl * (1 + dtiv_fw / 100),
            tiv_bl_from_fu_ml=tiv_fu / (1 + dtiv_bw / 100),
        ))
    return truth, pairs


def test_fit_is_the_inverse_of_what_volumetry_applies():
    m_tiv, m_scale = 0.8, 0.45
    truth, pairs = _simulated_pairs(120, m_tiv, m_scale, c_tiv=-0.1, seed=0)
    raw = [volumetry.brain_volume_loss(p, m_tiv=1.0, m_scale=1.0) for p in pairs]
    fit = calibration_fit.fit_calibration([r.dbpv for r in raw], [r.dtiv for r in raw], truth)
    low, high = fit.distortion.slope_ci95
    assert low < m_tiv < high and high - low < 0.2
    low, high = fit.rescaling.slope_ci95
    assert low < m_scale < high and high - low < 0.03
    assert fit.m_scale == fit.rescaling.slope and fit.m_tiv == fit.distortion.slope
    assert fit.distortion.n == fit.rescaling.n == 120 and 0.9 < fit.rescaling.r2 <= 1
    # applying the fitted constants at inference recovers the truth up to the offset c/m_scale
    bvl = np.array([volumetry.brain_volume_loss(p, fit.m_tiv, fit.m_scale).bvl for p in pairs])
    error = bvl - truth
    assert abs(np.mean(error) - (-0.1 / m_scale)) < 0.03
    assert np.std(error) < 0.1
    assert fit.bvl_minus_reference_mean_pct == pytest.approx(np.mean(error))
    assert fit.bvl_minus_reference_sd_pct == pytest.approx(np.std(error, ddof=1))


def test_fixed_m_tiv_skips_eq5_and_is_used_for_the_residual():
    truth, pairs = _simulated_pairs(20, 0.9, 0.5, c_tiv=0.0, seed=0)
    raw = [volumetry.brain_volume_loss(p, 1.0, 1.0) for p in pairs]
    fit = calibration_fit.fit_calibration([r.dbpv for r in raw], [r.dtiv for r in raw], truth, m_tiv=0.9)
    assert fit.distortion is None and fit.m_tiv == 0.9
    assert fit.rescaling.slope_ci95[0] < 0.5 < fit.rescaling.slope_ci95[1]


def test_fit_line_matches_textbook_values_and_rejects_degenerate_input():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 5.0])
    line = calibration_fit.fit_line(x, y)
    # slope = Sxy/Sxx = 5.5/5 = 1.1; intercept = 2.75 - 1.1*1.5; residual SS = 2.7
    assert line.slope == pytest.approx(1.1) and line.intercept == pytest.approx(1.1)
    assert line.residual_sd == pytest.approx(np.sqrt(2.7 / 2))
    half = 4.302652729911275 * np.sqrt(2.7 / 2 / 5)  # t(0.975, 2) * stderr
    assert line.slope_ci95 == pytest.approx((1.1 - half, 1.1 + half))
    assert line.r2 == pytest.approx(1 - 2.7 / 8.75)
    with pytest.raises(ValueError, match="at least 3"):
        calibration_fit.fit_line(x[:2], y[:2])
    with pytest.raises(ValueError, match="constant"):
        calibration_fit.fit_line(np.ones(4), y)
    with pytest.raises(ValueError, match="finite"):
        calibration_fit.fit_line(x, np.array([1.0, np.nan, 2.0, 3.0]))


def test_estimates_that_fall_with_the_reference_are_refused():
    reference = np.linspace(-2, 0, 10)
    with pytest.raises(ValueError, match="m_scale"):
        calibration_fit.fit_calibration(-0.3 * reference, np.linspace(-1, 1, 10)[::-1] ** 3, reference)


def test_bvl_slope_is_the_scale_a_set_is_read_at_relative_to_the_calibration():
    reference = np.array([0.0, -0.5, -1.0, -2.0])
    dtiv = np.array([0.1, -0.2, 0.3, 0.0])
    dbpv = 0.6 * reference + 0.9 * dtiv + 0.05  # a set read at m_scale 0.6, with an offset
    assert calibration_fit.bvl_slope(dbpv, dtiv, reference, m_tiv=0.9, m_scale=0.5) == pytest.approx(1.2)
    assert np.isnan(calibration_fit.bvl_slope(dbpv[:2], dtiv[:2], reference[:2], m_tiv=0.9, m_scale=0.5))
    assert np.isnan(calibration_fit.bvl_slope(dbpv, dtiv, np.zeros(4), m_tiv=0.9, m_scale=0.5))
