"""``flatnas-bench bench`` and ``flatnas-bench table``: in process with typer's CliRunner, and as a real
subprocess that is SIGKILLed mid-run and resumed without losing or duplicating a row."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import CONV, SKIP, SKIP_TWIN, TINY_SETTINGS, make_imagefolder, tiny_protocol
from typer.testing import CliRunner

import cli.bench
import flatnas_bench.bench.executors
import flatnas_bench.bench.worker
import flatnas_bench.engine.train
from cli.main import app
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.results import RESULT_COLUMNS
from flatnas_bench.corruptions.generate import write_corruption_set
from flatnas_bench.engine.candidate import cpu_label
from flatnas_bench.engine.data import load_images
from flatnas_bench.nb201.space import sample_archs
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
MEASURED = [c for c in RESULT_COLUMNS if c not in ("train_sec", "eval_sec", "device")]
N_ARCHS = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLATNAS_CACHE", str(base / "cache"))
        yield {"data": make_imagefolder(base / "images"), "base": base}


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def bench_args(
    data: Path,
    table: Path,
    *extra: str,
    archs: tuple[str, str] = ("--archs", str(N_ARCHS)),
    executor="serial",
) -> list[str]:
    """``bench`` on the tiny dataset and protocol, serial with one thread: deterministic and quick. ``archs``
    is ``("--archs", N)`` or ``("--arch-file", F)``; options in ``extra`` come last and win."""
    sets = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    source = ["--data", str(data), "--protocol", "proxy", *sets, *archs]
    return [
        "bench",
        *source,
        "--table",
        str(table),
        "--executor",
        executor,
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def committed_rows(table: Path) -> int:
    try:
        with sqlite3.connect(table, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.fixture(scope="module")
def clean_table(env: dict[str, Path]) -> Path:
    table = env["base"] / "clean.sqlite"
    threads = torch.get_num_threads()
    result = invoke(*bench_args(env["data"], table))
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert f"{N_ARCHS} done, 0 failed, 0 already in" in result.output
    return table


def _bench_until_a_row(data: Path, table: Path, *extra: str, **kwargs) -> tuple[subprocess.Popen, list[str]]:
    """A real ``bench`` process (and its command), returned once its first row is committed."""
    command = [sys.executable, "-m", "cli.main", *bench_args(data, table, *extra, **kwargs)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while committed_rows(table) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, command


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(env, clean_table):
    table = env["base"] / "killed.sqlite"
    proc, command = _bench_until_a_row(env["data"], table)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()

    with ResultStore(table) as store:  # opens for writing: not corrupt, and the kill released the lock
        frame = store.to_frame()
    assert 1 <= len(frame) < N_ARCHS, "the kill must land after the first commit and before the end"
    assert not frame.duplicated(["arch", "protocol_hash", "seed"]).any()
    survivors = len(frame)

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N_ARCHS - survivors} done, 0 failed, {survivors} already in" in resumed.stdout

    with ResultStore(table, readonly=True) as store, ResultStore(clean_table, readonly=True) as clean:
        got = store.to_frame().set_index("arch").sort_index()
        want = clean.to_frame().set_index("arch").sort_index()
    assert len(got) == N_ARCHS and got.index.is_unique
    pd.testing.assert_frame_equal(got[MEASURED[1:]], want[MEASURED[1:]])  # same numbers as a clean run


def test_sigterm_finishes_the_candidate_in_flight_then_exits_130(env, clean_table):
    table = env["base"] / "terminated.sqlite"
    proc, _ = _bench_until_a_row(env["data"], table)
    at_signal = committed_rows(table)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert f"interrupted: finished rows are in {table}; run the same command again to resume" in output
    rows = committed_rows(table)
    assert at_signal <= rows <= at_signal + 1 < N_ARCHS + 1  # the candidate in flight, and no new one
    assert rows < N_ARCHS, "the signal must land before the end"
    with ResultStore(table, readonly=True) as store, ResultStore(clean_table, readonly=True) as clean:
        got = store.to_frame().set_index("arch").sort_index()
        want = clean.to_frame().set_index("arch").loc[got.index]
    pd.testing.assert_frame_equal(got[MEASURED[1:]], want[MEASURED[1:]])  # finished, not cut short


def test_sigterm_to_the_process_group_lets_local_workers_finish_their_candidates(env, clean_table):
    # what a scheduler does (SLURM signals the whole job): the workers get the signal too, and ignore it
    table = env["base"] / "group-terminated.sqlite"
    proc, _ = _bench_until_a_row(env["data"], table, "--workers", "2", executor="local")
    at_signal = committed_rows(table)
    os.killpg(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    rows = committed_rows(table)
    assert (
        at_signal + 2 <= rows < N_ARCHS
    )  # both candidates in flight finished (more only if one ended first)
    with ResultStore(table, readonly=True) as store, ResultStore(clean_table, readonly=True) as clean:
        got = store.to_frame().set_index("arch").sort_index()
        want = clean.to_frame().set_index("arch").loc[got.index]
    assert (got["error"].isna()).all()  # no candidate was cut short into a failed row
    pd.testing.assert_frame_equal(got[MEASURED[1:]], want[MEASURED[1:]])  # each finished as in a clean run


def test_table_show_and_export(env, clean_table, tmp_path):
    shown = invoke("table", "show", str(clean_table), "--sort", "val_acc", "--limit", "3")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("protocol proxy ") and f"{N_ARCHS} rows (dataset cifar10)" in lines[0]
    assert lines[1] == f"{N_ARCHS} rows: {N_ARCHS} ok, 0 failed"
    assert lines[2].split()[:3] == ["arch", "seed", "val_acc"] and len(lines) == 3 + 3
    with ResultStore(clean_table, readonly=True) as store:
        best = store.to_frame().sort_values("val_acc", ascending=False, kind="stable")["arch"].iloc[0]
    assert lines[3].split()[0] == best
    for name in ("out.csv", "out.parquet"):
        exported = invoke("table", "export", str(clean_table), str(tmp_path / name))
        assert exported.exit_code == 0 and f"wrote {N_ARCHS} rows" in exported.output
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert len(frame) == N_ARCHS and list(frame.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    pd.testing.assert_frame_equal(
        read_csv(tmp_path / "out.csv")[["arch", "val_acc"]], frame[["arch", "val_acc"]]
    )


def test_rerun_skips_everything(env, clean_table):
    again = invoke(*bench_args(env["data"], clean_table))
    assert again.exit_code == 0 and f"0 done, 0 failed, {N_ARCHS} already in" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--archs", "2", "--arch-file", "x.txt"], "exactly one of --archs N or --arch-file F"),
        (["--seed", "1", "--seeds", "0,1"], "give --seed or --seeds, not both"),
        (["--seeds", "0,x"], "not a comma-separated list"),
        (["--set", "epochs"], "is not key=value"),
        (["--set", "epochs=1.5"], "must be int"),
        (["--set", "colour=red"], "unknown protocol field(s) colour"),
        (["--executor", "serial", "--workers", "2"], "one job at a time"),
    ],
)
def test_bench_user_mistakes_are_one_line_exit_2(env, tmp_path, args, message):
    table = tmp_path / "t.sqlite"
    argv = bench_args(env["data"], table)
    if "--archs" in args or "--executor" in args:  # replace the defaults the mistake is about
        for flag in ("--archs", "--executor"):
            if flag in args:
                k = argv.index(flag)
                del argv[k : k + 2]
    result = invoke(*argv, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_table_user_mistakes_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_text("arch,val_acc\n")
    for args, message in (
        (["table", "show", str(tmp_path / "missing.sqlite")], "no benchmark table"),
        (["table", "show", str(bad)], "is not a SQLite file"),
        (["table", "export", str(bad), str(tmp_path / "o.csv")], "is not a SQLite file"),
        (["bench", "--data", str(tmp_path), "--protocol", "nope", "--archs", "1", "--table", "t"], "nope"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert bad.read_text() == "arch,val_acc\n"


def test_a_redirected_bench_logs_a_line_at_once_and_one_per_candidate(env, tmp_path):
    """``flatnas-bench bench ... > log 2>&1``: progress lines reach the file while the run goes on."""
    table = tmp_path / "logged.sqlite"
    argv = [arg for arg in bench_args(env["data"], table) if arg != "--no-progress"]
    argv[argv.index("--archs") + 1] = "3"  # a short run: the lines matter, not the count
    log = tmp_path / "log"
    with open(log, "w") as out:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, stdout=out, stderr=out)
        first = None
        while proc.poll() is None and time.monotonic() - start < 60:
            if " bench proxy " in log.read_text():
                first = time.monotonic() - start
                break
            time.sleep(0.05)
        assert proc.wait(timeout=600) == 0, log.read_text()  # generous: CI machines may be loaded
    text = log.read_text()
    assert first is not None and first < 60, text
    print(f"first progress line after {first:.1f} s")
    assert sum(line.split(" ", 2)[1] == "done" for line in text.splitlines() if " " in line) == 3
    assert "3/3 done, 0 failed" in text and text.rstrip().endswith("s)")


def write_arch_file(path: Path, *archs) -> Path:
    path.write_text("".join(f"{a}\n" for a in archs))
    return path


def test_bench_options_reach_the_rows(env, tmp_path, monkeypatch):
    """``--arch-file`` (an isomorph pair counts once), ``--seeds``, ``--set``, ``--corruptions DIR``,
    ``--threads``, ``--device``, ``--precision`` and ``--deterministic`` each show in what is stored."""
    test = load_images(env["data"], "cifar10").test
    corruptions = tmp_path / "cifar-c"
    write_corruption_set(test.x[:4], test.y[:4], corruptions, ["fog", "contrast"], [1, 2], seed=0)
    numerics = []
    real = flatnas_bench.bench.worker.Worker.__init__

    def record(self, context, device, options):
        numerics.append((device, options))
        real(self, context, device, options)

    monkeypatch.setattr(flatnas_bench.bench.worker.Worker, "__init__", record)
    table = tmp_path / "t.sqlite"
    archs = ("--arch-file", str(write_arch_file(tmp_path / "archs.txt", SKIP, SKIP_TWIN)))
    extra = ["--seeds", "0,1", "--set", "epochs=1", "--set", "corruption_subset=4", "--threads", "2"]
    extra += ["--corruptions", str(corruptions), "--device", "cpu", "--precision", "fp32", "--deterministic"]
    result = invoke(*bench_args(env["data"], table, *extra, archs=archs))
    assert result.exit_code == 0, result.output
    assert (
        "2 done, 0 failed, 0 already in" in result.output
        and "1 isomorphic duplicates dropped" in result.output
    )
    protocol = tiny_protocol(epochs=1, corruption_subset=4)
    assert protocol.hash != tiny_protocol().hash and f"protocol proxy {protocol.hash}" in result.output
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
        (card,) = store.protocols()["card"]
    assert (card["epochs"], card["corruption_subset"], card["precision"]) == (1, 4, "fp32")
    assert (frame["protocol_hash"] == protocol.hash).all() and frame["error"].isna().all()
    assert list(zip(frame["arch"], frame["seed"], strict=True)) == [
        (str(SKIP.canonical()), 0),
        (str(SKIP.canonical()), 1),
    ]
    by_seed = frame.set_index(["arch", "seed"]).sort_index()
    assert (by_seed.xs(0, level="seed")["train_loss"] != by_seed.xs(1, level="seed")["train_loss"]).all()
    assert set(frame["device"]) == {f"cpu (2 threads, {cpu_label()})"}
    assert {json.dumps(sorted(json.loads(c))) for c in frame["corr_per"]} == {json.dumps(["contrast", "fog"])}
    assert frame["corr_acc_mean"].notna().all()
    # the run's worker got the options as one object: deterministic numerics, 2 threads
    assert numerics == [("cpu", ExecutorOptions(device="cpu", threads=2, deterministic=True))]


def test_retry_failed_evaluates_failed_rows_again_on_the_local_executor(env, tmp_path):
    table = tmp_path / "t.sqlite"
    protocol = tiny_protocol()
    with ResultStore(table) as store:
        store.add_protocol(protocol)
        key = {"arch": CONV, "protocol": protocol.name, "protocol_hash": protocol.hash, "seed": 0}
        store.add({**key, "error": "diverged: loss nan at epoch 1"})
    archs = ("--arch-file", str(write_arch_file(tmp_path / "archs.txt", CONV)))
    skipped = invoke(*bench_args(env["data"], table, archs=archs))
    assert "0 done, 0 failed, 1 already in" in skipped.output, skipped.output
    retried = invoke(
        *bench_args(env["data"], table, "--retry-failed", "--workers", "1", archs=archs, executor="local")
    )
    assert retried.exit_code == 0, retried.output
    assert "1 done, 0 failed, 0 already in" in retried.output and "; local x1;" in retried.output
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
    assert len(frame) == 1 and frame["error"].isna().all() and frame["val_acc"].notna().all()
    # the worker process kept --threads 1, and the row names the CPU model (float results depend on both)
    assert frame["device"].iloc[0] == f"cpu (1 thread, {cpu_label()})"


def test_bf16_on_a_cpu_without_it_is_refused_before_any_row_is_written(env, tmp_path, monkeypatch):
    monkeypatch.setattr(flatnas_bench.engine.train, "cpu_bf16_supported", lambda: False)
    table = tmp_path / "t.sqlite"
    for extra in (["--precision", "bf16"], ["--set", "precision=bf16"]):
        result = invoke(*bench_args(env["data"], table, "--device", "cpu", *extra))
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: precision 'bf16' needs a CUDA device or a CPU with bf16")
        assert len(result.output.strip().splitlines()) == 1
    assert committed_rows(table) == 0


def test_bf16_on_a_cpu_with_it_trains_under_its_own_hash(env, tmp_path):
    """``--precision bf16`` on a CPU with native bf16: the rows go under the bf16 protocol's own hash."""
    if not flatnas_bench.engine.train.cpu_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    table = tmp_path / "t.sqlite"
    result = invoke(*bench_args(env["data"], table, "--device", "cpu", "--precision", "bf16", "--archs", "1"))
    assert result.exit_code == 0, result.output
    bf16 = tiny_protocol(precision="bf16")
    assert bf16.hash != tiny_protocol().hash and f"protocol proxy {bf16.hash}" in result.output
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
        (card,) = store.protocols()["card"]
    assert (card["precision"], card["numerics"]) == ("bf16", "cpu") and frame["error"].isna().all()
    assert set(frame["protocol_hash"]) == {bf16.hash} and frame["val_acc"].notna().all()


