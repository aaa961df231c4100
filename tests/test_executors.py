"""Every registered executor, run for real on a tiny synthetic dataset: same jobs, same numbers (serial,
2 spawned local workers, Ray actors on a local CPU instance); workers return rows, the driver keeps them."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch
from helpers import CONV, MIXED, SKIP, make_imagefolder, tiny_protocol

from flatnas_bench.candidate import CandidateJob
from flatnas_bench.data import load_images
from flatnas_bench.errors import ConfigError
from flatnas_bench.executors import RunContext, SerialExecutor, get_executor, list_executors
from flatnas_bench.results import RESULT_COLUMNS

# measured numbers that must agree bit for bit between executors (wall times and device labels may not)
MEASURED = [c for c in RESULT_COLUMNS if c not in ("train_sec", "eval_sec", "device")]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunContext]:
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLATNAS_CACHE", str(cache))  # inherited by spawned workers and Ray's local workers
        data = make_imagefolder(tmp_path_factory.mktemp("tiny") / "images")
        protocol = tiny_protocol()
        load_images(data, protocol.dataset)  # warm the decode cache, as run_bench does
        yield RunContext(protocol, data_path=str(data))


@pytest.fixture(scope="module")
def jobs(context: RunContext) -> list[CandidateJob]:
    return [CandidateJob(a, context.protocol, s) for a, s in ((CONV, 0), (str(SKIP), 0), (MIXED, 1))]


@pytest.fixture(scope="module")
def reference(context: RunContext, jobs: list[CandidateJob]) -> dict[tuple[str, int], dict]:
    threads = torch.get_num_threads()
    try:
        rows = list(SerialExecutor(device="cpu", threads=1).run(jobs, context))
    finally:
        torch.set_num_threads(threads)
    return {(r["arch"], r["seed"]): r for r in rows}


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


OPTIONS = {"serial": {}, "local": {"workers": 2}, "ray": {"workers": 1}}


@pytest.mark.parametrize("name", list_executors())
def test_every_executor_gives_the_same_numbers(name, context, jobs, reference, request):
    if name == "ray":
        request.getfixturevalue("ray_instance")
    executor = get_executor(name, device="cpu", threads=1, **OPTIONS.get(name, {}))
    started: list[CandidateJob] = []
    threads = torch.get_num_threads()
    try:
        rows = list(executor.run(jobs, context, on_start=started.append))
    finally:
        torch.set_num_threads(threads)
    assert sorted(started, key=str) == sorted(jobs, key=str)
    assert sorted((r["arch"], r["seed"]) for r in rows) == sorted(reference)
    for row in rows:
        assert row["error"] is None
        expected = reference[row["arch"], row["seed"]]
        assert {c: row[c] for c in MEASURED} == {c: expected[c] for c in MEASURED}, name
    assert list(executor.run([], context)) == []


def test_a_job_that_raises_becomes_a_failed_row(context, jobs, monkeypatch):
    import flatnas_bench.candidate as candidate

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(candidate, "evaluate_candidate", broken)
    rows = list(SerialExecutor(device="cpu").run(jobs[:1], context))
    assert rows[0]["error"] == "RuntimeError: out of memory"
    assert rows[0]["arch"] == CONV and rows[0]["protocol_hash"] == context.protocol.hash
    assert set(rows[0]) == set(RESULT_COLUMNS)


def test_registry_and_option_errors(monkeypatch):
    assert list_executors()[:3] == ["serial", "local", "ray"]
    with pytest.raises(ConfigError, match="unknown executor 'slurm'; known: serial, local, ray"):
        get_executor("slurm")
    with pytest.raises(ConfigError, match="one job at a time"):
        get_executor("serial", workers=2)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        get_executor("local", workers=0)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        get_executor("serial", workers_per_gpu=2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU"):
            get_executor("local", device="cuda")
    assert get_executor("local", device="cpu", workers=3, threads=None).slots == 3
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'flatnas-bench\[ray\]'"):
        get_executor("ray")


def test_a_context_needs_data():
    with pytest.raises(ConfigError, match="data_path or splits"):
        RunContext(tiny_protocol())
