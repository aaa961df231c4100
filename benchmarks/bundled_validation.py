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
5. The FlatNAS claim corrected for noise: Spearman and partial Spearman (given clean test accuracy) of R
   against relative robustness (corruption / clean accuracy, overall and per CIFAR-10-C family), raw and
   disattenuated by both measures' reliabilities (Spearman's correction r / sqrt(rel_x rel_y); the partial
   correlation from the corrected matrix of R, clean accuracy and robustness), each with a percentile
   bootstrap 95 % interval that resamples archs and recomputes the reliabilities and the correlations
   together; and, over the archs with two seeds, the same correlations within each seed and whether the
   seeds agree in sign.

Archs measured with several seeds enter 1, 2 and 5 as their seed means. In 5 the reliability of those
means is Spearman-Brown's from the seed-to-seed Spearman, for the harmonic mean of the seeds per arch
(1 where every arch has one seed, 2 where every arch has two).

    python benchmarks/bundled_validation.py [--table T] [--nb201 CSV] [--surrogate DIR] [--plot PNG]
        [--boot 2000] [--json OUT.json] [--markdown OUT.md] [--robustness corr_rel_blur]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from flatnas_bench.core.metric_names import metric_column
from flatnas_bench.core.results import CORRUPTION_FAMILIES, corr_acc_rel, corr_rel_column, per_seed
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.tables.bundled import BUNDLED_DIR, SURROGATE_DIR, TABLE_FILE
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.reliability import disattenuate, spearman_brown

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


