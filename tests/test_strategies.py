"""The loop's strategies: one contract for every registered strategy (budget of distinct canonical archs,
determinism, resume), and each baseline against a case whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import linear_fit

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import Arch, canonical_archs, iso_class
from flatnas_bench.search.evaluators import TableOracle
from flatnas_bench.search.evolution import RegularizedEvolution
from flatnas_bench.search.flatnas import FlatNAS
from flatnas_bench.search.local_search import LocalSearch, canonical_neighbours
from flatnas_bench.search.loop import LoopConfig, run_loop
from flatnas_bench.search.strategy import LoopState, best_first, list_strategies, make_strategy
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.table import as_table

OPT = Arch((3, 3, 3, 3, 3, 3))  # all 3x3 convolutions: the optimum of the tables below


def _strategy(name: str):
    # the FlatNAS loop with a least-squares surrogate: same lifecycle, a fraction of XGBoost's time
    return FlatNAS(fit=linear_fit) if name == "flatnas" else make_strategy(name)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Every canonical arch: 'acc' falls with the Hamming distance to all-conv3 (one optimum, 100), plus a
    small op-dependent term so that no two archs tie; 'cost' counts conv3 edges."""
    archs = list(canonical_archs())
    ops = np.array([a.ops for a in archs])
    acc = 100.0 - 5.0 * (ops != 3).sum(1) - 0.01 * ops.sum(1) - 1e-4 * np.arange(len(archs)) / len(archs)
    return pd.DataFrame({"arch": [str(a) for a in archs], "acc": acc, "cost": (ops == 3).sum(1)})


@pytest.mark.parametrize("name", list_strategies())
@pytest.mark.parametrize("specs", [["acc:max"], ["acc:max", "params"]], ids=["single", "pair"])
def test_every_strategy_spends_the_budget_on_distinct_live_canonical_archs_and_resumes(
    name, specs, table, tmp_path
):
    config = LoopConfig(budget=30, seed=3)
    whole = run_loop(TableOracle(table), specs, config=config, strategy=_strategy(name))
    archs = whole.archive["arch"]
    assert len(archs) == 30 and archs.is_unique
    assert all(Arch.from_str(a).is_canonical for a in archs) and (live_route_counts(archs) >= 1).all()
    n_init = _strategy(name).n_init
    first = whole.log["n_evaluated"].iloc[0]
    assert first == n_init  # the initial sample, then the strategy's batches
    again = run_loop(TableOracle(table), specs, config=config, strategy=_strategy(name))
    assert list(again.archive["arch"]) == list(archs)  # same seed, same archs
    path = tmp_path / "archive.csv"
    run_loop(
        TableOracle(table, archive=path),
        specs,
        config=LoopConfig(budget=20, seed=3),
        strategy=_strategy(name),
    )
    resumed = run_loop(TableOracle(table, archive=path), specs, config=config, strategy=_strategy(name))
    assert list(resumed.archive["arch"]) == list(archs)
    assert len(whole.front) >= 1 and set(whole.front["arch"]) <= set(archs)


def test_unknown_strategy_is_one_line():
    with pytest.raises(
        ConfigError,
        match=r"unknown loop strategy .nope.; known: flatnas, random, evolution, local, nsga2",
    ):
        make_strategy("nope")


def test_random_search_counts_distinct_canonical_archs(table):
    """A table of 10 classes written as 30 rows (three isomorphic spellings each): random search evaluates
    the 10 classes once each and stops there, short of its budget."""
    classes = [a for a in canonical_archs() if live_route_counts([a])[0] > 0 and len(iso_class(a)) >= 3][:10]
    rows = [(str(m), float(k)) for k, a in enumerate(classes) for m in iso_class(a)[:3]]
    small = pd.DataFrame(rows, columns=["arch", "acc"])
    assert small["arch"].nunique() == 30
    config = LoopConfig(budget=25, n_init=4, k=4)
    result = run_loop(TableOracle(small), ["acc:max"], config=config, strategy="random")
    assert sorted(result.archive["arch"]) == sorted(str(a) for a in classes)
    assert list(result.log["n_evaluated"]) == [4, 8, 10]


def _state(archive: pd.DataFrame, k: int = 1, n_init: int = 1) -> LoopState:
    archive = as_table(archive)

    def score(t):
        F = -t.values("acc")[:, None]
        return [a.canonical() for a in t.archs], F, np.isfinite(F[:, 0])

    return LoopState(["acc:max"], [], ["acc"], None, 0, k, score, archive, n_init, 100)


def test_regularized_evolution_removes_the_oldest():
    """Population 3, tournament of 3: the parent is always the best living arch. The oldest arch is the
    best of all, but aged out, so every child is a neighbour of the best of the three youngest."""
    oldest, young = (
        Arch((3, 3, 3, 3, 3, 3)),
        [Arch((1, 1, 1, 1, 1, 2)), Arch((1, 1, 1, 1, 2, 2)), Arch((1, 1, 2, 2, 2, 2))],
    )
    archive = pd.DataFrame(
        {"arch": [str(a.canonical()) for a in [oldest, *young]], "acc": [99.0, 50.0, 70.0, 60.0]}
    )
    children = RegularizedEvolution(population=3, sample=3).children(_state(archive, k=8))
    parent = young[1].canonical()
    assert len(children) == 8 == len(set(children))
    assert all(c in canonical_neighbours(parent) for c in children)
    assert not any(c in canonical_neighbours(oldest) for c in children)
    # with the oldest still alive (population 4), it wins every tournament
    children = RegularizedEvolution(population=4, sample=4).children(_state(archive, k=4))
    assert all(c in canonical_neighbours(oldest) for c in children)


