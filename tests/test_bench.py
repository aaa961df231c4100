"""The bench driver: isomorphs are one candidate, done pairs are skipped, failed rows wait for
--retry-failed, every row lands once. Runs real training on a tiny synthetic ImageFolder dataset."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import CONV, MIXED, SKIP, SKIP_TWIN, make_imagefolder, tiny_protocol

from flatnas_bench.bench.driver import (
    balanced_subset,
    parse_settings,
    read_arch_file,
    resolve_protocol,
    run_bench,
    unique_archs,
)
from flatnas_bench.bench.executor import Executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.worker import RunContext, failed_row
from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import ResultStore


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_dedupes_isomorphs_and_resumes_without_duplicates(tmp_path, tiny_data):
    table = tmp_path / "t.sqlite"
    archs = [CONV, str(SKIP_TWIN), CONV, str(SKIP)]  # 4 inputs, 2 candidates
    # batch 8: enough steps (30) for BatchNorm's running statistics to settle, so eval mode learns too
    protocol = tiny_protocol(batch_size=8)
    first = run_bench(
        archs[:3], protocol, table, tiny_data, seeds=(0,), progress=False, options=ExecutorOptions(threads=1)
    )
    assert (first.jobs, first.isomorphs, first.skipped, first.done, first.failed) == (2, 1, 0, 2, 0)
    again = run_bench(
        archs, protocol, table, tiny_data, seeds=(0, 1), progress=False, options=ExecutorOptions(threads=1)
    )
    assert (again.jobs, again.isomorphs, again.skipped, again.done) == (4, 2, 2, 2)
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
    assert sorted(zip(frame["arch"], frame["seed"], strict=True)) == sorted(
        [(CONV, 0), (CONV, 1), (str(SKIP.canonical()), 0), (str(SKIP.canonical()), 1)]
    )
    assert frame["error"].isna().all()
    conv = frame[frame["arch"] == CONV].set_index("seed")
    assert conv.loc[0, "val_acc"] > 10.0  # colour classes are learnable: above chance (10 %)
    assert ((frame["flatness_r"] >= 0) & (frame["flatness_r"] <= 100)).all()


class _Failing(Executor):
    """Returns a failed row for every job without training (the driver's bookkeeping under test)."""

    name = "failing"

    def run(
        self, jobs: Sequence[Any], context: RunContext, on_start: Any = None, stop: Any = None
    ) -> Iterator[dict[str, Any]]:
        for job in jobs:
            yield failed_row(job, FloatingPointError("loss nan at epoch 1 step 1"), "cpu")


class _SignalledWhileRunning(_Failing):
    """Receives ``signals`` SIGINTs while its first job runs, then deals jobs until ``stop()`` says no
    (a real executor's contract); every job's row is a failed row, so no training is needed."""

    def __init__(self, signals: int) -> None:
        self.signals, self.dealt = signals, 0

    def run(self, jobs, context, on_start=None, stop=None):
        for k, job in enumerate(jobs):
            if stop():
                return
            self.dealt += 1
            if k == 0:
                for _ in range(self.signals):
                    os.kill(os.getpid(), signal.SIGINT)  # handled before the next line runs
            yield failed_row(job, FloatingPointError("loss nan at epoch 1 step 1"), "cpu")


@pytest.mark.parametrize("signals, stored", [(1, 1), (2, 0)])
def test_an_interrupt_finishes_the_jobs_in_flight_and_a_second_aborts(tmp_path, tiny_data, signals, stored):
    table = tmp_path / "t.sqlite"
    archs, executor = [CONV, MIXED, str(SKIP)], _SignalledWhileRunning(signals)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run_bench(archs, tiny_protocol(), table, tiny_data, executor=executor, progress=False)
    assert executor.dealt == 1  # nothing dealt after the interrupt
    with ResultStore(table, readonly=True) as store:
        assert store.counts()["rows"] == stored  # the job in flight is committed, unless aborted
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored
    rerun = run_bench(archs, tiny_protocol(), table, tiny_data, executor=_Failing(), progress=False)
    assert (rerun.skipped, rerun.failed) == (stored, 3 - stored)  # resumes where it stopped


def test_failed_rows_are_kept_and_retried_only_when_asked(tmp_path, tiny_data):
    table = tmp_path / "t.sqlite"
    failed = run_bench([CONV, MIXED], tiny_protocol(), table, tiny_data, executor=_Failing(), progress=False)
    assert (failed.done, failed.failed) == (0, 2)
    with ResultStore(table, readonly=True) as store:
        assert store.to_frame()["error"].tolist() == ["FloatingPointError: loss nan at epoch 1 step 1"] * 2
    rerun = run_bench(
        [CONV, MIXED], tiny_protocol(), table, tiny_data, progress=False, options=ExecutorOptions(threads=1)
    )
    assert (rerun.skipped, rerun.done, rerun.failed) == (2, 0, 0)
    retry = run_bench(
        [CONV],
        tiny_protocol(),
        table,
        tiny_data,
        retry_failed=True,
        progress=False,
        options=ExecutorOptions(threads=1),
    )
    assert (retry.skipped, retry.done) == (0, 1)
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame().set_index("arch")
        assert len(frame) == 2 and store.counts() == {"rows": 2, "ok": 1, "failed": 1}
    assert pd.isna(frame.loc[CONV, "error"]) and frame.loc[MIXED, "error"].startswith("FloatingPoint")


def test_a_protocol_change_is_a_new_key(tmp_path, tiny_data):
    table = tmp_path / "t.sqlite"
    run_bench([CONV], tiny_protocol(), table, tiny_data, progress=False, options=ExecutorOptions(threads=1))
    other = run_bench(
        [CONV], tiny_protocol(epochs=1), table, tiny_data, progress=False, options=ExecutorOptions(threads=1)
    )
    assert other.done == 1
    with ResultStore(table, readonly=True) as store:
        assert len(store.protocols()) == 2 and len(store) == 2


def test_bench_with_generated_corruptions(tmp_path, tiny_data):
    table = tmp_path / "t.sqlite"
    run_bench(
        [CONV],
        tiny_protocol(corruption_subset=8),
        table,
        tiny_data,
        progress=False,
        options=ExecutorOptions(threads=1),
    )
    with ResultStore(table, readonly=True) as store:
        row = store.to_frame().iloc[0]
    assert row["error"] is None and 0 <= row["corr_acc_mean"] <= 100 and row["corr_per"].startswith("{")


def test_generated_corruptions_draw_a_class_balanced_subset():
    labels = np.repeat(np.arange(10), 50)  # a folder-layout test set: class by class
    pick = balanced_subset(labels, 20)
    assert np.bincount(labels[pick]).tolist() == [2] * 10 and (np.diff(pick) > 0).all()


def test_user_mistakes_are_config_errors(tmp_path, tiny_data):
    with pytest.raises(DataError, match="no cifar10 data"):
        run_bench([CONV], tiny_protocol(), tmp_path / "t.sqlite", tmp_path / "missing", progress=False)
    assert not (tmp_path / "t.sqlite").exists()
    with pytest.raises(ConfigError, match="no archs"):
        run_bench([], tiny_protocol(), tmp_path / "t.sqlite", tiny_data, progress=False)
    with pytest.raises(ConfigError, match="unknown executor"):
        run_bench([CONV], tiny_protocol(), tmp_path / "t.sqlite", tiny_data, executor="slurm", progress=False)


def test_settings_are_typed_by_the_protocol():
    assert parse_settings(["epochs=3", "sam=none", "lr=1", "nesterov=false"]) == {
        "epochs": 3,
        "sam": "none",
        "lr": 1,
        "nesterov": False,
    }
    p = resolve_protocol("proxy", parse_settings(["epochs=3", "lr=1", "sam=none"]))
    assert (p.epochs, p.lr, p.sam) == (3, 1.0, "none") and isinstance(p.lr, float)
    assert p.hash != resolve_protocol("proxy").hash
    for bad, match in (("epochs=1.5", "must be int"), ("nesterov=2", "must be bool"), ("bogus=1", "unknown")):
        with pytest.raises(ConfigError, match=match):
            resolve_protocol("proxy", parse_settings([bad]))
    with pytest.raises(ConfigError, match="key=value"):
        parse_settings(["epochs"])


def test_arch_files_and_canonical_dedup(tmp_path):
    path = tmp_path / "archs.txt"
    path.write_text(f"# picks\n{CONV}\n\n{SKIP_TWIN}  # an isomorph of SKIP\n{SKIP}\n")
    archs = read_arch_file(path)
    assert unique_archs(archs) == ([CONV, str(SKIP.canonical())], 1)
    path.write_text("|nor_conv_3x3~0|+|bogus|\n")
    with pytest.raises(ConfigError, match="arch 1"):
        read_arch_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_arch_file(tmp_path / "missing.txt")


def test_cuda_runs_default_to_bf16_and_every_numerics_and_precision_has_its_own_key(monkeypatch):
    import flatnas_bench.engine.train as train
    from flatnas_bench.bench.driver import run_protocol
    from flatnas_bench.bench.executors import get_executor
    from flatnas_bench.core.protocol import numerics_for

    proxy = resolve_protocol("proxy")
    on_cpu, on_gpu = run_protocol(proxy, "cpu"), run_protocol(proxy, "cuda-fast")
    assert on_cpu == proxy and on_cpu.hash == "7ad30ccad8e7"  # CPU fp32 rows keep the registered key
    assert on_gpu.precision == "bf16" and on_gpu.hash != proxy.hash
    assert run_protocol(proxy.replace(precision="bf16"), "cuda-fast").precision == "bf16"
    # CPU exact, CUDA deterministic, CUDA fast, each in both precisions: six keys, as the workers run
    monkeypatch.setattr(train, "cpu_bf16_supported", lambda: True)
    keys = {
        (device, deterministic, precision): run_protocol(
            proxy, numerics_for(device, deterministic), precision
        ).hash
        for device in ("cpu", "cuda", "cuda:1")
        for deterministic in (False, True)
        for precision in ("fp32", "bf16")
    }
    assert len(set(keys.values())) == 6 and keys["cpu", True, "fp32"] == keys["cpu", False, "fp32"]
    assert keys["cuda", True, "bf16"] == keys["cuda:1", True, "bf16"] != keys["cuda", False, "bf16"]
    # an executor's numerics follow its device and --deterministic
    executor = get_executor("serial", ExecutorOptions(device="cuda:1", deterministic=True))
    assert (
        executor.numerics == "cuda-deterministic" and get_executor("serial", device="cpu").numerics == "cpu"
    )
    # refused at once on a CPU without bf16: raised in a worker it would be stored as a failed row
    monkeypatch.setattr(train, "cpu_bf16_supported", lambda: False)
    for asked in (proxy.replace(precision="bf16"), proxy):
        with pytest.raises(ConfigError, match="precision 'bf16' needs a CUDA device or a CPU with bf16"):
            run_protocol(asked, "cpu", precision="bf16" if asked is proxy else None)


def test_the_bundled_rows_keep_their_key_under_a_cpu_run():
    """A CPU bench of the bundled protocol today keys its rows as the 0.3 table did (a run resumes it)."""

    from flatnas_bench.bench.driver import run_protocol
    from flatnas_bench.bench.executors import get_executor
    from flatnas_bench.tables.bundled import MEASURED_UNDER, bundled_table_path

    stored = set(read_csv(bundled_table_path(), usecols=["protocol_hash"])["protocol_hash"])
    for name in ("serial", "local"):
        executor = get_executor(name, device="cpu", workers=1, deterministic=True)
        assert {run_protocol(resolve_protocol(MEASURED_UNDER), executor.numerics).hash} == stored


def test_the_row_says_how_cuda_computed():
    from flatnas_bench.engine.train import configure_numerics, numerics_label

    before = torch.are_deterministic_algorithms_enabled()
    configure_numerics("cpu", deterministic=True)  # CPU is exact by seed already: nothing to switch
    assert torch.are_deterministic_algorithms_enabled() == before and numerics_label("cpu") == ""


def test_save_weights_keeps_each_rows_network_and_it_measures_the_same(tmp_path, tiny_data):
    from flatnas_bench.core.errors import ModelFileError
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.engine.train import predict
    from flatnas_bench.engine.weights import load_weights, weights_path

    protocol = tiny_protocol(batch_size=8)
    table, weights = tmp_path / "t.sqlite", tmp_path / "weights"
    run_bench([CONV, MIXED], protocol, table, tiny_data, seeds=(0, 1), progress=False,
              options=ExecutorOptions(threads=1), save_weights=weights)  # fmt: skip
    files = sorted(p.name for p in (weights / protocol.hash).iterdir())
    assert len(files) == 4 and all(f.endswith(".pt") for f in files)
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
    data = DeviceData.for_protocol(tiny_data, protocol, "cpu")
    for row in frame.itertuples():
        model = load_weights(weights_path(weights, row.arch, protocol, row.seed), row.arch, protocol, 10)
        correct, _ = predict(model, data.test_x, data.test_y, transform=data.normalize)
        assert 100.0 * correct.float().mean().item() == pytest.approx(row.test_acc, abs=1e-9)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_weights(weights_path(weights, CONV, protocol, 0), MIXED, protocol, 10)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a weights file")
    with pytest.raises(ModelFileError, match="not a weights file"):
        load_weights(broken, CONV, protocol, 10)
