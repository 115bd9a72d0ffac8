"""Pure input checks: dimensions, voxel geometry, scaling, intensities, skull and field of view."""

import numpy as np
import pytest

from brainlossnet import image_checks, phantom
from brainlossnet.image_checks import InputDataError


@pytest.mark.parametrize("shape, match", [
    ((8, 8, 8, 3), "4D image with 3 volumes"),
    ((8, 8), "2D image"),
    ((8, 8, 1), "2D image"),
    ((8, 8, 8, 1, 2), "5D image"),
])
def test_dimensions_refused(shape, match):
    with pytest.raises(InputDataError, match=match):
        image_checks.check_dimensions(shape)


def test_dimensions_accepted():
    image_checks.check_dimensions((8, 9, 10))


@pytest.mark.parametrize("voxel_mm, match", [
    ((4.0, 1.0, 1.0), "4 mm or more"),
    ((1.0, 1.0, 3.5), "anisotropy 3.5:1"),
    ((0.0, 1.0, 1.0), "degenerate"),
])
def test_voxel_geometry_refused(voxel_mm, match):
    with pytest.raises(InputDataError, match=match):
        image_checks.check_voxel_geometry(np.diag([*voxel_mm, 1.0]))


@pytest.mark.parametrize("voxel_mm", [(1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (3.9, 3.9, 3.9), (0.5, 0.5, 1.2)])
def test_voxel_geometry_accepted(voxel_mm):
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # flips are fine
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel_mm)
    image_checks.check_voxel_geometry(affine)


@pytest.mark.parametrize("slope, intercept", [(np.inf, 0.0), (-np.inf, 0.0), (2.0, np.inf), (1.0, np.nan),
                                              (0.0, 5.0), (np.nan, 5.0)])
def test_broken_scaling_of_an_integer_image_refused(slope, intercept):
    with pytest.raises(InputDataError, match="broken scaling header"):
        image_checks.check_scaling(slope, intercept, integer_storage=True)


@pytest.mark.parametrize("slope, intercept", [(0.0, 0.0), (np.nan, np.nan), (np.nan, 0.0), (1.0, 0.0), (0.5, -3.0)])
def test_valid_or_absent_scaling_accepted(slope, intercept):
    image_checks.check_scaling(slope, intercept, integer_storage=True)
    image_checks.check_scaling(np.inf, np.inf, integer_storage=False)  # float data: not scaled


def test_intensity_checks():
    good = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    image_checks.check_intensities(good)
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    nan[1, 1, 1] = np.inf
    with pytest.raises(InputDataError, match="1 NaN and 1 infinite"):
        image_checks.check_intensities(nan)
    with pytest.raises(InputDataError, match="all-zero"):
        image_checks.check_intensities(np.zeros((3, 3, 3)))
    with pytest.raises(InputDataError, match=r"constant \(7\)"):
        image_checks.check_intensities(np.full((3, 3, 3), 7.0))


@pytest.fixture(scope="module")
def head():
    return phantom.make_head(4, scale=0.5)


def test_surround_ratio_separates_a_head_from_its_skull_stripped_copy(head):
    cavity = head.icv_frac > 0.5
    voxel_mm = np.array(head.voxel_mm)
    with_skull = image_checks.surround_signal_ratio(head.image, cavity, voxel_mm)
    stripped = image_checks.surround_signal_ratio(head.image * cavity, cavity, voxel_mm)
    assert with_skull > 3 * image_checks.SKULL_STRIPPED_MAX_SURROUND
    assert stripped < 0.5 * image_checks.SKULL_STRIPPED_MAX_SURROUND
    assert not image_checks.looks_skull_stripped(with_skull)
    assert image_checks.looks_skull_stripped(stripped)


def test_field_of_view_cut_above_the_foramen_magnum_is_refused_below_it_accepted(head):
    cavity = head.icv_frac > 0.5
    assert head.affine[2, 2] > 0  # RAS: z index grows superior
    assert image_checks.cavity_cut_faces(cavity) == []
    areas = np.count_nonzero(cavity, axis=(0, 1))
    occupied = np.flatnonzero(areas)
    # the lowest slices that hold the canal (small section) may be cut: still accepted
    canal = occupied[0] + int(np.argmax(areas[occupied[0]:] > 0.05 * areas.max()))
    assert image_checks.cavity_cut_faces(cavity[:, :, canal:]) == []
    # cut through the posterior fossa (section well above the threshold): refused
    fossa = occupied[0] + int(np.argmax(areas[occupied[0]:] > 0.4 * areas.max()))
    assert image_checks.cavity_cut_faces(cavity[:, :, fossa:]) == ["inferior"]
    assert image_checks.inferior_cut_fraction(cavity[:, :, fossa:]) > image_checks.MAX_INFERIOR_CUT_FRACTION
    top = occupied[-1]
    assert image_checks.cavity_cut_faces(cavity[:, :, : top - 3]) == ["superior"]
    left = np.flatnonzero(np.any(cavity, axis=(1, 2)))[0]
    assert image_checks.cavity_cut_faces(cavity[left + 5:, :, :]) == ["left"]