def test_workers_per_gpu_sets_the_workers_of_each_gpu(env, tmp_path, monkeypatch):
    """Without a GPU here: the executor the CLI builds, on two pretend GPUs."""
    built = {}

    def fake_run_bench(archs, protocol, table, data, executor, options, **rest):
        built["executor"] = flatnas_bench.bench.executors.get_executor(executor, options)
        raise ConfigError("stopped before training")

    monkeypatch.setattr(cli.bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    argv = bench_args(
        env["data"], tmp_path / "t.sqlite", "--device", "cuda", "--workers-per-gpu", "3", executor="local"
    )
    assert "stopped before training" in invoke(*argv).output
    executor = built["executor"]
    assert executor.slots == 6 and executor.devices == ["cuda:0", "cuda:1"] * 3


@pytest.fixture
def two_protocol_table(tmp_path) -> tuple[Path, dict[str, dict[str, float]]]:
    """A table of two protocols with known val_acc per arch: {protocol hash: {arch: val_acc}}."""
    table, known = tmp_path / "two.sqlite", {}
    with ResultStore(table) as store:
        for protocol, accs in (
            (tiny_protocol(), (55.0, 70.0, 40.0, 65.0, 60.0)),
            (tiny_protocol(epochs=1), (30.0, 20.0)),
        ):
            store.add_protocol(protocol)
            archs = [str(a) for a in sample_archs(len(accs), seed=len(accs), unique=True)]
            known[protocol.hash] = dict(zip(archs, accs, strict=True))
            for arch, acc in known[protocol.hash].items():
                store.add(
                    {
                        "arch": arch,
                        "protocol": protocol.name,
                        "protocol_hash": protocol.hash,
                        "seed": 0,
                        "val_acc": acc,
                    }
                )
    return table, known


def test_table_show_filters_sorts_and_limits(two_protocol_table):
    table, known = two_protocol_table
    first, second = list(known)
    shown = invoke("table", "show", str(table), "--protocol", first[:6], "--sort", "val_acc", "--limit", "3")
    assert shown.exit_code == 0, shown.output
    header, *rows = shown.output.splitlines()[3:]
    assert header.split()[:3] == ["arch", "seed", "val_acc"] and "protocol" not in header
    want = sorted(known[first].items(), key=lambda kv: -kv[1])[:3]
    assert [(r.split()[0], float(r.split()[2])) for r in rows] == want
    everything = invoke("table", "show", str(table)).output.splitlines()[3:]
    assert everything[0].split()[:2] == ["arch", "protocol"] and len(everything) == 1 + 7
    only_second = invoke("table", "show", str(table), "--protocol", second[:6]).output.splitlines()[3:]
    assert {r.split()[0] for r in only_second[1:]} == set(known[second])


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_table_export_of_one_protocol(two_protocol_table, tmp_path, name):
    table, known = two_protocol_table
    second = list(known)[1]
    exported = invoke("table", "export", str(table), str(tmp_path / name), "--protocol", second)
    assert exported.exit_code == 0 and "wrote 2 rows" in exported.output, exported.output
    frame = read_csv(tmp_path / name) if name.endswith(".csv") else pd.read_parquet(tmp_path / name)
    assert dict(zip(frame["arch"], frame["val_acc"], strict=True)) == known[second]
    assert set(frame["protocol_hash"]) == {second}


def test_bench_save_weights_keeps_every_new_rows_network(env, tmp_path):
    """``--save-weights DIR``: one weights file per new row, which reproduces the row's test accuracy."""
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.engine.train import predict
    from flatnas_bench.engine.weights import load_weights, weights_path

    table, weights = tmp_path / "t.sqlite", tmp_path / "weights"
    result = invoke(*bench_args(env["data"], table, "--seeds", "0,1", "--save-weights", str(weights)))
    assert result.exit_code == 0, result.output
    with ResultStore(table, readonly=True) as store:
        frame = store.to_frame()
    protocol = tiny_protocol()
    assert len(list((weights / protocol.hash).glob("*.pt"))) == len(frame) == 2 * N_ARCHS
    data = DeviceData.for_protocol(env["data"], protocol, "cpu")
    row = frame.iloc[-1]
    model = load_weights(
        weights_path(weights, row["arch"], protocol, int(row["seed"])), row["arch"], protocol, 10
    )
    correct, _ = predict(model, data.test_x, data.test_y, transform=data.normalize)
    assert 100.0 * correct.float().mean().item() == pytest.approx(row["test_acc"], abs=1e-9)
