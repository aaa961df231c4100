"""The ray executor on a two-node cluster simulated on this machine (``ray.cluster_utils.Cluster``), one
node removed mid-run: the run completes on the surviving node, every row lands once, and the same command
run again finds nothing left to do. Small on purpose: two 1-CPU nodes, six tiny candidates."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from helpers import make_imagefolder, tiny_protocol

from flatnas_bench.bench.driver import run_bench
from flatnas_bench.bench.executor import Executor, SerialExecutor
from flatnas_bench.bench.executors import get_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext
from flatnas_bench.nb201.space import sample_archs
from flatnas_bench.tables.store import RESULT_COLUMNS, ResultStore

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]
MEASURED = [c for c in RESULT_COLUMNS if c not in ("train_sec", "eval_sec", "device")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


class _LoseANode(Executor):
    """The ray executor, with the worker node removed as soon as the first row comes back."""

    name = "lose-a-node"

    def __init__(self, inner: Executor, cluster: Any, node: Any) -> None:
        super().__init__(inner.options)
        self.inner, self.cluster, self.node, self.slots, self.device = (
            inner,
            cluster,
            node,
            inner.slots,
            "cpu",
        )
        self.nodes_seen: list[int] = []

    def run(
        self, jobs: Sequence[Any], context: RunContext, on_start: Any = None, stop: Any = None
    ) -> Iterator[dict[str, Any]]:
        for k, row in enumerate(self.inner.run(jobs, context, on_start, stop)):
            if k == 0:
                self.nodes_seen.append(sum(n["Alive"] for n in ray.nodes()))
                self.cluster.remove_node(self.node)
            yield row
        self.nodes_seen.append(sum(n["Alive"] for n in ray.nodes()))


def test_a_node_lost_mid_run_loses_and_duplicates_nothing(cluster, tmp_path, monkeypatch):
    cluster, worker = cluster
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images")
    archs = [str(a) for a in sample_archs(6, seed=3, unique=True)]
    protocol, table = tiny_protocol(), tmp_path / "t.sqlite"
    inner = get_executor("ray", device="cpu", threads=1, workers=2)
    losing = _LoseANode(inner, cluster, worker)
    threads = torch.get_num_threads()
    try:
        summary = run_bench(archs, protocol, table, data, executor=losing, progress=False)
        again = run_bench(archs, protocol, table, data, executor=get_executor("ray", device="cpu", workers=1))
        reference = list(SerialExecutor(ExecutorOptions(device="cpu", threads=1)).run(
            [job for job in _jobs(archs, protocol)], RunContext(protocol, data_path=str(data))
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert losing.nodes_seen == [2, 1]  # both nodes took jobs, then one was gone
    assert (summary.done, summary.failed, summary.skipped) == (6, 0, 0)
    assert (again.done, again.skipped) == (0, 6)  # the same command again: nothing left, nothing redone
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
    assert len(frame) == 6 and not frame.duplicated(["arch", "protocol_hash", "seed"]).any()
    assert frame["error"].isna().all()
    got = frame.set_index("arch")
    numbers = [c for c in MEASURED[1:] if c not in ("corr_per", "error")]  # text columns compared above
    for row in reference:  # the requeued job's numbers equal a serial run's
        assert {c: got.loc[row["arch"], c] for c in numbers} == pytest.approx(
            {c: np.nan if row[c] is None else row[c] for c in numbers}, nan_ok=True
        )


def _jobs(archs: list[str], protocol) -> list[Any]:
    from flatnas_bench.engine.candidate import CandidateJob

    return [CandidateJob(a, protocol, 0) for a in archs]
