"""How a run's workers compute, as one typed object from the CLI to the worker: device, how many workers,
threads, workers per GPU, CUDA determinism, and whether the workers outlive a run.

>>> options = ExecutorOptions(device="cpu", workers=2, threads=1)
>>> options.replace(workers=4, threads=None), options.gpu_share
(ExecutorOptions(device='cpu', workers=4, threads=1, workers_per_gpu=None, deterministic=False, \
keep_alive=False), 4)
>>> ExecutorOptions(workers=0)
Traceback (most recent call last):
...
flatnas_bench.core.errors.ConfigError: workers must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.protocol import checked_replace

DEFAULT_WORKERS_PER_GPU = 4  # NB201 networks are small: one candidate leaves most of a modern GPU idle


@dataclass(frozen=True)
class ExecutorOptions:
    """Every executor setting, with its default (None: the executor decides, as documented per field)."""

    device: str | None = None  # "cpu", "cuda" (every visible GPU) or "cuda:N"; None: CUDA when visible
    workers: int | None = None  # jobs at once (local, ray); None: workers_per_gpu per GPU, or one per core
    threads: int | None = None  # torch CPU threads per worker; None: cores // workers (local), 1 (ray)
    workers_per_gpu: int | None = None  # workers sharing one GPU (local, ray); None: DEFAULT_WORKERS_PER_GPU
    deterministic: bool = False  # CUDA: deterministic kernels, no TF32 (slower); CPU always is
    keep_alive: bool = False  # workers outlive a run and serve the next with the same context, until close()

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "workers_per_gpu"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.device is not None and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device {self.device!r} is not cpu, cuda or cuda:N")

    @property
    def gpu_share(self) -> int:
        """Workers per GPU, the default filled in."""
        return self.workers_per_gpu or DEFAULT_WORKERS_PER_GPU

    def replace(self, **changes: Any) -> ExecutorOptions:
        """A copy with ``changes``; None values leave a field as it is, unknown names raise ConfigError."""
        return checked_replace(self, "executor option", {k: v for k, v in changes.items() if v is not None})
