"""Search: operators, isomorph elimination, exact fronts, determinism, no input mutation, objectives, CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymoo.core.population import Population
from typer.testing import CliRunner

import cli.search  # noqa: F401  (registers search, loop, retrain)
from cli.main import app
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import Arch, canonical_archs, iso_class
from flatnas_bench.search.api import run_search
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import NB201Problem, Scorer, Search, SearchConfig, exhaustive, search
from flatnas_bench.search.fom import alpha_norm, fom
from flatnas_bench.search.fronts import Bounds, hypervolume, pareto_front
from flatnas_bench.search.objectives import (
    Objective,
    list_objectives,
    make_constraint,
    make_objective,
    make_objectives,
    parse_spec,
)
from flatnas_bench.search.operators import IsomorphElimination, RandomResetMutation, UniformCrossover, iso_ids
from flatnas_bench.search.result import hypervolume_ratio
from flatnas_bench.tables.readers import read_csv

ROOT = Path(__file__).resolve().parents[1]


def _toy_objectives() -> list[Objective]:
    """Two cheap, conflicting objectives: conv3x3 edges (max) and the sum of op indices (min)."""
    return [
        Objective("conv3", "max", lambda archs: np.array([a.ops.count(3) for a in archs], float)),
        Objective("opsum", "min", lambda archs: np.array([sum(a.ops) for a in archs], float)),
    ]


class FakeSurrogate:
    """Deterministic stand-in with the SurrogateSet predict contract (arch, target, target_std)."""

    targets = ("val_acc", "flatness_r")

    def predict(self, archs):
        ops = np.array([a.ops for a in archs], float)
        acc = 60 + 5 * (ops == 3).sum(1) + 2 * (ops == 2).sum(1) - 3 * (ops == 0).sum(1)
        r = 1 + 0.5 * (ops == 3).sum(1) + 0.1 * ops[:, 0]
        return pd.DataFrame(
            {
                "arch": [str(a) for a in archs],
                "val_acc": acc,
                "val_acc_std": 0.1 + 0 * acc,
                "flatness_r": r,
                "flatness_r_std": 0.05 + 0 * r,
            }
        )


def _problem() -> NB201Problem:
    return NB201Problem(Scorer(_toy_objectives()))


def test_operators_keep_genes_in_range_and_mix_parents():
    rng = np.random.default_rng(0)
    parents = rng.integers(0, 5, size=(2, 200, 6))
    children = UniformCrossover()._do(_problem(), parents, random_state=rng)
    assert children.shape == parents.shape
    assert ((children == parents[0]) | (children == parents[1])).all()
    # the two children together hold exactly the parents' genes at every position
    assert (np.sort(children, axis=0) == np.sort(parents, axis=0)).all()
    X = rng.integers(0, 5, size=(500, 6))
    mutated = RandomResetMutation(prob_var=1.0)._do(_problem(), X, random_state=rng)
    assert mutated.min() >= 0 and mutated.max() <= 4
    assert (mutated != X).all()  # a reset always picks another op
    assert (RandomResetMutation(prob_var=0.0)._do(_problem(), X, random_state=rng) == X).all()


def test_isomorph_elimination_drops_same_function():
    arch = Arch.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    twins = iso_class(arch)
    assert len(twins) > 1
    X = np.array([twins[0].ops, twins[1].ops, Arch((3,) * 6).ops])
    assert len(set(iso_ids(X[:2]).tolist())) == 1
    pop = Population.new("X", X)
    kept = IsomorphElimination().do(pop)
    assert len(kept) == 2
    other = Population.new("X", np.array([twins[-1].ops]))
    assert len(IsomorphElimination().do(Population.new("X", X[1:]), other)) == 1


def test_exhaustive_front_is_the_brute_force_front():
    result = exhaustive(_toy_objectives())
    assert result.n_evaluated == len(canonical_archs()) == 6466
    F = result.F
    dominated = np.array([bool(np.any(np.all(f >= F, axis=1) & np.any(f > F, axis=1))) for f in F])
    assert set(result.front.tolist()) == set(np.flatnonzero(~dominated).tolist())
    assert list(pareto_front(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0]]))) == [0, 3, 1]


def test_nsga2_is_seeded_and_close_to_exhaustive():
    objectives = _toy_objectives()
    a = search(objectives, config=SearchConfig(seed=3))
    b = search(objectives, config=SearchConfig(seed=3))
    assert [str(x) for x in a.front_archs] == [str(x) for x in b.front_archs]
    assert np.array_equal(a.F, b.F)
    assert hypervolume_ratio(a, exhaustive(objectives)) >= 0.995


def test_search_does_not_mutate_its_inputs():
    table = pd.DataFrame({"arch": [str(a) for a in canonical_archs()], "score": np.arange(6466.0)})
    before = table.copy()
    context = ObjectiveContext(table=table)
    objectives = make_objectives(["score:max", "params"], context)
    initial = [Arch((3,) * 6), Arch((1,) * 6), Arch((3,) * 6)]
    snapshot = (list(objectives), copy.deepcopy(initial))
    search(objectives, config=SearchConfig(n_gen=3), initial=initial)
    assert objectives == snapshot[0] and initial == snapshot[1]
    pd.testing.assert_frame_equal(table, before)


def test_constraint_and_initial_population():
    context = ObjectiveContext(surrogate=FakeSurrogate())
    constraint = make_constraint("params<=0.5", context)
    result = search(
        make_objectives(["val_acc", "params"], context),
        constraints=[constraint],
        config=SearchConfig(n_gen=5, pop_size=20),
        initial=[Arch((3,) * 6)],
    )
    assert Arch((3,) * 6) in result.archs  # the seeded arch was scored ...
    assert not result.feasible[result.archs.index(Arch((3,) * 6))]  # ... and is infeasible (1.53 M)
    assert (result.front_table["params"] <= 0.5).all()
    assert str(constraint) == "params<=0.5"


def test_ask_tell_and_budget():
    s = Search(_toy_objectives(), config=SearchConfig(pop_size=10, n_gen=50, max_evals=35, seed=1))
    archs = s.ask()
    assert len(archs) == 10 and all(a.is_canonical for a in archs)
    s.tell(archs)
    result = s.run()
    assert 35 <= result.n_evaluated < 35 + 10


def test_hypervolume_normalisation():
    bounds = Bounds(np.array([0.0, 0.0]), np.array([2.0, 4.0]))
    assert hypervolume(np.array([[0.0, 0.0]]), bounds) == pytest.approx(1.1 * 1.1)
    assert hypervolume(np.array([[2.0, 4.0]]), bounds) == pytest.approx(0.1 * 0.1)
    assert hypervolume(np.array([[3.0, 0.0]]), bounds) == 0.0


# --- objectives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_objectives(ObjectiveContext(surrogate=FakeSurrogate())))
def test_every_objective_meets_the_contract(name):
    objective = make_objective(name, ObjectiveContext(surrogate=FakeSurrogate()))
    archs = list(canonical_archs()[:50])
    values = objective(archs)
    assert values.shape == (50,) and np.isfinite(values).all()
    assert objective.sense in ("max", "min")
    assert np.array_equal(objective.minimised(archs), objective.sign * values)


def test_fom_matches_the_method():
    context = ObjectiveContext(surrogate=FakeSurrogate(), alpha=0.5)
    objective = make_objective("fom", context)
    space = list(canonical_archs())
    pred = FakeSurrogate().predict(space)
    norm = alpha_norm(100 - pred["val_acc"].to_numpy(), pred["flatness_r"].to_numpy())
    expected = 0.5 * (100 - pred["val_acc"]) + norm * 0.5 * pred["flatness_r"]
    assert np.allclose(objective(space), expected)
    assert fom(np.array([10.0]), np.array([2.0]), 0.5, 5.0)[0] == 10.0
    archive = pd.DataFrame({"arch": [str(a) for a in space[:5]], "val_acc": 90.0, "flatness_r": 2.0})
    on_archive = make_objective("fom(alpha=0.1)", ObjectiveContext(surrogate=FakeSurrogate(), table=archive))
    assert "alpha_norm=5" in on_archive.description  # mean(Err) / mean(R) over the archive = 10 / 2


def test_objective_specs_and_errors():
    assert parse_spec("fom(alpha=0.3, r=flatness_r):min") == (
        "fom",
        {"alpha": "0.3", "r": "flatness_r"},
        "min",
    )
    assert make_objective("flops:max").sense == "max"
    table = pd.DataFrame({"arch": [str(Arch((3,) * 6))], "pixel3_ms": [12.5]})
    latency = make_objective("pixel3_ms", ObjectiveContext(table=table))
    assert latency.sense == "min" and latency([Arch((3,) * 6)])[0] == 12.5
    with pytest.raises(ConfigError, match="unknown objective 'bogus'"):
        make_objective("bogus")
    with pytest.raises(ConfigError, match="fom needs"):
        make_objective("fom")
    with pytest.raises(ConfigError, match="cannot parse constraint"):
        make_constraint("params < 3")
    with pytest.raises(ConfigError, match="unknown strategy"):
        search(_toy_objectives(), strategy="random")


def test_live_routes_constraint_drops_exactly_the_dead_cells():
    live = make_objective("live_routes")
    dead = Arch.from_str("|none~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    full = Arch((3,) * 6)
    assert live.sense == "max" and live([dead, full]).tolist() == [0.0, 4.0]
    # only the 0->3 edge is live: one route
    assert live([Arch.from_str("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")])[0] == 1.0
    archs = list(canonical_archs())
    violation = make_constraint("live_routes>=1").violation(archs)
    n_dead = int((violation > 0).sum())
    assert n_dead == int((live(archs) == 0).sum()) and 0 < n_dead < len(archs)


# --- CLI ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_surrogate(tmp_path_factory, nb201_csv):
    from surrogates import fit_surrogate

    rows = read_csv(nb201_csv).sample(120, random_state=0)
    fitted = fit_surrogate(
        rows, ["cifar10_valid_acc_200ep"], n_models=2, seed=0, folds=2, params={"n_estimators": 40}
    )
    return fitted.save(tmp_path_factory.mktemp("surrogate") / "s")


def test_cli_search_writes_the_front(small_surrogate, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["search", "--surrogate", str(small_surrogate), "--max-params", "0.8", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "hypervolume" in result.output and "Pareto front" in result.output
    front = read_csv(out / "pareto.csv")
    assert {"arch", "cifar10_valid_acc_200ep", "cifar10_valid_acc_200ep_std", "params", "flops_m"} <= set(
        front
    )
    assert (front["params"] <= 0.8).all()
    meta = json.loads((out / "pareto.json").read_text())
    assert len(meta["pareto"]) == len(front) and meta["hv_ratio"] > 0.99
    assert (out / "front.png").stat().st_size > 10_000
    direct = run_search(surrogate=str(small_surrogate), max_params=0.8, compare_exhaustive=False)
    assert list(direct.front_table["arch"]) == list(front["arch"])


def test_cli_errors_are_one_line_exit_2(small_surrogate):
    runner = CliRunner()
    bad = runner.invoke(app, ["search", "--surrogate", str(small_surrogate), "-o", "bogus"])
    assert bad.exit_code == 2
    assert (
        bad.output.strip().splitlines() == [bad.output.strip()] and "unknown objective 'bogus'" in bad.output
    )
    missing = runner.invoke(app, ["search", "--surrogate", "/nonexistent/surrogate"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_cli_search_subprocess(small_surrogate):
    code = "import sys, cli.search; from cli.main import app; app(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, "search", "--surrogate", str(small_surrogate), "-o", "nope:max"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown objective 'nope'")


def test_fom_finds_result_table_metric_names():
    class Renamed(FakeSurrogate):
        targets = ("cifar10_val_acc_proxy", "cifar10_flatness_r_proxy")

        def predict(self, archs):
            frame = super().predict(archs)
            return frame.rename(columns=lambda c: c if c == "arch" else f"cifar10_{c}".replace("_std", "") + (
                "_proxy_std" if c.endswith("_std") else "_proxy"))  # fmt: skip

    from flatnas_bench.search.api import default_objectives

    context = ObjectiveContext(surrogate=Renamed())
    assert default_objectives(context) == ["fom", "params"]
    plain = make_objective("fom", ObjectiveContext(surrogate=FakeSurrogate()))
    archs = list(canonical_archs()[:20])
    assert np.allclose(make_objective("fom", context)(archs), plain(archs))


def test_search_leaves_dead_cells_out_unless_allowed(tmp_path) -> None:
    """Cells with no live route tie the smallest live cells on size: the default front never offers
    them, --allow-dead does."""
    from typer.testing import CliRunner

    from cli.main import app
    from flatnas_bench.nb201.encodings import live_route_counts

    objectives = ["params", "flops:max"]
    default = run_search(objectives, surrogate=None, strategy="exhaustive", compare_exhaustive=False)
    assert (live_route_counts(default.front_archs) >= 1).all()
    assert len(default.archs) == 6466 and default.feasible.sum() == 6466 - 5  # 5 classes are dead
    dead = run_search(
        objectives, surrogate=None, strategy="exhaustive", compare_exhaustive=False, allow_dead=True
    )
    assert (live_route_counts(dead.front_archs) == 0).sum() >= 1
    runner = CliRunner()
    args = ["search", "--surrogate", "none", "-o", "params", "-o", "flops:max", "--strategy", "exhaustive"]
    for extra, out in (([], tmp_path / "default"), (["--allow-dead"], tmp_path / "dead")):
        shown = runner.invoke(app, [*args, "--no-compare", "--out", str(out), *extra])
        assert shown.exit_code == 0, shown.output
    dead_on_front = lambda out: int((live_route_counts(read_csv(out / "pareto.csv")["arch"]) == 0).sum())  # noqa: E731
    assert dead_on_front(tmp_path / "default") == 0
    assert dead_on_front(tmp_path / "dead") >= 1


@pytest.fixture(scope="module")
def synthetic_table(tmp_path_factory) -> Path:
    """Every canonical arch with an 'accuracy' and an R that are exact functions of its ops."""
    archs = list(canonical_archs())
    ops = np.array([a.ops for a in archs])
    acc = 60.0 + 5 * (ops == 3).sum(1) + 2 * (ops == 2).sum(1) - 3 * (ops == 0).sum(1)
    r = 1.0 + 0.5 * (ops == 3).sum(1) + 0.1 * ops[:, 0]
    path = tmp_path_factory.mktemp("table") / "synthetic.csv"
    pd.DataFrame({"arch": [str(a) for a in archs], "val_acc": acc, "flatness_r": r}).to_csv(path, index=False)
    return path


def test_cli_search_on_a_table_honours_alpha_constraint_and_strategy(synthetic_table, tmp_path):
    """``--table`` columns score every arch, ``--alpha 0.2`` sets the FoM computed by hand, ``-c`` leaves no
    infeasible arch on the front, ``--strategy exhaustive`` scores all 6,466 classes, and ``--out`` writes
    the exact non-dominated set of the feasible scored archs."""
    out = tmp_path / "out"
    base = ["search", "--surrogate", "none", "--table", str(synthetic_table), "-o", "fom", "-o", "params"]
    base += ["--strategy", "exhaustive", "--no-compare"]
    result = CliRunner().invoke(app, [*base, "-c", "params<=0.5", "--alpha", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "exhaustive: 6466 archs scored" in result.output

    scored = read_csv(out / "scored.csv")
    table = read_csv(synthetic_table).set_index("arch").loc[scored["arch"]]
    err, r = 100 - table["val_acc"].to_numpy(), table["flatness_r"].to_numpy()
    norm = err.mean() / r.mean()
    assert np.allclose(scored["fom"], 0.2 * err + norm * 0.8 * r)
    params_m, _ = cost_arrays()
    assert np.allclose(scored["params"], [params_m[Arch.from_str(a).ordinal] for a in scored["arch"]])
    live = live_route_counts(scored["arch"]) >= 1
    assert list(scored["feasible"]) == list((scored["params"] <= 0.5) & live)

    front = read_csv(out / "pareto.csv")
    assert (front["params"] <= 0.5).all() and front["feasible"].all()
    feasible = scored[scored["feasible"]].reset_index(drop=True)
    best = feasible.iloc[pareto_front(feasible[["fom", "params"]].to_numpy())]
    assert set(front["arch"]) == set(best["arch"])
    meta = json.loads((out / "pareto.json").read_text())
    assert meta["strategy"] == "exhaustive" and meta["n_evaluated"] == 6466
    assert "params<=0.5" in meta["constraints"]
    assert [o["name"] for o in meta["objectives"]] == ["fom", "params"]
    assert [p["arch"] for p in meta["pareto"]] == list(front["arch"])
    assert CliRunner().invoke(app, [*base, "--out", str(tmp_path / "d")]).exit_code == 0
    half = read_csv(tmp_path / "d" / "scored.csv")
    assert np.allclose(half["fom"], 0.5 * err + norm * 0.5 * r)  # alpha 0.5 by default
    assert half["feasible"].sum() > scored["feasible"].sum()  # without -c more archs are feasible


def test_front_and_bounds_read_missing_values_as_nan_and_skip_those_rows() -> None:
    rows = [[1, None], [0, 1], [2, 0], [3, 3]]
    assert pareto_front(rows).tolist() == [1, 2]  # row 0 has no second value, row 3 is dominated
    bounds = Bounds.of(rows)
    assert bounds.lo.tolist() == [0.0, 0.0] and bounds.hi.tolist() == [3.0, 3.0]
    z = bounds.normalise([[None, 1.5]])
    assert np.isnan(z[0, 0]) and z[0, 1] == 0.5


def test_bounds_are_per_objective_and_a_flat_objective_keeps_its_scale() -> None:
    bounds = Bounds.of(np.array([[1.0, 5.0, 7.0], [3.0, 4.0, 7.0]]))
    assert bounds.lo.tolist() == [1.0, 4.0, 7.0] and bounds.hi.tolist() == [3.0, 5.0, 7.0]
    # (F - lo) / (hi - lo), and a span of 1 where hi == lo (the third objective: no division by zero)
    z = bounds.normalise(np.array([[2.0, 4.5, 7.0], [3.0, 6.0, 9.0]]))
    assert z.tolist() == [[0.5, 0.5, 0.0], [1.0, 2.0, 2.0]]


def test_cli_hybrid_fom_reads_nb201_accuracy_and_the_bundled_r(nb201_csv, tmp_path):
    # the README's hybrid use: NB201's 200-epoch accuracy from its table, R from the bundled surrogate
    from flatnas_bench.nb201.space import canonical_archs
    from flatnas_bench.tables.bundled import bundled_surrogate_dir
    from flatnas_bench.tables.readers import load_table
    from surrogates import load_surrogate

    out = tmp_path / "hybrid"
    objective = "fom(acc=cifar10_valid_acc_200ep,r=flatness_r)"
    args = ["search", "-o", objective, "-o", "params", "--table", str(nb201_csv), "--out", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output

    space = list(canonical_archs())
    err = 100.0 - load_table(nb201_csv).values("cifar10_valid_acc_200ep", space)
    r = load_surrogate(bundled_surrogate_dir()).predict(space)["cifar10_flatness_r_proxy"].to_numpy()
    norm = err.mean() / r.mean()  # no table holds both: normalised over every canonical arch
    fom = pd.Series(0.5 * err + norm * 0.5 * r, index=[str(a) for a in space])
    params = pd.Series(cost_arrays()[0][[a.ordinal for a in space]], index=fom.index)

    front = read_csv(out / "pareto.csv")
    np.testing.assert_allclose(front["fom"], fom.loc[front["arch"]].to_numpy(), rtol=1e-9)
    live = live_route_counts(space) > 0
    for arch, f, p in front[["arch", "fom", "params"]].itertuples(index=False):
        dominated = (
            live
            & (fom.to_numpy() <= f)
            & (params.to_numpy() <= p)
            & ((fom.to_numpy() < f) | (params.to_numpy() < p))
        )
        assert not dominated.any(), arch  # every pick is on the exact front of the live cells
    assert len(front) >= 3
