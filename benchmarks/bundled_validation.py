"""The three validations of the bundled benchmark that docs/benchmark.md reports.

1. Fidelity: Kendall tau between the proxy's validation accuracy and NAS-Bench-201's 200-epoch CIFAR-10 test
   accuracy over the same archs (the NB201 CSV is read for this check only; it is never bundled).
2. The FlatNAS claim: Spearman correlation between flatness R (accuracy drop under weight noise; lower is
   flatter) and mean corruption accuracy across archs, the same against relative corruption accuracy
   (corruption / clean accuracy), and the partial Spearman correlation controlling for clean test accuracy
   (Pearson correlation of the rank residuals after regressing both ranks on the rank of clean accuracy),
   each with a percentile bootstrap 95 % interval over archs, and a scatter plot; over the archs with two
   seeds, the partial correlation within each seed and across seeds (R of one, corruption of the other).
3. The bundled surrogate's 5-fold cross-validated Kendall tau per target (read from its metadata).
4. Seed-to-seed reliability of every metric over the archs measured with two seeds.

Archs measured with several seeds enter 1 and 2 as their seed means.

    python benchmarks/bundled_validation.py [--table T] [--nb201 CSV] [--surrogate DIR] [--plot PNG]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from flatnas_bench.core.results import corr_acc_rel
from flatnas_bench.tables.bundled import BUNDLED_DIR, SURROGATE_DIR, TABLE_FILE

ROOT = Path(__file__).resolve().parents[1]
NB201_COLUMN = "cifar10_test_acc_200ep"


def partial_spearman(x: np.ndarray, y: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    """Spearman correlation of ``x`` and ``y`` with the (rank-linear) effect of ``control`` removed, and its
    two-sided p-value (t test with n - 3 degrees of freedom)."""
    rx, ry, rc = (stats.rankdata(v) for v in (x, y, control))
    design = np.column_stack([np.ones_like(rc), rc])
    res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    r = float(np.corrcoef(res_x, res_y)[0, 1])
    dof = len(x) - 3
    t = r * math.sqrt(dof / max(1e-12, 1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), dof))


def bootstrap_ci(
    statistic, columns: list[np.ndarray], boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95 % interval of ``statistic(*columns)`` over archs resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    values = [statistic(*(c[idx] for c in columns)) for idx in (rng.integers(0, n, n) for _ in range(boot))]
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y)[0])


def fidelity(table: pd.DataFrame, nb201_csv: Path) -> None:
    nb201 = pd.read_csv(nb201_csv, usecols=["arch", NB201_COLUMN])
    joined = table.merge(nb201, on="arch", how="inner")
    print(f"\n1. Fidelity: proxy vs NB201 {NB201_COLUMN} over {len(joined)} archs (same arch strings)")
    for column in ("val_acc", "test_acc"):
        tau = stats.kendalltau(joined[column], joined[NB201_COLUMN])
        rho = stats.spearmanr(joined[column], joined[NB201_COLUMN])
        print(f"   proxy {column:8}  Kendall tau {tau.statistic:+.3f}  Spearman rho {rho.statistic:+.3f}")
    top = joined.nlargest(max(1, len(joined) // 10), "val_acc")
    print(
        f"   NB201 accuracy of the proxy's top 10% by val_acc: mean {top[NB201_COLUMN].mean():.2f} "
        f"(all measured archs: {joined[NB201_COLUMN].mean():.2f}, "
        f"best measured: {joined[NB201_COLUMN].max():.2f})"
    )


def flatness_claim(table: pd.DataFrame, plot: Path | None) -> None:
    r, corr, clean = (table[c].to_numpy(np.float64) for c in ("flatness_r", "corr_acc_mean", "test_acc"))
    rel = corr_acc_rel(corr, clean)
    print(f"\n2. FlatNAS claim over {len(table)} archs (R: accuracy drop under weight noise, low = flat)")
    print(f"   {'':44} {'value':>7}  {'95 % bootstrap CI':>17}  p")
    checks = (
        ("Spearman(R, corruption acc)", _spearman, [r, corr]),
        ("Spearman(R, relative corruption acc)", _spearman, [r, rel]),
        ("Spearman(R, clean test acc)", _spearman, [r, clean]),
        ("Spearman(clean acc, corruption acc)", _spearman, [clean, corr]),
        (
            "partial Spearman(R, corr | clean acc)",
            lambda a, b, c: partial_spearman(a, b, c)[0],
            [r, corr, clean],
        ),
    )
    for label, statistic, columns in checks:
        value = statistic(*columns)
        p = partial_spearman(*columns)[1] if len(columns) == 3 else float(stats.spearmanr(*columns).pvalue)
        low, high = bootstrap_ci(statistic, columns)
        print(f"   {label:44} {value:+7.3f}  [{low:+.3f}, {high:+.3f}]  {p:.2g}")
    rho, partial = _spearman(r, corr), partial_spearman(r, corr, clean)[0]
    if plot is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    points = ax.scatter(r, corr, c=clean, cmap="viridis", s=14, alpha=0.85, edgecolors="none")
    fig.colorbar(points, ax=ax, label="clean test accuracy (%)")
    ax.set_xlabel("flatness R (accuracy drop, points; lower = flatter)")
    ax.set_ylabel("mean corruption accuracy (%, 15 x 5)")
    ax.set_title(
        f"proxy benchmark, {len(table)} archs: Spearman {rho:+.2f}, partial | clean {partial:+.2f}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot)
    print(f"   scatter plot: {plot}")


def claim_by_seed(rows: pd.DataFrame) -> None:
    """The partial correlation of section 2 per training seed and across seeds, over the archs measured
    with seeds 0 and 1: within a seed it mixes arch and trained-network effects; R of one seed against the
    corruption accuracy of the other keeps only what belongs to the arch."""
    pairs = rows[rows["seed"].isin((0, 1))]
    pairs = pairs[pairs.groupby("arch")["seed"].transform("nunique") == 2]
    if pairs["arch"].nunique() < 5:
        return
    wide = pairs.pivot(index="arch", columns="seed", values=["flatness_r", "corr_acc_mean", "test_acc"])
    print(
        f"\n2b. Partial Spearman(R, corr | clean acc) by training seed, over {len(wide)} archs with two seeds"
    )
    statistic = lambda a, b, c: partial_spearman(a, b, c)[0]  # noqa: E731
    for r_seed, corr_seed in ((0, 0), (1, 1), (0, 1), (1, 0)):
        columns = [
            wide[(name, seed)].to_numpy(np.float64)
            for name, seed in (("flatness_r", r_seed), ("corr_acc_mean", corr_seed), ("test_acc", corr_seed))
        ]
        value, p = partial_spearman(*columns)
        low, high = bootstrap_ci(statistic, columns)
        label = f"R of seed {r_seed}, corruption and clean acc of seed {corr_seed}"
        print(f"   {label:50} {value:+7.3f}  [{low:+.3f}, {high:+.3f}]  {p:.2g}")


def surrogate_quality(directory: Path) -> None:
    from surrogates import load_surrogate

    report = load_surrogate(directory).cv_report
    folds = int(report["folds"].iloc[0])
    print(f"\n3. Bundled surrogate, {folds}-fold cross-validation ({directory}), beside each target's noise")
    print("   ceiling: seed tau (seed-to-seed Kendall tau) and attainable tau (a perfect predictor's CV tau)")
    print(
        f"   {'target':32} {'Kendall tau':>11} {'seed tau':>9} {'attainable':>10} {'Spearman':>9} {'R2':>7} "
        f"{'RMSE':>8} {'archs':>6}"
    )
    for row in report.itertuples(index=False):
        print(
            f"   {row.target:32} {row.kendall_tau:11.3f} {row.ceiling_kendall:9.3f} "
            f"{row.attainable_kendall:10.3f} {row.spearman_rho:9.3f} {row.r2:7.3f} {row.rmse:8.4f} {row.n:6d}"
        )


RELIABILITY_METRICS = ("val_acc", "test_acc", "flatness_r", "loss_sharpness", "corr_acc_mean", "corr_acc_rel")


def reliability(rows: pd.DataFrame) -> None:
    from flatnas_bench.tables.reliability import metric_reliability

    rows = rows.assign(corr_acc_rel=corr_acc_rel(rows["corr_acc_mean"], rows["test_acc"]))
    replicated = int((rows.groupby("arch")["seed"].nunique() >= 2).sum())
    print(f"\n4. Seed-to-seed reliability over the {replicated} archs with two seeds")
    if replicated < 5:
        print("   skipped: fewer than 5 replicated archs")
        return
    print(f"   {'metric':16} {'Spearman [95 % CI]':>25} {'Kendall':>8} {'ICC [95 % CI]':>25}")
    for metric in RELIABILITY_METRICS:
        rel = metric_reliability(rows, metric)
        lo, hi = rel.spearman_ci
        ilo, ihi = rel.icc_ci
        print(
            f"   {metric:16} {rel.spearman:8.3f} [{lo:.3f}, {hi:.3f}] {rel.kendall:8.3f} "
            f"{rel.icc:8.3f} [{ilo:.3f}, {ihi:.3f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=BUNDLED_DIR / TABLE_FILE)
    parser.add_argument("--nb201", type=Path, default=ROOT.parent / "shared/data/nb201/nb201_accuracy.csv")
    parser.add_argument("--surrogate", type=Path, default=BUNDLED_DIR / SURROGATE_DIR)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/flatness_vs_corruption.png")
    args = parser.parse_args()
    rows = pd.read_csv(args.table)
    rows = rows[rows["error"].isna()] if "error" in rows.columns else rows
    numeric = rows.select_dtypes("number").columns.drop("seed", errors="ignore")
    table = rows.groupby("arch", as_index=False, sort=False)[list(numeric)].mean()
    table["protocol"] = rows.groupby("arch", sort=False)["protocol"].first().to_numpy()
    print(
        f"{args.table}: {len(rows)} rows, {len(table)} measured archs, protocol "
        f"{', '.join(rows['protocol'].unique())}"
    )
    if args.nb201.is_file():
        fidelity(table, args.nb201)
    else:
        print(f"\n1. Fidelity: skipped, {args.nb201} not found")
    flatness_claim(table, args.plot)
    claim_by_seed(rows)
    if args.surrogate.is_dir():
        surrogate_quality(args.surrogate)
    reliability(rows)


if __name__ == "__main__":
    main()
