"""Which torch device each concurrently running pair gets: worker slots over CPUs and GPUs.

A *slot* is one worker process that runs pairs one after the other on one device. With
``--gpus 0,1`` and ``--max-gpu-tasks-per-device 2`` there are four slots,
``cuda:0, cuda:1, cuda:0, cuda:1`` (capped by ``--nprocs``), so no GPU ever runs more
than two pairs at once and the pairs are spread evenly over the GPUs. Without ``--gpus``
every slot gets the ``--device`` string as given (``auto`` is resolved inside the worker,
never here). Pair ``i`` goes to slot ``i mod n_slots``: the assignment is a pure function
of the pair order and the options, so a rerun with the same pairs sends every pair to the
same device and reuses its cached stages.

Nothing here imports torch or touches CUDA: the parent process of a run must never
initialise CUDA (forked or spawned workers need a clean driver state).
"""

from __future__ import annotations

from collections.abc import Sequence


def parse_gpu_ids(text: str) -> tuple[int, ...]:
    """Parse ``--gpus``: comma-separated distinct CUDA device indices, e.g. ``"0,1,3"``.

    Raises
    ------
    ValueError
        If an entry is not a non-negative integer, or an index repeats.
    """
    entries = [entry.strip() for entry in text.split(",")]
    if not entries or any(not entry.isdigit() for entry in entries):
        raise ValueError(f"{text!r} is not a comma-separated list of GPU indices such as 0,1")
    ids = tuple(int(entry) for entry in entries)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{text!r} names a GPU twice")
    return ids


def device_slots(
    device: str, gpus: Sequence[int] | None, max_tasks_per_gpu: int, nprocs: int
) -> list[str]:
    """The device of each worker slot; the number of slots is the number of concurrent pairs.

    Parameters
    ----------
    device
        ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    gpus
        ``--gpus`` indices, or None. With GPUs, ``device`` must be ``auto`` or ``cuda``.
    max_tasks_per_gpu
        At most this many pairs use one GPU at the same time (>= 1).
    nprocs
        At most this many pairs run at the same time (>= 1).

    Returns
    -------
    list of str
        One device string per slot: ``nprocs`` copies of ``device`` without GPUs; with
        GPUs ``cuda:<id>`` cycling over ``gpus``, ``min(nprocs, len(gpus) *
        max_tasks_per_gpu)`` slots.

    Raises
    ------
    ValueError
        On counts below 1, an empty GPU list, or GPUs combined with ``cpu`` / ``cuda:N``.
    """
    if nprocs < 1 or max_tasks_per_gpu < 1:
        raise ValueError(f"nprocs ({nprocs}) and max_tasks_per_gpu ({max_tasks_per_gpu}) must be >= 1")
    if gpus is None:
        return [device] * nprocs
    if not gpus:
        raise ValueError("the GPU list is empty")
    if device not in ("auto", "cuda"):
        raise ValueError(f"--gpus spreads pairs over GPUs and cannot be combined with --device {device}")
    n_slots = min(nprocs, len(gpus) * max_tasks_per_gpu)
    return [f"cuda:{gpus[slot % len(gpus)]}" for slot in range(n_slots)]


def assign_slots(n_pairs: int, n_slots: int) -> list[list[int]]:
    """Pair indices of each slot, in run order: pair ``i`` goes to slot ``i mod n_slots``."""
    if n_slots < 1:
        raise ValueError(f"n_slots must be >= 1, got {n_slots}")
    return [list(range(slot, n_pairs, n_slots)) for slot in range(n_slots)]
