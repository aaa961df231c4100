"""Retrain the search's picks at full fidelity, measure them, and report against an accuracy-only pick.

The picks (archs, or the ``pareto.csv`` / ``pareto.json`` a search wrote) and one baseline arch (the
pick of an accuracy-only search, the method's "CNAS" baseline) are trained by the engine
(``bench.run_bench``, one SQLite result table, finished candidates skipped on re-runs) under a protocol
and seeds; each result row carries clean accuracy, flatness R and the corruption metrics. The report
averages over seeds and writes

* ``retrain.csv``: one row per arch (role, costs, mean and std over seeds of each metric);
* ``retrain.md``: the same as a Markdown table, plus each pick's difference from the baseline;
* ``retrain.png``: clean test accuracy (x) vs mean corruption accuracy (y), marker area by params,
  colour by flatness R (smaller = flatter), the baseline drawn as a star.

>>> report = retrain(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
...                   "nor_conv_3x3~2|"], protocol="proxy", data_path="data/cifar10", table_path="rt.sqlite",
...                  baseline="|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
...                  "nor_conv_3x3~1|nor_conv_3x3~2|", out="retrain")             # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatnas_bench.bench.driver import run_bench
from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.core.metric_names import metric_column
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.core.results import N_SEEDS, UNITS, drop_failed, seed_stats
from flatnas_bench.nb201.space import Arch, ArchLike, as_arch
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import exhaustive
from flatnas_bench.search.objectives import cost_values, make_constraint, make_objective
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import ResultStore
from flatnas_bench.tables.table import BenchTable

SHOWN: tuple[str, ...] = ("arch", "role", "params_m", "test_acc", "flatness_r", "corr_acc_mean", "n_seeds")
METRICS: tuple[str, ...] = (
    "val_acc", "test_acc", "flatness_r", "corr_acc_mean", "corr_acc_rel", "mce", "loss_sharpness",
)  # fmt: skip
COSTS: tuple[str, ...] = ("params_m", "flops_m")
DIFFERENCES: tuple[str, ...] = ("test_acc", "corr_acc_mean", "corr_acc_rel", "flatness_r")


def load_picks(path: str | Path) -> list[Arch]:
    """The archs of a search's ``pareto.csv`` or ``pareto.json`` (``arch`` column / ``pareto`` records)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no Pareto file at {path}")
    try:
        if path.suffix == ".json":
            records = json.loads(path.read_text()).get("pareto", [])
            strings = [r["arch"] for r in records]
        else:
            strings = read_csv(path)["arch"].tolist()
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read archs from {path}: {type(exc).__name__}: {exc}") from None
    if not strings:
        raise ConfigError(f"{path} lists no archs")
    return [as_arch(s) for s in strings]


def accuracy_baseline(surrogate: Any, objective: str = "val_acc", constraints: Sequence[str] = ()) -> Arch:
    """The arch an accuracy-only search picks: the exhaustive optimum of ``objective`` (a full or short
    target name, e.g. ``val_acc``) on ``surrogate``."""
    context = ObjectiveContext(surrogate=surrogate)
    result = exhaustive(
        [make_objective(objective, context)], [make_constraint(c, context) for c in constraints]
    )
    return result.front_archs[0]


def summarise(table: BenchTable, picks: Sequence[ArchLike], baseline: ArchLike | None) -> pd.DataFrame:
    """One row per arch from a table of result rows for one protocol (:meth:`BenchTable.from_results`,
    several seeds each): ``arch``, ``role`` (pick / baseline / pick+baseline), ``n_seeds``, ``params_m``,
    ``flops_m``, and ``{metric}`` / ``{metric}_std`` (mean and sample std over seeds) per metric of
    :data:`METRICS`, named by their result-row column; then, per metric of :data:`DIFFERENCES`,
    ``{metric}_diff`` / ``{metric}_diff_std`` / ``{metric}_diff_n``: the arch minus the baseline, seed by
    seed (over the seeds both have), as mean, sample std and count (the baseline's own row: 0).

    Failed rows are not in the table's per-seed rows; an arch with no successful row keeps NaN metrics and
    NB201's C=16, N=5 costs.
    """
    picks = [as_arch(a).canonical() for a in picks]
    base = None if baseline is None else as_arch(baseline).canonical()
    order = list(dict.fromkeys([*picks, *([base] if base is not None else [])]))
    long = table.per_seed()
    long = long.rename(columns={c: metric_column(c) for c in long.columns if c not in ("arch", "seed")})
    long["arch"] = [str(Arch.from_str(a).canonical()) for a in long["arch"]]
    stats = seed_stats(long, [*METRICS, *COSTS]).set_index("arch")
    stats = stats.reindex([str(a) for a in order])
    stats[N_SEEDS] = stats[N_SEEDS].fillna(0).astype(int)
    for cost in COSTS:  # the trained network's own, else NB201's C=16, N=5 network
        stats[cost] = stats[cost].fillna(pd.Series(cost_values(order, cost), index=stats.index))
    roles = [
        "pick+baseline" if a == base and a in picks else "baseline" if a == base else "pick" for a in order
    ]
    columns = [N_SEEDS, *COSTS, *(f"{m}{s}" for m in METRICS for s in ("", "_std"))]
    out = stats[columns].reset_index()
    out.insert(1, "role", roles)
    return out.join(_paired_differences(long, [str(a) for a in order], None if base is None else str(base)))


