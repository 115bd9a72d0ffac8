"""How many CPUs this process may use."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on: its affinity set, else all.

    The affinity set reflects a cpuset (Slurm's CPU binding, ``taskset``, ``docker
    --cpuset-cpus``), not a CPU-time quota (``docker --cpus``, cgroup ``cpu.max``).
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
