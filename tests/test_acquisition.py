"""The one rule that compares the scanner and sequence of two sessions by their sidecars."""

import pytest

from brainlossnet.acquisition import (
    ACQUISITION_KEYS,
    acquisition_differences,
    values_differ,
    voxel_size_differences,
)

PRISMA = {"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma_fit", "MagneticFieldStrength": 3,
          "RepetitionTime": 2.3, "InversionTime": 0.9, "FlipAngle": 9, "EchoTime": 0.003}


def test_the_six_fields_of_the_issue_are_compared():
    assert ACQUISITION_KEYS == ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength",
                                "RepetitionTime", "InversionTime", "FlipAngle")


def test_same_protocol_agrees_despite_rounding_case_blanks_and_other_fields():
    rescan = dict(PRISMA, Manufacturer="SIEMENS ", RepetitionTime=2.3000001, FlipAngle=9.0, EchoTime=0.004)
    assert acquisition_differences(PRISMA, rescan) == []


def test_each_differing_field_once_in_key_order_with_both_values():
    other = dict(PRISMA, FlipAngle=8, Manufacturer="GE", MagneticFieldStrength=1.5)
    assert acquisition_differences(PRISMA, other) == [
        "Manufacturer: Siemens vs GE", "MagneticFieldStrength: 3 vs 1.5", "FlipAngle: 9 vs 8"]


def test_missing_from_both_is_not_compared_missing_from_one_differs():
    without_ti = {key: value for key, value in PRISMA.items() if key != "InversionTime"}
    assert acquisition_differences(without_ti, dict(without_ti)) == []
    assert acquisition_differences({}, {}) == []
    assert acquisition_differences(PRISMA, without_ti) == ["InversionTime: 0.9 vs missing"]
    assert acquisition_differences(dict(without_ti, InversionTime=None), PRISMA) == ["InversionTime: missing vs 0.9"]
    assert len(acquisition_differences({}, PRISMA)) == len(ACQUISITION_KEYS)  # FU has a sidecar, BL none


@pytest.mark.parametrize("bl, fu, differ", [
    (2.3, 2.3 * (1 + 0.9e-3), False),  # within the relative tolerance
    (2.3, 2.3 * (1 + 1.1e-3), True),
    (3, 3.0, False),
    (0, 0.0, False),
    ("Prisma_fit", " prisma_FIT", False),
    ("Prisma", "Prisma_fit", True),
    ("3", 3, True),  # text and number: compared as they are
])
def test_values_differ(bl, fu, differ):
    assert values_differ(bl, fu) is differ
    assert values_differ(fu, bl) is differ


def test_same_voxels_on_other_axes_or_with_header_rounding_agree():
    assert voxel_size_differences((1.0, 1.0, 1.2), (1.2, 1.0, 1.0)) == []
    assert voxel_size_differences((0.9375, 0.9375, 0.9), (0.93750006, 0.9375, 0.9)) == []
    assert voxel_size_differences((1.0, 1.0, 1.0), (1.04, 0.97, 1.0)) == []


def test_another_resolution_is_one_line_with_both_voxel_sizes():
    assert voxel_size_differences((1.0, 1.0, 1.0), (1.2, 1.2, 1.2)) == ["voxel size: 1x1x1 vs 1.2x1.2x1.2 mm"]
    assert voxel_size_differences((1.0, 1.0, 1.0), (1.0, 1.0, 1.1)) != []
