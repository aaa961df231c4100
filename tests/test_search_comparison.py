"""benchmarks/search_oracle.py, the anytime comparison of the loop's strategies: its curves on archs
whose answers are known, and one tiny end-to-end run writing the CSV, the table and the plots."""

from __future__ import annotations

import gzip
import importlib.util
import sys

import numpy as np
import pytest
from conftest import ROOT

from flatnas_bench.nb201.space import canonical_archs
from flatnas_bench.tables.readers import load_table, read_csv


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_oracle", ROOT / "benchmarks" / "search_oracle.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_oracle"] = module  # the worker pool pickles its functions by module name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(nb201_csv):
    return load_table(nb201_csv)


def test_single_curve_reports_the_test_accuracy_of_the_best_validation_arch(bench, table):
    oracle = bench.Oracle(bench.TASKS["cifar10-single"], table, None)
    archs = list(canonical_archs())[1000:1040]
    valid = table.values("cifar10_valid_acc_200ep", archs, fill="class")
    test = table.values("cifar10_test_acc_200ep", archs, fill="class")
    curve = oracle.curve(archs)
    for n in (1, 7, 40):
        assert curve[n - 1] == test[int(np.argmax(valid[:n]))]
    assert len(curve) == 40


def test_pair_curve_is_one_on_the_exhaustive_front_and_never_falls(bench, table):
    oracle = bench.Oracle(bench.TASKS["cifar10-pair"], table, None)
    live = [a for a in canonical_archs() if a.ops.count(0) == 0][:30]
    curve = oracle.curve(live)
    assert (np.diff(curve) >= -1e-12).all() and 0 < curve[-1] < 1
    from flatnas_bench.search.engine import exhaustive
    from flatnas_bench.search.objectives import LIVE_CONSTRAINT, make_constraint

    truth = exhaustive(oracle.objectives, [make_constraint(LIVE_CONSTRAINT)])
    assert oracle.curve(live + truth.front_archs)[-1] == pytest.approx(1.0)


def test_a_tiny_comparison_writes_its_csv_table_and_plots(bench, nb201_csv, tmp_path, monkeypatch):
    args = ["search_oracle.py", "--csv", str(nb201_csv), "--seeds", "0-1", "--budget", "30"]
    args += ["--tasks", "cifar10-single", "cifar100-pair", "--strategies", "random", "local"]
    args += ["--out", str(tmp_path), "--cache", str(tmp_path / "cache.jsonl")]
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    with gzip.open(tmp_path / "search_comparison_curves.csv.gz") as f:
        curves = read_csv(f)
    assert len(curves) == 2 * 2 * 2 * 30 and set(curves["strategy"]) == {"random", "local"}
    assert curves.loc[curves["task"] == "cifar10-single", "gpu_s"].notna().all()
    assert curves.loc[curves["task"] == "cifar100-pair", "gpu_s"].isna().all()
    table = (tmp_path / "search_comparison.md").read_text()
    assert "### cifar10-single" in table and "| local |" in table and "25 evals" in table
    assert (tmp_path / "search_comparison.png").stat().st_size > 10_000
    assert (tmp_path / "search_comparison_gpu.png").exists()
    again = (tmp_path / "cache.jsonl").read_text().count("\n")
    bench.main()  # every run comes from the cache
    assert (tmp_path / "cache.jsonl").read_text().count("\n") == again == 8
