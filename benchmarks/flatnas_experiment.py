"""The FlatNAS experiment end to end at the proxy: are the picks of the FoM more robust than those of
accuracy alone, at similar accuracy and size?

1. Search. On each surface, the exhaustive optimum over the 6,466 canonical cells (live ones, parameters
   at most ``--budget`` M) of the FoM ``alpha * Err + alpha_norm * (1 - alpha) * R`` at alpha 0.5 (the
   paper's FoM) and at alpha 1 (accuracy only); the ``--picks`` best cells of each form its group.
   Surfaces: ``surrogate`` (the bundled surrogate's predicted validation accuracy and R) and ``hybrid``
   (NAS-Bench-201's 200-epoch ``cifar10_valid_acc_200ep`` with the bundled surrogate's R; skipped
   without the NB201 CSV).
2. Retrain. Every pick (each cell once) with ``--seeds`` training seeds under the proxy protocol through
   :func:`flatnas_bench.search.retrain.retrain` (one resumable SQLite table, its report under
   ``OUT/retrain``).
3. Report. Per surface and metric (clean test accuracy, R, mCE, relative robustness overall and per
   CIFAR-10-C family, NB201 parameters): each group's mean over its picks of their seed means, and the
   difference FoM group minus accuracy group, with percentile bootstrap 95 % intervals that resample the
   picks of each group and the seeds of each pick. Written to ``OUT/flatnas_experiment.csv`` and ``.md``,
   the picks to ``OUT/picks.csv``.

``--plan`` stops after the search and prints the CPU estimate: the bundled rows' ``train_sec +
eval_sec`` (1 thread per candidate) of each pick (its isomorphism class's, else the table's median) times
the seeds. ``--tiny`` runs the whole pipeline in seconds (a 4-channel 1-cell network for 1 epoch, 4
corruption images, 1 pick per group, 2 seeds) for the test suite.

    python benchmarks/flatnas_experiment.py --data cifar-10-batches-py [--budget 0.8] [--picks 5]
        [--seeds 5] [--surrogate DIR] [--nb201 CSV] [--out DIR] [--executor local --workers N]
        [--threads 1] [--boot 2000] [--plan] [--tiny]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatnas_bench.bench.driver import resolve_protocol
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.results import CORRUPTION_FAMILIES, corr_rel_column, per_seed
from flatnas_bench.search.api import run_search
from flatnas_bench.search.retrain import retrain
from flatnas_bench.tables.bundled import bundled_surrogate_dir, load_bundled_table
from flatnas_bench.tables.store import ResultStore
from surrogates import load_surrogate

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.5, 1.0)  # the FoM, accuracy only
SURFACES = {"surrogate": "val_acc", "hybrid": "cifar10_valid_acc_200ep"}  # surface -> the FoM's accuracy
#: What the report compares, as result-row columns, measured per seed; ``params_m`` is the exact size of
#: NB201's C=16, N=5 network (the budget's unit), not of the narrower network trained at the proxy.
METRICS = (
    "test_acc", "flatness_r", "mce", "corr_acc_rel", *(corr_rel_column(f) for f in CORRUPTION_FAMILIES),
    "params_m",
)  # fmt: skip
TINY = {"C": 4, "N": 1, "resolution": 16, "epochs": 1, "batch_size": 32, "val_size": 40,
        "train_subset": 0, "flatness_draws": 2, "corruption_subset": 4}  # fmt: skip


def search_picks(
    surrogate: object, nb201: Path | None, budget: float, picks: int, surfaces: Sequence[str]
) -> pd.DataFrame:
    """The ``picks`` best live cells with at most ``budget`` M parameters per surface and alpha: columns
    ``surface``, ``alpha``, ``rank`` (1 = best), ``arch``, ``fom``, ``params_m``."""
    frames = []
    for surface in surfaces:
        tables = [str(nb201)] if surface == "hybrid" else []
        for alpha in ALPHAS:
            spec = f"fom(alpha={alpha:g},acc={SURFACES[surface]},r=flatness_r)"
            result = run_search(
                [spec], surrogate=surrogate, tables=tables, constraints=[f"params<={budget:g}"],
                strategy="exhaustive", compare_exhaustive=False,
            )  # fmt: skip
            scored = result.table()
            top = scored[scored["feasible"]].sort_values("fom", kind="stable").head(picks)
            if len(top) < picks:
                raise ConfigError(f"only {len(top)} live cells have at most {budget:g} M parameters")
            frames.append(
                pd.DataFrame({"surface": surface, "alpha": alpha, "rank": np.arange(1, len(top) + 1),
                              "arch": top["arch"].to_numpy(), "fom": top["fom"].to_numpy(),
                              "params_m": top["params_m"].to_numpy()})
            )  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def cpu_estimate(archs: Sequence[str], seeds: int) -> tuple[float, int]:
    """(CPU seconds, candidates) to train ``archs`` x ``seeds`` at the proxy with 1 thread each, from the
    bundled rows' ``train_sec + eval_sec`` (the isomorphism class's mean, else the table's median)."""
    table = load_bundled_table()
    per_arch = table.values("train_sec", archs, fill="class") + table.values("eval_sec", archs, fill="class")
    median = float(np.nanmedian(table.values("train_sec") + table.values("eval_sec")))
    per_arch = np.where(np.isfinite(per_arch), per_arch, median)
    return float(per_arch.sum() * seeds), len(archs) * seeds


