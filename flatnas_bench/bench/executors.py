"""Executors: where candidate jobs run. Workers train and measure; they return result rows; the driver writes.

Every executor has the same interface, ``executor.run(jobs, context, on_start=None)``, an iterator over
result rows in the order they complete, and keeps its dataset resident per worker (decoded, split and on
the device once, then reused by every job that worker runs):

* ``serial``: in the driver process, one job after another (the default on CPU; the easiest to debug);
* ``local``: spawned worker processes on this machine, ``workers_per_gpu`` per GPU (default
  :data:`DEFAULT_WORKERS_PER_GPU`; each pinned to its device index) or ``workers`` on CPU with ``threads``
  torch threads each;
* ``ray``: Ray actors (``pip install 'flatnas-bench[ray]'``), each holding its share of a GPU or of the
  CPUs (shares follow the number of actors, so every actor starts); connects to ``$RAY_ADDRESS`` when set,
  else starts a local Ray instance.

A job that raises comes back as a failed row carrying the one-line reason, so one bad candidate never stops
a run. A device failure is not a candidate's result: CUDA out of memory or a lasting CUDA error raises
:class:`~flatnas_bench.core.errors.DeviceError` in the worker, which is replaced by a fresh one (a new process
or actor, with a new CUDA context) while its job goes back in the queue; a worker that dies, or a Ray node
that is lost, gives up its slot and its job is requeued. A job that fails :data:`DEVICE_RETRIES` times
stops the run, which resumes from the table.

>>> from flatnas_bench.engine.candidate import CandidateJob
>>> from flatnas_bench.core.protocol import get_protocol
>>> proxy = get_protocol("proxy")
>>> context = RunContext(proxy, data_path="../shared/data/cifar10/cifar10-jpeg.tar.gz")  # doctest: +SKIP
>>> jobs = [CandidateJob(arch, proxy, seed=0) for arch in archs]                        # doctest: +SKIP
>>> for row in get_executor("local", workers=2).run(jobs, context): print(row["val_acc"])  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flatnas_bench.core.cores import usable_cores
from flatnas_bench.core.errors import ConfigError, DeviceError
from flatnas_bench.core.protocol import Protocol

if TYPE_CHECKING:
    from flatnas_bench.engine.candidate import CandidateJob
    from flatnas_bench.engine.data import Splits

OnStart = Callable[["CandidateJob"], None]
Stop = Callable[[], bool]  # asked before each job is dealt: True stops dealing; jobs in flight still finish
DEFAULT_WORKERS_PER_GPU = 4  # NB201 networks are small: one candidate leaves most of a modern GPU idle
DEVICE_RETRIES = 2  # times a job is requeued after a device failure before the run stops
# messages of device failures that PyTorch raises as plain RuntimeErrors
_DEVICE_MESSAGES = ("CUDA error", "CUDA out of memory", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error",
                    "illegal memory access", "device-side assert", "NCCL error")  # fmt: skip
# failed rows whose error holds one of these were device failures (earlier versions stored them): rerun
DEVICE_FAILURE_MARKS = ("OutOfMemoryError", *_DEVICE_MESSAGES)
Rows = Generator[dict[str, Any], None, None]  # result rows in completion order; close() stops the workers


@dataclass(frozen=True)
class RunContext:
    """What every worker needs besides its jobs: the protocol, where its data is, the corruption set.

    ``data_path`` is read by each worker through the decoded-dataset cache (warm it first in the driver,
    as :func:`flatnas_bench.bench.driver.run_bench` does); ``splits``, when given, is used instead (Ray ships
    it
    through its object store, so cluster nodes need no shared file system). ``corruption_set`` is a
    :class:`~flatnas_bench.corruptions.robustness.CorruptionSet` or None.
    """

    protocol: Protocol
    data_path: str | None = None
    splits: Splits | None = None
    corruption_set: Any = None
    deterministic: bool = False  # CUDA: deterministic kernels, no TF32 (see train.configure_numerics)
    save_weights: str | None = (
        None  # directory for each trained network's weights (flatnas_bench.engine.weights)
    )

    def __post_init__(self) -> None:
        if self.data_path is None and self.splits is None:
            raise ConfigError("a run context needs data_path or splits")


class Worker:
    """One worker's resident state: the protocol's data on ``device``; runs jobs into result rows.

    Built once per worker (in the driver for ``serial``, in each process for ``local``, in each actor for
    ``ray``). ``threads`` sets torch's intra-op CPU threads for this process (None leaves it as is); the
    process's CUDA numerics follow ``context.deterministic``.
    """

    def __init__(self, context: RunContext, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        from flatnas_bench.engine.device_data import DeviceData
        from flatnas_bench.engine.train import configure_numerics

        if threads:
            torch.set_num_threads(threads)
        configure_numerics(device, context.deterministic)
        self.context = context
        self.device = device
        if context.splits is None:
            self.data = DeviceData.for_protocol(context.data_path, context.protocol, device)
        else:
            self.data = DeviceData.from_splits(context.splits, context.protocol, device)

    def run(self, job: CandidateJob) -> dict[str, Any]:
        """Train and measure ``job``; an exception becomes a failed row naming it (the run goes on), except
        a device failure, which raises :class:`DeviceError` (the worker must be replaced, the job retried)."""
        from flatnas_bench.engine.candidate import evaluate_candidate

        if job.protocol.hash != self.context.protocol.hash:
            raise ConfigError(
                f"job protocol {job.protocol.hash} is not the run's {self.context.protocol.hash}"
            )
        try:
            return evaluate_candidate(
                job,
                data=self.data,
                corruption_set=self.context.corruption_set,
                weights_dir=self.context.save_weights,
            )
        except Exception as exc:  # a bug in one candidate must not stop the run
            if is_device_error(exc):
                raise DeviceError(f"{self.device}: {one_line(exc)}") from None
            return failed_row(job, exc, self.device)


def one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (or just the type)."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def is_device_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the device failing (out of memory, a CUDA/cuDNN/cuBLAS error) rather than the
    candidate: such an error says nothing about the arch, and a lasting one poisons the process."""
    import torch

    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError, DeviceError)):
        return True
    cause = getattr(exc, "cause", None)  # a Ray task error carries the worker's exception
    if isinstance(cause, BaseException) and cause is not exc and is_device_error(cause):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _DEVICE_MESSAGES)


