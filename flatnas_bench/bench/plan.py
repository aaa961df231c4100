"""Run planning: how long a bench run will take, on which device, and how big its table gets, before
anything is written.

:func:`plan_bench` times, on the run's own device and thread count, a few optimiser steps and one whole
evaluation pass (val accuracy + ``flatness_draws`` perturbed passes, the test set, the corruption set) of
the lightest, the median and the heaviest arch of the request (by MACs). Every job's time is then
interpolated from those three by its MACs (piecewise linear), the jobs are dealt to the executor's slots
as its workers take them, and the plan reports the wall time, the device hours and the table's size.
Where the device trains in both precisions (CUDA, or a CPU with native bf16), the optimiser steps are
timed in the other precision too, and the plan says which is faster on this machine.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.bench.executor import Executor
from flatnas_bench.bench.executors import get_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.protocol import PRECISIONS, Protocol
from flatnas_bench.nb201.space import ArchLike

if TYPE_CHECKING:
    from flatnas_bench.corruptions.robustness import CorruptionSet
    from flatnas_bench.engine.device_data import DeviceData

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
    the slots' makespan), ``device_hours`` (GPU-hours on CUDA, core-hours on CPU), ``table_bytes``, and
    ``precision_wall_s``: the wall time in each training precision timed on this device (the run's own and,
    where the device has both, the other)."""

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
    precision_wall_s: tuple[tuple[str, float], ...] = ()

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
        if len(self.precision_wall_s) > 1:
            lines.append(self._precision_line())
        return "\n".join(lines)

    def _precision_line(self) -> str:
        """Which training precision is faster here (evaluation is fp32 in both)."""
        walls = dict(self.precision_wall_s)
        fast = min(walls, key=walls.__getitem__)
        slow = max(walls, key=walls.__getitem__)
        times = ", ".join(f"{p} {_human(w)}" for p, w in self.precision_wall_s)
        ratio = walls[slow] / walls[fast] if walls[fast] > 0 else 1.0
        verdict = (
            f"{fast} is {ratio:.2f}x faster here"
            if fast != slow
            else "both precisions take the same time here"
        )
        advice = (
            ""
            if fast == self.protocol.precision
            else f"; --precision {fast} to switch (another protocol hash)"
        )
        return f"training precision: {times}: {verdict} (this plan: {self.protocol.precision}{advice})"


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


def _time_archs(
    archs: Sequence[str],
    protocol: Protocol,
    data: DeviceData,
    corruption_set: CorruptionSet | None,
    steps: int,
) -> tuple[list[ArchTiming], list[dict]]:
    """Time ``steps`` optimiser steps and one evaluation pass of each arch on ``data``'s device; returns
    the timings and the (short-trained) result rows."""
    from flatnas_bench.engine.candidate import CandidateJob, evaluate_candidate
    from flatnas_bench.engine.train import train_model

    short = _with_batches(data, steps, protocol.batch_size)
    train_model(archs[0], protocol.replace(epochs=1), _with_batches(data, 2, protocol.batch_size), seed=0)
    timings, rows = [], []  # after the warm-up above (first-call costs: allocator, cuDNN)
    for arch in archs:
        start = time.perf_counter()
        row = evaluate_candidate(CandidateJob(arch, protocol.replace(epochs=1), 0), short, corruption_set)
        wall = time.perf_counter() - start
        taken = short.steps_per_epoch(protocol.batch_size)
        timings.append(ArchTiming(arch, row["flops_m"], row["train_sec"] / taken, wall - row["train_sec"]))
        rows.append(row)
    return timings, rows


def _time_steps(archs: Sequence[str], protocol: Protocol, data: DeviceData, steps: int) -> list[float]:
    """Seconds per optimiser step of each arch under ``protocol`` (after one warm-up run)."""
    from flatnas_bench.engine.train import train_model

    short = _with_batches(data, steps, protocol.batch_size)
    run = protocol.replace(epochs=1)
    train_model(archs[0], run, _with_batches(data, 2, protocol.batch_size), seed=0)
    return [
        train_model(arch, run, short, seed=0)[1].seconds / short.steps_per_epoch(protocol.batch_size)
        for arch in archs
    ]


