"""Contracts of the half-resolution VoxelMorph-style registration network."""

import pytest
import torch

from brainlossnet.models.registration_unet import (
    RegistrationConfig,
    RegistrationUNet,
    integrate_velocity,
    make_warp,
    upsample_displacement,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("shape", [(16, 32, 48), (32, 32, 32), (48, 16, 32)])
@pytest.mark.parametrize("integration_steps", [7, 0])
def test_output_is_a_three_channel_field_of_the_input_shape(shape, integration_steps):
    torch.manual_seed(0)
    model = RegistrationUNet(RegistrationConfig(integration_steps=integration_steps)).eval()
    moving, fixed = torch.rand(2, 1, *shape), torch.rand(2, 1, *shape)
    with torch.inference_mode():
        field = model(moving, fixed)
    assert field.shape == (2, 3, *shape)
    assert field.dtype == torch.float32
    assert torch.isfinite(field).all()
    # VoxelMorph's tiny output weights: an untrained network starts near the identity.
    assert field.abs().max() < 0.05


def test_shapes_that_are_not_multiples_of_16_or_differ_are_rejected():
    model = RegistrationUNet()
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 1, 24, 32, 32), torch.rand(1, 1, 24, 32, 32))
    with pytest.raises(ValueError, match="differ"):
        model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 16))


@pytest.mark.parametrize("radius", [0, 1])
def test_config_round_trips_through_its_dict(radius):
    config = RegistrationConfig(channels=(8, 16, 16, 16, 16, 16), final_conv_channels=(8,), integration_steps=0,
                                correlation_radius_vox=radius)
    assert RegistrationConfig.from_dict(config.to_dict()) == config


def test_a_config_saved_before_the_correlation_input_gets_the_papers_two_image_input():
    saved = {"channels": [16, 32, 32, 32, 32, 32], "final_conv_channels": [16, 16], "integration_steps": 7}
    config = RegistrationConfig.from_dict(saved)
    assert config.correlation_radius_vox == 0
    assert config.input_channels == 2


def test_the_correlation_input_adds_the_difference_and_one_channel_per_shift():
    config = RegistrationConfig(channels=(8, 16, 16, 16, 16, 16), final_conv_channels=(8,), correlation_radius_vox=1)
    assert config.input_channels == 2 + 1 + 27
    torch.manual_seed(0)
    model = RegistrationUNet(config).eval()
    first_conv = next(m for m in model.unet.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.in_channels == 30
    moving, fixed = torch.rand(1, 1, 32, 32, 48), torch.rand(1, 1, 32, 32, 48)
    with torch.inference_mode():
        field = model(moving, fixed)
    assert field.shape == (1, 3, 32, 32, 48)
    assert torch.isfinite(field).all()


def test_monai_warp_pulls_back_a_known_integer_shift():
    # warped(x) = moving(x + u): u = +2 along x moves the box two voxels towards lower x.
    moving = torch.zeros(1, 1, 16, 16, 16)
    moving[0, 0, 6:10, 4:8, 5:9] = 1.0
    ddf = torch.zeros(1, 3, 16, 16, 16)
    ddf[0, 0] = 2.0
    ddf[0, 2] = -1.0
    warped = make_warp()(moving, ddf)
    expected = torch.zeros_like(moving)
    expected[0, 0, 4:8, 4:8, 6:10] = 1.0
    torch.testing.assert_close(warped, expected, atol=1e-5, rtol=0)


def test_upsampling_a_constant_field_doubles_it_in_fine_voxels():
    coarse = torch.ones(1, 3, 4, 5, 6) * torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1, 1)
    fine = upsample_displacement(coarse, 2)
    assert fine.shape == (1, 3, 8, 10, 12)
    torch.testing.assert_close(fine, torch.ones_like(fine) * torch.tensor([1.0, -2.0, 4.0]).view(1, 3, 1, 1, 1))


def test_scaling_and_squaring_of_v_and_minus_v_compose_to_the_identity():
    torch.manual_seed(1)
    coarse = torch.randn(1, 3, 4, 4, 4) * 1.5
    velocity = torch.nn.functional.interpolate(coarse, size=(32, 32, 32), mode="trilinear", align_corners=True)
    forward = integrate_velocity(velocity, 7)
    backward = integrate_velocity(-velocity, 7)
    # (id + f) o (id + b) = id + b + f o (id + b)
    composed = backward + make_warp(padding_mode="border")(forward, backward)
    interior = composed[:, :, 6:-6, 6:-6, 6:-6]
    assert forward.abs().max() > 1.0  # a deformation of several voxels, not a trivial one
    assert interior.abs().max() < 0.15
    assert interior.abs().mean() < 0.02


def test_forward_is_the_half_resolution_field_integrated_and_upsampled():
    torch.manual_seed(2)
    model = RegistrationUNet().eval()
    with torch.no_grad():  # make the output large enough for integration to matter
        model.unet.net[1].final_conv_out.conv.weight.normal_(0.0, 2.0)
    moving, fixed = torch.rand(1, 1, 32, 16, 48), torch.rand(1, 1, 32, 16, 48)
    with torch.inference_mode():
        field = model.half_resolution_field(moving, fixed)
        displacement = model(moving, fixed)
        assert field.shape == (1, 3, 16, 8, 24)
        assert field.abs().max() > 0.5
        torch.testing.assert_close(displacement, model.field_to_displacement(field), atol=0, rtol=0)
        torch.testing.assert_close(
            model.field_to_displacement(field), upsample_displacement(integrate_velocity(field, 7), 2), atol=0, rtol=0
        )
    with pytest.raises(ValueError, match="multiple of 16"):
        model.half_resolution_field(torch.rand(1, 1, 24, 32, 32), torch.rand(1, 1, 24, 32, 32))


def test_without_integration_the_half_resolution_field_is_the_displacement():
    model = RegistrationUNet(RegistrationConfig(integration_steps=0))
    field = torch.randn(1, 3, 8, 8, 8)
    torch.testing.assert_close(model.half_resolution_displacement(field), field, atol=0, rtol=0)