def failed_row(job: CandidateJob, exc: BaseException, device: str) -> dict[str, Any]:
    """The result row of a job whose evaluation raised: keys and provenance set, ``error`` = the exception
    type and the first line of its message, every metric None."""
    import flatnas_bench
    from flatnas_bench.engine.candidate import ROW_KEYS

    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(
        arch=job.arch,
        protocol=job.protocol.name,
        protocol_hash=job.protocol.hash,
        seed=job.seed,
        device=device,
        version=flatnas_bench.__version__,
        error=one_line(exc),
    )
    return row


class Executor:
    """Base of the executors: ``run(jobs, context, on_start, stop)`` yields result rows as jobs complete.

    ``on_start(job)`` is called in the driver when a job is handed to a worker (progress displays use it).
    ``stop()`` is asked before each job is handed out: once it is true no further job starts, and the run
    ends after yielding the rows of the jobs already running (a graceful interrupt).
    ``slots`` is how many jobs run at once.
    """

    name = "base"
    slots = 1
    device = "cpu"  # where the workers compute ("cpu", "cuda", "cuda:1"), for the driver's planning

    def run(
        self,
        jobs: Sequence[CandidateJob],
        context: RunContext,
        on_start: OnStart | None = None,
        stop: Stop | None = None,
    ) -> Rows:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for logs: the executor and its workers."""
        return f"{self.name} x{self.slots}"

    def close(self) -> None:
        """Stop workers kept alive between runs (``keep_alive=True``); nothing to do otherwise."""


def context_key(context: RunContext) -> tuple:
    """What decides whether kept-alive workers can serve a run: protocol, data and corruption set (by
    identity: :func:`flatnas_bench.bench.driver.corruption_set_for` returns the same object for the same
    request)
    and the numerics."""
    return (context.protocol.hash, context.data_path, id(context.splits), id(context.corruption_set),
            context.deterministic)  # fmt: skip


_REGISTRY: dict[str, type[Executor]] = {}


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Class decorator: register an executor under its ``name``."""
    if cls.name in _REGISTRY:
        raise ConfigError(f"executor {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_executors() -> list[str]:
    """Registered executor names, in registration order."""
    return list(_REGISTRY)


def get_executor(name: str, **options: Any) -> Executor:
    """The executor ``name`` built with ``options``, e.g. ``get_executor("local", workers=4, threads=1)``.

    Options every executor takes: ``device`` ("cpu", "cuda", "cuda:1"; default: CUDA when available),
    ``threads`` (torch CPU threads per worker). ``local`` and ``ray`` also take ``workers`` (how many run
    at once) and ``workers_per_gpu``. Options set to None are ignored (their defaults apply).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown executor {name!r}; known: {', '.join(list_executors())}")
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return _REGISTRY[name](**options)
    except TypeError as exc:
        raise ConfigError(f"executor {name!r}: {exc}") from None


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch  # here, so listing executors (the CLI's choices) stays cheap

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


@register_executor
class SerialExecutor(Executor):
    """Runs every job in the driver process, one after another, on one device."""

    name = "serial"

    def __init__(self, device: str | None = None, threads: int | None = None, workers: int = 1) -> None:
        _check_positive("threads", threads)
        if workers != 1:
            raise ConfigError(f"the serial executor runs one job at a time (workers={workers}); use 'local'")
        self.device = device or default_device()
        self.threads = threads

    def run(
        self,
        jobs: Sequence[CandidateJob],
        context: RunContext,
        on_start: OnStart | None = None,
        stop: Stop | None = None,
    ) -> Rows:
        if not jobs:
            return
        worker = Worker(context, self.device, self.threads)
        for job in jobs:
            if stop and stop():
                return
            if on_start:
                on_start(job)
            for attempt in range(DEVICE_RETRIES + 1):
                try:
                    row = worker.run(job)
                    break
                except DeviceError as exc:
                    if attempt == DEVICE_RETRIES:
                        raise _gave_up(job, exc) from None
                    worker = _fresh_worker(worker, context, self.device, self.threads)
            yield row


def _fresh_worker(old: Worker, context: RunContext, device: str, threads: int | None) -> Worker:
    """A new in-process worker after a device failure (its cached memory released first)."""
    import torch

    del old
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return Worker(context, device, threads)


def _gave_up(job: CandidateJob, exc: BaseException) -> DeviceError:
    return DeviceError(
        f"{job.arch} seed {job.seed} failed on the device {DEVICE_RETRIES + 1} times ({one_line(exc)}); "
        "finished rows are in the table: fix the device and run the same command to resume"
    )


def _gpu_slots(device: str | None, workers: int | None, workers_per_gpu: int) -> list[str]:
    """The device string of each worker: round-robin over the GPUs, or all "cpu"."""
    device = device or default_device()
    if device.startswith("cuda"):
        import torch

        gpus = [device] if ":" in device else [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if not gpus:
            raise ConfigError("device 'cuda' asked for but no GPU is visible")
        count = workers or len(gpus) * workers_per_gpu
        return [gpus[k % len(gpus)] for k in range(count)]
    return [device] * (workers or usable_cores())


def _feed(
    slots: Sequence[Any],
    jobs: Sequence[CandidateJob],
    start: Callable[[Any, CandidateJob], Any],
    wait_one: Callable[[list[Any]], Any],
    result: Callable[[Any], dict[str, Any]],
    on_start: OnStart | None,
    replace: Callable[[Any, BaseException], Any | None],
    stop: Stop | None = None,
) -> Rows:
    """Keep every slot busy with one job at a time and yield rows in completion order.

    ``start(slot, job)`` launches a job and returns its handle, ``wait_one(handles)`` blocks until one is
    done and returns it, ``result(handle)`` gives its row. A slot gets its next job as soon as it is free,
    so fast workers take more jobs. When ``result`` raises a device failure (:func:`is_device_error`, a
    dead process or actor), ``replace(slot, exc)`` gives the slot's successor (None: the slot is gone) and
    the job goes back in the queue, up to :data:`DEVICE_RETRIES` times. Once ``stop()`` is true no job
    starts (nor restarts, nor is a lost worker replaced); the running ones still finish and are yielded.
    """
    pending = list(reversed(jobs))
    running: dict[Any, tuple[Any, CandidateJob]] = {}
    failures: dict[CandidateJob, int] = {}
    idle = list(slots)

    def dealing() -> bool:
        return bool(pending) and not (stop and stop())

    def submit(slot: Any) -> None:
        job = pending.pop()
        running[start(slot, job)] = (slot, job)
        if on_start:
            on_start(job)

    while idle and dealing():
        submit(idle.pop(0))
    while running:
        handle = wait_one(list(running))
        slot, job = running.pop(handle)
        try:
            row = result(handle)
        except Exception as exc:
            if not is_device_error(exc) and not _worker_lost(exc):
                raise
            failures[job] = failures.get(job, 0) + 1
            if failures[job] > DEVICE_RETRIES:
                raise _gave_up(job, exc) from None
            pending.append(job)
            if not dealing():  # stopping: the job is left for the next run, and its worker needs no successor
                continue
            slot = replace(slot, exc)
            if slot is None and not running:
                raise DeviceError(
                    f"every worker was lost ({one_line(exc)}); run the same command to resume"
                ) from None
            if slot is not None:
                submit(slot)
            continue
        if dealing():
            submit(slot)
        yield row


def _worker_lost(exc: BaseException) -> bool:
    """A worker process or Ray actor (or its node) that died under its job."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return True
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    lost = (ray.exceptions.RayActorError, ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError)
    return isinstance(exc, lost)


# A local worker process keeps its Worker here between jobs (set by the pool initializer).
_PROCESS_WORKER: Worker | None = None


def _init_process(context: RunContext, device: str, threads: int | None) -> None:
    global _PROCESS_WORKER
    # Ctrl-C in a terminal, or a scheduler's SIGTERM, reaches the whole process group: the driver decides
    # (finish the jobs in flight, or kill the workers at a second signal), so no job dies under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _PROCESS_WORKER = Worker(context, device, threads)


def _run_in_process(job: CandidateJob) -> dict[str, Any]:
    assert _PROCESS_WORKER is not None, "worker process not initialised"
    return _PROCESS_WORKER.run(job)


def _first_done(futures: list[cf.Future[dict[str, Any]]]) -> cf.Future[dict[str, Any]]:
    return next(iter(cf.wait(futures, return_when=cf.FIRST_COMPLETED).done))


@register_executor
class LocalExecutor(Executor):
    """Spawned worker processes on this machine, each pinned to one device and holding its data.

    On GPUs: ``workers_per_gpu`` processes per visible GPU (by device index), or ``workers`` in total
    dealt round-robin. On CPU: ``workers`` processes (default: one per core) with ``threads`` torch threads
    each (default: cores // workers). Each process is its own single-worker pool, so its device and its
    resident dataset stay fixed for the whole run. With ``keep_alive`` the processes outlive a run and
    serve the next one with the same context (the FlatNAS loop's generations) until :meth:`close`.
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        workers_per_gpu: int = DEFAULT_WORKERS_PER_GPU,
        keep_alive: bool = False,
    ) -> None:
        for key, value in (("workers", workers), ("threads", threads), ("workers_per_gpu", workers_per_gpu)):
            _check_positive(key, value)
        self.devices = _gpu_slots(device, workers, workers_per_gpu)
        self.device = self.devices[0]
        self.slots = len(self.devices)
        on_cpu = self.devices[0] == "cpu"
        self.threads = threads or (max(1, usable_cores() // self.slots) if on_cpu else None)
        self.keep_alive = keep_alive
        self._pools: list[cf.ProcessPoolExecutor] = []
        self._device_of: dict[cf.ProcessPoolExecutor, str] = {}
        self._key: tuple | None = None

    def run(
        self,
        jobs: Sequence[CandidateJob],
        context: RunContext,
        on_start: OnStart | None = None,
        stop: Stop | None = None,
    ) -> Rows:
        if not jobs:
            return
        key = context_key(context)
        if self._pools and key != self._key:
            self.close()  # other data or protocol: fresh workers
        self._key = key
        if not self._pools:  # a kept-alive pool serves every later run; else one worker per job at most
            wanted = self.devices if self.keep_alive else self.devices[: len(jobs)]
            self._pools = [self._new_pool(context, dev) for dev in wanted]

        def replace(pool: cf.ProcessPoolExecutor, exc: BaseException) -> cf.ProcessPoolExecutor:
            pool.shutdown(
                wait=False, cancel_futures=True
            )  # a device error may have poisoned its CUDA context
            fresh = self._new_pool(context, self._device_of.pop(pool))
            self._pools[self._pools.index(pool)] = fresh
            return fresh

        completed = False
        try:
            submit = lambda pool, job: pool.submit(_run_in_process, job)  # noqa: E731
            yield from _feed(
                list(self._pools), jobs, submit, _first_done, cf.Future.result, on_start, replace, stop
            )
            completed = True
        finally:
            if not completed:  # interrupted: a job still running would only be thrown away
                self._terminate()
            if not (self.keep_alive and completed):  # an interrupted run always stops its workers
                self.close()

    def _new_pool(self, context: RunContext, device: str) -> cf.ProcessPoolExecutor:
        spawn = multiprocessing.get_context("spawn")  # CUDA cannot be forked; spawn is safe everywhere
        init = (context, device, self.threads)
        pool = cf.ProcessPoolExecutor(1, spawn, initializer=_init_process, initargs=init)
        self._device_of[pool] = device
        return pool

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools, self._device_of, self._key = [], {}, None

    def _terminate(self) -> None:
        """Kill the worker processes now (the pools' shutdown alone waits for their running jobs)."""
        for pool in self._pools:
            processes = getattr(pool, "_processes", None) or {}  # a public terminate_workers() needs 3.14
            for process in list(processes.values()):
                process.kill()  # SIGKILL: the workers ignore SIGINT and SIGTERM


@register_executor
class RayExecutor(Executor):
    """Ray actors, each holding the dataset on its share of a GPU or of the CPUs, fed one job at a time so
    fast actors take more. Shares follow the number of actors (:func:`actor_share`): ``1/workers_per_gpu``
    of a GPU or ``threads`` CPUs when every actor fits, smaller shares when ``workers`` asks for more
    actors than that, so all of them start.

    Connects to ``$RAY_ADDRESS`` when set, else starts a local instance (shut down after the run, or at
    :meth:`close` with ``keep_alive``, whose actors serve later runs with the same context); reuses a Ray
    already initialised in this process. The splits travel through Ray's object store, so worker
    nodes need no copy of the data path. Default ``workers``: every GPU share, or every CPU / ``threads``.
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        workers_per_gpu: int = DEFAULT_WORKERS_PER_GPU,
        keep_alive: bool = False,
    ) -> None:
        for key, value in (("workers", workers), ("threads", threads), ("workers_per_gpu", workers_per_gpu)):
            _check_positive(key, value)
        self._ray = _import_ray()
        self.workers = workers
        self.asked_device = device
        self.device = device or default_device()  # the driver's guess; pass device="cuda" for a GPU cluster
        self.threads = threads or 1
        self.workers_per_gpu = workers_per_gpu
        self.slots = workers or 1
        self.keep_alive = keep_alive
        self._actors: list[Any] = []
        self._key: tuple | None = None
        self._started = False  # whether this executor started Ray (and must stop it)

    def _start(self) -> bool:
        """Initialise Ray unless it already is; True when this executor started it (and must stop it)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        return True

    def _plan(self) -> tuple[int, dict[str, float], str]:
        """(number of actors, actor resource options, device inside an actor) for the cluster at hand."""
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        gpus = [float(n.get("GPU", 0)) for n in nodes if n.get("GPU")]
        cpus = [float(n.get("CPU", 0)) for n in nodes if n.get("CPU")]
        if not (self.asked_device or ("cuda" if gpus else "cpu")).startswith("cuda"):
            count = self.workers or max(1, int(sum(cpus)) // self.threads)
            return count, {"num_gpus": 0, "num_cpus": actor_share(cpus, count, self.threads, "CPU")}, "cpu"
        if not gpus:
            raise ConfigError("device 'cuda' asked for but the Ray cluster has no GPU")
        count = self.workers or int(sum(gpus)) * self.workers_per_gpu
        share = actor_share(gpus, count, 1.0 / self.workers_per_gpu, "GPU")
        cpu = actor_share(cpus, count, self.threads, "CPU")
        # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, so "cuda" inside it is that GPU
        return count, {"num_gpus": share, "num_cpus": cpu}, "cuda"

    def run(
        self,
        jobs: Sequence[CandidateJob],
        context: RunContext,
        on_start: OnStart | None = None,
        stop: Stop | None = None,
    ) -> Rows:
        if not jobs:
            return
        ray = self._ray
        if self._actors and context_key(context) != self._key:
            self.close()
        completed = False
        try:
            if not self._actors:
                self._spawn(context, len(jobs))
            wait_one = lambda refs: ray.wait(refs, num_returns=1)[0][0]  # noqa: E731
            submit = lambda actor, job: actor.run.remote(job)  # noqa: E731
            yield from _feed(
                list(self._actors), jobs, submit, wait_one, ray.get, on_start, self._replace, stop
            )
            completed = True
        finally:
            if not (self.keep_alive and completed):
                self.close()

    def _spawn(self, context: RunContext, jobs: int) -> None:
        """Start Ray if needed, ship the data to the object store and start the actors."""
        ray = self._ray
        self._started = self._start() or self._started
        self._key = context_key(context)
        count, options, device = self._plan()
        self.slots = count
        splits = context.splits if context.splits is not None else load_splits(context)
        corruption_set = None if context.corruption_set is None else ray.put(context.corruption_set)
        shipped = dataclasses.replace(
            context, data_path=None, splits=ray.put(splits), corruption_set=corruption_set
        )
        actor_cls = ray.remote(_RayWorker).options(**options)
        self._new_actor = lambda: actor_cls.remote(shipped, device, self.threads)
        self._actors = [self._new_actor() for _ in range(count if self.keep_alive else min(count, jobs))]

    def _replace(self, actor: Any, exc: BaseException) -> Any | None:
        """A lost actor or node gives up its slot; a device error gets a fresh actor in its place."""
        self._ray.kill(actor)
        self._actors.remove(actor)
        if _worker_lost(exc):
            return None
        self._actors.append(self._new_actor())
        return self._actors[-1]

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._key = [], None
        if self._started:
            self._ray.shutdown()
            self._started = False


def actor_share(capacities: Sequence[float], count: int, want: float, resource: str) -> float:
    """The share of ``resource`` each of ``count`` actors asks for, given each node's ``capacities``:
    ``want`` when ``count`` actors of that size fit on the nodes, else the largest smaller share that
    packs ``count`` of them (Ray places an actor on one node, so shares are packed node by node).

    >>> actor_share([1.0], 4, 1.0, "GPU"), actor_share([1.0, 1.0], 3, 1.0, "GPU")
    (0.25, 0.5)
    """
    grain = 1e-4  # Ray's resource granularity

    def fits(share: float) -> int:
        return sum(int(c / share + 1e-9) for c in capacities)

    share = want
    while fits(share) < count:
        # the largest share that fits one more actor on some node
        share = max(c / (int(c / share + 1e-9) + 1) for c in capacities) if capacities else 0.0
        share = math.floor(share / grain) / round(1 / grain)
        if share < 100 * grain:
            raise ConfigError(
                f"{count} workers do not fit on the Ray cluster's {resource}s ({sum(capacities):g} in all); "
                "ask for fewer --workers"
            )
    return share


class _RayWorker:
    """The Ray actor body: a :class:`Worker` whose splits arrive as an object reference."""

    def __init__(self, context: RunContext, device: str, threads: int | None) -> None:
        import ray

        local = dataclasses.replace(
            context,
            splits=ray.get(context.splits),
            corruption_set=None if context.corruption_set is None else ray.get(context.corruption_set),
        )
        self.worker = Worker(local, device, threads)

    def run(self, job: CandidateJob) -> dict[str, Any]:
        return self.worker.run(job)


def load_splits(context: RunContext) -> Splits:
    """The protocol's splits of the dataset at ``context.data_path``, for executors that ship the images
    to their workers instead of a path."""
    from flatnas_bench.engine.data import protocol_splits

    return protocol_splits(context.data_path, context.protocol)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the 'ray' executor needs Ray: pip install 'flatnas-bench[ray]' (or use --executor local)"
        ) from None
    return ray
