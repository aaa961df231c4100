"""Facts about this machine's CPUs: how many cores this process may use (its affinity mask where the OS
has one: a cluster job or ``taskset`` may allow fewer than the machine has, else the machine's count) and
the CPU model and its x86 family and model numbers (CPU float results depend on the processor as well as on
the thread count, and a virtual machine's model name, such as ``AMD EPYC``, can stand for several
generations, so rows record all three). Kept free of heavy imports so the CLI can use it for defaults.

>>> usable_cores() >= 1, bool(cpu_model()), isinstance(cpu_generation(), str)
(True, True, True)
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
def _cpuinfo(info: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    entries: dict[str, str] = {}
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if not line.strip() and entries:
                break
            key, _, value = line.partition(":")
            entries.setdefault(key.strip(), " ".join(value.split()))
    return entries


def cpu_model() -> str:
    """The CPU's model name as the OS gives it (``/proc/cpuinfo``'s first ``model name``, e.g. ``"AMD
    EPYC"``), else :func:`platform.processor`, else ``"unknown CPU"``."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def cpu_generation() -> str:
    """The x86 family and model numbers of the CPU (``"family 25 model 1"``: AMD Zen 3), which tell apart
    the generations one model name can hide on a virtual machine; ``""`` where the OS does not give them."""
    entries = _cpuinfo()
    family, model = entries.get("cpu family", ""), entries.get("model", "")
    return f"family {family} model {model}" if family.isdigit() and model.isdigit() else ""
