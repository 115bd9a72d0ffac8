"""BIDS queries on tiny datasets: filtering, the T1w selection rule, acquisition times."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest
from bids.layout import Query

from brainlossnet.bids_app.layout import (
    FilterFileError,
    InputMissingError,
    acquisition_datetime,
    collect_sessions,
    load_bids_filters,
    open_layout,
    parse_bids_datetime,
    rank_t1w,
)


def _chosen(by_subject, subject):
    return {s.session: s.t1w.name for s in by_subject[subject]}


def test_requires_dataset_description(tmp_path, nifti, t1w):
    nifti(tmp_path / "ds" / t1w("01", "1"))
    with pytest.raises(InputMissingError, match="dataset_description.json"):
        open_layout(tmp_path / "ds")
    with pytest.raises(InputMissingError, match="not found"):
        open_layout(tmp_path / "missing")


def test_one_t1w_per_session_and_other_datatypes_ignored(bids_tree, t1w):
    root = bids_tree({
        t1w("01", "1"): None,
        t1w("01", "2"): None,
        "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz": None,
        "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz": None,
        t1w("02", "a"): None,
        "derivatives/x/" + t1w("03", "1"): None,
        "sourcedata/" + t1w("04", "1"): None,
    })
    by_subject = collect_sessions(open_layout(root))
    assert sorted(by_subject) == ["01", "02"]
    assert _chosen(by_subject, "01") == {"1": "sub-01_ses-1_T1w.nii.gz",
                                         "2": "sub-01_ses-2_T1w.nii.gz"}
    assert _chosen(by_subject, "02") == {"a": "sub-02_ses-a_T1w.nii.gz"}
    assert all(s.t1w.is_absolute() and s.t1w.is_file() for s in by_subject["01"])


def test_participant_and_session_filters(bids_tree, t1w):
    root = bids_tree({t1w(s, ses): None for s in ("01", "02", "03") for ses in ("1", "2", "3")})
    layout = open_layout(root, ["01", "03"])
    assert sorted(layout.get_subjects()) == ["01", "03"]  # other subjects are not indexed
    by_subject = collect_sessions(layout, ["03", "01"], ["1", "3"])
    assert sorted(by_subject) == ["01", "03"]
    assert sorted(_chosen(by_subject, "03")) == ["1", "3"]


def test_unknown_participant_or_session_is_input_missing(bids_tree, t1w):
    root = bids_tree({t1w("01", "1"): None, t1w("01", "2"): None})
    with pytest.raises(InputMissingError, match="sub-02"):
        collect_sessions(open_layout(root, ["01", "02"]), ["01", "02"])
    with pytest.raises(InputMissingError, match="ses-9"):
        collect_sessions(open_layout(root), None, ["9"])


def test_bids_filter_file(bids_tree, t1w, tmp_path):
    root = bids_tree({
        t1w("01", "1", "acq-mprage"): None, t1w("01", "1", "acq-spgr"): None,
        t1w("01", "2", "acq-mprage"): None, t1w("01", "2"): None,
    })
    filter_file = tmp_path / "filter.json"
    filter_file.write_text(json.dumps({"t1w": {"acquisition": "spgr"}}))
    chosen = _chosen(collect_sessions(open_layout(root), t1w_filters=load_bids_filters(filter_file)), "01")
    assert chosen == {"1": "sub-01_ses-1_acq-spgr_T1w.nii.gz"}

    filter_file.write_text(json.dumps({"t1w": {"acquisition": "*"}, "bold": {"task": "rest"}}))
    filters = load_bids_filters(filter_file)
    assert filters == {"acquisition": Query.ANY}
    chosen = _chosen(collect_sessions(open_layout(root), t1w_filters=filters), "01")
    assert chosen == {"1": "sub-01_ses-1_acq-mprage_T1w.nii.gz",
                      "2": "sub-01_ses-2_acq-mprage_T1w.nii.gz"}

    filter_file.write_text(json.dumps({"t1w": {"acquisition": None}}))
    chosen = _chosen(collect_sessions(open_layout(root), t1w_filters=load_bids_filters(filter_file)), "01")
    assert chosen == {"2": "sub-01_ses-2_T1w.nii.gz"}

    filter_file.write_text(json.dumps({"t1w": {"acquisition": "flair"}}))
    with pytest.raises(InputMissingError, match="selects no T1w"):
        collect_sessions(open_layout(root), t1w_filters=load_bids_filters(filter_file))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"t1w": "mprage"}'])
def test_bad_filter_file(tmp_path, content):
    filter_file = tmp_path / "filter.json"
    filter_file.write_text(content)
    with pytest.raises(FilterFileError, match="filter.json"):
        load_bids_filters(filter_file)
    with pytest.raises(InputMissingError):
        load_bids_filters(tmp_path / "absent.json")


def test_t1w_selection_rule():
    def best(*names):
        return rank_t1w([Path(n) for n in names])[0].name

    base = "sub-01_ses-1"
    assert best(f"{base}_part-phase_T1w.nii.gz", f"{base}_ce-gad_T1w.nii.gz") == f"{base}_ce-gad_T1w.nii.gz"
    assert best(f"{base}_part-mag_rec-norm_T1w.nii.gz", f"{base}_part-phase_T1w.nii.gz") \
        == f"{base}_part-mag_rec-norm_T1w.nii.gz"
    assert best(f"{base}_ce-gad_T1w.nii.gz", f"{base}_rec-norm_T1w.nii.gz") == f"{base}_rec-norm_T1w.nii.gz"
    assert best(f"{base}_rec-norm_T1w.nii.gz", f"{base}_acq-fast_T1w.nii.gz") == f"{base}_acq-fast_T1w.nii.gz"
    assert best(f"{base}_acq-fast_T1w.nii.gz", f"{base}_run-1_T1w.nii.gz") == f"{base}_run-1_T1w.nii.gz"
    assert best(f"{base}_echo-1_T1w.nii.gz", f"{base}_acq-x_T1w.nii.gz") == f"{base}_echo-1_T1w.nii.gz"
    assert best(f"{base}_echo-2_T1w.nii.gz", f"{base}_echo-1_T1w.nii.gz") == f"{base}_echo-1_T1w.nii.gz"
    assert best(f"{base}_run-1_T1w.nii.gz", f"{base}_run-2_T1w.nii.gz", f"{base}_run-10_T1w.nii.gz") \
        == f"{base}_run-10_T1w.nii.gz"
    assert best(f"{base}_T1w.nii.gz", f"{base}_run-2_T1w.nii.gz") == f"{base}_run-2_T1w.nii.gz"
    assert best(f"{base}_acq-b_T1w.nii.gz", f"{base}_acq-a_T1w.nii.gz") == f"{base}_acq-a_T1w.nii.gz"
    # the same candidates in any order give the same choice
    names = [Path(f"{base}_acq-b_run-{r}_T1w.nii.gz") for r in (1, 3, 2)]
    assert rank_t1w(names) == rank_t1w(names[::-1])
    with pytest.raises(ValueError):
        rank_t1w([])


def test_selection_is_logged_with_candidates(bids_tree, t1w, caplog):
    root = bids_tree({t1w("01", "1", "run-1"): None, t1w("01", "1", "run-2"): None,
                      t1w("01", "1", "acq-fast"): None})
    with caplog.at_level(logging.INFO, logger="brainlossnet"):
        session, = collect_sessions(open_layout(root))["01"]
    assert session.t1w.name == "sub-01_ses-1_run-2_T1w.nii.gz"
    assert [p.name for p in session.candidates] == [
        "sub-01_ses-1_run-2_T1w.nii.gz", "sub-01_ses-1_run-1_T1w.nii.gz",
        "sub-01_ses-1_acq-fast_T1w.nii.gz"]
    assert "chose sub-01_ses-1_run-2_T1w.nii.gz" in caplog.text


def test_parse_bids_datetime():
    assert parse_bids_datetime("2021-03-04T05:06:07") == datetime(2021, 3, 4, 5, 6, 7)
    assert parse_bids_datetime("2021-03-04T05:06:07.250000") == datetime(2021, 3, 4, 5, 6, 7, 250000)
    assert parse_bids_datetime("2021-03-04") == datetime(2021, 3, 4)
    assert parse_bids_datetime("2021-03-04T05:06:07+02:00") == datetime(2021, 3, 4, 3, 6, 7)
    assert parse_bids_datetime("2021-03-04T05:06:07Z") == datetime(2021, 3, 4, 5, 6, 7)
    assert parse_bids_datetime("n/a") is None and parse_bids_datetime("") is None
    with pytest.raises(ValueError):
        parse_bids_datetime("March 4th")


def test_acquisition_time_sources_in_order(bids_tree, t1w, tsv):
    root = bids_tree({
        t1w("01", "1"): {"AcquisitionDateTime": "2020-01-01T09:00:00"},
        t1w("01", "2"): {"AcquisitionDate": "2020-06-01", "AcquisitionTime": "10:30:00"},
        t1w("01", "3"): {"AcquisitionDate": "2020-09-01"},
        t1w("01", "4"): None,
        t1w("01", "5"): None,
        t1w("01", "6"): {"AcquisitionDateTime": "yesterday"},
    })
    tsv(root / "sub-01/ses-4/sub-01_ses-4_scans.tsv", ["filename", "acq_time"],
        [["anat/sub-01_ses-4_T1w.nii.gz", "2021-01-02T03:04:05"]])
    tsv(root / "sub-01/sub-01_sessions.tsv", ["session_id", "acq_time"],
        [["ses-4", "1999-01-01"], ["ses-5", "2022-02-02T02:02:02"], ["ses-6", "2023-01-01"]])
    by_session = {s.session: s.acquired for s in collect_sessions(open_layout(root))["01"]}
    assert by_session == {
        "1": datetime(2020, 1, 1, 9),
        "2": datetime(2020, 6, 1, 10, 30),
        "3": datetime(2020, 9, 1),
        "4": datetime(2021, 1, 2, 3, 4, 5),   # scans.tsv before sessions.tsv
        "5": datetime(2022, 2, 2, 2, 2, 2),
        "6": datetime(2023, 1, 1),            # unparseable sidecar value skipped
    }


def test_no_acquisition_time(bids_tree, t1w):
    root = bids_tree({t1w("01", "1"): None})
    image = root / t1w("01", "1")
    assert acquisition_datetime(image, {}, root) is None


def test_sessionless_subject_has_no_sessions(bids_tree):
    root = bids_tree({"sub-01/anat/sub-01_T1w.nii.gz": None})
    assert collect_sessions(open_layout(root)) == {"01": []}
