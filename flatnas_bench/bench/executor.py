"""The executor base: it owns a run's lifecycle (start the workers, keep each busy with one job at a time,
retry a job whose worker's device failed, stop dealing when asked, stop the workers), and each variant
supplies only how to start, wait for and replace a worker. Here also the in-process ``serial`` executor.

Every executor has the same interface, ``executor.run(jobs, context, on_start=None, stop=None)``, an
iterator over result rows in the order they complete, and keeps its dataset resident per worker (decoded,
split and on the device once, then reused by every job that worker runs). A job that raises comes back as
a failed row carrying the one-line reason, so one bad candidate never stops a run. A device failure is
not a candidate's result: the worker is replaced by a fresh one (a new process or actor, with a new CUDA
context) while its job goes back in the queue; a worker that dies, or a Ray node that is lost, gives up
its slot and its job is requeued. A job that fails :data:`DEVICE_RETRIES` times stops the run, which
resumes from the table.

>>> executor = SerialExecutor(ExecutorOptions(device="cpu", threads=1))
>>> for row in executor.run(jobs, context): print(row["val_acc"])  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext, Worker, is_device_error, one_line
from flatnas_bench.core.errors import ConfigError, DeviceError
from flatnas_bench.core.protocol import numerics_for
from flatnas_bench.core.registry import Registry

if TYPE_CHECKING:
    from flatnas_bench.engine.candidate import CandidateJob

OnStart = Callable[["CandidateJob"], None]
Stop = Callable[[], bool]  # asked before each job is dealt: True stops dealing; jobs in flight still finish
Rows = Generator[dict[str, Any], None, None]  # result rows in completion order; close() stops the workers
DEVICE_RETRIES = 2  # times a job is requeued after a device failure before the run stops


class Executor:
    """Base of the executors: :meth:`run` yields result rows as jobs complete.

    ``on_start(job)`` is called in the driver when a job is handed to a worker (progress displays use it).
    ``stop()`` is asked before each job is handed out: once it is true no further job starts, and the run
    ends after yielding the rows of the jobs already running (a graceful interrupt). With
    ``options.keep_alive`` the workers outlive a completed run and serve the next one with the same
    context (the FlatNAS loop's generations) until :meth:`close`.

    A variant sets ``name``, ``device`` (where the workers compute, as the driver names it) and
    ``slots`` (jobs at once), and supplies :meth:`_start` (the workers), :meth:`_submit` (a job to a
    worker, giving a handle), :meth:`_wait_one` (the first finished handle), :meth:`_result` (its row,
    raising the worker's failure) and :meth:`_replace` (a failed worker's successor, or None).
    """

    name = "base"
    slots = 1
    device = "cpu"
    options = ExecutorOptions()  # a variant that skips __init__ still has its numerics

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()
        self._workers: list[Any] = []
        self._context: RunContext | None = None

    @property
    def numerics(self) -> str:
        """How the workers compute (:data:`~flatnas_bench.core.protocol.NUMERICS`): what a run's protocol
        must say (:func:`flatnas_bench.bench.driver.run_protocol`) so its rows are keyed by it."""
        return numerics_for(self.device, self.options.deterministic)

    def describe(self) -> str:
        """One line for logs: the executor and its workers."""
        return f"{self.name} x{self.slots}"

    def run(
        self,
        jobs: Sequence[CandidateJob],
        context: RunContext,
        on_start: OnStart | None = None,
        stop: Stop | None = None,
    ) -> Rows:
        """Run ``jobs`` under ``context``, yielding each row as its job completes."""
        if not jobs:
            return
        if context.protocol.numerics != self.numerics:
            raise ConfigError(
                f"protocol {context.protocol.name!r} is keyed for {context.protocol.numerics} numerics but "
                f"the {self.name} executor's workers compute {self.numerics}; use driver.run_protocol"
            )
        if self._workers and context_key(context) != context_key(self._context):
            self.close()  # other data or protocol: fresh workers
        completed = False
        try:
            if not self._workers:
                self._context = context
                self._workers = self._start(context, len(jobs))
            yield from _feed(
                list(self._workers), jobs, self._submit, self._wait_one, self._result, on_start,
                self._swap, stop,
            )  # fmt: skip
            completed = True
        finally:
            if not completed:  # interrupted: a job still running would only be thrown away
                self._abort()
            if not (self.options.keep_alive and completed):
                self.close()

    def _swap(self, worker: Any, exc: BaseException) -> Any | None:
        fresh = self._replace(worker, exc)
        index = self._workers.index(worker)
        if fresh is None:
            del self._workers[index]
        else:
            self._workers[index] = fresh
        return fresh

    def close(self) -> None:
        """Stop the workers (those kept alive between runs too)."""
        self._workers, self._context = [], None

    # what each variant supplies
    def _start(self, context: RunContext, jobs: int) -> list[Any]:
        raise NotImplementedError

    def _submit(self, worker: Any, job: CandidateJob) -> Any:
        raise NotImplementedError

    def _wait_one(self, handles: list[Any]) -> Any:
        raise NotImplementedError

    def _result(self, handle: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _replace(self, worker: Any, exc: BaseException) -> Any | None:
        raise NotImplementedError

    def _abort(self) -> None:
        """Stop the jobs in flight now (an interrupted run); :meth:`close` follows."""


def context_key(context: RunContext | None) -> tuple:
    """What decides whether kept-alive workers can serve a run: protocol, data, corruption set (by
    identity: :func:`flatnas_bench.bench.driver.corruption_set_for` returns the same object for the same
    request) and where weights go."""
    if context is None:
        return ()
    return (context.protocol.hash, context.data_path, id(context.splits), id(context.corruption_set),
            context.save_weights)  # fmt: skip


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Class decorator: register an executor under its ``name`` (looked up by
    :func:`flatnas_bench.bench.executors.get_executor`)."""
    return EXECUTORS.add(cls.name, cls)


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch  # here, so listing executors (the CLI's choices) stays cheap

    return "cuda" if torch.cuda.is_available() else "cpu"


@register_executor
class SerialExecutor(Executor):
    """Runs every job in the driver process, one after another, on one device (the default on CPU; the
    easiest to debug)."""

    name = "serial"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        super().__init__(options)
        if self.options.workers not in (None, 1):
            raise ConfigError(
                f"the serial executor runs one job at a time (workers={self.options.workers}); use 'local'"
            )
        if self.options.workers_per_gpu is not None:
            raise ConfigError("the serial executor takes no workers_per_gpu; use 'local'")
        self.device = self.options.device or default_device()

    def _start(self, context: RunContext, jobs: int) -> list[Worker]:
        return [Worker(context, self.device, self.options)]

    def _submit(self, worker: Worker, job: CandidateJob) -> tuple[Worker, CandidateJob]:
        return worker, job  # run when its result is asked for

    def _wait_one(self, handles: list[Any]) -> Any:
        return handles[0]

    def _result(self, handle: tuple[Worker, CandidateJob]) -> dict[str, Any]:
        worker, job = handle
        return worker.run(job)

    def _replace(self, worker: Worker, exc: BaseException) -> Worker:
        """A new in-process worker after a device failure (its cached memory released first)."""
        import torch

        context = worker.context
        del worker
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return Worker(context, self.device, self.options)


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
    done and returns it, ``result(handle)`` gives its row. A row is yielded before its slot gets the next
    job (so the driver commits it first), and a slot gets its next job as soon as it is free, so fast
    workers take more jobs. When ``result`` raises a device failure (:func:`is_device_error`, a dead
    process or actor), ``replace(slot, exc)`` gives the slot's successor (None: the slot is gone) and the
    job goes back in the queue, up to :data:`DEVICE_RETRIES` times. Once ``stop()`` is true no job starts
    (nor restarts, nor is a lost worker replaced); the running ones still finish and are yielded.
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
        yield row
        if dealing():
            submit(slot)


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


def _gave_up(job: CandidateJob, exc: BaseException) -> DeviceError:
    return DeviceError(
        f"{job.arch} seed {job.seed} failed on the device {DEVICE_RETRIES + 1} times ({one_line(exc)}); "
        "finished rows are in the table: fix the device and run the same command to resume"
    )
