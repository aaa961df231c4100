"""``flatnas-bench corrupt`` and ``corrupt-grid``: pre-generate CIFAR-C sets, picture the corruptions.

    flatnas-bench corrupt --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --out runs/cifar10-c
    flatnas-bench corrupt --data DATA --out runs/c-small --severities 1,3,5 --corruptions fog,snow \\
        --subset 500
    flatnas-bench corrupt-grid --data DATA --out docs/img/corruption_grid.png --index 7
    flatnas-bench corrupt-grid --data DATA --out docs/img/corruption_grid_16px.png --index 7 --resolution 16

``corrupt`` writes the official CIFAR-10-C layout (``<corruption>.npy`` + ``labels.npy``), which
:func:`flatnas_bench.corruptions.robustness.load_cifar_c` and ``bench --corruptions`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import command
from flatnas_bench.core.errors import ConfigError

DataOpt = Annotated[
    Path, typer.Option("--data", help="Clean dataset: CIFAR python folder or ImageFolder (dir/.tar.gz).")
]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="cifar10 or cifar100.")]
CorruptionsOpt = Annotated[
    str, typer.Option("--corruptions", help="Comma-separated names, or 'all' (the 15 benchmark + 4 extra).")
]
SeveritiesOpt = Annotated[str, typer.Option("--severities", help="Comma-separated severities in 1..5.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random draw (non-negative).")]


ALL_NAMES = "all"  # resolved when the command runs: the corruption module pulls in torch
ALL_SEVERITIES = "1,2,3,4,5"


def _names(text: str) -> list[str]:
    if text.strip() == ALL_NAMES:
        from flatnas_bench.corruptions.operations import ALL_CORRUPTIONS

        return list(ALL_CORRUPTIONS)
    return [part.strip() for part in text.split(",") if part.strip()]


def _severities(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise ConfigError(f"--severities must be comma-separated integers in 1..5, got {text!r}") from None


@command("corrupt")
def corrupt(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Output directory (official CIFAR-10-C layout).")],
    dataset: DatasetOpt = "cifar10",
    severities: SeveritiesOpt = ALL_SEVERITIES,
    corruptions: CorruptionsOpt = ALL_NAMES,
    seed: SeedOpt = 0,
    subset: Annotated[int | None, typer.Option("--subset", help="Only the first N test images.")] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes generating in parallel (default: every usable core)."),
    ] = None,
) -> None:
    """Generate corrupted copies of the clean test set, once, in the official CIFAR-C layout."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from flatnas_bench.core.cores import usable_cores
    from flatnas_bench.corruptions.generate import write_corruption_set
    from flatnas_bench.engine.data import load_images

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    test = load_images(data, dataset).test
    if subset is not None and not 0 < subset <= len(test):
        raise ConfigError(f"--subset must be between 1 and {len(test)}, got {subset}")
    x, y = test.x[:subset], test.y[:subset]
    names, levels = _names(corruptions), _severities(severities)
    columns = (TextColumn("corrupting"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
    with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("corrupt", total=len(x) * len(names) * len(levels))
        written = write_corruption_set(
            x, y, out, names, levels, seed, lambda k: progress.advance(task, k), workers or usable_cores()
        )
    kept = len(names) - len(written)
    typer.echo(
        f"wrote {len(written)} corruption(s) x {len(levels)} severities x {len(x)} images to {out}"
        + (f" ({kept} already there)" if kept else "")
    )


@command("corrupt-grid")
def corrupt_grid(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    dataset: DatasetOpt = "cifar10",
    index: Annotated[int, typer.Option("--index", help="Test image to show (position in the test set).")] = 0,
    corruptions: CorruptionsOpt = ALL_NAMES,
    severities: SeveritiesOpt = ALL_SEVERITIES,
    seed: SeedOpt = 0,
    scale: Annotated[int, typer.Option("--scale", help="Enlargement of each 32 px image.")] = 3,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            help="Side in px (8-31): CIFAR-10-C downsampled to it beside the operations run at it "
            "(corruption_resolution=input).",
        ),
    ] = None,
) -> None:
    """Write a PNG grid of one test image: rows = corruptions, columns = clean + severities."""
    from flatnas_bench.corruptions.grid import save_corruption_grid
    from flatnas_bench.engine.data import load_images

    test = load_images(data, dataset).test
    if not 0 <= index < len(test):
        raise ConfigError(f"--index must be between 0 and {len(test) - 1}, got {index}")
    if scale < 1:
        raise ConfigError(f"--scale must be at least 1, got {scale}")
    path = save_corruption_grid(
        out, test.x[index], _names(corruptions), _severities(severities), seed, index, scale,
        resolution=resolution,
    )  # fmt: skip
    typer.echo(f"wrote {path}")