def _paired_differences(long: pd.DataFrame, archs: Sequence[str], base: str | None) -> pd.DataFrame:
    """Per arch (rows in ``archs`` order) and metric of :data:`DIFFERENCES`: mean, std and count of the
    seed-by-seed difference from ``base`` (NaN without a baseline or shared seeds)."""
    columns = [f"{m}{s}" for m in DIFFERENCES for s in ("_diff", "_diff_std", "_diff_n")]
    out = pd.DataFrame(np.nan, index=range(len(archs)), columns=columns)
    if base is None:
        return out
    wide = {m: long.pivot_table(index="arch", columns="seed", values=m) for m in DIFFERENCES if m in long}
    for metric, table in wide.items():
        if base not in table.index:
            continue
        for i, arch in enumerate(archs):
            if arch not in table.index:
                continue
            diff = (table.loc[arch] - table.loc[base]).dropna().to_numpy(float)
            std = float(np.std(diff, ddof=1)) if len(diff) > 1 else np.nan
            out.loc[i, [f"{metric}_diff", f"{metric}_diff_std", f"{metric}_diff_n"]] = (
                float(diff.mean()) if len(diff) else np.nan,
                std,
                len(diff),
            )
    return out


def _markdown(summary: pd.DataFrame, title: str) -> str:
    shown = ["role", "params_m", *[m for m in METRICS if summary[m].notna().any()], "n_seeds"]
    header = "| arch | " + " | ".join(shown) + " |"
    lines = [f"# {title}", "", header, "|" + "---|" * (len(shown) + 1)]
    for _, row in summary.iterrows():
        cells = []
        for col in shown:
            value = row[col]
            if col in METRICS and np.isfinite(value):
                std = row[f"{col}_std"]
                cells.append(f"{value:.2f}" + (f" ± {std:.2f}" if np.isfinite(std) else ""))
            elif isinstance(value, float):
                cells.append("n/a" if not np.isfinite(value) else f"{value:.3f}")
            else:
                cells.append(str(value))
        arch = row["arch"].replace("|", "\\|")  # a bare '|' would end the Markdown table cell
        lines.append(f"| `{arch}` | " + " | ".join(cells) + " |")
    base = summary[summary["role"].str.contains("baseline")]
    if not base.empty:
        b = base.iloc[0]
        lines += [
            "",
            "Differences from the accuracy-only baseline (pick minus baseline, seed by seed: mean ± std over "
            "the seeds both have):",
            "",
        ]
        for _, row in summary[summary["role"] == "pick"].iterrows():
            parts = [
                f"{m} {row[f'{m}_diff']:+.3f}"
                + (f" ± {row[f'{m}_diff_std']:.3f}" if np.isfinite(row[f"{m}_diff_std"]) else "")
                + f" {UNITS[m]} ({int(row[f'{m}_diff_n'])} seeds)"
                for m in DIFFERENCES
                if np.isfinite(row[f"{m}_diff"])
            ]
            parts.append(f"params {row['params_m'] - b['params_m']:+.3f} M")
            lines.append(f"- `{row['arch']}`: " + ", ".join(parts))
    lines += ["", "Units: accuracies in %, flatness R in accuracy points (smaller = flatter), params in M."]
    return "\n".join(lines) + "\n"