def _with_batches(data: DeviceData, batches: int, batch_size: int) -> DeviceData:
    """The same resident splits with a training set of at most ``batches`` batches."""
    short = copy.copy(data)
    n = min(len(data.train_y), batches * batch_size)
    short.train_x, short.train_y = data.train_x[:n], data.train_y[:n]
    return short


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
    options: ExecutorOptions | None = None,
    retry_failed: bool = False,
    corruptions: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    steps: int = TIMED_STEPS,
) -> BenchPlan:
    """Estimate what :func:`flatnas_bench.bench.driver.run_bench` with the same arguments would take; reads
    the table (if any) for what is done and writes nothing to it. Times on this machine, on the
    executor's device with its threads per worker."""
    import torch

    from flatnas_bench.bench.driver import corruption_set_for, resolve_protocol, run_protocol, unique_archs
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.tables.store import ResultStore

    built = isinstance(executor, str)
    executor = get_executor(executor, options) if isinstance(executor, str) else executor
    protocol = run_protocol(resolve_protocol(protocol), executor.numerics, precision)
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
        request = _Request(protocol, executor, threads, tuple(todo), len(canonical) * len(seeds) - len(todo),
                           time.perf_counter() - start, steps)  # fmt: skip
        return _estimate(request, data, corruption_set)
    finally:
        torch.set_num_threads(before)
        if built:
            executor.close()  # a Ray executor may have connected to learn its device


@dataclass(frozen=True)
class _Request:
    """What :func:`_estimate` prices: the run's protocol (as it runs), executor and threads per worker,
    the jobs still to do and those skipped, the measured setup seconds and the steps to time per arch."""

    protocol: Protocol
    executor: Executor
    threads: int
    todo: tuple[str, ...]
    skipped: int
    setup_s: float
    steps: int


def _estimate(request: _Request, data: DeviceData, corruption_set: CorruptionSet | None) -> BenchPlan:
    from flatnas_bench.nb201.costs import arch_costs

    protocol, executor, todo = request.protocol, request.executor, list(request.todo)
    sizes = [
        arch_costs(a, protocol.C, protocol.N, data.num_classes, protocol.resolution).flops_m for a in todo
    ]
    picked = [todo[i] for i in pick_archs(todo, sizes)] if todo else []
    timings, rows = _time_archs(picked, protocol, data, corruption_set, request.steps) if picked else ([], [])
    total_steps = protocol.epochs * data.steps_per_epoch(protocol.batch_size)

    def wall_s(step_s: Sequence[float]) -> tuple[tuple[float, ...], float]:
        """(every job's seconds, the run's wall time) given the timed archs' seconds per step."""
        if not timings:
            return (), 0.0
        x = [t.flops_m for t in timings]
        rest = np.interp(sizes, x, [t.rest_s for t in timings])
        job_s = tuple(float(v) for v in np.interp(sizes, x, step_s) * total_steps + rest)
        return job_s, request.setup_s + makespan(job_s, executor.slots)

    job_s, wall = wall_s([t.step_s for t in timings])
    walls = [(protocol.precision, wall)]
    for other in _other_precisions(protocol, data) if timings else ():
        walls.append(
            (other, wall_s(_time_steps(picked, protocol.replace(precision=other), data, request.steps))[1])
        )
    on_cuda = executor.device.startswith("cuda")
    gpus = len(set(getattr(executor, "devices", [executor.device]))) if on_cuda else 0
    device_hours = wall * gpus / 3600 if on_cuda else sum(job_s) * request.threads / 3600
    return BenchPlan(
        protocol, executor.describe(), executor.device, executor.slots, request.threads, len(todo),
        request.skipped, total_steps, tuple(timings), job_s, request.setup_s, wall, device_hours,
        _row_bytes(rows) * len(todo) if rows else 0, tuple(sorted(walls)),
    )  # fmt: skip


def _other_precisions(protocol: Protocol, data: DeviceData) -> list[str]:
    """The training precisions besides the protocol's that ``data``'s device runs: bf16 needs CUDA or a
    CPU with native bf16."""
    from flatnas_bench.engine.train import cpu_bf16_supported

    both = data.device.type == "cuda" or cpu_bf16_supported()
    return [p for p in PRECISIONS if p != protocol.precision] if both else []
