"""NSGA-II with default settings vs the exact (exhaustive) front, on a surrogate fitted to the NB201 table.

For each objective pair, the exhaustive strategy scores all 6,466 canonical archs and gives the exact
front; NSGA-II (``SearchConfig()`` defaults) runs with several seeds. Hypervolume is normalised by the
exhaustive set's min/max per objective with reference point 1.1 (see :mod:`flatnas_bench.search.fronts`). Each
timed run builds a fresh objective context, so the time includes every surrogate call it needs.

Objective pairs:

* ``cifar10_valid_acc_200ep`` (max) and ``params`` (min);
* a FoM-like objective and ``params``: ``fom(acc=cifar10_valid_acc_200ep, r=slow_gap)`` with
  ``slow_gap = cifar10_valid_acc_200ep - cifar10_test_acc_12ep_1seed`` standing in for R (how much an
  arch relies on long training; the NB201 table has no flatness), alpha 0.5, alpha_norm over the space.

Run: ``python benchmarks/search_hypervolume.py [--csv ../shared/data/nb201/nb201_accuracy.csv] [--seeds 5]
[--out DIR]``
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import SearchConfig, exhaustive, search
from flatnas_bench.search.objectives import make_objectives
from flatnas_bench.search.result import hypervolume_ratio
from flatnas_bench.tables.readers import read_csv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = (
    Path(os.environ.get("FLATNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "nb201/nb201_accuracy.csv"
)
TARGETS = ["cifar10_valid_acc_200ep", "slow_gap"]
PAIRS = {
    "valid acc (max), params (min)": ["cifar10_valid_acc_200ep", "params"],
    "FoM-like (min), params (min)": ["fom(acc=cifar10_valid_acc_200ep,r=slow_gap)", "params"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, help="also save each pair's seed-0 NSGA-II result (CSV, JSON, PNG)"
    )
    args = parser.parse_args()

    from surrogates import fit_surrogate

    table = read_csv(args.csv)
    table["slow_gap"] = table["cifar10_valid_acc_200ep"] - table["cifar10_test_acc_12ep_1seed"]
    start = time.perf_counter()
    surrogate = fit_surrogate(table, TARGETS, n_models=5, seed=0, folds=5)
    fit_s = time.perf_counter() - start
    tau = surrogate.cv_report.set_index("target")["kendall_tau"].round(3).to_dict()
    print(
        f"surrogate: surrogates.fit_surrogate (XGBoost x5) on {len(table)} rows, {fit_s:.1f} s; CV tau {tau}"
    )
    print()
    print("| objectives | exhaustive front (archs) | exhaustive time (s) | NSGA-II evaluated | "
          "NSGA-II time (s), median | HV ratio, median | HV ratio, min |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    config = SearchConfig()
    for label, specs in PAIRS.items():
        start = time.perf_counter()
        reference = exhaustive(make_objectives(specs, ObjectiveContext(surrogate=surrogate)))
        exhaustive_s = time.perf_counter() - start
        times, ratios, evaluated = [], [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            objectives = make_objectives(specs, ObjectiveContext(surrogate=surrogate))
            result = search(objectives, config=SearchConfig(seed=seed))
            times.append(time.perf_counter() - start)
            ratios.append(hypervolume_ratio(result, reference))
            evaluated.append(result.n_evaluated)
            if args.out is not None and seed == 0:
                result.hv_ratio = ratios[-1]
                result.save(args.out / label.split(" ")[0].replace("-like", "").lower())
        print(
            f"| {label} | {len(reference.front)} | {exhaustive_s:.2f} | {statistics.median(evaluated):.0f} | "
            f"{statistics.median(times):.2f} | {statistics.median(ratios):.4f} | {min(ratios):.4f} |"
        )
    print()
    print(f"NSGA-II defaults: pop_size={config.pop_size}, n_gen={config.n_gen}, uniform crossover "
          f"p={config.crossover_prob}, random-reset mutation p_var={config.mutation_prob_var:.3f}, "
          f"isomorph elimination; {args.seeds} seeds; {os.cpu_count()} CPUs visible.")  # fmt: skip


if __name__ == "__main__":
    main()