def _plot(summary: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    x = summary["test_acc"].to_numpy(float)
    measured = summary["corr_acc_mean"].notna().any()
    y = summary["corr_acc_mean" if measured else "val_acc"].to_numpy(float)
    r = summary["flatness_r"].to_numpy(float)
    size = 40 + 400 * summary["params_m"].to_numpy(float) / max(summary["params_m"].max(), 1e-9)
    is_base = summary["role"].str.contains("baseline").to_numpy()
    colour = np.where(np.isfinite(r), r, np.nanmean(r) if np.isfinite(r).any() else 0.0)
    kwargs = {"cmap": "viridis", "vmin": np.nanmin(colour), "vmax": np.nanmax(colour) + 1e-9}
    points = ax.scatter(
        x[~is_base], y[~is_base], s=size[~is_base], c=colour[~is_base], label="picks", **kwargs
    )
    ax.scatter(x[is_base], y[is_base], s=size[is_base] * 2, c=colour[is_base], marker="*", edgecolors="k",
               label="accuracy-only baseline", **kwargs)  # fmt: skip
    for xi, yi, p in zip(x, y, summary["params_m"], strict=True):
        if np.isfinite(xi) and np.isfinite(yi):
            ax.annotate(f"{p:.2f}M", (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=7)
    fig.colorbar(points, ax=ax, label="flatness R (acc. points, smaller = flatter)")
    ax.set_xlabel("clean test accuracy (%)")
    ax.set_ylabel("mean corruption accuracy (%)" if measured else "validation accuracy (%) [no corruptions]")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8, markerscale=0.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def per_corruption(rows: pd.DataFrame, archs: Sequence[str]) -> pd.DataFrame:
    """Accuracy (%) per corruption (mean over its severities, as stored in ``corr_per``), averaged over
    the successful seeds: one row per arch of ``archs`` (canonical strings, in that order), one column per
    corruption (sorted); empty when no row measured corruptions."""
    measured = drop_failed(rows)
    measured = measured[measured["corr_per"].notna()] if "corr_per" in measured else measured.iloc[:0]
    if measured.empty:
        return pd.DataFrame(index=pd.Index(list(archs), name="arch"))
    per = pd.DataFrame([json.loads(text) for text in measured["corr_per"]], index=measured.index)
    per["arch"] = [str(Arch.from_str(a).canonical()) for a in measured["arch"]]
    out = per.groupby("arch").mean().reindex(list(archs))
    out.index.name = "arch"
    return out[sorted(out.columns)]


def _corruption_markdown(table: pd.DataFrame) -> list[str]:
    lines = ["", "Accuracy per corruption (%, mean over severities and seeds):", ""]
    lines += ["| arch | " + " | ".join(table.columns) + " |", "|" + "---|" * (len(table.columns) + 1)]
    for arch, values in table.iterrows():
        cells = ["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in values.to_numpy(float)]
        name = str(arch).replace("|", "\\|")  # a bare '|' would end the Markdown table cell
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def write_report(
    summary: pd.DataFrame,
    out: str | Path,
    title: str = "Retraining report",
    corruptions: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write ``retrain.csv``, ``retrain.md`` and ``retrain.png`` for a :func:`summarise` frame, and with a
    :func:`per_corruption` table (not empty) also ``retrain_corruptions.csv`` and its section in the
    Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "retrain.csv", "md": out / "retrain.md", "png": out / "retrain.png"}
    summary.to_csv(paths["csv"], index=False)
    text = _markdown(summary, title)
    if corruptions is not None and len(corruptions.columns):
        paths["corruptions"] = out / "retrain_corruptions.csv"
        corruptions.reset_index().to_csv(paths["corruptions"], index=False)
        text += "\n".join(_corruption_markdown(corruptions)) + "\n"
    paths["md"].write_text(text)
    _plot(summary, paths["png"], title)
    return paths


def retrain(
    archs: Sequence[ArchLike],
    *,
    protocol: Any,
    data_path: str | Path,
    table_path: str | Path,
    baseline: ArchLike | None,
    out: str | Path,
    seeds: Sequence[int] = (0,),
    executor: str = "serial",
    **bench_options: Any,
) -> pd.DataFrame:
    """Train ``archs`` and ``baseline`` with the engine under ``protocol`` (a name or a Protocol) and
    ``seeds``, then write the report to ``out``; returns the :func:`summarise` frame.

    ``bench_options`` go to ``bench.run_bench`` (e.g. corruption settings, workers).
    """
    if not archs:
        raise ConfigError("no archs to retrain; pass ARCH ... or --from-pareto FILE")
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    picks = [as_arch(a).canonical() for a in archs]
    base = None if baseline is None else as_arch(baseline).canonical()
    todo = list(dict.fromkeys([*picks, *([base] if base is not None else [])]))
    ran = run_bench(
        [str(a) for a in todo],
        proto,
        table_path,
        data_path,
        executor=executor,
        seeds=list(seeds),
        **bench_options,
    )
    with ResultStore(table_path, readonly=True) as store:
        rows = store.to_frame(ran.protocol_hash)  # the hash it ran under (bf16 on CUDA)
    rows = rows[rows["seed"].isin(list(seeds))]
    if rows.empty:
        raise TableError(f"no results for protocol {proto.name!r} in {table_path}")
    table = BenchTable.from_results(
        rows, proto.dataset, proto.name, protocol_hash=ran.protocol_hash, source=str(table_path)
    )
    summary = summarise(table, picks, base)
    title = f"Retraining report: protocol {proto.name}, seeds {list(seeds)}"
    write_report(summary, out, title, per_corruption(rows, list(summary["arch"])))
    return summary
