"""Every registered executor, run for real on a tiny synthetic dataset: same jobs, same numbers (serial,
2 spawned local workers, Ray actors on a local CPU instance); workers return rows, the driver keeps them."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch
from helpers import CONV, MIXED, SKIP, make_imagefolder, tiny_protocol

from flatnas_bench.bench.executor import SerialExecutor
from flatnas_bench.bench.executors import get_executor, list_executors
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.results import RESULT_COLUMNS
from flatnas_bench.engine.candidate import CandidateJob
from flatnas_bench.engine.data import load_images

CPU1 = ExecutorOptions(device="cpu", threads=1)
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
        rows = list(SerialExecutor(CPU1).run(jobs, context))
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
    import flatnas_bench.engine.candidate as candidate

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(candidate, "evaluate_candidate", broken)
    rows = list(SerialExecutor(ExecutorOptions(device="cpu")).run(jobs[:1], context))
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
    with pytest.raises(ConfigError, match="takes no workers_per_gpu"):
        get_executor("serial", workers_per_gpu=2)
    with pytest.raises(ConfigError, match="unknown executor option"):
        get_executor("serial", worker=2)
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


def test_ray_runs_more_workers_than_cpus_on_smaller_shares(context, jobs, reference, ray_instance):
    """The hang of old: on a 1-CPU cluster, 3 actors asking for 1 CPU each left 2 never started while jobs
    were handed to them. Shares now follow the count (1/3 CPU each), so every job finishes."""
    executor = get_executor("ray", device="cpu", threads=1, workers=3)
    threads = torch.get_num_threads()
    try:
        rows = list(executor.run(jobs, context))
    finally:
        torch.set_num_threads(threads)
    assert executor.slots == 3
    assert sorted((r["arch"], r["seed"]) for r in rows) == sorted(reference)
    assert all(r["error"] is None for r in rows)


@pytest.mark.parametrize(
    ("capacities", "count", "want", "share"),
    [
        ([1.0], 1, 1.0, 1.0),  # one actor per GPU
        ([1.0], 4, 1.0, 0.25),  # --workers 4 on one GPU: a quarter each, not a whole GPU
        ([1.0, 1.0], 3, 1.0, 0.5),  # two 1-GPU nodes: halves, since 2/3 + 2/3 does not fit on one GPU
        ([1.0], 4, 0.25, 0.25),  # --workers-per-gpu 4 already fits
        ([8.0], 4, 1.0, 1.0),
        ([2.0], 3, 1.0, 0.6666),  # CPUs: fractional too
    ],
)
def test_actor_shares_follow_the_actor_count(capacities, count, want, share):
    from flatnas_bench.bench.ray_executor import actor_share

    got = actor_share(capacities, count, want, "GPU")
    assert got == pytest.approx(share)
    assert sum(int(c / got + 1e-9) for c in capacities) >= count  # every actor can be placed


def test_more_workers_than_the_cluster_can_hold_is_refused_in_one_line():
    from flatnas_bench.bench.ray_executor import actor_share

    with pytest.raises(ConfigError, match=r"^1000 workers do not fit on the Ray cluster's GPUs \(1 in all\)"):
        actor_share([1.0], 1000, 1.0, "GPU")


def _fake_feed(jobs, fail_times, lost_slots=(), stop=None):
    """Run _feed over synchronous fake slots: job arch -> how many times it raises a device error."""
    from flatnas_bench.bench.executor import _feed

    raised = dict.fromkeys(fail_times, 0)
    replaced = []

    def start(slot, job):
        return (slot, job)

    def result(handle):
        slot, job = handle
        if raised.get(job.arch, 0) < fail_times.get(job.arch, 0):
            raised[job.arch] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"arch": job.arch, "seed": job.seed, "slot": slot, "error": None}

    def replace(slot, exc):
        replaced.append(slot)
        return None if slot in lost_slots else f"{slot}'"

    rows = list(_feed(["a", "b"], jobs, start, lambda handles: handles[0], result, None, replace, stop))
    return rows, replaced


def test_a_device_error_replaces_the_worker_and_retries_the_job(jobs):
    rows, replaced = _fake_feed(jobs, {jobs[0].arch: 1})
    assert sorted(r["arch"] for r in rows) == sorted(j.arch for j in jobs)  # nothing stored as failed
    assert all(r["error"] is None for r in rows) and replaced == ["a"]
    assert {r["slot"] for r in rows if r["arch"] == jobs[0].arch} == {"a'"}  # retried on the fresh worker
    rows, replaced = _fake_feed(jobs, {jobs[0].arch: 1}, lost_slots=("a",))  # the slot is gone for good
    assert sorted(r["arch"] for r in rows) == sorted(j.arch for j in jobs) and {r["slot"] for r in rows} == {
        "b"
    }


def _stop_after(questions: int):
    """A stop() that turns true from question ``questions + 1`` on."""
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > questions

    return stop


def test_a_stop_deals_no_more_jobs_and_yields_those_in_flight(jobs):
    # two questions: both slots get their first job, then the run stops dealing
    rows, _ = _fake_feed(jobs, {}, stop=_stop_after(2))
    assert [r["arch"] for r in rows] == [j.arch for j in jobs[:2]]  # the third job never started
    rows, replaced = _fake_feed(jobs, {jobs[0].arch: 1}, stop=_stop_after(2))
    assert [r["arch"] for r in rows] == [jobs[1].arch]  # the retry is not restarted
    assert replaced == []  # nor is a worker started to run it


def test_serial_stops_dealing_when_asked(context, jobs):
    done: list[str] = []
    rows = SerialExecutor(CPU1).run(jobs, context, stop=lambda: len(done) >= 1)
    done.extend(r["arch"] for r in rows)
    assert done == [jobs[0].arch]


def test_an_interrupted_local_run_terminates_its_workers(context, jobs):
    import signal

    executor = get_executor("local", device="cpu", threads=1, workers=1)
    rows = executor.run(jobs, context)
    next(rows)  # the first job is done; the second is running or queued
    processes = [p for pool in executor._workers for p in pool._processes.values()]
    rows.close()  # what an interrupt in the driver does (bench closes the run)
    assert [_exit_code(process) for process in processes] == [-signal.SIGKILL] * len(processes)
    assert executor._workers == []


def _exit_code(process, timeout: float = 30.0) -> int | None:
    """The process's exit code once it has one. Asked again until then: the pool's own manager thread
    reaps its workers too, and a poll that loses that race reads None for a process already dead."""
    import time

    deadline = time.monotonic() + timeout
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.exitcode


def test_a_lasting_device_error_stops_the_run_without_a_row(jobs):
    from flatnas_bench.core.errors import DeviceError

    with pytest.raises(DeviceError, match=r"failed on the device 3 times .*OutOfMemoryError: CUDA out of"):
        _fake_feed(jobs, {jobs[0].arch: 99})


def test_serial_retries_a_device_error_and_keeps_real_failures_as_rows(context, jobs, monkeypatch):
    import flatnas_bench.engine.candidate as candidate

    real, calls = candidate.evaluate_candidate, []

    def flaky(job, **kwargs):
        calls.append(job.arch)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(job, **kwargs)

    monkeypatch.setattr(candidate, "evaluate_candidate", flaky)
    rows = list(SerialExecutor(CPU1).run(jobs[:1], context))
    assert calls == [CONV, CONV] and rows[0]["error"] is None and rows[0]["val_acc"] is not None


def test_a_kept_alive_pool_serves_the_next_run_with_the_same_context(context, jobs, reference):
    executor = get_executor("local", device="cpu", threads=1, workers=1, keep_alive=True)
    try:
        first = list(executor.run(jobs[:1], context))
        pools = list(executor._workers)
        second = list(executor.run(jobs[1:], context))
        assert executor._workers == pools and len(pools) == 1  # the same worker process, not a new one
        other = RunContext(context.protocol.replace(epochs=1), data_path=context.data_path)
        list(executor.run([CandidateJob(CONV, other.protocol, 0)], other))
        assert executor._workers != pools  # another protocol: fresh workers
    finally:
        executor.close()
    assert executor._workers == []
    rows = {(r["arch"], r["seed"]): r for r in first + second}
    assert rows.keys() == reference.keys()
    for key, row in rows.items():
        assert {c: row[c] for c in MEASURED} == {c: reference[key][c] for c in MEASURED}


def test_each_local_gpu_worker_sees_only_its_own_gpu(monkeypatch):
    """Placements on three pretend GPUs: the worker's environment names its GPU, and inside it the
    device is cuda:0; under a scheduler's CUDA_VISIBLE_DEVICES the entries of that list are used."""
    from flatnas_bench.bench.local import worker_placements

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    placements = worker_placements(ExecutorOptions(device="cuda", workers_per_gpu=2))
    assert [dict(p.env) for p in placements] == [{"CUDA_VISIBLE_DEVICES": g} for g in "012012"]
    assert {p.device for p in placements} == {"cuda:0"}
    assert [p.gpu for p in placements] == ["cuda:0", "cuda:1", "cuda:2"] * 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")
    one = worker_placements(ExecutorOptions(device="cuda:1", workers=2))
    assert [(p.gpu, p.device, dict(p.env)) for p in one] == [
        ("cuda:1", "cuda:0", {"CUDA_VISIBLE_DEVICES": "6"})
    ] * 2
    executor = get_executor("local", device="cuda:2", workers=1)
    assert executor.devices == ["cuda:2"] and executor.numerics == "cuda-fast"
    with pytest.raises(ConfigError, match=r"device 'cuda:3' asked for but only 3 GPU\(s\) are visible"):
        worker_placements(ExecutorOptions(device="cuda:3"))
    assert worker_placements(ExecutorOptions(device="cpu", workers=2)) == [worker_placements(CPU1)[0]] * 2


