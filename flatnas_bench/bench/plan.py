"""Run planning: how long a bench run will take, on which device, and how big its table gets, before
anything is written.

:func:`plan_bench` times, on the run's own device and thread count, a few optimiser steps and one whole
evaluation pass (val accuracy + ``flatness_draws`` perturbed passes, the test set, the corruption set) of
the lightest, the median and the heaviest arch of the request (by MACs). Every job's time is then
interpolated from those three by its MACs (piecewise linear), the jobs are dealt to the executor's slots
as its workers take them, and the plan reports the wall time, the device hours and the table's size.

>>> data = "../shared/data/cifar10/cifar10-jpeg.tar.gz"
>>> plan = plan_bench(sample_archs(20, 0), "proxy", "runs/proxy.sqlite", data)  # doctest: +SKIP
>>> print(plan.report())  # doctest: +SKIP
plan: 20 jobs (0 already in the table) under proxy 772034ca7fcd on serial x1 (cpu (1 thread))
...
"""

from __future__ import annotations

import copy
import heapq
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flatnas_bench.bench.executors import Executor, get_executor
from flatnas_bench.core.protocol import Protocol
from flatnas_bench.nb201.space import ArchLike

TIMED_STEPS = 8  # optimiser steps timed per arch (after a 2-step warm-up of the first)


@dataclass(frozen=True)
class ArchTiming:
    """One timed arch: MACs (M), seconds per optimiser step, and seconds of everything else a candidate
    does (building the model, the evaluation pass, costs)."""

    arch: str
    flops_m: float
    step_s: float
    rest_s: float

    def candidate_s(self, steps: int) -> float:
        return self.step_s * steps + self.rest_s


@dataclass(frozen=True)
class BenchPlan:
    """The estimate for one bench request: ``jobs`` to run (``skipped`` already stored), the timed archs,
    every job's predicted seconds, ``setup_s`` (data and corruption set, measured), ``wall_s`` (setup +
    the slots' makespan), ``device_hours`` (GPU-hours on CUDA, core-hours on CPU), ``table_bytes``."""

    protocol: Protocol
    executor: str
    device: str
    slots: int
    threads: int
    jobs: int
    skipped: int
    steps: int
    timings: tuple[ArchTiming, ...]
    job_s: tuple[float, ...]
    setup_s: float
    wall_s: float
    device_hours: float
    table_bytes: int

    def report(self) -> str:
        """The plan as printed by ``flatnas-bench bench --plan``."""
        p = self.protocol
        lines = [
            f"plan: {self.jobs} jobs ({self.skipped} already in the table) under {p.name} {p.hash} on "
            f"{self.executor} ({self.device}, {self.threads} thread(s) per worker)",
            f"per candidate: {self.steps} optimiser steps + 1 + {p.flatness_draws} val passes, test, "
            f"{'corruptions' if p.corruption_subset else 'no corruptions'}",
        ]
        for t in self.timings:
            lines.append(
                f"  {t.flops_m:8.2f} MMAC  {1e3 * t.step_s:8.1f} ms/step  eval {t.rest_s:6.2f} s  "
                f"-> {t.candidate_s(self.steps):7.1f} s   {t.arch}"
            )
        total = sum(self.job_s)
        lines += [
            f"estimated wall time {_human(self.wall_s)} (setup {self.setup_s:.1f} s, {total / 3600:.2f} "
            f"candidate-hours over {self.slots} slot(s)); {self.device_hours:.2f} "
            f"{'GPU' if self.device.startswith('cuda') else 'core'}-hours; table about "
            f"{_size(self.table_bytes)}",
        ]
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e3:.0f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def pick_archs(archs: Sequence[str], flops: Sequence[float]) -> list[int]:
    """Indices of the lightest, the median and the heaviest arch by MACs (distinct, in that order)."""
    order = np.argsort(np.asarray(flops), kind="stable")
    chosen = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
    return list(dict.fromkeys(chosen))


