"""Facts about this machine's CPUs: how many cores this process may use (its affinity mask where the OS
has one: a cluster job or ``taskset`` may allow fewer than the machine has, else the machine's count) and
the CPU model (CPU float results depend on it as well as on the thread count, so rows record it). Kept free
of heavy imports so the CLI can use it for defaults.

>>> usable_cores() >= 1, bool(cpu_model())
(True, True)
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def cpu_model() -> str:
    """The CPU's model name as the OS gives it (``/proc/cpuinfo``'s first ``model name``, e.g. ``"AMD
    EPYC"``), else :func:`platform.processor`, else ``"unknown CPU"``."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    return platform.processor() or "unknown CPU"
