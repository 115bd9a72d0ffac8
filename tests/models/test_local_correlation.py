"""Contracts of the local correlation volume fed to the registration network."""

import itertools

import pytest
import torch

from brainlossnet.models.local_correlation import correlation_channels, local_correlation_volume

torch.set_num_threads(1)


def _textured_volume(shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """Random texture (B=1, C=1) in [0, 1]: strong contrast in every window."""
    return torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(seed))


def test_it_has_one_channel_per_shift_of_the_cube():
    moving = fixed = _textured_volume((12, 10, 8))
    volume = local_correlation_volume(moving, fixed, radius_vox=2, window_vox=3)
    assert correlation_channels(2) == 125
    assert volume.shape == (1, 125, 12, 10, 8)
    assert volume.abs().max() <= 1.0


@pytest.mark.parametrize("shift", [(1, 0, 0), (0, -1, 0), (1, 1, -1), (0, 0, 0)])
def test_the_correlation_peaks_at_the_shift_that_maps_moving_onto_fixed(shift):
    # fixed(x) = moving(x + d): the channel of offset d matches exactly in the interior.
    moving = _textured_volume((24, 24, 24))
    fixed = torch.roll(moving, shifts=tuple(-s for s in shift), dims=(2, 3, 4))
    volume = local_correlation_volume(moving, fixed, radius_vox=1, window_vox=5)
    offsets = list(itertools.product((-1, 0, 1), repeat=3))
    interior = volume[0, :, 6:-6, 6:-6, 6:-6]
    assert offsets[int(interior.mean(dim=(1, 2, 3)).argmax())] == shift
    assert (interior.argmax(dim=0) == offsets.index(shift)).float().mean() > 0.99
    assert interior[offsets.index(shift)].min() > 0.99


def test_flat_windows_read_as_no_correlation():
    moving = torch.zeros(1, 1, 8, 8, 8)
    fixed = torch.full((1, 1, 8, 8, 8), 0.5)
    volume = local_correlation_volume(moving, fixed, radius_vox=1)
    torch.testing.assert_close(volume, torch.zeros(1, 27, 8, 8, 8))


def test_bad_arguments_are_rejected():
    image = torch.rand(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="odd window"):
        local_correlation_volume(image, image, radius_vox=1, window_vox=4)
    with pytest.raises(ValueError, match="must both be"):
        local_correlation_volume(image, torch.rand(1, 1, 8, 8, 4), radius_vox=1)
