"""The results-and-metrics layer on real tables: the name grammar and its resolver, the derived metrics
(``corr_acc_rel``, ``corr_acc_resid``), per-seed rows and seed counts, vectorised lookups with an explicit
fill rule, every registered objective in search and loop, and pymoo ask/tell with values measured
outside."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from helpers import linear_fit

from flatnas_bench.core.errors import TableError
from flatnas_bench.core.metric_names import MetricName, metric_name, resolve_metric
from flatnas_bench.core.results import complete_row, corr_acc_rel, residual_metric
from flatnas_bench.nb201.space import Arch, canonical_archs, iso_class
from flatnas_bench.search.api import run_search
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import Search, SearchConfig, exhaustive
from flatnas_bench.search.evaluators import TableOracle
from flatnas_bench.search.flatnas import FlatNAS
from flatnas_bench.search.loop import LoopConfig, run_loop
from flatnas_bench.search.objectives import describe_objectives, make_objectives, registered
from flatnas_bench.tables.bundled import bundled_table_path, load_bundled_table
from flatnas_bench.tables.readers import load_table, read_csv
from flatnas_bench.tables.table import BenchTable

CONV = Arch((3,) * 6)
ONE_SEED_FAILED = "diverged: loss nan at epoch 2 step 13"


@pytest.fixture(scope="module")
def bundled() -> BenchTable:
    return load_bundled_table()


@pytest.fixture(scope="module")
def nb201(nb201_csv) -> BenchTable:
    return load_table(nb201_csv)


# --- the grammar --------------------------------------------------------------------------------------


def test_every_real_metric_name_parses_and_formats_back(nb201, bundled):
    for name in (*nb201.metrics, *bundled.metrics):
        assert str(MetricName.parse(name)) == name
    assert MetricName.parse("cifar10_valid_test_acc_200ep") == MetricName(
        "cifar10_valid", "test_acc", "200ep"
    )
    assert MetricName.parse("cifar10_valid_train_sec_per_epoch") == MetricName(
        "cifar10_valid", "train_sec_per_epoch", None
    )
    assert MetricName.parse("cifar10_flatness_r_std_proxy") == MetricName(
        "cifar10", "flatness_r_std", "proxy"
    )
    assert MetricName.parse("cifar10_val_acc_nb201_12_2ff2664c") == MetricName(
        "cifar10", "val_acc", "nb201_12_2ff2664c"
    )
    assert MetricName.parse("pixel3_ms") == MetricName(None, "pixel3_ms", None)
    assert metric_name("ImageNet16-120", "val_acc", "nb201-12") == "imagenet16_val_acc_nb201_12"


def test_the_resolver_matches_by_grammar_not_substring(nb201, bundled):
    assert bundled.resolve("flatness_r") == "cifar10_flatness_r_proxy"  # not ..._flatness_r_std_proxy
    assert bundled.resolve("flatness_r_std") == "cifar10_flatness_r_std_proxy"
    assert bundled.resolve("cifar10_val_acc") == bundled.resolve("val_acc_proxy") == "cifar10_val_acc_proxy"
    with pytest.raises(TableError, match=r"unknown metric 'acc_proxy'"):
        bundled.resolve("acc_proxy")  # a substring of val_acc_proxy, but no form of any name
    with pytest.raises(TableError) as ambiguous:
        nb201.resolve("test_acc")
    message = str(ambiguous.value)
    assert "\n" not in message and message.startswith("ambiguous metric 'test_acc'")
    listed = message.split("say which of ")[1].split(", ")
    assert sorted(listed) == sorted(m for m in nb201.metrics if MetricName.parse(m).column == "test_acc")
    assert len(listed) == 7  # 3 datasets x 2 fidelities, plus the cifar10-valid split's test accuracy
    assert nb201.resolve("cifar10_valid_test_acc") == "cifar10_valid_test_acc_200ep"
    with pytest.raises(TableError, match=r"unknown metric 'cifar10_valid_acc_20ep'.*close names: cifar10_"):
        resolve_metric("cifar10_valid_acc_20ep", nb201.metrics)


# --- derived metrics ----------------------------------------------------------------------------------


def test_corr_acc_rel_is_made_with_the_row():
    row = complete_row({"arch": str(CONV), "test_acc": 50.0, "corr_acc_mean": 40.0})
    assert row["corr_acc_rel"] == pytest.approx(0.8)
    assert complete_row({"test_acc": 0.0, "corr_acc_mean": 40.0})["corr_acc_rel"] is None
    assert complete_row({"test_acc": 50.0})["corr_acc_rel"] is None
    assert np.isnan(corr_acc_rel(np.nan, 50.0)).all()


def test_corr_acc_resid_is_the_residual_of_a_least_squares_line(bundled):
    raw = read_csv(bundled_table_path())  # one row per (arch, seed); the table holds per-arch means
    means = raw.groupby("arch", sort=False)[["test_acc", "corr_acc_mean"]].mean()
    assert len(means) < len(raw)
    slope, intercept = np.polyfit(means["test_acc"], means["corr_acc_mean"], 1)
    expected = means["corr_acc_mean"] - (intercept + slope * means["test_acc"])
    got = bundled.values("corr_acc_resid", [Arch.from_str(s) for s in means.index])
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert abs(np.corrcoef(got, means["test_acc"])[0, 1]) < 1e-9  # clean accuracy is accounted for
    assert slope > 0.3  # corruption accuracy follows clean accuracy on this table
    sub = bundled.head(100)  # recomputed over the rows of the table it is asked of
    np.testing.assert_allclose(
        sub.values("corr_acc_resid"), residual_metric(sub.values("corr_acc_mean"), sub.values("test_acc"))
    )
    assert not np.allclose(sub.values("corr_acc_resid"), bundled.values("corr_acc_resid")[:100])


def test_derived_metrics_work_as_objectives_and_targets(bundled):
    context = ObjectiveContext(table=bundled)
    rel, resid = make_objectives(["corr_acc_rel", "corr_acc_resid"], context)
    assert (rel.sense, resid.sense) == ("max", "max")
    result = run_search(["corr_acc_resid", "params"], surrogate=None, tables=[bundled_table_path()],
                        strategy="exhaustive", compare_exhaustive=False)  # fmt: skip
    best = result.front_table["cifar10_corr_acc_resid_proxy"].max()
    assert best == pytest.approx(np.nanmax(bundled.values("corr_acc_resid")))


# --- per-seed rows ------------------------------------------------------------------------------------


def _seeded_rows() -> pd.DataFrame:
    archs = [str(a) for a in list(canonical_archs())[:3]]
    rows = [
        {"arch": archs[0], "seed": 0, "val_acc": 60.0, "test_acc": 50.0, "corr_acc_mean": 40.0},
        {"arch": archs[0], "seed": 1, "val_acc": 62.0, "test_acc": 52.0, "corr_acc_mean": 39.0},
        {"arch": archs[0], "seed": 2, "val_acc": None, "error": ONE_SEED_FAILED},
        {"arch": archs[1], "seed": 0, "val_acc": 55.0, "test_acc": 45.0},
        {"arch": archs[2], "seed": 0, "val_acc": None, "error": ONE_SEED_FAILED},
    ]
    return pd.DataFrame(rows).assign(protocol="proxy")


def test_per_seed_rows_and_seed_counts():
    table = BenchTable.from_results(_seeded_rows(), "cifar10", "proxy")
    assert len(table) == 2  # the arch whose every seed failed has no row
    np.testing.assert_array_equal(table.seed_counts(), [2.0, 1.0])
    np.testing.assert_array_equal(table.seed_counts(protocol="proxy"), [2.0, 1.0])
    long = table.per_seed()
    assert list(long.columns[:2]) == ["arch", "seed"] and len(long) == 3  # failed rows dropped
    assert long["cifar10_val_acc_proxy"].tolist() == [60.0, 62.0, 55.0]
    assert table.values("val_acc").tolist() == [61.0, 55.0]
    np.testing.assert_allclose(long["cifar10_corr_acc_rel_proxy"].iloc[:2], [0.8, 39 / 52])
    assert table.values("corr_acc_rel")[0] == pytest.approx((0.8 + 39 / 52) / 2)  # mean of per-seed ratios
    assert len(table.head(1).per_seed()) == 2  # seed rows follow the rows kept
    with pytest.raises(TableError, match="no seed counts"):
        BenchTable.from_frame(pd.DataFrame({"arch": [str(CONV)], "acc": [1.0]})).seed_counts()
    with pytest.raises(TableError, match="per-arch values only"):
        BenchTable.from_frame(pd.DataFrame({"arch": [str(CONV)], "acc": [1.0]})).per_seed()


# --- lookups ------------------------------------------------------------------------------------------


def test_lookup_fill_rules_on_a_partial_table(bundled, nb201):
    member = next(a for a in canonical_archs() if a in bundled and len(iso_class(a)) > 1)
    twin = next(a for a in iso_class(member) if a != member)
    absent = next(a for a in canonical_archs() if a not in bundled)
    own = bundled.get(member, "val_acc")
    np.testing.assert_array_equal(
        bundled.lookup(["val_acc"], [member, twin, absent])[:, 0], [own, own, np.nan]
    )
    assert np.isnan(bundled.lookup(["val_acc"], [twin], fill="nan")[0, 0])
    with pytest.raises(TableError, match="nor any isomorphic arch"):
        bundled.lookup(["val_acc"], [member, absent], fill="raise")
    # NB201 holds every string: each answers with its own row, not its class's mean
    nb_twin = nb201.lookup(["cifar10_valid_acc_200ep"], [twin], fill="nan")[0, 0]
    assert nb_twin == nb201.get(nb201.index_of(twin), "cifar10_valid_acc_200ep")


def test_exhaustive_search_on_a_table_column_is_fast(nb201):
    objectives = make_objectives(["cifar10_valid_acc_200ep", "params"], ObjectiveContext(table=nb201))
    start = time.process_time()  # CPU time: the wall clock of a shared machine says little
    result = exhaustive(objectives)
    assert time.process_time() - start < 1.0  # about 0.2 s on an idle core (the CLI prints its wall time)
    assert result.n_evaluated == 6466
    own = nb201.lookup(["cifar10_valid_acc_200ep"], canonical_archs(), fill="nan")
    assert result.front_table["cifar10_valid_acc_200ep"].max() == np.nanmax(own)  # each class's own row


# --- objectives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(describe_objectives()))
def test_every_registered_objective_works_in_search_and_loop(name, bundled):
    entry = registered(name)
    assert entry is not None and (entry.exact or entry.reads)  # declared where registered
    other = "params" if name == "flops" else "flops"
    result = run_search([name, other], surrogate=None, tables=[bundled_table_path()],
                        strategy="exhaustive", compare_exhaustive=False)  # fmt: skip
    assert len(result.front) >= 1 and np.isfinite(result.values()[result.front]).all()
    config = LoopConfig(budget=14, n_init=10, k=4)
    strategy = FlatNAS(fit=linear_fit, search="nsga2", search_config=SearchConfig(pop_size=20, n_gen=4))
    loop = run_loop(TableOracle(bundled), [name, "val_acc"], config=config, strategy=strategy)
    assert len(loop.archive) == 14 and f"best_{name}" in loop.log


def test_tell_takes_values_measured_outside(nb201):
    """Driving the search with values looked up outside gives the same search as scoring inside."""
    specs = ["cifar10_valid_acc_200ep", "params"]
    objectives = make_objectives(specs, ObjectiveContext(table=nb201))
    config = SearchConfig(pop_size=20, n_gen=6, seed=3)
    inside = Search(objectives, config=config).run()
    outside = Search(objectives, config=config)
    while not outside.done:
        archs = outside.ask()
        values = np.column_stack([nb201.lookup([specs[0]], archs)[:, 0], objectives[1](archs)])
        outside.tell(list(reversed(archs)), values[::-1])  # any order
    result = outside.result()
    assert len(result.archs) == len(inside.archs) > 20 * 3
    scored = dict(zip(result.archs, result.F.tolist(), strict=True))
    assert scored == dict(zip(inside.archs, inside.F.tolist(), strict=True))
    with pytest.raises(Exception, match="pending ask"):
        outside.tell(archs, values)
    fresh = Search(objectives, config=config)
    asked = fresh.ask()
    with pytest.raises(Exception, match="shape"):
        fresh.tell(asked, np.zeros((len(asked), 3)))
