"""Contracts of the registration API: packaged model, displacement prediction, mask warping."""

import re

import numpy as np
import pytest
import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss

from brainlossnet import registration
from brainlossnet.models.registration_unet import RegistrationConfig, RegistrationUNet, make_warp, normalize_intensity

torch.set_num_threads(1)


def test_identity_warp_is_exact():
    volume = np.random.default_rng(0).random((16, 20, 24)).astype(np.float32)
    warped = registration.warp(volume, np.zeros((3, *volume.shape), dtype=np.float32))
    assert warped.dtype == np.float32
    np.testing.assert_array_equal(warped, volume)


def test_warping_ones_with_a_zero_field_sums_to_the_voxel_count():
    ones = np.ones((17, 19, 23), dtype=np.float32)
    assert registration.warp(ones, np.zeros((3, 17, 19, 23))).sum(dtype=np.float64) == 17 * 19 * 23


def test_integer_shift_moves_a_box_in_the_pull_back_convention():
    box = np.zeros((20, 20, 20), dtype=np.float32)
    box[8:12, 5:10, 10:14] = 1.0
    displacement = np.zeros((3, 20, 20, 20), dtype=np.float32)
    displacement[0], displacement[1], displacement[2] = 3.0, -2.0, 0.0  # warped(x) = box(x + u)
    expected = np.zeros_like(box)
    expected[5:9, 7:12, 10:14] = 1.0
    np.testing.assert_array_equal(registration.warp(box, displacement), expected)


def test_half_voxel_shift_splits_boundary_voxels_and_keeps_the_volume():
    box = np.zeros((20, 20, 20), dtype=np.float32)
    box[8:12, 8:12, 8:12] = 1.0
    displacement = np.zeros((3, 20, 20, 20))
    displacement[1] = 0.5
    warped = registration.warp(box, displacement)
    assert warped.sum() == pytest.approx(64.0)
    np.testing.assert_allclose(warped[10, [7, 11], 10], [0.5, 0.5])


def test_warp_matches_the_training_interpolation():
    rng = np.random.default_rng(3)
    volume = rng.random((16, 16, 16)).astype(np.float32)
    displacement = (rng.standard_normal((3, 16, 16, 16)) * 2.0).astype(np.float32)
    expected = make_warp(padding_mode="zeros")(torch.from_numpy(volume)[None, None], torch.from_numpy(displacement)[None])
    np.testing.assert_allclose(registration.warp(volume, displacement), expected[0, 0].numpy(), atol=1e-5)


def test_warp_rejects_a_field_of_another_shape():
    with pytest.raises(ValueError, match="does not match"):
        registration.warp(np.zeros((8, 8, 8)), np.zeros((3, 8, 8, 4)))


def test_normalize_intensity_maps_the_robust_maximum_to_one_and_clips_negatives():
    image = np.linspace(-10.0, 1000.0, 4096, dtype=np.float32).reshape(16, 16, 16)
    normalised = normalize_intensity(image)
    positive = image[image > 0]
    assert np.percentile(normalised[image > 0], 99.5) == pytest.approx(1.0, rel=1e-5)
    assert normalised.min() == 0.0
    np.testing.assert_allclose(normalised[image > 0], positive / np.percentile(positive, 99.5), rtol=1e-5)
    np.testing.assert_array_equal(normalize_intensity(np.zeros((4, 4, 4))), np.zeros((4, 4, 4)))


def test_a_candidate_weights_file_loads_in_place_of_the_packaged_one(tmp_path):
    config = RegistrationConfig(channels=(8, 16, 16, 16, 16, 16), final_conv_channels=(8,), correlation_radius_vox=1)
    torch.manual_seed(3)
    candidate = RegistrationUNet(config)
    target = tmp_path / "registration_unet.pt"
    torch.save({"config": config.to_dict(), "state_dict": candidate.state_dict()}, target)
    weights = target.read_bytes()
    loaded = registration.load_registration_model("cpu", weights)
    assert loaded.config == config and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), candidate.state_dict().values()))
    assert registration.model_version(weights) != registration.MODEL_VERSION
    assert registration.model_version(weights).startswith("blnet-reg-")


