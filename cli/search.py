"""``flatnas-bench search``, ``loop`` and ``retrain``: find Pareto-optimal NB201 archs on a surrogate, run the
FlatNAS loop against a table oracle or the engine, and retrain picks into a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import command, wide_console
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.search.fom import DEFAULT_ALPHA
from flatnas_bench.search.objectives import describe_objectives

_OBJECTIVE_HELP = (
    "Objective spec, repeatable: a registered name ("
    + ", ".join(describe_objectives())
    + "), a surrogate target or a table column; suffix :max/:min to force the sense; "
    "options as fom(alpha=0.3,acc=val_acc,r=flatness_r)."
)
_CONSTRAINT_HELP = "Constraint NAME<=VALUE or NAME>=VALUE, repeatable (e.g. 'pixel3_ms<=12')."


_SET_HELP = "Protocol override KEY=VALUE (repeatable), e.g. epochs=2."
_STRATEGY_HELP = (
    "flatnas (surrogate loop), random, evolution (regularized evolution), local (local search with "
    "restarts) or nsga2 (NSGA-II on the evaluator, no surrogate)."
)


def _protocol(name: str, settings: list[str] | None):
    from flatnas_bench.bench.driver import parse_settings, resolve_protocol

    return resolve_protocol(name, parse_settings(settings or []))


def _print_frame(frame, title: str, limit: int) -> None:
    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(column, overflow="fold", justify="left" if column == "arch" else "right")
    for _, row in frame.head(limit).iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console = wide_console()
    console.print(table)
    if len(frame) > limit:
        console.print(f"... {len(frame) - limit} more rows (see --out)")


_ALLOW_DEAD_HELP = (
    "Also consider cells with no live input-to-output route (left out by default: they sit at chance "
    "with R = 0)."
)


@command("search")
def search_command(
    objective: Annotated[list[str] | None, typer.Option("--objective", "-o", help=_OBJECTIVE_HELP)] = None,
    surrogate: Annotated[
        str, typer.Option(help="Surrogate directory (fit-surrogate), 'bundled', or 'none' (tables only).")
    ] = "bundled",
    table: Annotated[
        list[Path] | None, typer.Option("--table", help="Benchmark table(s) joined for column objectives.")
    ] = None,
    max_params: Annotated[float | None, typer.Option(help="Constraint: params (M) at most this.")] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", "-c", help=_CONSTRAINT_HELP)] = None,
    alpha: Annotated[float, typer.Option(help="FoM weight of the error term.")] = DEFAULT_ALPHA,
    strategy: Annotated[str, typer.Option(help="nsga2 (pymoo) or exhaustive (all 6,466 classes).")] = "nsga2",
    pop_size: Annotated[
        int | None, typer.Option(help="NSGA-II population [default: SearchConfig's].")
    ] = None,
    generations: Annotated[
        int | None, typer.Option(help="NSGA-II generations [default: SearchConfig's].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same front).")] = 0,
    compare: Annotated[
        bool, typer.Option(help="Also score the whole space and report the hypervolume ratio.")
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Write pareto.csv, pareto.json, scored.csv, front.png.")
    ] = None,
    top: Annotated[int, typer.Option(help="Rows of the front to print.")] = 30,
    allow_dead: Annotated[bool, typer.Option("--allow-dead", help=_ALLOW_DEAD_HELP)] = False,
) -> None:
    """Pareto-optimal NB201 archs for the chosen objectives (default: the bundled surrogate)."""
    from flatnas_bench.search.api import run_search
    from flatnas_bench.search.engine import SearchConfig

    sizes = {"pop_size": pop_size, "n_gen": generations}
    result = run_search(
        objective or None,
        surrogate=None if surrogate == "none" else surrogate,
        tables=[str(t) for t in table or []],
        constraints=constraint or [],
        max_params=max_params,
        alpha=alpha,
        strategy=strategy,
        config=SearchConfig(seed=seed, **{key: value for key, value in sizes.items() if value is not None}),
        compare_exhaustive=compare,
        allow_dead=allow_dead,
    )
    names = ", ".join(o.label for o in result.objectives)
    _print_frame(result.front_table, f"Pareto front: {names}", top)
    summary = (
        f"{strategy}: {result.n_evaluated} archs scored in {result.seconds:.2f} s, "
        f"{len(result.front)} on the front"
    )
    if result.hv_ratio is not None:
        summary += f"; hypervolume {result.hv_ratio:.4f} of the exhaustive front's"
    typer.echo(summary)
    if out is not None:
        paths = result.save(out)
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@command("loop")
def loop_command(
    objective: Annotated[list[str], typer.Option("--objective", "-o", help=_OBJECTIVE_HELP)],
    oracle: Annotated[
        Path | None, typer.Option(help="Benchmark table used as a zero-cost oracle (instead of training).")
    ] = None,
    archive: Annotated[Path | None, typer.Option(help="Oracle archive CSV (resumed when it exists).")] = None,
    protocol: Annotated[str | None, typer.Option(help="Engine: training protocol name.")] = None,
    data: Annotated[Path | None, typer.Option(help="Engine: dataset directory.")] = None,
    results: Annotated[Path | None, typer.Option(help="Engine: SQLite result table (resumed).")] = None,
    executor: Annotated[str, typer.Option(help="Engine: executor name.")] = "serial",
    settings: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed-train", help="Engine: training seeds.")] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", "-c", help=_CONSTRAINT_HELP)] = None,
    max_params: Annotated[float | None, typer.Option(help="Constraint: params (M) at most this.")] = None,
    strategy: Annotated[str, typer.Option(help=_STRATEGY_HELP)] = "flatnas",
    budget: Annotated[int, typer.Option(help="Total archs to evaluate, initial sample included.")] = 300,
    n_init: Annotated[
        int | None, typer.Option(help="Initial random sample [default: the strategy's].")
    ] = None,
    k: Annotated[
        int | None, typer.Option("-k", help="Archs evaluated per batch [default: the strategy's].")
    ] = None,
    alpha: Annotated[float, typer.Option(help="FoM weight of the error term.")] = DEFAULT_ALPHA,
    seed: Annotated[int, typer.Option(help="Loop seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Directory for log.csv and front.csv.")] = Path("loop"),
    allow_dead: Annotated[bool, typer.Option("--allow-dead", help=_ALLOW_DEAD_HELP)] = False,
) -> None:
    """Search to a budget of evaluated archs: the FlatNAS loop (sample, fit, search the surrogate, evaluate
    spread picks, repeat) or a baseline strategy; resumable."""
    from flatnas_bench.search.evaluators import EngineEvaluator, TableOracle
    from flatnas_bench.search.loop import LoopConfig, run_loop
    from flatnas_bench.search.strategy import STRATEGIES

    STRATEGIES.get(strategy)  # an unknown name fails before anything is evaluated

    if (oracle is None) == (protocol is None):
        raise ConfigError(
            "choose one evaluator: --oracle TABLE, or --protocol NAME --data DIR --results FILE"
        )
    if oracle is not None:
        from flatnas_bench.tables.readers import load_table

        evaluator = TableOracle(load_table(oracle), archive=archive or out / "archive.csv")
    else:
        if data is None or results is None:
            raise ConfigError("the engine evaluator needs --data DIR and --results FILE.sqlite")
        evaluator = EngineEvaluator(
            _protocol(protocol, settings), results, data, executor=executor, seeds=seeds or [0]
        )
    constraints = list(constraint or []) + ([f"params<={max_params}"] if max_params is not None else [])
    config = LoopConfig(budget=budget, n_init=n_init, k=k, seed=seed, alpha=alpha)

    def show(row: dict) -> None:
        best = ", ".join(f"{key[5:]}={value:.4g}" for key, value in row.items() if key.startswith("best_"))
        typer.echo(
            f"iter {row['iteration']}: {row['n_evaluated']} evaluated, hv {row['hypervolume']:.4f}, {best}"
        )

    try:
        result = run_loop(
            evaluator,
            objective,
            constraints=constraints,
            config=config,
            strategy=strategy,
            log_path=out / "log.csv",
            progress=show,
            allow_dead=allow_dead,
        )
    finally:
        if hasattr(evaluator, "close"):
            evaluator.close()  # the engine's worker pool, kept alive across generations
    out.mkdir(parents=True, exist_ok=True)
    result.front.to_csv(out / "front.csv", index=False)
    _print_frame(result.front, "Measured Pareto front", 30)
    typer.echo(f"wrote {out / 'log.csv'}, {out / 'front.csv'}")


@command("retrain")
def retrain_command(
    arch: Annotated[list[str] | None, typer.Argument(help="NB201 arch strings to retrain.")] = None,
    from_pareto: Annotated[Path | None, typer.Option(help="pareto.csv / pareto.json of a search.")] = None,
    protocol: Annotated[str, typer.Option(help="Training protocol name.")] = "nb201",
    settings: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    data: Annotated[Path, typer.Option(help="Dataset directory.")] = Path("data"),
    results: Annotated[Path, typer.Option(help="SQLite result table (resumed).")] = Path("retrain.sqlite"),
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Training seeds, repeatable.")] = None,
    executor: Annotated[str, typer.Option(help="Executor name.")] = "serial",
    baseline: Annotated[str | None, typer.Option(help="Accuracy-only baseline arch.")] = None,
    baseline_objective: Annotated[
        str, typer.Option(help="Without --baseline: the surrogate target an accuracy-only search maximises.")
    ] = "val_acc",
    surrogate: Annotated[
        str, typer.Option(help="Surrogate for the baseline pick ('bundled' or a dir).")
    ] = "bundled",
    corruptions: Annotated[Path | None, typer.Option(help="Official CIFAR-10-C directory.")] = None,
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("retrain"),
) -> None:
    """Retrain picks with the engine and report clean accuracy, flatness R and corruptions vs a baseline."""
    from flatnas_bench.search.retrain import SHOWN, accuracy_baseline, load_picks, retrain

    picks = list(arch or []) + (load_picks(from_pareto) if from_pareto is not None else [])
    if not picks:
        raise ConfigError("no archs to retrain; pass ARCH ... or --from-pareto FILE")
    if baseline is None:
        from surrogates import load_surrogate

        if surrogate == "bundled":
            from flatnas_bench.tables.bundled import bundled_surrogate_dir

            surrogate = str(bundled_surrogate_dir())
        baseline = str(accuracy_baseline(load_surrogate(surrogate), baseline_objective))
        typer.echo(f"accuracy-only baseline ({baseline_objective} on {surrogate}): {baseline}")
    summary = retrain(
        picks,
        protocol=_protocol(protocol, settings),
        data_path=data,
        table_path=results,
        baseline=baseline,
        out=out,
        seeds=seeds or [0],
        executor=executor,
        corruptions=corruptions,
    )
    _print_frame(summary[list(SHOWN)], f"Retrained under {protocol} (all columns in retrain.csv)", 50)
    typer.echo(f"wrote {out / 'retrain.md'}, {out / 'retrain.csv'}, {out / 'retrain.png'}")
