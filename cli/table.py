"""``flatnas-bench table show|export|reliability``: look at, export, or measure the seed-to-seed
reliability of a benchmark table written by ``bench``.

    flatnas-bench table show runs/proxy.sqlite --sort val_acc --limit 10
    flatnas-bench table export runs/proxy.sqlite runs/proxy.parquet
    flatnas-bench table reliability flatnas_bench/bundled/proxy_cifar10.csv
    flatnas-bench table reliability flatnas_bench/bundled/proxy_cifar10.csv --by family

All only read the table, so they are safe while a bench run is writing it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import command
from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.tables.store import ResultStore

if TYPE_CHECKING:
    import pandas as pd

SHOWN = [
    "arch",
    "seed",
    "val_acc",
    "test_acc",
    "flatness_r",
    "loss_sharpness",
    "params_m",
    "flops_m",
    "error",
]


class Action(str, Enum):
    show = "show"
    export = "export"
    reliability = "reliability"


class View(str, Enum):
    """``table reliability --by``: the views of :data:`flatnas_bench.tables.reliability.RELIABILITY_VIEWS`."""

    metric = "metric"
    corruption = "corruption"
    family = "family"


_BY_HELP = (
    "reliability: metric (every measured metric), corruption (relative accuracy, corruption / clean "
    "test accuracy, per corruption) or family (per CIFAR-10-C family: noise, blur, weather, digital)."
)


def show_frame(store: ResultStore, protocol: str | None, sort: str | None, limit: int | None) -> pd.DataFrame:
    """The rows ``table show`` prints: key metrics of one protocol (or all), sorted descending by ``sort``."""
    protocol_hash = store.resolve_protocol(protocol)[0] if protocol else None
    frame = store.to_frame(protocol_hash)
    if sort is not None:
        if sort not in frame.columns:
            raise ConfigError(f"cannot sort by {sort!r}; columns: {', '.join(frame.columns)}")
        frame = frame.sort_values(sort, ascending=False, kind="stable", na_position="last")
    columns = [c for c in SHOWN if c in frame.columns]
    if sort is not None and sort not in columns:
        columns.append(sort)
    if protocol_hash is None and frame["protocol_hash"].nunique() > 1:
        columns.insert(1, "protocol")
    return frame[columns].head(limit) if limit else frame[columns]


@command("table")
def table(
    action: Annotated[Action, typer.Argument(help="show: print rows; export: write CSV or Parquet.")],
    path: Annotated[
        Path, typer.Argument(help="SQLite table written by flatnas-bench bench (reliability: or its export).")
    ],
    out: Annotated[Path | None, typer.Argument(help="export: OUT.csv or OUT.parquet.")] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="show: column to sort by, descending.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="show: at most this many rows.", min=1)] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="Only this protocol (name or hash prefix).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="reliability: print JSON records.")] = False,
    boot: Annotated[
        int, typer.Option("--boot", help="reliability: bootstrap resamples per 95 % interval.", min=0)
    ] = 1000,
    by: Annotated[View, typer.Option("--by", help=_BY_HELP)] = View.metric,
) -> None:
    """Show a benchmark table's rows and protocols, export it to CSV/Parquet, or print each metric's
    seed-to-seed reliability (Spearman, Kendall, ICC with bootstrap 95 % intervals), per metric or of
    relative robustness per corruption or family (--by)."""
    if action is Action.reliability:
        _reliability(path, protocol, as_json, boot, by.value)
        return
    if by is not View.metric:
        raise ConfigError(f"--by is an option of table reliability, not of table {action.value}")
    with ResultStore(path, readonly=True) as store:
        if action is Action.export:
            if out is None:
                raise ConfigError("table export needs an output file: table export T.sqlite OUT.csv")
            protocol_hash = store.resolve_protocol(protocol)[0] if protocol else None
            typer.echo(f"wrote {store.export(out, protocol_hash)} rows to {out}")
        elif out is not None:
            raise ConfigError(f"table show takes no output file (got {out}); did you mean table export?")
        else:
            _show(store, protocol, sort, limit)


def _show(store: ResultStore, protocol: str | None, sort: str | None, limit: int | None) -> None:
    protocols = store.protocols()
    if protocols.empty:
        raise TableError(f"{store.path} holds no results yet")
    for row in protocols.itertuples():
        typer.echo(f"protocol {row.name} {row.hash}: {row.rows} rows (dataset {row.card.get('dataset')})")
    counts = store.counts()
    typer.echo(f"{counts['rows']} rows: {counts['ok']} ok, {counts['failed']} failed")
    frame = show_frame(store, protocol, sort, limit)
    typer.echo(frame.to_string(index=False, max_colwidth=100, float_format=lambda v: f"{v:.4g}"))


def _reliability(path: Path, protocol: str | None, as_json: bool, boot: int, by: str) -> None:
    import json

    from flatnas_bench.tables.readers import load_table
    from flatnas_bench.tables.reliability import table_reliability

    results = table_reliability(load_table(path), protocol, by=by, boot=boot)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=1))
        return
    typer.echo(f"seed-to-seed reliability over the archs of {path} with two seeds (first two seeds each)")
    if by != "metric":
        typer.echo(f"relative accuracy (corruption accuracy / clean test accuracy, per row) per {by}; "
                   "mean: over both seeds of those archs")  # fmt: skip
    typer.echo(f"{'metric':40} {'archs':>5} {'mean':>8} {'Spearman [95 % CI]':>22} {'Kendall [95 % CI]':>22} "
               f"{'ICC [95 % CI]':>22} {'within SE':>9}")  # fmt: skip
    for r in results:
        cells = [f"{v:6.3f} [{lo:6.3f}, {hi:6.3f}]" for v, (lo, hi) in
                 ((r.spearman, r.spearman_ci), (r.kendall, r.kendall_ci), (r.icc, r.icc_ci))]  # fmt: skip
        se = f"{r.within_se:9.3f}" if r.within_se == r.within_se else f"{'-':>9}"
        head = f"{r.metric:40} {r.archs:5d} {r.mean:8.4g}"
        typer.echo(f"{head} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {se}")
