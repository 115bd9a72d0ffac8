"""Session order (acquisition time, else natural label order) and the three pairings."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from brainlossnet.bids_app.layout import SessionT1w
from brainlossnet.bids_app.pairing import (
    make_pairs,
    natural_key,
    order_sessions,
    pair_indices,
)


def _session(label: str, acquired: datetime | None = None, subject: str = "01") -> SessionT1w:
    path = Path(f"/data/sub-{subject}/ses-{label}/anat/sub-{subject}_ses-{label}_T1w.nii.gz")
    return SessionT1w(subject, label, path, acquired, (path,))


def _labels(sessions):
    return [s.session for s in sessions]


def test_natural_key():
    labels = ["10", "2", "1", "m12", "m6", "baseline", "M3"]
    assert sorted(labels, key=natural_key) == ["1", "2", "10", "baseline", "M3", "m6", "m12"]
    assert sorted(["v2b", "v2a", "v10"], key=natural_key) == ["v2a", "v2b", "v10"]


def test_order_by_label_when_dates_missing():
    sessions = [_session("10"), _session("2", datetime(2020, 1, 1)), _session("1")]
    assert _labels(order_sessions(sessions)) == ["1", "2", "10"]


def test_order_by_date_when_all_known():
    sessions = [
        _session("a", datetime(2021, 5, 1)),
        _session("b", datetime(2019, 5, 1)),
        _session("c", datetime(2020, 5, 1)),
    ]
    assert _labels(order_sessions(sessions)) == ["b", "c", "a"]
    # equal times fall back to the label order
    tied = [_session("2", datetime(2020, 1, 1)), _session("1", datetime(2020, 1, 1))]
    assert _labels(order_sessions(tied)) == ["1", "2"]


@pytest.mark.parametrize("mode, expected", [
    ("consecutive", [(0, 1), (1, 2), (2, 3)]),
    ("baseline", [(0, 1), (0, 2), (0, 3)]),
    ("all", [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]),
])
def test_pair_indices(mode, expected):
    assert pair_indices(4, mode) == expected
    assert pair_indices(1, mode) == []


def test_unknown_mode():
    with pytest.raises(ValueError, match="pairing"):
        pair_indices(3, "random")


def test_make_pairs_orders_pairs_and_skips_single_sessions():
    sessions = {
        "10": [_session("2", subject="10"), _session("1", subject="10")],
        "2": [_session("b", datetime(2022, 1, 1), "2"), _session("a", datetime(2023, 1, 1), "2"),
              _session("c", datetime(2021, 1, 1), "2")],
        "3": [_session("1", subject="3")],
        "4": [],
    }
    pairs, skipped = make_pairs(sessions, "consecutive")
    assert [(p.baseline.subject, p.baseline.session, p.followup.session) for p in pairs] == [
        ("2", "c", "b"), ("2", "b", "a"), ("10", "1", "2")]
    assert [s.subject for s in skipped] == ["3", "4"]
    assert "ses-1" in skipped[0].reason and "none" in skipped[1].reason

    pairs, _ = make_pairs(sessions, "baseline")
    assert [(p.baseline.session, p.followup.session) for p in pairs if p.baseline.subject == "2"] \
        == [("c", "b"), ("c", "a")]


def test_pair_spec_carries_sessions_and_files():
    pairs, _ = make_pairs({"01": [_session("1"), _session("2")]}, "all")
    spec = pairs[0].spec
    assert (spec.subject, spec.session_bl, spec.session_fu) == ("01", "1", "2")
    assert spec.t1w_bl.name == "sub-01_ses-1_T1w.nii.gz"
    assert spec.t1w_fu.name == "sub-01_ses-2_T1w.nii.gz"
