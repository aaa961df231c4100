"""``flatnas-bench bench``: train and measure archs under a protocol into a resumable SQLite table.

    flatnas-bench bench --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --protocol proxy --archs 20 \\
        --table runs/proxy.sqlite --executor local --workers 2

Re-running the same command skips what the table holds; kill it at any time without losing committed rows.
``--plan`` prints the estimated wall time, device hours and table size instead of running.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cli.app import command
from flatnas_bench.bench.driver import parse_settings, read_arch_file, resolve_protocol, run_bench
from flatnas_bench.bench.executor import default_device
from flatnas_bench.bench.executors import list_executors
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.protocol import PRECISIONS, list_protocols
from flatnas_bench.nb201.space import sample_archs

# CLI choices come from the registries
ProtocolName = Enum("ProtocolName", {name: name for name in list_protocols()}, type=str)
ExecutorName = Enum("ExecutorName", {name: name for name in list_executors()}, type=str)
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)


def _set_precision(settings: list[str]) -> str | None:
    """The precision a ``--set precision=...`` asked for (kept as given, also on CUDA), else None."""
    return parse_settings(settings).get("precision")


def _seeds(seed: int | None, seeds: str | None) -> list[int]:
    if seed is not None and seeds is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if seeds is None:
        return [0 if seed is None else seed]
    try:
        return [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds {seeds!r} is not a comma-separated list of integers (e.g. 0,1,2)"
        ) from None


@command("bench")
def bench(
    data: Annotated[
        Path, typer.Option("--data", help="Dataset: CIFAR python folder, ImageFolder dir or .tar.gz.")
    ],
    protocol: Annotated[ProtocolName, typer.Option("--protocol", help="Training protocol.")],
    table: Annotated[Path, typer.Option("--table", help="SQLite result table (created if absent).")],
    archs: Annotated[int | None, typer.Option("--archs", help="Sample this many archs.", min=1)] = None,
    arch_file: Annotated[
        Path | None, typer.Option("--arch-file", help="Text file of NB201 arch strings, one per line.")
    ] = None,
    unique: Annotated[
        bool, typer.Option("--unique/--all", help="Sample over the 6,466 isomorphism classes, or all 15,625.")
    ] = True,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Seed of the --archs draw.")] = 0,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Protocol override KEY=VALUE (repeatable), e.g. epochs=2."),
    ] = None,
    executor: Annotated[
        ExecutorName | None,
        typer.Option("--executor", help="Where jobs run (default: local on a GPU machine, serial on CPU)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Jobs at once (local, ray).", min=1)
    ] = None,
    workers_per_gpu: Annotated[
        int | None, typer.Option("--workers-per-gpu", help="Workers sharing each GPU (local, ray).", min=1)
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Torch CPU threads per worker.", min=1)
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if any).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed (default 0).")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Several training seeds, e.g. 0,1,2.")] = None,
    corruptions: Annotated[
        Path | None,
        typer.Option(
            "--corruptions", help="Official CIFAR-C dir (else generated and cached when the protocol asks)."
        ),
    ] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Evaluate failed rows again.")] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Live display on a terminal; plain lines at least every 60 s in a log.",
        ),
    ] = True,
    precision: Annotated[
        Precision | None,
        typer.Option(
            "--precision",
            help="Training: fp32 or bf16 autocast (default: bf16 on CUDA, fp32 on CPU; bf16 CPUs allowed). "
            "Evaluation is always fp32.",
        ),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="CUDA: deterministic kernels, no TF32 (slower).")
    ] = False,
    save_weights: Annotated[
        Path | None,
        typer.Option(
            "--save-weights", help="Keep each trained network's weights in this directory (for re-measuring)."
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan", help="Time a few steps of the lightest/median/heaviest arch, print the estimate, stop."
        ),
    ] = False,
) -> None:
    """Train and measure archs into a resumable benchmark table (one row per arch, protocol and seed)."""
    if (archs is None) == (arch_file is None):
        raise ConfigError("give exactly one of --archs N or --arch-file F")
    chosen = read_arch_file(arch_file) if arch_file else sample_archs(archs or 0, sample_seed, unique=unique)
    proto = resolve_protocol(protocol.value, parse_settings(settings or []))
    if executor is None:
        where = "local" if (device or default_device()).startswith("cuda") else "serial"
    else:
        where = executor.value
    options = ExecutorOptions(device, workers, threads, workers_per_gpu, deterministic)
    chosen_precision = precision.value if precision else _set_precision(settings or [])
    if plan:
        from flatnas_bench.bench.plan import plan_bench

        estimate = plan_bench(
            chosen, proto, table, data, where, _seeds(seed, seeds), options=options,
            retry_failed=retry_failed, corruptions=corruptions, precision=chosen_precision,
        )  # fmt: skip
        typer.echo(estimate.report())
        return
    try:
        summary = run_bench(
            chosen,
            proto,
            table,
            data,
            executor=where,
            seeds=_seeds(seed, seeds),
            options=options,
            retry_failed=retry_failed,
            progress=progress,
            corruptions=corruptions,
            precision=chosen_precision,
            save_weights=save_weights,
        )
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: finished rows are in {table}; run the same command again to resume", err=True
        )
        raise typer.Exit(code=130) from None
    typer.echo(summary.line())