def makespan(durations: Iterable[float], slots: int) -> float:
    """Seconds until ``slots`` workers finish ``durations``, each job going to the first free worker in
    order (as the executors feed them)."""
    free = [0.0] * max(1, slots)
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def _time_archs(archs, protocol, data, corruption_set, steps) -> tuple[list[ArchTiming], list[dict]]:
    """Time ``steps`` optimiser steps and one evaluation pass of each arch on ``data``'s device; returns
    the timings and the (short-trained) result rows."""
    from flatnas_bench.engine.candidate import CandidateJob, evaluate_candidate
    from flatnas_bench.engine.train import train_model

    short = copy.copy(data)  # the same resident splits, with a training set of `steps` batches
    n = min(len(data.train_y), steps * protocol.batch_size)
    short.train_x, short.train_y = data.train_x[:n], data.train_y[:n]
    warm = copy.copy(short)
    warm.train_x, warm.train_y = (
        data.train_x[: 2 * protocol.batch_size],
        data.train_y[: 2 * protocol.batch_size],
    )
    train_model(archs[0], protocol.replace(epochs=1), warm, seed=0)  # first-call costs (allocator, cuDNN)
    timings, rows = [], []
    for arch in archs:
        start = time.perf_counter()
        row = evaluate_candidate(CandidateJob(arch, protocol.replace(epochs=1), 0), short, corruption_set)
        wall = time.perf_counter() - start
        taken = short.steps_per_epoch(protocol.batch_size)
        timings.append(ArchTiming(arch, row["flops_m"], row["train_sec"] / taken, wall - row["train_sec"]))
        rows.append(row)
    return timings, rows


def _row_bytes(rows: Sequence[dict[str, Any]], copies: int = 40) -> int:
    """Bytes a stored row takes in a result table, measured by writing ``copies`` rows like ``rows`` to
    a scratch table (deleted after)."""
    from flatnas_bench.tables.store import ResultStore

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scratch.sqlite"
        with ResultStore(path) as store:
            store.add(dict(rows[0], seed=-1))
        empty = path.stat().st_size
        with ResultStore(path) as store:
            for k in range(copies):
                store.add(dict(rows[k % len(rows)], seed=k))
        return max(1, (path.stat().st_size - empty) // copies)


def plan_bench(
    archs: Sequence[ArchLike],
    protocol: Protocol | str,
    table_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    executor: Executor | str = "serial",
    seeds: Sequence[int] = (0,),
    *,
    retry_failed: bool = False,
    corruptions: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    steps: int = TIMED_STEPS,
    **executor_options: Any,
) -> BenchPlan:
    """Estimate what :func:`flatnas_bench.bench.driver.run_bench` with the same arguments would take; reads
    the
    table (if any) for what is done and writes nothing to it. ``executor_options`` as for run_bench
    (``device``, ``threads``, ``workers``, ``workers_per_gpu``)."""
    import torch

    from flatnas_bench.bench.driver import corruption_set_for, resolve_protocol, run_protocol, unique_archs
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.nb201.costs import arch_costs
    from flatnas_bench.tables.store import ResultStore

    if isinstance(executor, str):
        executor = get_executor(executor, **executor_options)
    protocol = run_protocol(resolve_protocol(protocol), executor.device, precision)
    canonical, _ = unique_archs(archs)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    done: set[tuple[str, int]] = set()
    if Path(table_path).is_file():
        with ResultStore(table_path, readonly=True) as store:
            done = store.done_keys(protocol.hash, include_failed=not retry_failed)
    todo = [a for a in canonical for s in seeds if (a, s) not in done]
    threads = getattr(executor, "threads", None) or torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        data = DeviceData.for_protocol(data_path, protocol, executor.device)
        corruption_set = corruption_set_for(protocol, data_path, corruptions)
        setup_s = time.perf_counter() - start
        return _estimate(protocol, executor, threads, todo, len(canonical) * len(seeds) - len(todo),
                         data, corruption_set, setup_s, steps, arch_costs)  # fmt: skip
    finally:
        torch.set_num_threads(before)


def _estimate(protocol, executor, threads, todo, skipped, data, corruption_set, setup_s, steps, arch_costs):
    sizes = [
        arch_costs(a, protocol.C, protocol.N, data.num_classes, protocol.resolution).flops_m for a in todo
    ]
    picked = [todo[i] for i in pick_archs(todo, sizes)] if todo else []
    timings, rows = _time_archs(picked, protocol, data, corruption_set, steps) if picked else ([], [])
    total_steps = protocol.epochs * data.steps_per_epoch(protocol.batch_size)
    if timings:
        x = [t.flops_m for t in timings]
        step = np.interp(sizes, x, [t.step_s for t in timings])
        rest = np.interp(sizes, x, [t.rest_s for t in timings])
        job_s = tuple(float(v) for v in step * total_steps + rest)
    else:
        job_s = ()
    wall = setup_s + makespan(job_s, executor.slots) if job_s else 0.0
    on_cuda = executor.device.startswith("cuda")
    gpus = len(set(getattr(executor, "devices", [executor.device]))) if on_cuda else 0
    device_hours = wall * gpus / 3600 if on_cuda else sum(job_s) * threads / 3600
    return BenchPlan(
        protocol, executor.describe(), executor.device, executor.slots, threads, len(todo), skipped,
        total_steps, tuple(timings), job_s, setup_s, wall, device_hours,
        _row_bytes(rows) * len(todo) if rows else 0,
    )  # fmt: skip
