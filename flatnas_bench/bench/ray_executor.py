"""The ``ray`` executor: Ray actors (``pip install 'flatnas-bench[ray]'``), each holding the dataset on its
share of a GPU or of the CPUs, fed one job at a time so fast actors take more. Shares follow the number
of actors (:func:`actor_share`), so every actor starts.

Connects to ``$RAY_ADDRESS`` when set, else starts a local instance (shut down after the run, or at
:meth:`RayExecutor.close` with ``keep_alive``); reuses a Ray already initialised in this process. The
splits travel through Ray's object store, so worker nodes need no copy of the data path. Ray sets
``CUDA_VISIBLE_DEVICES`` to an actor's GPU, so inside it ``cuda`` is that GPU.

>>> executor = RayExecutor(ExecutorOptions(device="cuda", workers_per_gpu=4))
>>> rows = list(executor.run(jobs, context))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flatnas_bench.bench.executor import Executor, _worker_lost, register_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext, Worker
from flatnas_bench.core.errors import ConfigError

if TYPE_CHECKING:
    from flatnas_bench.engine.candidate import CandidateJob
    from flatnas_bench.engine.data import Splits


@register_executor
class RayExecutor(Executor):
    """Ray actors on ``1/workers_per_gpu`` of a GPU or ``threads`` CPUs each when every actor fits, smaller
    shares when ``workers`` asks for more actors than that. Default ``workers``: every GPU share, or every
    CPU / ``threads``. Without ``device``, the actors compute on CUDA when the cluster has a GPU (also
    when the driver has none), and the run's rows are keyed by that."""

    name = "ray"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        super().__init__(options)
        self._ray = _import_ray()
        self.threads = self.options.threads or 1
        self.slots = self.options.workers or 1
        self._started = False  # whether this executor started Ray (and must stop it)

    @functools.cached_property
    def device(self) -> str:  # type: ignore[override]
        """Where the actors compute: ``options.device``, else ``"cuda"`` when the cluster has a GPU."""
        if self.options.device:
            return self.options.device
        self._connect()
        return "cuda" if any(float(n.get("GPU", 0)) > 0 for n in self._nodes()) else "cpu"

    def _connect(self) -> None:
        """Initialise Ray unless it already is (and remember to stop it then)."""
        ray = self._ray
        if ray.is_initialized():
            return
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        self._started = True

    def _nodes(self) -> list[dict[str, float]]:
        return [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]

    def _plan(self) -> tuple[int, dict[str, float], str]:
        """(number of actors, actor resource options, device inside an actor) for the cluster at hand."""
        nodes = self._nodes()
        gpus = [float(n.get("GPU", 0)) for n in nodes if n.get("GPU")]
        cpus = [float(n.get("CPU", 0)) for n in nodes if n.get("CPU")]
        workers = self.options.workers
        if not self.device.startswith("cuda"):
            count = workers or max(1, int(sum(cpus)) // self.threads)
            return count, {"num_gpus": 0, "num_cpus": actor_share(cpus, count, self.threads, "CPU")}, "cpu"
        if not gpus:
            raise ConfigError("device 'cuda' asked for but the Ray cluster has no GPU")
        count = workers or int(sum(gpus)) * self.options.gpu_share
        share = actor_share(gpus, count, 1.0 / self.options.gpu_share, "GPU")
        return count, {"num_gpus": share, "num_cpus": actor_share(cpus, count, self.threads, "CPU")}, "cuda"

    def _start(self, context: RunContext, jobs: int) -> list[Any]:
        """Ship the data to the object store and start the actors."""
        ray = self._ray
        self._connect()
        count, resources, device = self._plan()
        self.slots = count
        splits = context.splits if context.splits is not None else load_splits(context)
        corruption_set = None if context.corruption_set is None else ray.put(context.corruption_set)
        shipped = dataclasses.replace(  # the whole context, its bulky parts by reference
            context, data_path=None, splits=ray.put(splits), corruption_set=corruption_set
        )
        actor = ray.remote(_RayWorker).options(**resources)
        options = self.options.replace(threads=self.threads)
        self._new_actor = lambda: actor.remote(shipped, device, options)
        return [self._new_actor() for _ in range(count if self.options.keep_alive else min(count, jobs))]

    def _submit(self, actor: Any, job: CandidateJob) -> Any:
        return actor.run.remote(job)

    def _wait_one(self, refs: list[Any]) -> Any:
        return self._ray.wait(refs, num_returns=1)[0][0]

    def _result(self, ref: Any) -> dict[str, Any]:
        return self._ray.get(ref)

    def _replace(self, actor: Any, exc: BaseException) -> Any | None:
        """A lost actor or node gives up its slot; a device error gets a fresh actor in its place."""
        self._ray.kill(actor)
        return None if _worker_lost(exc) else self._new_actor()

    def close(self) -> None:
        for actor in self._workers:
            self._ray.kill(actor)
        super().close()
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
    """The Ray actor body: a :class:`Worker` whose splits and corruption set arrive as object references."""

    def __init__(self, context: RunContext, device: str, options: ExecutorOptions) -> None:
        import ray

        local = dataclasses.replace(
            context,
            splits=ray.get(context.splits),
            corruption_set=None if context.corruption_set is None else ray.get(context.corruption_set),
        )
        self.worker = Worker(local, device, options)

    def run(self, job: CandidateJob) -> dict[str, Any]:
        return self.worker.run(job)

    def settings(self) -> tuple[RunContext, str, ExecutorOptions]:
        """What this actor was given (its context without the bulky parts), to check nothing was dropped."""
        context = dataclasses.replace(self.worker.context, splits=None, data_path="(shipped)")
        return context, self.worker.device, self.worker.options


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
