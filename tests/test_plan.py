"""Run planning: the lightest / median / heaviest arch are timed, every job is interpolated by MACs, the
slots' makespan gives the wall time, and nothing is written to the table."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_SETTINGS, make_imagefolder, tiny_protocol
from typer.testing import CliRunner

from cli.main import app
from flatnas_bench.bench.driver import run_bench
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.plan import makespan, pick_archs, plan_bench
from flatnas_bench.nb201.space import sample_archs

CPU1 = ExecutorOptions(device="cpu", threads=1)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_makespan_deals_jobs_to_the_first_free_slot():
    assert makespan([3.0, 1.0, 1.0, 1.0], 1) == 6.0
    assert makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0  # slot 2 takes the three short jobs
    assert makespan([2.0, 2.0, 2.0], 2) == 4.0
    assert makespan([], 4) == 0.0


def test_the_lightest_median_and_heaviest_are_picked():
    assert pick_archs(["a", "b", "c", "d", "e"], [5.0, 1.0, 9.0, 3.0, 7.0]) == [1, 0, 2]
    assert pick_archs(["a"], [1.0]) == [0]


def test_plan_times_three_archs_and_estimates_the_run(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr("flatnas_bench.engine.train.cpu_bf16_supported", lambda: False)  # one precision
    archs = [str(a) for a in sample_archs(8, seed=0, unique=True)]
    table = tmp_path / "t.sqlite"
    plan = plan_bench(archs, tiny_protocol(), table, tiny_data, "serial", options=CPU1)
    assert not table.exists()  # planning writes nothing
    assert plan.jobs == 8 and plan.skipped == 0 and len(plan.job_s) == 8 and len(plan.timings) == 3
    flops = [t.flops_m for t in plan.timings]
    assert flops == sorted(flops) and all(t.step_s > 0 and t.rest_s > 0 for t in plan.timings)
    assert plan.steps == tiny_protocol().epochs * (120 // 32)  # 160 images less 40 for val, batch 32
    # every job's estimate lies within the timed extremes (interpolation, not extrapolation)
    timed = [t.candidate_s(plan.steps) for t in plan.timings]
    lo, hi = min(timed), max(timed)
    assert all(lo - 1e-9 <= s <= hi + 1e-9 for s in plan.job_s)
    assert plan.wall_s == pytest.approx(plan.setup_s + sum(plan.job_s))  # one slot: the jobs in a row
    assert plan.precision_wall_s == (("fp32", plan.wall_s),) and "training precision" not in plan.report()
    assert plan.table_bytes > 8 * 300  # a row holds an arch string, 20 numbers and a device label
    start = time.perf_counter()
    ran = run_bench(archs, tiny_protocol(), table, tiny_data, progress=False, options=CPU1)
    measured = time.perf_counter() - start
    assert ran.done == 8
    # loose: the machine under test may be loaded; the 30 % figure is measured on the real proxy run
    assert measured / 3 < plan.wall_s < measured * 3, (plan.wall_s, measured)
    again = plan_bench(archs, tiny_protocol(), table, tiny_data, "serial", options=CPU1)
    assert (again.jobs, again.skipped, again.wall_s, again.job_s) == (0, 8, 0.0, ())
    assert np.isfinite(plan.device_hours) and plan.device_hours > 0


def test_cli_plan_prints_the_estimate_and_writes_no_table(tmp_path, tiny_data, monkeypatch):
    """On a CPU with bf16 the plan times the steps in both precisions and says which is faster."""
    monkeypatch.setattr("flatnas_bench.engine.train.cpu_bf16_supported", lambda: True)
    sets = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    table = tmp_path / "t.sqlite"
    args = [
        "bench",
        "--data",
        str(tiny_data),
        "--protocol",
        "proxy",
        *sets,
        "--archs",
        "5",
        "--table",
        str(table),
    ]
    result = CliRunner().invoke(app, [*args, "--threads", "1", "--device", "cpu", "--plan"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("plan: 5 jobs (0 already in the table) under proxy ")
    assert sum("ms/step" in line for line in lines) == 3
    assert "estimated wall time" in lines[-2] and "core-hours" in lines[-2]
    verdict = re.fullmatch(
        r"training precision: bf16 (\d+) s, fp32 (\d+) s: (bf16|fp32) is (\d+\.\d\d)x faster here "
        r"\(this plan: fp32(; --precision bf16 to switch \(another protocol hash\))?\)",
        lines[-1],
    )
    assert verdict, lines[-1]
    assert float(verdict[4]) >= 1.0 and (verdict[3] == "bf16") == bool(verdict[5])
    assert not table.exists()
