"""The FlatNAS loop against a table oracle: picks, budget, determinism and resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import linear_fit

from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search.engine import SearchConfig, exhaustive
from flatnas_bench.search.evaluators import TableOracle
from flatnas_bench.search.flatnas import FlatNAS, spread_picks
from flatnas_bench.search.loop import LoopConfig, needed_targets, run_loop
from flatnas_bench.search.objectives import Objective
from flatnas_bench.tables.readers import load_table, read_csv

SEARCH = SearchConfig(pop_size=20, n_gen=8)
# the FlatNAS strategy with a least-squares surrogate and a small NSGA-II on it: fast, and what these
# tests measured their figures with
LINEAR = FlatNAS(fit=linear_fit, search="nsga2", search_config=SEARCH, near=0)


@pytest.fixture(scope="module")
def oracle_table() -> pd.DataFrame:
    """A synthetic benchmark over every canonical arch: a non-linear 'accuracy' and a 'flatness'."""
    archs = list(canonical_archs())
    ops = np.array([a.ops for a in archs])
    conv3, conv1, none = (ops == 3).sum(1), (ops == 2).sum(1), (ops == 0).sum(1)
    acc = 70 + 4 * conv3 + 2 * conv1 - 3 * none - 0.6 * conv3**2 + 0.3 * (ops[:, 5] == 3)
    return pd.DataFrame(
        {"arch": [str(a) for a in archs], "acc": acc, "flatness_r": 1 + 0.3 * conv3 + 0.1 * none}
    )


def test_needed_targets():
    assert needed_targets(["fom", "params"]) == ["val_acc", "flatness_r"]
    assert needed_targets(["fom(acc=acc,r=gap)", "acc:max", "flops"]) == ["acc", "gap"]


def test_spread_picks_are_new_distinct_and_spread():
    objectives = [
        Objective("conv3", "max", lambda archs: np.array([a.ops.count(3) for a in archs], float)),
        Objective("opsum", "min", lambda archs: np.array([sum(a.ops) for a in archs], float)),
    ]
    result = exhaustive(objectives)
    front = result.front_archs
    picks = spread_picks(result, 4, exclude={front[0]})
    assert len(picks) == len(set(picks)) == 4 and front[0] not in picks
    assert all(p in front for p in picks)
    values = result.values()[[result.archs.index(p) for p in picks], 0]
    assert values.max() - values.min() >= 4  # spread along the front, not clustered at one end
    assert len(spread_picks(result, 50)) == 50  # runs on into the next non-dominated ranks


def test_loop_spends_the_budget_on_distinct_archs(oracle_table, tmp_path):
    oracle = TableOracle(oracle_table, archive=tmp_path / "archive.csv")
    config = LoopConfig(budget=32, n_init=12, k=5, seed=1)
    result = run_loop(
        oracle, ["acc", "params"], config=config, strategy=LINEAR, log_path=tmp_path / "log.csv"
    )
    archs = result.archive["arch"]
    assert len(archs) == 32 and archs.is_unique
    assert all(Arch.from_str(a).is_canonical for a in archs)
    log = read_csv(tmp_path / "log.csv")
    assert list(log["iteration"]) == [0, 1, 2, 3, 4]
    assert list(log["n_evaluated"]) == [12, 17, 22, 27, 32]
    assert (np.diff(log["hypervolume"]) >= -1e-12).all()  # the archive only grows
    assert (np.diff(log["best_acc"]) >= 0).all()
    assert log["best_acc"].iloc[-1] >= log["best_acc"].iloc[0]
    assert len(result.front) >= 1


def test_loop_resumes_where_it_stopped(oracle_table, tmp_path):
    config = LoopConfig(budget=30, n_init=10, k=5, seed=2)
    whole = run_loop(TableOracle(oracle_table), ["acc:max"], config=config, strategy=LINEAR)
    path, log = tmp_path / "archive.csv", tmp_path / "log.csv"
    first = LoopConfig(budget=20, n_init=10, k=5, seed=2)
    run_loop(
        TableOracle(oracle_table, archive=path), ["acc:max"], config=first, strategy=LINEAR, log_path=log
    )
    assert len(read_csv(path)) == 20
    resumed = run_loop(
        TableOracle(oracle_table, archive=path), ["acc:max"], config=config, strategy=LINEAR, log_path=log
    )
    assert list(resumed.archive["arch"]) == list(whole.archive["arch"])
    assert list(resumed.log["iteration"]) == list(range(5))
    again = run_loop(
        TableOracle(oracle_table, archive=path), ["acc:max"], config=config, strategy=LINEAR, log_path=log
    )
    assert len(again.archive) == 30 and len(again.log) == 5  # nothing left to do


def test_loop_with_fom_and_errors(oracle_table):
    result = run_loop(
        TableOracle(oracle_table),
        ["fom(acc=acc)", "params"],
        constraints=["params<=1.0"],
        config=LoopConfig(budget=20, n_init=10, k=5),
        strategy=LINEAR,
    )
    assert len(result.archive) == 20 and "best_fom" in result.log
    with pytest.raises(ConfigError, match="no measured quantity"):
        run_loop(TableOracle(oracle_table), ["params", "flops"], strategy=LINEAR)
    with pytest.raises(ConfigError, match="n_init"):
        LoopConfig(budget=5, n_init=10)
    with pytest.raises(TableError, match="unknown metric 'nope'"):
        TableOracle(oracle_table, metrics=["nope"])


@pytest.mark.slow
def test_loop_with_the_engine_completes_and_resumes(tmp_path, monkeypatch):
    from helpers import TINY, make_imagefolder  # the bench tests' tiny protocol and image folder

    from flatnas_bench.bench.driver import resolve_protocol
    from flatnas_bench.bench.options import ExecutorOptions
    from flatnas_bench.search.evaluators import EngineEvaluator

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=2)
    protocol = resolve_protocol("proxy", {**TINY, "epochs": 1})

    def engine() -> EngineEvaluator:
        return EngineEvaluator(
            protocol, tmp_path / "loop.sqlite", data, options=ExecutorOptions(threads=1), progress=False
        )

    specs, log = ["fom", "params"], tmp_path / "log.csv"
    config = LoopConfig(budget=4, n_init=3, k=1)
    first = run_loop(engine(), specs, config=config, strategy=LINEAR, log_path=log)
    # named as a table of the same rows names them, like a TableOracle over its export
    assert len(first.archive) == 4 and {"cifar10_val_acc_proxy", "cifar10_flatness_r_proxy"} <= set(
        first.archive
    )
    config = LoopConfig(budget=5, n_init=3, k=1)
    resumed = run_loop(engine(), specs, config=config, strategy=LINEAR, log_path=log)
    assert list(resumed.archive["arch"])[:4] == list(first.archive["arch"]) and len(resumed.archive) == 5
    assert list(resumed.log["iteration"]) == [0, 1, 2]


def test_cli_loop_with_an_oracle_csv(oracle_table, tmp_path):
    from typer.testing import CliRunner

    import cli.search  # noqa: F401  (registers loop)
    from cli.main import app

    csv = tmp_path / "oracle.csv"
    oracle_table.to_csv(csv, index=False)
    args = ["loop", "--oracle", str(csv), "-o", "acc", "-o", "params", "--budget", "16", "--n-init", "10"]
    args += ["-k", "3", "--max-params", "1.0", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "iter 2: 16 evaluated" in result.output
    assert list(read_csv(tmp_path / "run" / "log.csv")["n_evaluated"]) == [10, 13, 16]
    archive = read_csv(tmp_path / "run" / "archive.csv")
    assert len(archive) == 16 and archive["arch"].is_unique
    assert (
        read_csv(tmp_path / "run" / "front.csv")["arch"].map(Arch.from_str).map(lambda a: a.is_canonical)
    ).all()
    bad = CliRunner().invoke(app, ["loop", "-o", "acc"])
    assert bad.exit_code == 2 and "choose one evaluator" in bad.output


def test_cli_loop_allow_dead(oracle_table, tmp_path):
    """As the API test below: dead cells score best, only ``--allow-dead`` lets the loop evaluate them."""
    from typer.testing import CliRunner

    from cli.main import app

    csv = tmp_path / "oracle.csv"
    oracle_table.assign(acc=oracle_table["arch"].str.count("none")).to_csv(csv, index=False)
    # the default loop climbs from the initial sample's front through one-edge neighbours: 3 batches
    args = ["loop", "--oracle", str(csv), "-o", "acc:max", "-o", "params", "--budget", "40", "--n-init", "10"]
    dead = {}
    for name, extra in (("default", []), ("allowed", ["--allow-dead"])):
        result = CliRunner().invoke(app, [*args, "-k", "10", "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        archive = read_csv(tmp_path / name / "archive.csv")
        dead[name] = int((live_route_counts(archive["arch"]) == 0).sum())
    assert dead["default"] == 0 and dead["allowed"] >= 1


@pytest.mark.slow
def test_cli_loop_with_the_engine(tmp_path, monkeypatch):
    from helpers import TINY_SETTINGS, make_imagefolder, tiny_protocol
    from typer.testing import CliRunner

    from cli.main import app
    from flatnas_bench.tables.store import ResultStore

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=2)
    sets = [arg for setting in [*TINY_SETTINGS, "epochs=1"] for arg in ("--set", setting)]
    results = tmp_path / "loop.sqlite"
    args = ["loop", "--protocol", "proxy", *sets, "--data", str(data), "--results", str(results)]
    args += [
        "-o",
        "fom",
        "-o",
        "params",
        "--budget",
        "4",
        "--n-init",
        "3",
        "-k",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(read_csv(tmp_path / "run" / "log.csv")["n_evaluated"]) == [3, 4]
    with ResultStore(results, readonly=True) as store:
        rows = store.to_frame()
    assert len(rows) == 4 and set(rows["protocol_hash"]) == {tiny_protocol(epochs=1).hash}
    assert rows["error"].isna().all() and rows["flatness_r"].notna().all()
    front = read_csv(tmp_path / "run" / "front.csv")
    assert set(front["arch"]) <= set(rows["arch"])


def test_fom_log_is_monotone(oracle_table):
    config = LoopConfig(budget=30, n_init=10, k=5, seed=3)
    result = run_loop(TableOracle(oracle_table), ["fom(acc=acc)", "params"], config=config, strategy=LINEAR)
    assert (np.diff(result.log["hypervolume"]) >= -1e-12).all()
    assert (np.diff(result.log["best_fom"]) <= 1e-12).all()


def test_dead_cells_are_neither_sampled_nor_picked_unless_allowed(oracle_table):
    """The objective rewards 'none' edges (dead cells score best), so only the default keeps them out."""
    from flatnas_bench.nb201.encodings import live_route_counts

    table = oracle_table.assign(acc=oracle_table["arch"].str.count("none"))
    config = LoopConfig(budget=40, n_init=20, k=10, seed=0)
    kept = run_loop(TableOracle(table), ["acc:max", "params"], config=config, strategy=LINEAR)
    assert (live_route_counts(kept.archive["arch"]) >= 1).all()
    allowed = run_loop(
        TableOracle(table), ["acc:max", "params"], config=config, strategy=LINEAR, allow_dead=True
    )
    assert (live_route_counts(allowed.archive["arch"]) == 0).sum() >= 3


def top_mean(values, n: int = 5) -> float:
    return float(np.sort(np.asarray(values))[-n:].mean())


def test_the_loop_beats_its_initial_sample_and_random_picks_on_nb201(nb201_csv):
    """On NB201's real accuracies, 4 iterations of 5 picks after 40 random archs find better archs than the
    initial sample holds and than 20 more random archs reach (expected over 200 draws). Measured with seed
    0: picks' top-5 mean 91.26 %, initial sample's 90.55 %, random 20's 89.91 %; picks' mean 90.42 %
    against 86.23 % for random archs. The margins asserted are somewhat below those; random picks in place
    of spread_picks fail them."""
    metric = "cifar10_valid_acc_200ep"
    table = load_table(nb201_csv)
    config = LoopConfig(budget=60, n_init=40, k=5, seed=0)
    result = run_loop(TableOracle(table, metrics=[metric]), [f"{metric}:max"], config=config, strategy=LINEAR)
    acc = result.archive[metric].to_numpy()
    initial, picks = acc[:40], acc[40:]
    assert len(picks) == 20 and list(result.log["n_evaluated"]) == [40, 45, 50, 55, 60]

    archs = list(canonical_archs())
    seen = set(result.archive["arch"][:40])
    unseen = [a for a, n in zip(archs, live_route_counts(archs), strict=True) if n > 0 and str(a) not in seen]
    pool = table.lookup([metric], unseen, fill="class")[:, 0]
    rng = np.random.default_rng(0)
    draws = [rng.choice(pool, size=len(picks), replace=False) for _ in range(200)]
    random_top = np.mean([top_mean(d) for d in draws])
    assert top_mean(picks) > top_mean(initial) + 0.5
    assert top_mean(picks) > random_top + 1.0
    assert picks.mean() > pool.mean() + 3.0
