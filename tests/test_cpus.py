"""The CPU count that sizes the worker pool and the rigid stage's second process, and a worker's share of it."""

import os

import pytest

from brainlossnet import cpus
from brainlossnet.cpus import available_cpus


def test_available_cpus_is_the_size_of_the_affinity_set(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert available_cpus() == 3


def test_available_cpus_falls_back_to_the_cpu_count_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cpus() == 1


def test_a_share_caps_what_is_available_and_can_be_lifted(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    try:
        cpus.limit_to_share(3)
        assert available_cpus() == 3
        cpus.limit_to_share(8)
        assert available_cpus() == 4
    finally:
        cpus.limit_to_share(None)
    assert available_cpus() == 4


def test_a_share_must_be_at_least_one_cpu():
    with pytest.raises(ValueError, match="at least 1"):
        cpus.limit_to_share(0)


@pytest.mark.parametrize(("tasks", "share"), [(1, 4), (2, 2), (3, 1), (4, 1), (8, 1), (0, 4)])
def test_tasks_at_once_split_the_cpus_and_each_gets_at_least_one(monkeypatch, tasks, share):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cpus.share_per_task(tasks) == share
