"""The FlatNAS loop against random search and plain NSGA-II, with the NB201 table as a zero-cost oracle.

Every method gets the same budget of distinct canonical archs (default 100) and 10 seeds:

* random search: ``sample_archs(budget, seed, unique=True)``;
* plain NSGA-II on the oracle: :class:`flatnas_bench.search.engine.Search` scoring the table directly
  (population 20), its first ``budget`` distinct archs;
* the FlatNAS loop (:func:`flatnas_bench.search.loop.run_loop`): 20 random archs, then 10 per iteration picked
  on a surrogate from ``surrogates.fit_surrogate`` (XGBoost ensemble of 5), refitted every iteration.

Tasks:

1. single objective ``cifar10_valid_acc_200ep`` (max): the ``cifar10_test_acc_200ep`` of the arch with the
   best validation accuracy found (the space's best test accuracy is 94.37);
2. ``cifar10_valid_acc_200ep`` (max) and ``params`` (min): hypervolume of the measured front over the true
   front's (exhaustive over the 6,466 canonical archs; normalised by its min/max, reference point 1.1).

Run: ``python benchmarks/search_oracle.py [--csv ...nb201_accuracy.csv] [--seeds 10] [--budget 100]``.
Prints Markdown tables (median, min and max over seeds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flatnas_bench.nb201.space import Arch, sample_archs
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import Search, SearchConfig, exhaustive
from flatnas_bench.search.fronts import Bounds, hypervolume, pareto_front
from flatnas_bench.search.loop import LoopConfig, TableOracle, run_loop
from flatnas_bench.search.objectives import make_objectives
from flatnas_bench.tables.readers import load_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = (
    Path(os.environ.get("FLATNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "nb201/nb201_accuracy.csv"
)
VALID, TEST = "cifar10_valid_acc_200ep", "cifar10_test_acc_200ep"
TASKS = {"single": [VALID], "pair": [VALID, "params"]}


def random_archs(context: ObjectiveContext, specs: list[str], budget: int, seed: int) -> list[Arch]:
    return sample_archs(budget, seed, unique=True)


def nsga2_archs(context: ObjectiveContext, specs: list[str], budget: int, seed: int) -> list[Arch]:
    s = Search(
        make_objectives(specs, context),
        config=SearchConfig(pop_size=20, n_gen=10**6, max_evals=budget, seed=seed),
    )
    s.run()
    return s.scorer.archs[:budget]


def loop_archs(context: ObjectiveContext, specs: list[str], budget: int, seed: int) -> list[Arch]:
    oracle = TableOracle(context.table, metrics=[VALID])
    config = LoopConfig(budget=budget, n_init=20, k=10, seed=seed)
    result = run_loop(oracle, specs, config=config)
    return [Arch.from_str(a) for a in result.archive["arch"]]


METHODS: dict[str, Callable[..., list[Arch]]] = {
    "random search": random_archs,
    "NSGA-II on the oracle": nsga2_archs,
    "FlatNAS loop (surrogate)": loop_archs,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()

    table = load_table(args.csv)
    context = ObjectiveContext(table=table)
    pair = make_objectives(TASKS["pair"], context)
    truth = exhaustive(pair)
    bounds = Bounds.of(truth.F)
    true_hv = hypervolume(truth.F[truth.front], bounds)

    rows = []
    for name, method in METHODS.items():
        tests, ratios, seconds = [], [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            found = method(context, TASKS["single"], args.budget, seed)
            assert len(set(found)) == len(found) == args.budget, (name, len(found))
            best = found[int(np.argmax(context.column(found, VALID)))]
            tests.append(float(context.column([best], TEST)[0]))
            found = method(context, TASKS["pair"], args.budget, seed)
            assert len(set(found)) == len(found) == args.budget, (name, len(found))
            F = np.column_stack([o.minimised(found) for o in pair])
            ratios.append(hypervolume(F[pareto_front(F)], bounds) / true_hv)
            seconds.append(time.perf_counter() - start)
        rows.append((name, tests, ratios, seconds))
        print(f"done: {name} ({sum(seconds):.0f} s)", flush=True)

    def cell(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"

    print()
    print(f"Oracle: {args.csv.name}, {args.budget} distinct canonical archs per run, {args.seeds} seeds; "
          f"median [min, max].")  # fmt: skip
    print()
    print("| method | test acc of best-valid arch (%) | HV ratio (valid acc max, params min) | s per seed |")
    print("|---|---|---|---|")
    for name, tests, ratios, seconds in rows:
        print(f"| {name} | {cell(tests, 2)} | {cell(ratios, 4)} | {statistics.median(seconds):.1f} |")
    print()
    best = np.nanmax(table.values(TEST))
    print(f"Space's best test accuracy: {best:.2f}; true front: {len(truth.front)} archs.")


if __name__ == "__main__":
    main()
