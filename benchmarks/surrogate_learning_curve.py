"""Learning curve and query speed of the XGBoost surrogate on the real NB201 table.

For each training size n and seed: draw a random permutation of the 15,625 NB201 archs, train
:func:`surrogates.fit_surrogate` on the first n (isomorphs deduplicated to class means), and test on the
next 200 archs ("other") and on the next 200 whose isomorphism class is not in the training set
("unseen", stricter: it drops the large degenerate classes that are easy to rank). Prints Kendall tau and
Spearman rho (mean ± sd over seeds) as a Markdown table, then the query timings of a saved-and-loaded
surrogate (median of repeated runs after warm-up).

    python benchmarks/surrogate_learning_curve.py --table ../shared/data/nb201/nb201_accuracy.csv
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flatnas_bench.nb201.space import all_archs
from flatnas_bench.tables.readers import load_table
from surrogates import fit_surrogate, load_surrogate, rank_metrics

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_accuracy.csv"


def split(n_train: int, n_test: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Ordinals of a random training set, of the next ``n_test`` archs (other strings), and of the next
    ``n_test`` archs whose isomorphism class is not in the training set (the stricter test)."""
    archs = all_archs()
    order = [int(k) for k in np.random.default_rng(seed).permutation(len(archs))]
    train = order[:n_train]
    seen = {archs[k].canonical() for k in train}
    unseen = [k for k in order[n_train:] if archs[k].canonical() not in seen][:n_test]
    return train, order[n_train : n_train + n_test], unseen


def learning_curve(table_path: Path, target: str, sizes: list[int], seeds: int, n_test: int) -> str:
    """The Markdown learning-curve table: tau and rho (mean ± sd over ``seeds`` seeds) on both test sets."""
    frame = load_table(table_path).to_frame().set_index("arch")
    archs = all_archs()
    by_ordinal = frame.loc[[str(a) for a in archs], target].to_numpy()
    lines = [
        f"Target {target}; {n_test} test archs; mean ± sd over {seeds} seeds. 'other': the next archs of the",
        "random order; 'unseen': the next archs whose isomorphism class is not in the training set.",
        "",
        "| train archs | tau (other) | rho (other) | tau (unseen) | rho (unseen) | fit (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for n in sizes:
        scores: dict[str, list[float]] = {}
        secs = []
        for seed in range(seeds):
            train, other, unseen = split(n, n_test, seed)
            data = pd.DataFrame({"arch": [str(archs[k]) for k in train], target: by_ordinal[train]})
            start = time.perf_counter()
            model = fit_surrogate(data, [target], seed=seed, folds=0)
            secs.append(time.perf_counter() - start)
            for name, test in (("other", other), ("unseen", unseen)):
                pred = model.predict([archs[k] for k in test])[target].to_numpy()
                m = rank_metrics(by_ordinal[test], pred)
                scores.setdefault(f"tau {name}", []).append(m["kendall_tau"])
                scores.setdefault(f"rho {name}", []).append(m["spearman_rho"])
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in scores.values()]
        lines.append(f"| {n} | {' | '.join(cells)} | {np.mean(secs):.1f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def timings(table_path: Path, target: str, repeats: int = 20) -> str:
    """Median wall times (ms) of load, one prediction, and scoring all 15,625 archs."""
    table = load_table(table_path)
    train, _, _ = split(200, 0, 0)
    archs = all_archs()
    rows = table.to_frame().set_index("arch").loc[[str(archs[k]) for k in train], target]
    model = fit_surrogate(pd.DataFrame({"arch": rows.index, target: rows.to_numpy()}), [target], folds=0)
    one = [str(archs[12345])]
    everything = [str(a) for a in archs]

    def median_ms(fn, n: int) -> float:
        fn()  # warm-up
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return 1000 * float(np.median(samples))

    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        t_load = median_ms(lambda: load_surrogate(tmp), 5)
        loaded = load_surrogate(tmp)
        start = time.perf_counter()
        loaded.predict(one)
        t_first = 1000 * (time.perf_counter() - start)
        t_one = median_ms(lambda: loaded.predict(one), repeats)
        fresh = load_surrogate(tmp)
        start = time.perf_counter()
        fresh.predict(everything)
        t_all_cold = 1000 * (time.perf_counter() - start)
        t_all = median_ms(lambda: loaded.predict(everything), 5)
    return "\n".join(
        [
            "| query | median time (ms) |",
            "|---|---:|",
            f"| load_surrogate (5 boosters) | {t_load:.1f} |",
            f"| first prediction after load (1 arch) | {t_first:.2f} |",
            f"| one prediction (1 arch, repeated) | {t_one:.2f} |",
            f"| all 15,625 archs, first call after load | {t_all_cold:.0f} |",
            f"| all 15,625 archs, repeated | {t_all:.0f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--target", default="cifar10_valid_acc_200ep")
    parser.add_argument("--sizes", default="50,100,200,500,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    learning_curve(args.table, args.target, sizes, args.seeds, args.test)
    if not args.skip_timing:
        print()
        print(timings(args.table, args.target))


if __name__ == "__main__":
    main()
