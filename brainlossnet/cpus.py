"""How many CPUs this process may use."""

from __future__ import annotations

import os

_share: int | None = None
"""This process's share of the CPUs when it runs one of several tasks at once (:func:`limit_to_share`)."""


def available_cpus() -> int:
    """CPUs this process may run on: its affinity set, else all; at most its share, if one was set.

    The affinity set reflects a cpuset (Slurm's CPU binding, ``taskset``, ``docker
    --cpuset-cpus``), not a CPU-time quota (``docker --cpus``, cgroup ``cpu.max``).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cpus if _share is None else min(cpus, _share)


def share_per_task(tasks_at_once: int) -> int:
    """CPUs each of ``tasks_at_once`` processes may use, when they split this process's CPUs (at least 1)."""
    return max(1, available_cpus() // max(1, tasks_at_once))


def limit_to_share(cpus: int | None) -> None:
    """Make :func:`available_cpus` report at most ``cpus`` in this process (None: no limit).

    A worker that runs one pair while others run beside it calls this with its share
    (:func:`share_per_task`), so that a stage does not start helpers for CPUs the other
    pairs are using.
    """
    global _share
    if cpus is not None and cpus < 1:
        raise ValueError(f"a share of {cpus} CPUs; need at least 1")
    _share = cpus