def fidelity(table: pd.DataFrame, nb201_csv: Path) -> float:
    """Prints section 1; returns the Kendall tau of the proxy's validation accuracy against NB201's."""
    nb201 = read_csv(nb201_csv, usecols=["arch", NB201_COLUMN])
    joined = table.merge(nb201, on="arch", how="inner")
    print(f"\n1. Fidelity: proxy vs NB201 {NB201_COLUMN} over {len(joined)} archs (same arch strings)")
    taus = {}
    for column in ("val_acc", "test_acc"):
        tau = taus[column] = stats.kendalltau(joined[column], joined[NB201_COLUMN])
        rho = stats.spearmanr(joined[column], joined[NB201_COLUMN])
        print(f"   proxy {column:8}  Kendall tau {tau.statistic:+.3f}  Spearman rho {rho.statistic:+.3f}")
    top = joined.nlargest(max(1, len(joined) // 10), "val_acc")
    print(
        f"   NB201 accuracy of the proxy's top 10% by val_acc: mean {top[NB201_COLUMN].mean():.2f} "
        f"(all measured archs: {joined[NB201_COLUMN].mean():.2f}, "
        f"best measured: {joined[NB201_COLUMN].max():.2f})"
    )
    return float(taus["val_acc"].statistic)


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

    live = live_route_counts(table["arch"]) > 0  # a dead cell (at chance, R = 0) would squash the others
    dead = int((~live).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    points = ax.scatter(
        r[live], corr[live], c=clean[live], cmap="viridis", s=14, alpha=0.85, edgecolors="none"
    )
    fig.colorbar(points, ax=ax, label="clean test accuracy (%)")
    ax.set_xlabel("flatness R (accuracy drop, points; lower = flatter)")
    ax.set_ylabel("mean corruption accuracy (%)")
    left_out = f" ({dead} dead, at chance, not shown)" if dead else ""
    ax.set_title(
        f"{len(table)} archs{left_out}: Spearman {rho:+.2f}, partial | clean {partial:+.2f}",
        fontsize=9,
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


def surrogate_quality(directory: Path) -> dict[str, tuple[float, float]]:
    """Prints section 3; returns target column -> (CV Kendall tau, attainable tau)."""
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
    return {
        metric_column(row.target): (float(row.kendall_tau), float(row.attainable_kendall))
        for row in report.itertuples(index=False)
    }


RELIABILITY_METRICS = (
    "val_acc", "test_acc", "flatness_r", "loss_sharpness", "corr_acc_mean", "corr_acc_rel",
    *(corr_rel_column(f) for f in CORRUPTION_FAMILIES),
)  # fmt: skip


def reliability(rows: pd.DataFrame, boot: int = 1000) -> dict[str, tuple[float, float, float]]:
    """Prints section 4; returns metric -> reliability of the two-seed mean (Spearman-Brown from the
    seed-to-seed Spearman) with its interval (the interval's ends through the same formula)."""
    from flatnas_bench.tables.reliability import metric_reliability

    long = per_seed(rows, "the table")
    replicated = int((long.groupby("arch")["seed"].nunique() >= 2).sum())
    print(f"\n4. Seed-to-seed reliability over the {replicated} archs with two seeds, and of two-seed means")
    if replicated < 5:
        print("   skipped: fewer than 5 replicated archs")
        return {}
    print(
        f"   {'metric':16} {'Spearman [95 % CI]':>25} {'Kendall':>8} {'ICC [95 % CI]':>25} "
        f"{'two-seed mean [95 % CI]':>27}"
    )
    out = {}
    for metric in RELIABILITY_METRICS:
        if metric not in long.columns:
            continue
        rel = metric_reliability(long, metric, boot=boot)
        lo, hi = rel.spearman_ci
        ilo, ihi = rel.icc_ci
        mean = tuple(float(spearman_brown(v, 2)) for v in (rel.spearman, lo, hi))
        out[metric] = mean
        print(
            f"   {metric:16} {rel.spearman:8.3f} [{lo:.3f}, {hi:.3f}] {rel.kendall:8.3f} "
            f"{rel.icc:8.3f} [{ilo:.3f}, {ihi:.3f}] {mean[0]:10.3f} [{mean[1]:.3f}, {mean[2]:.3f}]"
        )
    return out


# --- 5. the claim corrected for noise ----------------------------------------------------------------

#: Relative robustness measures the claim is tested on: overall, then per CIFAR-10-C family.
CLAIM_TARGETS: tuple[str, ...] = ("corr_acc_rel", *(corr_rel_column(f) for f in CORRUPTION_FAMILIES))
CLAIM_COLUMNS: tuple[str, ...] = ("flatness_r", "test_acc", *CLAIM_TARGETS)  # x, the control, the targets
#: Per target: R against it raw and disattenuated, the same given clean accuracy, and the disattenuated
#: correlation of clean accuracy with it (beyond +-1, the corrected partial correlation is undefined).
STATISTICS = ("spearman", "spearman_dis", "partial", "partial_dis", "clean_dis")


def rank_correlations(values: np.ndarray) -> np.ndarray:
    """Spearman correlation matrix of the columns of an (n, m) array (average ranks for ties)."""
    return np.corrcoef(stats.rankdata(values, axis=0), rowvar=False)


def paired_spearman(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Column-wise Spearman correlation between two (n, m) arrays: each measure's seed-to-seed agreement."""
    a, b = (stats.rankdata(v, axis=0) for v in (first, second))
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(all="ignore"):
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def partial_from(matrix: np.ndarray, x: int, y: int, z: int) -> float:
    """Partial correlation of columns ``x`` and ``y`` given ``z`` from a correlation matrix (on a Spearman
    matrix: the partial Spearman of :func:`partial_spearman`); NaN where undefined."""
    rxy, rxz, ryz = matrix[x, y], matrix[x, z], matrix[y, z]
    with np.errstate(all="ignore"):
        return float((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)))


@dataclass(frozen=True)
class ClaimData:
    """Per arch (rows): the seed means of :data:`CLAIM_COLUMNS`, the number of seeds behind them, and the
    values at the arch's two lowest seeds (the second NaN where it has one seed)."""

    archs: list[str]
    means: np.ndarray
    seeds: np.ndarray
    first: np.ndarray
    second: np.ndarray

    @property
    def replicated(self) -> np.ndarray:
        return np.isfinite(self.second).all(axis=1)


def claim_data(long: pd.DataFrame, columns: Sequence[str] = CLAIM_COLUMNS) -> ClaimData:
    """:class:`ClaimData` from a :func:`~flatnas_bench.core.results.per_seed` frame (rows with every column
    finite; archs in first-seen order)."""
    rows = long.dropna(subset=list(columns)).sort_values(["arch", "seed"], kind="stable")
    order = list(dict.fromkeys(long["arch"][long["arch"].isin(rows["arch"])]))
    grouped = rows.groupby("arch", sort=False)
    rank = grouped.cumcount()
    means = grouped[list(columns)].mean().reindex(order)
    first = rows[rank == 0].set_index("arch")[list(columns)].reindex(order)
    second = rows[rank == 1].set_index("arch")[list(columns)].reindex(order)
    seeds = grouped.size().reindex(order).to_numpy(float)
    return ClaimData(order, means.to_numpy(float), seeds, first.to_numpy(float), second.to_numpy(float))


def _corrected_statistics(data: ClaimData, idx: np.ndarray) -> np.ndarray:
    """For the archs ``idx`` (a resample): per target, the :data:`STATISTICS` of R against it, then the
    one-seed reliability and the reliability of the seed means of every column."""
    matrix = rank_correlations(data.means[idx])
    rep = idx[data.replicated[idx]]
    one_seed = paired_spearman(data.first[rep], data.second[rep])
    of_means = spearman_brown(one_seed, 1 / np.mean(1 / data.seeds[idx]))
    corrected = disattenuate(matrix, of_means[:, None], of_means[None, :])
    np.fill_diagonal(corrected, 1.0)
    out = []
    for j in range(2, matrix.shape[0]):
        out += [
            matrix[0, j],
            corrected[0, j],
            partial_from(matrix, 0, j, 1),
            partial_from(corrected, 0, j, 1),
            corrected[1, j],
        ]
    return np.concatenate([out, one_seed, of_means])


def _by_seed_statistics(data: ClaimData, idx: np.ndarray) -> np.ndarray:
    """For replicated archs ``idx``: per target, Spearman and partial Spearman within the first seed, then
    within the second."""
    out = []
    for values in (data.first[idx], data.second[idx]):
        matrix = rank_correlations(values)
        out.append([[matrix[0, j], partial_from(matrix, 0, j, 1)] for j in range(2, matrix.shape[0])])
    return np.array(out).transpose(1, 0, 2).reshape(-1)  # target, seed, (spearman, partial)


def _bootstrap(statistic, n: int, boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point values over all ``n`` rows, percentile 95 % intervals over ``boot`` resamples (NaN-skipping),
    and the share of resamples where each value is defined."""
    point = statistic(np.arange(n))
    if not boot:
        return point, np.full((len(point), 2), np.nan), np.full(len(point), np.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(boot)])
    defined = np.isfinite(draws).mean(axis=0)
    with np.errstate(all="ignore"):
        cis = np.array(
            [np.nanpercentile(d, [2.5, 97.5]) if np.isfinite(d).any() else [np.nan, np.nan] for d in draws.T]
        )
    return point, cis, defined


def claim_corrected(long: pd.DataFrame, boot: int = 2000, seed: int = 0) -> dict:
    """Section 5 as numbers: ``archs``, ``replicated``, ``seeds`` (harmonic mean per arch), ``reliability``
    {column: one-seed Spearman, that of the seed means, intervals}, ``claim`` {target: {statistic:
    (value, low, high, share of resamples where defined)}}, ``by_seed`` {target: {spearman|partial:
    [(value, low, high) seed 1st, 2nd], agree: bool}}."""
    data = claim_data(long)
    m, targets, per = len(CLAIM_COLUMNS), CLAIM_TARGETS, len(STATISTICS)
    rel = per * len(targets)  # where the reliabilities start
    point, cis, defined = _bootstrap(lambda i: _corrected_statistics(data, i), len(data.archs), boot, seed)
    rep = np.flatnonzero(data.replicated)
    spoint, scis, _ = _bootstrap(lambda i: _by_seed_statistics(data, rep[i]), len(rep), boot, seed)
    entry = lambda k: (float(point[k]), *map(float, cis[k]), float(defined[k]))  # noqa: E731
    out: dict = {
        "archs": len(data.archs),
        "replicated": len(rep),
        "seeds": float(1 / np.mean(1 / data.seeds)),
        "reliability": {
            c: {"one_seed": entry(rel + i)[:3], "means": entry(rel + m + i)[:3]}
            for i, c in enumerate(CLAIM_COLUMNS)
        },
        "claim": {
            t: dict(zip(STATISTICS, (entry(per * j + k) for k in range(per)), strict=True))
            for j, t in enumerate(targets)
        },
        "by_seed": {},
    }
    for j, target in enumerate(targets):
        cells = {}
        for k, name in enumerate(("spearman", "partial")):
            at = [4 * j + 2 * s + k for s in (0, 1)]
            cells[name] = [(float(spoint[a]), *map(float, scis[a])) for a in at]
        cells["agree"] = all(np.sign(v[0][0]) == np.sign(v[1][0]) for v in cells.values())
        out["by_seed"][target] = cells
    return out


def _cell(value: float, low: float, high: float, defined: float = 1.0) -> str:
    """``value [low, high]``; an interval needs 97.5 % of the resamples defined: a resample whose
    reliability is <= 0 has no finite correction (towards 0 it grows without bound), so with more of them
    one side of the interval is unbounded."""
    if not math.isfinite(value):
        return "n/a"
    if defined < 0.975:  # NaN (no bootstrap) falls through
        return f"{value:+.3f} [unbounded]"
    if math.isnan(low) or math.isnan(high):  # no bootstrap: the point value alone
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def print_claim_corrected(result: dict) -> None:
    """Section 5 as text (see :func:`claim_corrected`)."""
    print(
        f"\n5. The FlatNAS claim corrected for noise: R against relative robustness over {result['archs']} "
        f"archs (seed means, {result['seeds']:.2f} seeds per arch, harmonic mean)"
    )
    print(f"   reliability over the {result['replicated']} archs with two seeds (seed-to-seed Spearman; of")
    print("   the seed means by Spearman-Brown), bootstrap 95 % intervals:")
    for column, rel in result["reliability"].items():
        print(f"   {column:18} one seed {_cell(*rel['one_seed'])}   seed means {_cell(*rel['means'])}")
    print(f"   {'R against':18} {'Spearman raw':>26} {'disattenuated':>26} {'partial | clean raw':>26} "
          f"{'disattenuated':>26}")  # fmt: skip
    for target, cells in result["claim"].items():
        shown = [_cell(*cells[s]) for s in STATISTICS[:4]]
        print(f"   {target:18} " + " ".join(f"{c:>26}" for c in shown))
    for target, cells in result["claim"].items():
        share = 1 - cells["spearman_dis"][3]
        if share > 0:
            print(f"   {target}: {share:.0%} of the resamples have a reliability <= 0 (no finite correction)")
    for target, cells in result["claim"].items():
        clean = cells["clean_dis"][0]
        if math.isfinite(clean) and abs(clean) >= 1:
            print(f"   {target}: disattenuated correlation with clean accuracy {clean:+.2f}, beyond +-1, "
                  "so the corrected partial is undefined")  # fmt: skip
        elif abs(cells["partial_dis"][0]) > 1:
            print(f"   {target}: corrected partial {cells['partial_dis'][0]:+.2f}, beyond +-1, so not a "
                  "correlation: undefined in effect")  # fmt: skip
    print(f"   within each seed, over the {result['replicated']} archs with two seeds (first | second seed):")
    for target, cells in result["by_seed"].items():
        parts = [f"{n} {_cell(*cells[n][0])} | {_cell(*cells[n][1])}" for n in ("spearman", "partial")]
        print(f"   {target:18} " + "; ".join(parts) + f"; signs agree: {'yes' if cells['agree'] else 'no'}")


def claim_markdown(result: dict) -> str:
    """Section 5's two tables in docs/robustness.md's Markdown (the claim, and within each seed)."""
    label = lambda t: f"{t} (all 15)" if t == "corr_acc_rel" else t  # noqa: E731
    lines = [
        "| R against | Spearman raw | disattenuated | partial given clean, raw | disattenuated |",
        "|---|---|---|---|---|",
    ]
    for target, cells in result["claim"].items():
        raw, dis, partial, partial_dis = (_cell(*cells[s]) for s in STATISTICS[:4])
        dis = "n/a (reliability < 0)" if dis == "n/a" else dis
        corrected = cells["partial_dis"][0]
        if partial_dis == "n/a" and dis != "n/a (reliability < 0)":
            partial_dis = f"n/a (clean {cells['clean_dis'][0]:+.2f})"
        elif abs(corrected) > 1:  # finite, but no correlation: as undefined in effect
            partial_dis = f"n/a ({corrected:+.2f}, beyond +-1)"
        lines.append(f"| {label(target)} | {raw} | {dis} | {partial} | {partial_dis} |")
    lines += [
        "",
        "| R against | Spearman, seed 0 | Spearman, seed 1 | partial, seed 0 | partial, seed 1 "
        "| signs agree |",
        "|---|---|---|---|---|---|",
    ]
    for target, cells in result["by_seed"].items():
        shown = [_cell(*cells[n][k]) for n in ("spearman", "partial") for k in (0, 1)]
        lines.append(
            f"| {label(target)} | " + " | ".join(shown) + f" | {'yes' if cells['agree'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


# --- 6. issue 19's targets ------------------------------------------------------------------------------

#: The relative-robustness measure calibration round 2 chose for bundle 0.3 (docs/robustness.md).
ROBUSTNESS = corr_rel_column("blur")


def targets(
    tau: float | None,
    surrogate: dict[str, tuple[float, float]],
    reliabilities: dict[str, tuple[float, float, float]],
    robustness: str = ROBUSTNESS,
) -> list[tuple[str, float, float]]:
    """(what, measured, goal) for each of issue 19's numeric targets; NaN where it was not measured."""
    nan = math.nan
    out = [
        (f"two-seed mean reliability, {m}", reliabilities.get(m, (nan,))[0], goal)
        for m, goal in (("val_acc", 0.75), ("flatness_r", 0.75), ("corr_acc_mean", 0.75), (robustness, 0.65))
    ]
    out.append(
        ("Kendall tau of val_acc against NB201's 200-epoch test accuracy", nan if tau is None else tau, 0.50)
    )
    out += [
        (f"surrogate 5-fold CV Kendall tau, {m}", surrogate.get(m, (nan,))[0], goal)
        for m, goal in (("val_acc", 0.60), ("flatness_r", 0.45), (robustness, 0.35))
    ]
    return out


def print_targets(rows: list[tuple[str, float, float]], robustness: str) -> None:
    print(f"\n6. Issue 19's targets (relative-robustness measure: {robustness})")
    for what, value, goal in rows:
        verdict = (
            "not measured"
            if math.isnan(value)
            else "met"
            if value >= goal
            else f"missed by {goal - value:.3f}"
        )
        print(f"   {what:66} {value:6.3f}  goal >= {goal:.2f}  {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=BUNDLED_DIR / TABLE_FILE)
    parser.add_argument("--nb201", type=Path, default=ROOT.parent / "shared/data/nb201/nb201_accuracy.csv")
    parser.add_argument("--surrogate", type=Path, default=BUNDLED_DIR / SURROGATE_DIR)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/flatness_vs_corruption.png")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples in section 5")
    parser.add_argument("--json", type=Path, default=None, help="write section 5's figures to this file")
    parser.add_argument("--markdown", type=Path, default=None, help="write section 5's tables as Markdown")
    parser.add_argument(
        "--robustness", default=ROBUSTNESS, help="the relative-robustness measure of section 6"
    )
    args = parser.parse_args(argv)
    rows = read_csv(args.table)
    rows = rows[rows["error"].isna()] if "error" in rows.columns else rows
    numeric = rows.select_dtypes("number").columns.drop("seed", errors="ignore")
    table = rows.groupby("arch", as_index=False, sort=False)[list(numeric)].mean()
    table["protocol"] = rows.groupby("arch", sort=False)["protocol"].first().to_numpy()
    print(
        f"{args.table}: {len(rows)} rows, {len(table)} measured archs, protocol "
        f"{', '.join(rows['protocol'].unique())}"
    )
    tau = None
    if args.nb201.is_file():
        tau = fidelity(table, args.nb201)
    else:
        print(f"\n1. Fidelity: skipped, {args.nb201} not found")
    flatness_claim(table, args.plot)
    claim_by_seed(rows)
    surrogate = surrogate_quality(args.surrogate) if args.surrogate.is_dir() else {}
    reliabilities = reliability(rows)
    corrected = claim_corrected(per_seed(rows, str(args.table)), boot=args.boot)
    print_claim_corrected(corrected)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(corrected, indent=1) + "\n")
        print(f"   wrote {args.json}")
    if args.markdown is not None:
        args.markdown.write_text(claim_markdown(corrected))
        print(f"   wrote {args.markdown}")
    print_targets(targets(tau, surrogate, reliabilities, args.robustness), args.robustness)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