def measured_rows(table_path: Path, protocol_name: str, picks: pd.DataFrame, seeds: Sequence[int]):
    """The per-seed rows (:func:`~flatnas_bench.core.results.per_seed`: short column names, relative
    robustness per family derived) of the picks x ``seeds`` under the protocol in the experiment's table,
    with ``params_m`` the picks' NB201 size (the budget's unit, not the proxy network's)."""
    with ResultStore(table_path, readonly=True) as store:
        rows = store.to_frame()
    rows = rows[
        (rows["protocol"] == protocol_name)
        & rows["seed"].isin(list(seeds))
        & rows["arch"].isin(picks["arch"])
    ]
    if rows["protocol_hash"].nunique() > 1:
        raise ConfigError(
            f"{table_path} holds {protocol_name!r} under several configurations; use a fresh --out"
        )
    size = dict(zip(picks["arch"], picks["params_m"], strict=True))
    long = per_seed(rows, str(table_path))
    return long.assign(params_m=long["arch"].map(size))


def _seed_matrix(long: pd.DataFrame, archs: Sequence[str], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(archs, seeds) values with each arch's finite values first, NaN after; and their counts."""
    groups = [long.loc[long["arch"] == a, metric].dropna().to_numpy(float) for a in archs]
    width = max([len(g) for g in groups] + [1])
    values = np.full((len(archs), width), np.nan)
    for i, g in enumerate(groups):
        values[i, : len(g)] = g
    return values, np.array([len(g) for g in groups])


def _group_draws(values: np.ndarray, counts: np.ndarray, boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of a group: picks resampled, then each resampled pick's seeds (NaN-free)."""
    ok = counts > 0
    values, counts = values[ok], counts[ok]
    if not len(values):
        return np.full(boot, np.nan)
    picks = rng.integers(0, len(values), (boot, len(values)))
    seeds = np.floor(rng.random((boot, len(values), values.shape[1])) * counts[picks][..., None]).astype(int)
    draws = np.take_along_axis(values[picks], seeds, axis=2)
    mask = np.arange(values.shape[1]) < counts[picks][..., None]  # a pick's own number of seeds
    return (np.where(mask, draws, 0).sum(2) / counts[picks]).mean(1)


def compare_groups(long: pd.DataFrame, picks: pd.DataFrame, boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per surface and metric of :data:`METRICS`: each group's mean over its picks of their seed means with
    a bootstrap 95 % interval, and the FoM group minus the accuracy group with its interval."""
    rng = np.random.default_rng(seed)
    rows = []
    for surface, chosen in picks.groupby("surface", sort=False):
        groups = {a: chosen.loc[chosen["alpha"] == a, "arch"].tolist() for a in ALPHAS}
        shared = len(set(groups[ALPHAS[0]]) & set(groups[ALPHAS[1]]))
        for metric in METRICS:
            if metric not in long.columns:
                continue
            row = {"surface": surface, "metric": metric, "picks": len(groups[ALPHAS[0]]), "shared": shared}
            draws = {}
            for alpha, name in zip(ALPHAS, ("fom", "acc"), strict=True):
                values, counts = _seed_matrix(long, groups[alpha], metric)
                with np.errstate(all="ignore"):
                    row[name] = float(np.nanmean(np.nansum(values, 1) / counts))
                draws[name] = _group_draws(values, counts, boot, rng)
                row[f"{name}_low"], row[f"{name}_high"] = _interval(draws[name])
                row[f"{name}_seeds"] = int(counts.sum())
            row["diff"] = row["fom"] - row["acc"]
            row["diff_low"], row["diff_high"] = _interval(draws["fom"] - draws["acc"])
            rows.append(row)
    return pd.DataFrame(rows)


def _interval(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def markdown(report: pd.DataFrame, picks: pd.DataFrame, title: str) -> str:
    """The report as Markdown: per surface a table of the two groups and their difference."""
    lines = [f"# {title}", ""]
    for surface, rows in report.groupby("surface", sort=False):
        first = rows.iloc[0]
        lines += [
            f"## {surface}: {first['picks']} picks per group ({first['shared']} in both), "
            f"{first['fom_seeds'] // max(first['picks'], 1)} seeds each",
            "",
            "| metric | alpha 0.5 (FoM) | alpha 1 (accuracy only) | FoM minus accuracy |",
            "|---|---|---|---|",
        ]
        for r in rows.itertuples(index=False):
            cells = [f"{v:.4g} [{lo:.4g}, {hi:.4g}]" for v, lo, hi in
                     ((r.fom, r.fom_low, r.fom_high), (r.acc, r.acc_low, r.acc_high),
                      (r.diff, r.diff_low, r.diff_high))]  # fmt: skip
            lines.append(f"| {r.metric} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Picks:",
        "",
        "| surface | alpha | rank | arch | FoM | params (M) |",
        "|---|---|---|---|---|---|",
    ]
    for p in picks.itertuples(index=False):
        arch = p.arch.replace("|", "\\|")
        lines.append(f"| {p.surface} | {p.alpha:g} | {p.rank} | `{arch}` | {p.fom:.4g} | {p.params_m:.4g} |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 in any layout bench reads")
    parser.add_argument("--budget", type=float, default=0.8, help="parameter budget, M (both alphas)")
    parser.add_argument("--picks", type=int, default=5, help="best cells per group")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per pick (0..N-1)")
    parser.add_argument("--surrogate", type=Path, default=None, help="default: the bundled surrogate")
    parser.add_argument("--nb201", type=Path, default=ROOT.parent / "shared/data/nb201/nb201_accuracy.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/flatnas_experiment")
    parser.add_argument("--executor", default="serial")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per candidate (rows record it)")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples per interval")
    parser.add_argument("--plan", action="store_true", help="search and estimate the CPU only")
    parser.add_argument("--tiny", action="store_true", help="the whole pipeline in seconds (tests)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    picks_n, seeds = (1, [0, 1]) if args.tiny else (args.picks, list(range(args.seeds)))
    protocol = resolve_protocol("proxy", TINY if args.tiny else None)
    surfaces = ["surrogate"] + (["hybrid"] if args.nb201.is_file() else [])
    if "hybrid" not in surfaces:
        print(f"hybrid surface skipped: {args.nb201} not found")
    surrogate = load_surrogate(args.surrogate or bundled_surrogate_dir())
    picks = search_picks(surrogate, args.nb201, args.budget, picks_n, surfaces)
    archs = list(dict.fromkeys(picks["arch"]))
    seconds, candidates = cpu_estimate(archs, len(seeds))
    print(picks.to_string(index=False))
    print(
        f"{len(archs)} cells x {len(seeds)} seeds = {candidates} candidates; at the bundled protocol about "
        f"{seconds / 3600:.1f} CPU core-hours (1 thread per candidate, the bundled rows' train + eval time)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    picks.to_csv(args.out / "picks.csv", index=False)
    if args.plan:
        return 0
    table_path = args.out / "experiment.sqlite"
    baseline = picks.loc[picks["alpha"] == 1.0, "arch"].iloc[0]
    retrain(archs, protocol=protocol, data_path=args.data, table_path=table_path, baseline=baseline,
            out=args.out / "retrain", seeds=seeds, executor=args.executor,
            options=ExecutorOptions(workers=args.workers, threads=args.threads), progress=False)  # fmt: skip
    long = measured_rows(table_path, protocol.name, picks, seeds)
    report = compare_groups(long, picks, boot=args.boot)
    report.to_csv(args.out / "flatnas_experiment.csv", index=False)
    title = f"FlatNAS experiment: alpha 0.5 vs 1 at <= {args.budget:g} M parameters, protocol {protocol.name}"
    (args.out / "flatnas_experiment.md").write_text(markdown(report, picks, title))
    print(markdown(report, picks, title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
