"""``flatnas-bench info ARCH``: what one NB201 cell is, how big its network is, and (with ``--table``) how it
scored in a benchmark table.

Example::

    flatnas-bench info '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|' \
        --table ../shared/data/nb201/nb201_accuracy.csv --json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import command
from flatnas_bench.nb201.costs import DATASETS, arch_costs, dataset_config
from flatnas_bench.nb201.space import NUM_ARCHS, Arch, canonical_archs


def arch_info(
    arch: Arch, *, C: int = 16, N: int = 5, dataset: str = "cifar10", table: Path | None = None
) -> dict[str, Any]:
    """Everything ``info`` prints, as a JSON-ready dict (params in millions, flops in millions of MACs).

    >>> info = arch_info(Arch.from_str("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"))
    >>> info["class_size"], info["params_m"], info["flops_m"]
    (275, 0.316346, 43.17249)
    """
    num_classes, resolution = dataset_config(dataset)
    costs = arch_costs(arch, C=C, N=N, num_classes=num_classes, resolution=resolution)
    info: dict[str, Any] = {
        "arch": str(arch),
        "canonical": str(arch.canonical()),
        "is_canonical": arch.is_canonical,
        "class_size": arch.class_size,
        "ops": list(arch.ops),
        "params_m": costs.params_m,
        "flops_m": costs.flops_m,
        "C": C,
        "N": N,
        "dataset": dataset,
        "num_classes": num_classes,
        "resolution": resolution,
    }
    if table is not None:
        from flatnas_bench.tables.readers import load_table  # only pay for pandas when a table is asked for

        bench = load_table(table)
        info["table"] = str(table)
        info["nb201_index"] = bench.index_of(arch)
        if arch in bench:  # NaN (not measured) becomes null, so the JSON stays standard
            info["metrics"] = {k: None if math.isnan(v) else v for k, v in bench.row(arch).items()}
        else:
            info["metrics"] = None
    return info


def _format(info: dict[str, Any]) -> str:
    classes = len(canonical_archs())
    lines = [
        ("arch", info["arch"]),
        ("canonical", info["canonical"] + ("  (this arch)" if info["is_canonical"] else "")),
        ("class size", f"{info['class_size']} of {NUM_ARCHS:,} archs ({classes:,} classes)"),
        (
            "params",
            f"{info['params_m']:.6f} M  (C={info['C']}, N={info['N']}, {info['dataset']}: "
            f"{info['num_classes']} classes, {info['resolution']}x{info['resolution']} input)",
        ),
        ("flops", f"{info['flops_m']:.5f} M MACs"),
    ]
    if "table" in info:
        index = info["nb201_index"]
        lines.append(("nb201 index", "not in this table" if index is None else str(index)))
        if info["metrics"] is None:
            lines.append(("metrics", f"none for this arch or its class in {info['table']}"))
        else:
            lines.extend((k, "n/a" if v is None else f"{v:g}") for k, v in info["metrics"].items())
    width = max(len(key) for key, _ in lines) + 2
    return "\n".join(f"{key:<{width}}{value}" for key, value in lines)


@command("info")
def info_command(
    arch: Annotated[str, typer.Argument(help="NB201 arch string, e.g. '|nor_conv_3x3~0|+|...|'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")] = False,
    table: Annotated[
        Path | None,
        typer.Option(help="Benchmark table (CSV/Parquet/SQLite/.pth/NATS dir): adds index and metrics."),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help=f"Network head and input size for the costs: {', '.join(DATASETS)}.")
    ] = "cifar10",
    channels: Annotated[int, typer.Option("--channels", "-C", min=1, help="Channels of stage 1.")] = 16,
    cells: Annotated[int, typer.Option("--cells", "-N", min=0, help="Cells per stage.")] = 5,
) -> None:
    """Canonical form, isomorphism class size, params (M) and FLOPs (M MACs) of one NB201 cell."""
    info = arch_info(Arch.from_str(arch), C=channels, N=cells, dataset=dataset, table=table)
    typer.echo(json.dumps(info, indent=2, allow_nan=False) if as_json else _format(info))
