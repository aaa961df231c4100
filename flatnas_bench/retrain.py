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

from flatnas_bench.errors import ConfigError, TableError
from flatnas_bench.space import Arch, ArchLike, as_arch

SHOWN: tuple[str, ...] = ("arch", "role", "params_m", "test_acc", "flatness_r", "corr_acc_mean", "n_seeds")
METRICS: tuple[str, ...] = ("val_acc", "test_acc", "flatness_r", "corr_acc_mean", "mce", "loss_sharpness")
UNITS = {
    "val_acc": "%",
    "test_acc": "%",
    "flatness_r": "acc. points",
    "corr_acc_mean": "%",
    "mce": "%",
    "loss_sharpness": "CE",
}


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
            strings = pd.read_csv(path)["arch"].tolist()
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read archs from {path}: {type(exc).__name__}: {exc}") from None
    if not strings:
        raise ConfigError(f"{path} lists no archs")
    return [as_arch(s) for s in strings]


def accuracy_baseline(surrogate: Any, objective: str = "val_acc", constraints: Sequence[str] = ()) -> Arch:
    """The arch an accuracy-only search picks: the exhaustive optimum of ``objective`` on ``surrogate``."""
    from flatnas_bench.objectives import ObjectiveContext, make_constraint, make_objective
    from flatnas_bench.search import exhaustive

    context = ObjectiveContext(surrogate=surrogate)
    result = exhaustive(
        [make_objective(objective, context)], [make_constraint(c, context) for c in constraints]
    )
    return result.front_archs[0]


def summarise(rows: pd.DataFrame, picks: Sequence[ArchLike], baseline: ArchLike | None) -> pd.DataFrame:
    """One row per arch from result rows (several seeds each): ``arch``, ``role`` (pick / baseline /
    pick+baseline), ``n_seeds``, ``params_m``, ``flops_m``, and ``{metric}`` / ``{metric}_std`` over seeds.

    Failed rows (``error`` set) are left out; an arch with no successful row keeps NaN metrics.
    """
    picks = [as_arch(a).canonical() for a in picks]
    base = None if baseline is None else as_arch(baseline).canonical()
    order = list(dict.fromkeys([*picks, *([base] if base is not None else [])]))
    rows = rows.copy()
    if "error" in rows.columns:
        failed = rows["error"].notna() & (rows["error"].astype(str).str.strip() != "")
        rows = rows[~failed.to_numpy()]
    rows["_key"] = [as_arch(a).canonical() for a in rows["arch"]]
    from flatnas_bench.objectives import cost_values

    out = []
    for arch in order:
        mine = rows[rows["_key"] == arch]
        role = "pick+baseline" if arch == base and arch in picks else ("baseline" if arch == base else "pick")
        entry: dict[str, Any] = {"arch": str(arch), "role": role, "n_seeds": len(mine)}
        for cost in ("params_m", "flops_m"):  # the trained network's own, else NB201's C=16, N=5 network
            measured = mine[cost].dropna() if cost in mine.columns else pd.Series(dtype=float)
            entry[cost] = float(measured.mean()) if len(measured) else float(cost_values([arch], cost)[0])
        for metric in METRICS:
            values = mine[metric].astype(float).to_numpy() if metric in mine.columns else np.array([])
            values = values[np.isfinite(values)]
            entry[metric] = float(values.mean()) if len(values) else np.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        out.append(entry)
    return pd.DataFrame(out)


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
        lines += ["", "Differences from the accuracy-only baseline (pick minus baseline):", ""]
        for _, row in summary[summary["role"] == "pick"].iterrows():
            parts = [
                f"{m} {row[m] - b[m]:+.2f} {UNITS[m]}"
                for m in ("test_acc", "corr_acc_mean", "flatness_r")
                if np.isfinite(row[m]) and np.isfinite(b[m])
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


def write_report(summary: pd.DataFrame, out: str | Path, title: str = "Retraining report") -> dict[str, Path]:
    """Write ``retrain.csv``, ``retrain.md`` and ``retrain.png`` for a :func:`summarise` frame."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "retrain.csv", "md": out / "retrain.md", "png": out / "retrain.png"}
    summary.to_csv(paths["csv"], index=False)
    paths["md"].write_text(_markdown(summary, title))
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
    from flatnas_bench.bench import run_bench
    from flatnas_bench.protocol import get_protocol
    from flatnas_bench.store import ResultStore

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
    if rows.empty:
        raise TableError(f"no results for protocol {proto.name!r} in {table_path}")
    rows = rows[rows["seed"].isin(list(seeds))] if "seed" in rows.columns else rows
    summary = summarise(rows, picks, base)
    write_report(summary, out, title=f"Retraining report: protocol {proto.name}, seeds {list(seeds)}")
    return summary
