"""The benchmark table and surrogate shipped in the package: they load with the documented schema and row
count, hold the archs the issue asks for, and make ``search`` and ``query`` work with no data arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from flatnas_bench.bench.driver import read_arch_file
from flatnas_bench.core.metric_names import metric_name
from flatnas_bench.nb201.space import Arch
from flatnas_bench.tables.bundled import (
    PROTOCOL,
    SURROGATE_TARGETS,
    bundled_arch_file,
    bundled_surrogate_dir,
    bundled_table_path,
    load_bundled_table,
)
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import STORE_COLUMNS

ALL_CONV = Arch.from_ops((3, 3, 3, 3, 3, 3))
ALL_SKIP = Arch.from_ops((1, 1, 1, 1, 1, 1))
NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return read_csv(bundled_table_path())


def test_table_schema_and_row_count(frame: pd.DataFrame) -> None:
    # a `table export` of the 0.3 build: every store column, in order, then the protocol card's dataset;
    # each arch with seeds 0 and 1
    assert tuple(frame.columns) == (*STORE_COLUMNS, "dataset") and (frame["dataset"] == "cifar10").all()
    archs = read_arch_file(bundled_arch_file())
    assert len(archs) == 503 and len(frame) == 2 * 503
    assert frame["error"].isna().all()
    assert (frame["protocol"] == PROTOCOL).all() and frame["protocol_hash"].nunique() == 1
    assert not frame.duplicated(["arch", "seed"]).any()
    seeds = frame.groupby("arch")["seed"].apply(frozenset)
    assert set(seeds.index) == set(archs) and set(seeds) == {frozenset({0, 1})}
    assert (frame["device"] == "cpu (1 thread, AMD EPYC)").all()  # reproducible with --threads 1


def test_table_holds_distinct_canonical_archs_and_the_required_ones(frame: pd.DataFrame) -> None:
    archs = [Arch.from_str(s) for s in frame["arch"].unique()]
    assert all(a == a.canonical() for a in archs)
    assert len({a.iso_key for a in archs}) == len(archs) >= 500
    present = set(frame["arch"])
    for required in (ALL_CONV, ALL_SKIP, Arch.from_str(NB201_BEST)):
        assert str(required.canonical()) in present


def test_table_numbers_are_sane(frame: pd.DataFrame) -> None:
    from flatnas_bench.nb201.encodings import live_route_counts

    dead = live_route_counts(frame["arch"]) == 0
    assert frame.loc[dead, "arch"].nunique() == 1  # one sampled cell has no live input-to-output route
    for column in ("val_acc", "test_acc", "corr_acc_mean"):
        assert np.allclose(frame.loc[dead, column], 10.0), column  # it sits at chance ...
        assert (frame.loc[~dead, column] > 30.0).all(), column  # every live cell learned something
    assert (frame.loc[dead, "flatness_r"] == 0.0).all()  # ... and no weight noise can move it
    assert frame["flatness_r"].between(0.0, 100.0).all() and (frame.loc[~dead, "flatness_r"] > 0).all()
    conv = frame.loc[frame["arch"] == str(ALL_CONV), "val_acc"].mean()
    assert conv > frame["val_acc"].median()  # conv-heavy cells beat the typical cell
    per = json.loads(frame["corr_per"].iloc[0])
    assert len(per) == 15


def test_loads_through_the_table_api() -> None:
    table = load_bundled_table()
    assert len(table) == 503
    assert metric_name("cifar10", "flatness_r", PROTOCOL) in table.metrics
    assert len(table.per_seed()) == 2 * 503
    raw = read_csv(bundled_table_path())
    arch = raw["arch"].iloc[0]  # every arch has two seeds: the table holds their mean
    rows = raw[raw["arch"] == arch]
    assert table.get(arch, "val_acc") == pytest.approx(rows["val_acc"].mean(), rel=1e-12)
    assert table.get(arch, "n_seeds") == 2
    # corr_acc_rel is a stored column: corruption / clean test accuracy of each row
    np.testing.assert_allclose(raw["corr_acc_rel"], raw["corr_acc_mean"] / raw["test_acc"], rtol=1e-12)
    assert table.get(arch, "corr_acc_rel") == pytest.approx(rows["corr_acc_rel"].mean(), rel=1e-12)


def test_surrogate_loads_and_predicts_every_target() -> None:
    from surrogates import load_surrogate

    model = load_surrogate(bundled_surrogate_dir())
    assert model.targets == [metric_name("cifar10", t, PROTOCOL) for t in SURROGATE_TARGETS]
    report = model.cv_report
    assert (report["folds"] == 5).all() and report[
        ["kendall_tau", "spearman_rho", "r2", "rmse"]
    ].notna().all().all()
    # every target carries its noise ceiling from the 503 archs' two seeds
    assert (report["ceiling_archs"] == 503).all()
    assert report[["ceiling_kendall", "attainable_kendall"]].notna().all().all()
    out = model.predict([Arch.from_str(NB201_BEST)])
    assert out.notna().all().all()


def _run(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=300, check=False
    )
    return result, time.perf_counter() - start


def test_query_with_no_data_arguments_runs_in_seconds() -> None:
    result, seconds = _run("query", NB201_BEST, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert record["arch"] == NB201_BEST and record["params_m"] == pytest.approx(1.073466)
    assert seconds < 30  # about 2 s on an idle core; generous for loaded CI machines


def test_search_with_no_arguments_prints_pareto_picks_in_seconds() -> None:
    result, seconds = _run("search")
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in result.stdout and "on the front" in result.stdout
    assert result.stdout.count("|+|") >= 1  # at least one arch string printed
    assert seconds < 60  # about 5 s on an idle core
