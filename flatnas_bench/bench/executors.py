"""Executors by name: where candidate jobs run. Every built-in executor is registered here (importing
this module registers ``serial``, ``local`` and ``ray``; Ray itself is imported only when used):

* ``serial`` (:mod:`~flatnas_bench.bench.executor`): in the driver process, one job after another;
* ``local`` (:mod:`~flatnas_bench.bench.local`): spawned worker processes on this machine;
* ``ray`` (:mod:`~flatnas_bench.bench.ray_executor`): Ray actors on a cluster or a local instance.

>>> list_executors()[:3]
['serial', 'local', 'ray']
>>> get_executor("local", ExecutorOptions(device="cpu", workers=2, threads=1)).describe()
'local x2'
"""

from __future__ import annotations

from typing import Any

from flatnas_bench.bench import local, ray_executor  # noqa: F401  (they register themselves)
from flatnas_bench.bench.executor import EXECUTORS, Executor
from flatnas_bench.bench.options import ExecutorOptions


def list_executors() -> list[str]:
    """Registered executor names, in registration order."""
    return EXECUTORS.names()


def get_executor(name: str, options: ExecutorOptions | None = None, **changes: Any) -> Executor:
    """The executor ``name`` built with ``options`` (default :class:`ExecutorOptions`), with ``changes``
    to its fields applied (None values ignored), e.g. ``get_executor("local", workers=4, threads=1)``."""
    return EXECUTORS.get(name)((options or ExecutorOptions()).replace(**changes))
