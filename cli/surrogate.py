"""``flatnas-bench fit-surrogate`` and ``flatnas-bench query``: train XGBoost surrogates on a benchmark table,
report their cross-validated quality, and answer predictions (mean ± std) with exact costs."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import command, wide_console
from flatnas_bench.core.errors import ConfigError, DataError, ModelFileError

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from surrogates import SurrogateSet


def _fmt(value: float, digits: int = 4) -> str:
    return (
        "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def cv_table(report: pd.DataFrame, title: str) -> Table:
    """The CV report (one row per target) as a rich table, each CV tau beside its target's noise ceiling."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("target", no_wrap=True)
    names = ("kendall tau", "seed tau", "attainable tau", "spearman rho", "R2", "RMSE", "archs", "folds")
    for name in names:
        table.add_column(name, justify="right")
    for row in report.itertuples(index=False):
        table.add_row(
            row.target,
            _fmt(row.kendall_tau),
            _seed_tau(row.ceiling_kendall, row.ceiling_archs),
            _fmt(row.attainable_kendall) if row.ceiling_archs else "-",
            _fmt(row.spearman_rho),
            _fmt(row.r2),
            _fmt(row.rmse),
            str(row.n),
            str(row.folds),
        )
    table.caption = (
        "seed tau: seed-to-seed Kendall tau of the measurement over the table's archs with two seeds (n); "
        "attainable tau: the CV tau a perfect predictor of the noise-free value would reach on these "
        "per-arch seed means (Gaussian noise model)"
    )
    return table


def _seed_tau(kendall: float, archs: int) -> str:
    return "no replicates" if kendall != kendall else f"{kendall:.4f} (n={int(archs)})"


@command("fit-surrogate")
def fit_surrogate_command(
    table: Annotated[
        Path, typer.Option(help="Benchmark table: our SQLite, CSV/Parquet, NB201 .pth or NATS directory.")
    ],
    targets: Annotated[
        str, typer.Option(help="Comma-separated metrics to model, e.g. 'val_acc,flatness_r'.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the models and metadata.json into.")],
    folds: Annotated[int, typer.Option(min=0, help="k of the k-fold cross-validation (0: skip).")] = 5,
    models: Annotated[int, typer.Option("--models", min=1, help="Ensemble members per target.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the CV split and of every member.")] = 0,
    zero_cost: Annotated[
        bool,
        typer.Option(
            "--zero-cost",
            help="Add synflow/jacob_cov/snip features (~0.65 s per new canonical arch, cached).",
        ),
    ] = False,
    model: Annotated[str, typer.Option(help="Surrogate model from the registry.")] = "xgboost",
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap",
            help="Each ensemble member trains on a bootstrap resample (a wider, more honest std).",
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Model hyperparameter KEY=VALUE (repeatable), e.g. max_depth=4."),
    ] = None,
) -> None:
    """Fit one surrogate ensemble per target, print k-fold Kendall tau / Spearman rho / R2 / RMSE, save."""
    from flatnas_bench.bench.driver import parse_settings
    from flatnas_bench.tables.readers import load_table
    from surrogates import fit_surrogate
    from surrogates.base import surrogate_class
    from surrogates.fit import FEW_CLASSES

    surrogate_class(model)  # an unknown model fails before the table is read
    names = [t.strip() for t in targets.split(",") if t.strip()]
    bench = load_table(table)
    fitted = fit_surrogate(
        bench,
        names,
        n_models=models,
        seed=seed,
        folds=folds,
        zero_cost=zero_cost,
        model=model,
        params={**parse_settings(param or []), **({"bootstrap": True} if bootstrap else {})},
    )
    fitted.save(out)
    for target, info in fitted.meta["models"].items():
        if info["n_train"] < FEW_CLASSES:
            typer.echo(
                f"note: {target} was fitted on only {info['n_train']} archs; expect rough rankings", err=True
            )
    console = wide_console()
    console.print(cv_table(fitted.cv_report, f"{folds}-fold cross-validation on {table}"))
    console.print(f"saved {len(names)} surrogate(s) ({model}, {models} members each) to {out}")