def test_a_spawned_worker_gets_its_environment_before_it_starts(context):
    """The environment reaches the real worker process (a CPU worker here, given a GPU's variable)."""
    import os

    from flatnas_bench.bench.local import LocalExecutor, Placement

    executor = LocalExecutor(ExecutorOptions(device="cpu", workers=1, threads=1))
    pool = executor._new_pool(context, Placement("cpu", "cuda:1", (("CUDA_VISIBLE_DEVICES", "1"),)))
    try:
        assert pool.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result(timeout=120) == "1"
    finally:
        pool.shutdown()


def test_a_run_keyed_for_other_numerics_is_refused(context, jobs):
    """Rows are keyed by the numerics the workers run: a CUDA-keyed protocol on CPU workers stops at once."""
    import dataclasses

    cuda_keyed = dataclasses.replace(context, protocol=context.protocol.replace(numerics="cuda-fast"))
    with pytest.raises(ConfigError, match="keyed for cuda-fast numerics but the serial executor's"):
        list(SerialExecutor(CPU1).run([CandidateJob(CONV, cuda_keyed.protocol, 0)], cuda_keyed))


def test_deterministic_and_the_whole_context_reach_ray_actors(context, jobs, ray_instance, tmp_path):
    """What each actor holds after a run: the driver's context (its splits shipped instead of a path) and
    the executor options, --deterministic included (dropping any field fails here)."""
    import dataclasses

    options = ExecutorOptions(device="cpu", threads=1, workers=1, deterministic=True, keep_alive=True)
    executor = get_executor("ray", options)
    ray = pytest.importorskip("ray")
    sent = dataclasses.replace(context, save_weights=str(tmp_path / "weights"))
    threads = torch.get_num_threads()
    try:
        rows = list(executor.run(jobs[:1], sent))
        (actor,) = executor._workers
        got, device, got_options = ray.get(actor.settings.remote())
    finally:
        executor.close()
        torch.set_num_threads(threads)
    assert rows[0]["error"] is None
    assert got == dataclasses.replace(sent, data_path="(shipped)") and device == "cpu"
    assert got_options == options and got_options.deterministic


