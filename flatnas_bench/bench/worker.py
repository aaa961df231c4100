"""The worker side of every executor: what a run shares with its workers (:class:`RunContext`), the
resident :class:`Worker` that turns jobs into result rows, and how a failure is told apart: the
candidate's fault becomes a failed row, the device's a :class:`~flatnas_bench.core.errors.DeviceError`
(the worker is replaced and the job retried).

>>> context = RunContext(get_protocol("proxy"), data_path="../shared/data/cifar10/cifar10-jpeg.tar.gz")
>>> Worker(context, "cpu", ExecutorOptions(threads=1)).run(CandidateJob(arch, context.protocol, 0))
... # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import ConfigError, DeviceError
from flatnas_bench.core.protocol import Protocol, numerics_for

if TYPE_CHECKING:
    from flatnas_bench.corruptions.robustness import CorruptionSet
    from flatnas_bench.engine.candidate import CandidateJob
    from flatnas_bench.engine.data import Splits

# messages of device failures that PyTorch raises as plain RuntimeErrors
_DEVICE_MESSAGES = ("CUDA error", "CUDA out of memory", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error",
                    "illegal memory access", "device-side assert", "NCCL error")  # fmt: skip
# failed rows whose error holds one of these were device failures (earlier versions stored them): rerun
DEVICE_FAILURE_MARKS = ("OutOfMemoryError", *_DEVICE_MESSAGES)


@dataclass(frozen=True)
class RunContext:
    """What every worker needs besides its jobs: the protocol (its numerics included), where its data is,
    the corruption set, and where trained weights go.

    ``data_path`` is read by each worker through the decoded-dataset cache (warm it first in the driver,
    as :func:`flatnas_bench.bench.driver.run_bench` does); ``splits``, when given, is used instead (Ray
    ships it through its object store, so cluster nodes need no shared file system). ``save_weights`` is a
    directory for each trained network's weights (:mod:`flatnas_bench.engine.weights`), or None.
    """

    protocol: Protocol
    data_path: str | None = None
    splits: Splits | None = None
    corruption_set: CorruptionSet | None = None
    save_weights: str | None = None

    def __post_init__(self) -> None:
        if self.data_path is None and self.splits is None:
            raise ConfigError("a run context needs data_path or splits")


class Worker:
    """One worker's resident state: the protocol's data on ``device``; runs jobs into result rows.

    Built once per worker (in the driver for ``serial``, in each process for ``local``, in each actor for
    ``ray``). ``options.threads`` sets torch's intra-op CPU threads for this process (None leaves it as
    is); its CUDA numerics follow ``options.deterministic``, and a job whose protocol is keyed for other
    numerics than the worker runs is refused (its rows would be stored under the wrong key).
    """

    def __init__(self, context: RunContext, device: str, options: ExecutorOptions) -> None:
        import torch

        from flatnas_bench.engine.device_data import DeviceData
        from flatnas_bench.engine.train import configure_numerics

        if options.threads:
            torch.set_num_threads(options.threads)
        configure_numerics(device, options.deterministic)
        self.context, self.device, self.options = context, device, options
        self.numerics = numerics_for(device, options.deterministic)
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
        if job.protocol.numerics != self.numerics:
            raise ConfigError(
                f"protocol {job.protocol.name!r} is keyed for {job.protocol.numerics} numerics but this "
                f"worker computes {self.numerics} on {self.device}"
            )
        try:
            return evaluate_candidate(
                job, data=self.data, corruption_set=self.context.corruption_set,
                weights_dir=self.context.save_weights,
            )  # fmt: skip
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