def _read_arch_file(path: Path) -> list[str]:
    """Arch strings of a text file, one per line (blank lines, '#' comments and an 'arch' header skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read arch file {path}: {exc.strerror or exc}") from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#") and s.strip() != "arch"]


def _surrogate_dir(surrogate: Path | None) -> Path:
    if surrogate is not None:
        return surrogate
    try:
        from flatnas_bench.tables.bundled import bundled_surrogate_dir
    except ImportError:
        raise ModelFileError("this install has no bundled surrogate; pass --surrogate DIR") from None
    return bundled_surrogate_dir()


CAPTION = (
    "CV tau: the surrogate's cross-validated Kendall tau; seed tau: seed-to-seed tau of the data; "
    "attainable: the CV tau of a perfect predictor of the noise-free value"
)


def _aligned(rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Rows as lines of columns two spaces apart, column k left- or right-aligned by ``align[k]`` ("l" or
    "r"); trailing blanks dropped, so a left-aligned last column is not padded."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(align))]
    lines = []
    for row in rows:
        cells = zip(row, widths, align, strict=True)
        lines.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in cells).rstrip())
    return lines


def _ceiling(quality: dict[str, Any]) -> tuple[str, str, str]:
    """A target's CV tau, seed tau and attainable tau, two decimals ("-" without replicates)."""
    replicated = bool(quality["ceiling_archs"])
    return (
        _fmt(quality["kendall_tau"], 2),
        _fmt(quality["ceiling_kendall"], 2) if replicated else "-",
        _fmt(quality["attainable_kendall"], 2) if replicated else "-",
    )


def _value(columns: dict[str, Any], target: str, k: int) -> str:
    return f"{columns[target][k]:.3f} ± {columns[target + '_std'][k]:.3f}"


def arch_blocks(columns: dict[str, Any], shown: list[str], model: SurrogateSet) -> list[str]:
    """One block per arch: the arch string, its exact costs, then one line per target (prediction, CV tau
    and noise ceiling), at most 80 columns wide for target names up to 30 characters."""
    ceilings = {t: _ceiling(model.quality(t)) for t in shown}
    lines: list[str] = []
    for k, arch in enumerate(columns["arch"]):
        rows = [("target", "prediction", "CV tau", "seed tau", "attainable")]
        rows += [(t, _value(columns, t, k), *ceilings[t]) for t in shown]
        costs = f"params {columns['params_m'][k]:.6f} M, FLOPs {columns['flops_m'][k]:.5f} M MACs"
        lines += [*([""] if k else []), arch, costs, *_aligned(rows, "lrrrr")]
    return lines


def target_table(columns: dict[str, Any], target: str, model: SurrogateSet) -> list[str]:
    """One target for several archs: a line naming the target and its quality, then one line per arch
    (prediction, params, MACs, and the arch string last, so that only it runs past 80 columns)."""
    cv, seed, attainable = _ceiling(model.quality(target))
    ceiling = f"seed tau {seed}, attainable {attainable}" if seed != "-" else "no replicates"
    rows = [("prediction", "params (M)", "FLOPs (M MACs)", "arch")]
    for k, arch in enumerate(columns["arch"]):
        params, flops = columns["params_m"][k], columns["flops_m"][k]
        rows.append((_value(columns, target, k), f"{params:.6f}", f"{flops:.5f}", arch))
    return [f"{target}: CV tau {cv}, {ceiling}", *_aligned(rows, "rrrl")]


@command("query")
def query_command(
    archs: Annotated[list[str] | None, typer.Argument(help="NB201 arch strings to predict.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Text file with one arch string per line.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of records instead.")] = False,
    surrogate: Annotated[
        Path | None, typer.Option(help="Surrogate directory (default: the bundled one).")
    ] = None,
    targets: Annotated[
        str | None, typer.Option(help="Comma-separated subset of the surrogate's targets.")
    ] = None,
) -> None:
    """Predicted targets (ensemble mean ± std) and exact params (M) / FLOPs (M MACs) for each arch: one
    line per target beside its CV tau and noise ceiling (one line per arch when one target is asked for)."""
    from surrogates import load_surrogate

    wanted = list(archs or [])
    if file is not None:
        wanted += _read_arch_file(file)
    if not wanted:
        raise ConfigError("give at least one arch string or --file F")
    model = load_surrogate(_surrogate_dir(surrogate))
    chosen = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    if as_json:
        typer.echo(_query_json(model, wanted, chosen))
        return
    from surrogates.surrogate_set import query_columns

    columns = query_columns(model, wanted, chosen)
    shown = [model.resolve(t) for t in chosen] if chosen else model.targets
    if len(shown) == 1 and len(wanted) > 1:
        lines = target_table(columns, shown[0], model)
    else:
        lines = arch_blocks(columns, shown, model)
    typer.echo("\n".join([*lines, "", textwrap.fill(CAPTION, 80)]))


def _query_json(model: SurrogateSet, archs: list[str], targets: list[str] | None) -> str:
    """The ``--json`` records: one per arch, each target's mean, std, CV tau and ceiling, and the costs."""
    from surrogates import query

    frame = query(model, archs, targets)
    report = model.cv_report.set_index("target")
    for target in [c for c in frame.columns if f"{c}_std" in frame.columns]:
        frame[f"{target}_cv_tau"] = report.loc[target, "kendall_tau"]
        frame[f"{target}_ceiling_tau"] = report.loc[target, "ceiling_kendall"]
        frame[f"{target}_attainable_tau"] = report.loc[target, "attainable_kendall"]
    return json.dumps(frame.to_dict(orient="records"), indent=2)
