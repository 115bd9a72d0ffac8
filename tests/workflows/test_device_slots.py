"""Spreading pairs over devices: slots per GPU, the concurrency caps, a stable assignment."""

import collections

import pytest

from brainlossnet.workflows.device_slots import assign_slots, device_slots, parse_gpu_ids


def test_parse_gpu_ids_accepts_a_list_and_rejects_junk_and_repeats():
    assert parse_gpu_ids("0") == (0,)
    assert parse_gpu_ids("0, 1,3") == (0, 1, 3)
    for bad in ("", "a", "0,,1", "-1", "1.5", "0,0"):
        with pytest.raises(ValueError):
            parse_gpu_ids(bad)


def test_without_gpus_every_slot_gets_the_device_as_given():
    assert device_slots("auto", None, 1, 3) == ["auto", "auto", "auto"]
    assert device_slots("cuda:2", None, 4, 2) == ["cuda:2", "cuda:2"]


@pytest.mark.parametrize(("gpus", "k", "nprocs"), [((0, 1), 2, 16), ((0, 1), 2, 3), ((3,), 3, 8), ((0, 1, 2), 1, 2)])
def test_no_gpu_gets_more_than_k_slots_and_the_total_respects_nprocs(gpus, k, nprocs):
    slots = device_slots("auto", gpus, k, nprocs)
    assert len(slots) == min(nprocs, len(gpus) * k)
    per_gpu = collections.Counter(slots)
    assert set(per_gpu) <= {f"cuda:{gpu}" for gpu in gpus}
    assert max(per_gpu.values()) <= k
    assert max(per_gpu.values()) - min(per_gpu.values()) <= 1 or len(per_gpu) == 1  # spread evenly


def test_the_first_slots_cycle_over_the_gpus():
    assert device_slots("cuda", (1, 0), 2, 8) == ["cuda:1", "cuda:0", "cuda:1", "cuda:0"]


def test_gpus_refuse_a_cpu_or_fixed_device_and_bad_counts():
    for device in ("cpu", "cuda:0"):
        with pytest.raises(ValueError, match="--gpus"):
            device_slots(device, (0, 1), 1, 2)
    with pytest.raises(ValueError):
        device_slots("auto", (), 1, 2)
    with pytest.raises(ValueError):
        device_slots("auto", (0,), 0, 2)
    with pytest.raises(ValueError):
        device_slots("auto", None, 1, 0)


def test_assign_slots_covers_every_pair_once_round_robin():
    plan = assign_slots(7, 3)
    assert plan == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for slot in plan for i in slot) == list(range(7))
    assert assign_slots(2, 4) == [[0], [1], [], []]
    with pytest.raises(ValueError):
        assign_slots(3, 0)
