"""How many CPU cores this process may use: its affinity mask where the OS has one (a cluster job or
``taskset`` may allow fewer than the machine has), else the machine's count. Kept free of heavy imports so
the CLI can use it for defaults.

>>> usable_cores() >= 1
True
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
