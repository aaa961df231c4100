"""The ``local`` executor: spawned worker processes on this machine, each on one device and holding its
data: ``workers_per_gpu`` per visible GPU (default
:data:`~flatnas_bench.bench.options.DEFAULT_WORKERS_PER_GPU`), or ``workers`` processes on the CPU with
``threads`` torch threads each.

A GPU worker sees only its own GPU: ``CUDA_VISIBLE_DEVICES`` is set in the process before CUDA starts
(:func:`worker_placements`), so inside it the device is always ``cuda:0`` and no CUDA call can reach
another GPU through the current-device default (nor open a context on GPU 0).

>>> executor = LocalExecutor(ExecutorOptions(device="cpu", workers=2, threads=1))
>>> rows = list(executor.run(jobs, context))  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flatnas_bench.bench.executor import Executor, default_device, register_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext, Worker
from flatnas_bench.core.cores import usable_cores
from flatnas_bench.core.errors import ConfigError

if TYPE_CHECKING:
    from flatnas_bench.engine.candidate import CandidateJob


@dataclass(frozen=True)
class Placement:
    """Where one local worker runs: ``gpu`` as the driver names it (None on the CPU), ``device`` as the
    worker names it, and ``env``, the environment variables set in the worker before CUDA starts."""

    device: str
    gpu: str | None = None
    env: tuple[tuple[str, str], ...] = ()


def worker_placements(options: ExecutorOptions) -> list[Placement]:
    """One :class:`Placement` per worker: round-robin over the GPUs, each worker restricted to its own by
    ``CUDA_VISIBLE_DEVICES`` (the entry of the driver's own ``CUDA_VISIBLE_DEVICES`` when set, e.g. under
    a scheduler, else the index), or all on the CPU."""
    device = options.device or default_device()
    if not device.startswith("cuda"):
        return [Placement("cpu")] * (options.workers or usable_cores())
    import torch

    count = torch.cuda.device_count()
    indices = [int(device.split(":")[1])] if ":" in device else list(range(count))
    if not count:
        raise ConfigError(f"device {device!r} asked for but no GPU is visible")
    if max(indices) >= count:
        raise ConfigError(f"device {device!r} asked for but only {count} GPU(s) are visible")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(count)]
    workers = options.workers or len(indices) * options.gpu_share
    chosen = [indices[k % len(indices)] for k in range(workers)]
    return [Placement("cuda:0", f"cuda:{i}", (("CUDA_VISIBLE_DEVICES", physical[i]),)) for i in chosen]


@register_executor
class LocalExecutor(Executor):
    """Spawned worker processes, one per :class:`Placement`; each is its own single-worker pool, so its
    device and its resident dataset stay fixed for the whole run. On the CPU each takes ``threads`` torch
    threads (default: cores // workers)."""

    name = "local"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        super().__init__(options)
        self.placements = worker_placements(self.options)
        self.devices = [p.gpu or p.device for p in self.placements]
        self.device = self.devices[0]
        self.slots = len(self.placements)
        on_cpu = self.device == "cpu"
        threads = self.options.threads or (max(1, usable_cores() // self.slots) if on_cpu else None)
        self.threads = threads
        self._worker_options = self.options.replace(threads=threads)
        self._placement_of: dict[cf.ProcessPoolExecutor, Placement] = {}

    def _start(self, context: RunContext, jobs: int) -> list[cf.ProcessPoolExecutor]:
        # a kept-alive pool serves every later run; else one worker per job at most
        wanted = self.placements if self.options.keep_alive else self.placements[:jobs]
        return [self._new_pool(context, placement) for placement in wanted]

    def _new_pool(self, context: RunContext, placement: Placement) -> cf.ProcessPoolExecutor:
        spawn = multiprocessing.get_context("spawn")  # CUDA cannot be forked; spawn is safe everywhere
        init = (context, placement, self._worker_options)
        pool = cf.ProcessPoolExecutor(1, spawn, initializer=_init_process, initargs=init)
        self._placement_of[pool] = placement
        return pool

    def _submit(self, pool: cf.ProcessPoolExecutor, job: CandidateJob) -> cf.Future[dict[str, Any]]:
        return pool.submit(_run_in_process, job)

    def _wait_one(self, futures: list[cf.Future[dict[str, Any]]]) -> cf.Future[dict[str, Any]]:
        return next(iter(cf.wait(futures, return_when=cf.FIRST_COMPLETED).done))

    def _result(self, future: cf.Future[dict[str, Any]]) -> dict[str, Any]:
        return future.result()

    def _replace(self, pool: cf.ProcessPoolExecutor, exc: BaseException) -> cf.ProcessPoolExecutor:
        pool.shutdown(wait=False, cancel_futures=True)  # a device error may have poisoned its CUDA context
        assert self._context is not None
        return self._new_pool(self._context, self._placement_of.pop(pool))

    def _abort(self) -> None:
        """Kill the worker processes now (the pools' shutdown alone waits for their running jobs)."""
        for pool in self._workers:
            processes = getattr(pool, "_processes", None) or {}  # a public terminate_workers() needs 3.14
            for process in list(processes.values()):
                process.kill()  # SIGKILL: the workers ignore SIGINT and SIGTERM

    def close(self) -> None:
        for pool in self._workers:
            pool.shutdown(wait=False, cancel_futures=True)
        self._placement_of = {}
        super().close()


# A local worker process keeps its Worker here between jobs (set by the pool initializer).
_PROCESS_WORKER: Worker | None = None


def _init_process(context: RunContext, placement: Placement, options: ExecutorOptions) -> None:
    global _PROCESS_WORKER
    # first, before anything starts CUDA in this process: it then sees only its own GPU, as cuda:0
    os.environ.update(dict(placement.env))
    # Ctrl-C in a terminal, or a scheduler's SIGTERM, reaches the whole process group: the driver decides
    # (finish the jobs in flight, or kill the workers at a second signal), so no job dies under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _PROCESS_WORKER = Worker(context, placement.device, options)


def _run_in_process(job: CandidateJob) -> dict[str, Any]:
    assert _PROCESS_WORKER is not None, "worker process not initialised"
    return _PROCESS_WORKER.run(job)
