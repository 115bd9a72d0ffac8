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