def test_packaged_model_loads_and_predicts_a_float32_field():
    assert re.fullmatch(r"blnet-reg-\d+\.\d+\.\d+\+[0-9a-f]{12}", registration.MODEL_VERSION)
    model = registration.load_registration_model("cpu")
    assert not model.training
    rng = np.random.default_rng(1)
    fixed = rng.random((32, 32, 48)).astype(np.float32) * 300.0
    moving = np.roll(fixed, 1, axis=0)
    field = registration.predict_displacement(model, moving, fixed)
    assert field.shape == (3, 32, 32, 48)
    assert field.dtype == np.float32
    assert np.isfinite(field).all()
    with pytest.raises(ValueError, match="one shape"):
        registration.predict_displacement(model, moving, fixed[:, :, :32])


def _blobs(shape: tuple[int, int, int], shift_vox: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """A smooth toy image (Gaussian blobs, sigma 2.5 voxels) sampled at ``x - shift_vox``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64) - np.asarray(shift_vox, dtype=float).reshape(3, 1, 1, 1)
    image = np.zeros(shape)
    for _ in range(40):
        centre = rng.uniform(4.0, np.asarray(shape) - 4.0).reshape(3, 1, 1, 1)
        image += rng.uniform(0.3, 1.0) * np.exp(-((grid - centre) ** 2).sum(axis=0) / (2 * 2.5**2))
    return (100.0 * image).astype(np.float32)


def _untrained_model() -> RegistrationUNet:
    torch.manual_seed(0)
    return RegistrationUNet().eval()


def _ncc_loss(moving: np.ndarray, fixed: np.ndarray, displacement: np.ndarray) -> float:
    warped = registration.warp(normalize_intensity(moving), displacement)
    ncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=9)
    return float(ncc(torch.from_numpy(warped)[None, None], torch.from_numpy(normalize_intensity(fixed))[None, None]))


def test_refinement_with_zero_steps_is_the_plain_network():
    model = registration.load_registration_model("cpu")
    rng = np.random.default_rng(4)
    fixed = rng.random((32, 48, 32)).astype(np.float32) * 200.0
    moving = np.roll(fixed, 2, axis=1)
    expected = model(*(torch.from_numpy(normalize_intensity(a))[None, None] for a in (moving, fixed)))
    field = registration.predict_displacement(model, moving, fixed, refine_steps=0, refine_fine_steps=0,
                                              inverse_consistent=False)
    np.testing.assert_array_equal(field, expected[0].detach().numpy())


def test_refinement_recovers_most_of_a_known_shift_and_lowers_the_ncc_loss():
    shift_vox = (1.5, -1.0, 0.0)  # moving(x + u) = fixed(x) with u = shift
    fixed, moving = _blobs((32, 32, 32), (0.0, 0.0, 0.0)), _blobs((32, 32, 32), shift_vox)
    model = _untrained_model()
    # one-sided: on this small toy the symmetric loss finds non-rigid fields that beat the exact shift
    plain = registration.predict_displacement(model, moving, fixed, refine_steps=0, refine_fine_steps=0,
                                              inverse_consistent=False)
    refined = registration.predict_displacement(model, moving, fixed, refine_steps=40, inverse_consistent=False)
    assert np.abs(plain).max() < 0.05  # the untrained network leaves the work to the refinement
    interior = refined[:, 8:-8, 8:-8, 8:-8].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(interior, shift_vox, atol=0.3)
    assert _ncc_loss(moving, fixed, refined) < _ncc_loss(moving, fixed, plain) - 0.05


def test_refinement_is_deterministic():
    fixed, moving = _blobs((32, 32, 32), (0.0, 0.0, 0.0), seed=1), _blobs((32, 32, 32), (0.7, 0.0, 0.4), seed=1)
    model = _untrained_model()
    first = registration.predict_displacement(model, moving, fixed, refine_steps=5)
    second = registration.predict_displacement(model, moving, fixed, refine_steps=5)
    np.testing.assert_array_equal(first, second)


def test_inverse_consistent_refinement_is_antisymmetric_and_lowers_both_ncc_losses():
    bl, fu = _blobs((32, 32, 32), (0.0, 0.0, 0.0), seed=2), _blobs((32, 32, 32), (1.0, 0.0, -0.5), seed=2)
    model = _untrained_model()
    bl_tensor, fu_tensor = (torch.from_numpy(normalize_intensity(a))[None, None] for a in (bl, fu))
    start = torch.zeros(1, 3, 16, 16, 16)
    forward = registration.refine_velocity(model, start, bl_tensor, fu_tensor, steps=20, inverse_consistent=True)
    backward = registration.refine_velocity(model, start, fu_tensor, bl_tensor, steps=20, inverse_consistent=True)
    # swapping the images negates the velocity: exp(v) and exp(-v) are each other's inverse
    torch.testing.assert_close(backward, -forward, rtol=0.0, atol=1e-6)
    zero = np.zeros((3, 32, 32, 32), dtype=np.float32)
    with torch.no_grad():
        forward_field, backward_field = (model.field_to_displacement(v)[0].numpy() for v in (forward, backward))
    assert _ncc_loss(bl, fu, forward_field) < _ncc_loss(bl, fu, zero) - 0.02
    assert _ncc_loss(fu, bl, backward_field) < _ncc_loss(fu, bl, zero) - 0.02


def test_full_resolution_stage_is_antisymmetric_and_lowers_the_full_resolution_ncc_loss():
    bl, fu = _blobs((32, 32, 32), (0.0, 0.0, 0.0), seed=5), _blobs((32, 32, 32), (1.0, -0.5, 0.0), seed=5)
    model = _untrained_model()
    bl_tensor, fu_tensor = (torch.from_numpy(normalize_intensity(a))[None, None] for a in (bl, fu))
    start = torch.zeros(1, 3, 16, 16, 16)
    forward, backward = (
        registration.refine_velocity(model, start, moving, fixed, steps=15, learning_rate_vox=0.3,
                                     inverse_consistent=True, full_resolution=True)
        for moving, fixed in ((bl_tensor, fu_tensor), (fu_tensor, bl_tensor))
    )
    torch.testing.assert_close(backward, -forward, rtol=0.0, atol=1e-6)
    with torch.no_grad():
        forward_field = model.field_to_displacement(forward)[0].numpy()
    zero = np.zeros((3, 32, 32, 32), dtype=np.float32)
    assert _ncc_loss(bl, fu, forward_field) < _ncc_loss(bl, fu, zero) - 0.02


def test_fine_steps_compare_full_resolution_images_in_a_window_of_the_same_width(monkeypatch):
    """The half-resolution steps see pooled (16^3) images in a 13-voxel window, the fine steps
    the 32^3 images in a 25-voxel one."""
    seen: list[tuple[tuple[int, ...], int]] = []
    original = registration.FixedImageLNCC

    class Spy(original):
        def __init__(self, fixed, kernel_vox, noise_floor):
            seen.append((tuple(fixed.shape[2:]), kernel_vox))
            super().__init__(fixed, kernel_vox, noise_floor)

    monkeypatch.setattr(registration, "FixedImageLNCC", Spy)
    bl, fu = _blobs((32, 32, 32), (0.0, 0.0, 0.0), seed=6), _blobs((32, 32, 32), (0.5, 0.0, 0.0), seed=6)
    registration.predict_displacement_pair(_untrained_model(), bl, fu, refine_steps=2, refine_fine_steps=1,
                                           refine_ncc_kernel_vox=13)
    assert seen == [((16, 16, 16), 13), ((32, 32, 32), 25)]


@pytest.mark.parametrize(("steps", "fine_steps"), [(3, 0), (2, 2)])
def test_pair_prediction_equals_two_inverse_consistent_predictions(steps, fine_steps):
    model = registration.load_registration_model("cpu")
    bl, fu = _blobs((32, 32, 32), (0.0, 0.0, 0.0), seed=3), _blobs((32, 32, 32), (0.5, 0.0, 0.0), seed=3)
    budget = {"refine_steps": steps, "refine_fine_steps": fine_steps}
    forward, backward = registration.predict_displacement_pair(model, bl, fu, **budget)
    np.testing.assert_allclose(forward, registration.predict_displacement(model, bl, fu, **budget), atol=1e-6)
    np.testing.assert_allclose(backward, registration.predict_displacement(model, fu, bl, **budget), atol=1e-6)


class _CountingModel(RegistrationUNet):
    """Counts integrations of the velocity: one per refinement step, one for the final field."""

    def __init__(self) -> None:
        super().__init__()
        self.integrations = 0

    def half_resolution_displacement(self, field: torch.Tensor, integration_steps: int | None = None) -> torch.Tensor:
        self.integrations += 1
        return super().half_resolution_displacement(field, integration_steps)


@pytest.mark.parametrize(("steps", "fine_steps"), [(0, 0), (1, 0), (7, 0), (0, 2), (3, 2)])
def test_refinement_takes_exactly_the_requested_number_of_steps(steps, fine_steps):
    fixed, moving = _blobs((32, 16, 16), (0.0, 0.0, 0.0)), _blobs((32, 16, 16), (0.5, 0.0, 0.0))
    torch.manual_seed(0)
    model = _CountingModel().eval()
    registration.predict_displacement(model, moving, fixed, refine_steps=steps, refine_fine_steps=fine_steps)
    assert model.integrations == steps + fine_steps + 1


def test_refinement_rejects_a_negative_budget_or_learning_rate():
    model = _untrained_model()
    volume = _blobs((16, 16, 16), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="steps"):
        registration.predict_displacement(model, volume, volume, refine_steps=-1)
    with pytest.raises(ValueError, match="learning rate"):
        registration.predict_displacement(model, volume, volume, refine_steps=2, refine_learning_rate_vox=0.0)


@pytest.mark.parametrize(("kernel_vox", "noise_floor"), [(9, 0.0), (5, 0.06), (3, 0.2)])
def test_fixed_image_lncc_equals_monai_and_carries_the_same_gradient(kernel_vox, noise_floor):
    generator = torch.Generator().manual_seed(kernel_vox)
    fixed = torch.rand(1, 1, 12, 14, 16, generator=generator)
    fixed[..., :5] = 0.0  # a flat region, where the floor decides
    moving = (0.7 * fixed + 0.3 * torch.rand(1, 1, 12, 14, 16, generator=generator)).requires_grad_()
    monai_loss = LocalNormalizedCrossCorrelationLoss(
        spatial_dims=3, kernel_size=kernel_vox, smooth_dr=max(kernel_vox**3 * noise_floor**2, 1e-5)
    )
    expected = monai_loss(moving, fixed)
    (expected_grad,) = torch.autograd.grad(expected, moving)
    value = registration.FixedImageLNCC(fixed, kernel_vox, noise_floor)(moving)
    (grad,) = torch.autograd.grad(value, moving)
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-3, atol=1e-7)
    with pytest.raises(ValueError, match="odd"):
        registration.FixedImageLNCC(fixed, 4, 0.0)


def test_fixed_image_lncc_gradient_in_closed_form_equals_finite_differences():
    """Float64, a batch of two, with nearly flat windows in both images where the variance floor holds."""
    generator = torch.Generator().manual_seed(0)
    fixed = torch.rand(2, 1, 6, 7, 8, generator=generator, dtype=torch.float64)
    fixed[..., :3] = 0.5
    moving = (0.6 * fixed + 0.4 * torch.rand(2, 1, 6, 7, 8, generator=generator, dtype=torch.float64))
    moving[0, 0, 1:5, 1:6, 2:7] = 0.25 + 0.04 * torch.rand(4, 5, 5, generator=generator, dtype=torch.float64)
    similarity = registration.FixedImageLNCC(fixed, 3, 0.05)
    sums = registration._window_sums(torch.cat([moving, moving * moving], dim=1), 3)
    moving_var = sums[:, 1:] - sums[:, :1] ** 2 / similarity.count
    assert (moving_var < similarity.smooth_dr).any() and (moving_var > similarity.smooth_dr).any()
    assert torch.autograd.gradcheck(similarity, (moving.requires_grad_(),), eps=1e-6, atol=1e-8)