def test_no_cuda_stream_or_event_without_an_explicit_device():
    """Every CUDA stream is made for a named device, every event recorded on a named stream, and every
    synchronisation or memory figure names its device: nothing depends on the current-device default."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    per_device = "current_stream|synchronize|max_memory_allocated|reset_peak_memory_stats"
    rules = {
        r"\bStream\((?![^)]*device)": "a stream without device=",
        r"\.record\(\s*\)": "an event recorded on the current stream",
        rf"cuda\.({per_device})\(\s*\)": "a device-wide call without its device",
    }
    for bad in ("torch.cuda.Stream()", "copied.record()", "torch.cuda.synchronize()"):  # each rule bites
        assert any(re.search(rule, bad) for rule in rules), bad
    found = []
    for path in sorted([*(root / "flatnas_bench").rglob("*.py"), *(root / "benchmarks").glob("*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found += [f"{path.name}:{number}: {why}" for rule, why in rules.items() if re.search(rule, line)]
    assert found == []


def test_a_row_names_the_physical_gpu_and_the_cpu_model(monkeypatch):
    import torch

    from flatnas_bench.core.cores import cpu_generation, cpu_model
    from flatnas_bench.engine import candidate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        label = candidate.device_name(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512: which kernels run
    generation = f"{cpu_generation()}, " if cpu_generation() else ""
    assert label == f"cpu (1 thread, {cpu_model()}, {generation}{capability})"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(candidate, "numerics_label", lambda device: "tf32")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert candidate.device_name(torch.device("cuda:0")) == "cuda:0 (GPU 3) NVIDIA H200 (tf32)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # not restricted to one: cuda:0 is GPU 0 of the list
    assert candidate.device_name(torch.device("cuda:0")) == "cuda:0 NVIDIA H200 (tf32)"


def test_a_severity_subset_of_a_corruption_set_is_the_same_object_on_every_call(tmp_path):
    import numpy as np

    from flatnas_bench.bench import driver
    from flatnas_bench.corruptions.robustness import CorruptionSet

    images = {"fog": np.zeros((5, 2, 4, 4, 3), np.uint8)}
    cset = CorruptionSet(images, np.array([0, 1]), (1, 2, 3, 4, 5))
    first = driver._severity_view(cset, (3, 4, 5))
    assert first is driver._severity_view(cset, (3, 4, 5)) and first.severities == (3, 4, 5)
    assert driver._severity_view(cset, (5,)).severities == (5,)


def test_the_cpu_generation_is_the_first_processors_family_and_model(tmp_path, monkeypatch):
    """A virtual machine's model name ("AMD EPYC") can hide several generations whose float results differ;
    the x86 family and model numbers tell them apart, read from the first processor's entries."""
    from flatnas_bench.core import cores

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD   EPYC\n\nprocessor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n"
    )
    entries = cores._cpuinfo(info)
    assert (entries["cpu family"], entries["model"], entries["model name"]) == ("25", "17", "AMD EPYC")
    assert cores._cpuinfo(tmp_path / "absent") == {}
    monkeypatch.setattr(cores, "_cpuinfo", lambda: entries)
    assert (cores.cpu_model(), cores.cpu_generation()) == ("AMD EPYC", "family 25 model 17")
    monkeypatch.setattr(cores, "_cpuinfo", lambda: {"model name": "Apple M2"})  # no x86 numbers: left out
    assert cores.cpu_generation() == ""