def test_local_search_climbs_to_the_single_optimum(table):
    """One optimum and an improving neighbour from everywhere else: best-improvement local search reaches
    it long before random search would (6,466 classes), every centre of its first climb better than the
    last."""
    result = run_loop(
        TableOracle(table), ["acc:max"], config=LoopConfig(budget=150, seed=5), strategy="local"
    )
    archs = list(result.archive["arch"])
    assert str(OPT) in archs and archs.index(str(OPT)) < 150
    acc = result.archive["acc"].to_numpy()
    assert acc.max() == table["acc"].max()


def test_local_search_moves_to_the_best_neighbour(table):
    """From the best arch of the initial sample, the first batch is its whole neighbourhood; the next is
    the neighbourhood of the best neighbour (here one always improves), and so on: best improvement."""
    lookup = dict(zip(table["arch"], table["acc"], strict=True))
    state = _state(table.sample(10, random_state=0).reset_index(drop=True), n_init=10)
    centre = max(state.archive.archs, key=lambda a: lookup[str(a)])
    batches = LocalSearch().proposals(state)
    for _ in range(3):
        batch = next(batches)
        assert sorted(batch) == canonical_neighbours(centre)
        known = set(state.archive.to_frame()["arch"])
        new = [str(a) for a in batch if str(a) not in known]
        grown = pd.DataFrame({"arch": new, "acc": [lookup[a] for a in new]})
        state.archive = as_table(pd.concat([state.archive.to_frame(), grown], ignore_index=True))
        best = max(batch, key=lambda a: lookup[str(a)])
        assert lookup[str(best)] > lookup[str(centre)]
        centre = best


def test_nsga2_on_the_evaluator_finds_the_single_optimum(table):
    single = run_loop(
        TableOracle(table), ["acc:max"], config=LoopConfig(budget=200, seed=1), strategy="nsga2"
    )
    assert single.archive["acc"].max() == table["acc"].max()


def test_best_first_orders_by_rank_then_first_objective():
    F = np.array([[2.0, 2.0], [1.0, 3.0], [3.0, 3.0], [np.inf, 0.0], [1.0, 3.0]])
    assert best_first(F).tolist() == [1, 4, 0, 2, 3]
    assert best_first(F[:, :1]).tolist() == [1, 4, 0, 2, 3]


def test_cli_loop_strategy_on_an_oracle_csv(table, tmp_path):
    """``loop --strategy local``: the archive holds the budget of distinct archs, and its first batch after
    the initial sample is the neighbourhood of the sample's best arch; a wrong name is one line, exit 2."""
    from typer.testing import CliRunner

    import cli.search  # noqa: F401  (registers loop)
    from cli.main import app

    csv = tmp_path / "oracle.csv"
    table.to_csv(csv, index=False)
    args = ["loop", "--oracle", str(csv), "-o", "acc:max", "--budget", "30", "--strategy", "local"]
    result = CliRunner().invoke(app, [*args, "--n-init", "5", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    archive = read_csv(tmp_path / "run" / "archive.csv")
    assert len(archive) == 30 and archive["arch"].is_unique
    start = max(map(Arch.from_str, archive["arch"][:5]), key=lambda a: table.set_index("arch")["acc"][str(a)])
    first = set(map(Arch.from_str, archive["arch"][5 : 5 + len(canonical_neighbours(start))]))
    assert first == set(canonical_neighbours(start))
    bad = CliRunner().invoke(app, [*args, "--strategy", "nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown loop strategy 'nope'" in bad.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["random", "evolution", "local", "nsga2"])
def test_baselines_with_the_engine(name, tmp_path, monkeypatch):
    """Each baseline drives the training engine to its budget and resumes (the FlatNAS strategy's engine
    run is in test_loop.py)."""
    from helpers import TINY, make_imagefolder

    from flatnas_bench.bench.driver import resolve_protocol
    from flatnas_bench.bench.options import ExecutorOptions
    from flatnas_bench.search.evaluators import EngineEvaluator

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=2)
    protocol = resolve_protocol("proxy", {**TINY, "epochs": 1, "flatness_draws": 1})
    one_thread = ExecutorOptions(threads=1)

    def engine() -> EngineEvaluator:
        return EngineEvaluator(protocol, tmp_path / "loop.sqlite", data, options=one_thread, progress=False)

    specs = ["val_acc:max", "params"]
    first = run_loop(engine(), specs, config=LoopConfig(budget=3, n_init=2, k=1), strategy=name)
    assert len(first.archive) == 3 and first.archive["arch"].is_unique
    resumed = run_loop(engine(), specs, config=LoopConfig(budget=4, n_init=2, k=1), strategy=name)
    assert list(resumed.archive["arch"])[:3] == list(first.archive["arch"]) and len(resumed.archive) == 4
