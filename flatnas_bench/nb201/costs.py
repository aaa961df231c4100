"""Exact parameter counts and MACs of :class:`~flatnas_bench.nb201.network.TinyNetwork`, in NB201's
convention.

The benchmark's two cost fields, reproduced exactly from the network's shape alone:

* ``params``: every parameter of the network (conv weights, BatchNorm weights and biases, the linear head
  with its bias), in millions (1e6, not 2**20). Running statistics are buffers, not parameters. Every
  cell edge counts, also a conv whose input is always zero.
* ``flops``: multiply-accumulates (MACs) in millions, counted as the benchmark's counter does: each conv
  adds ``k*k * c_in * c_out * h_out * w_out``; the linear head adds ``in * out + out`` (its bias);
  BatchNorm, ReLU, pooling (also the avg-pool in the reduction shortcut), skips and sums add nothing.

Both depend on the cell only through how many edges carry each op, so the whole space reduces to a small
matrix product (:func:`cost_arrays`, about a millisecond for all 15,625 archs).

>>> arch_costs(
...     "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
... )
Costs(params_m=0.129306, flops_m=15.64737)
>>> arch_costs("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|",
...            num_classes=120, resolution=16)  # the ImageNet16-120 record
Costs(params_m=0.108456, flops_m=2.93644)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import CONV1, CONV3, NUM_ARCHS, NUM_EDGES, NUM_OPS, ArchLike, as_arch

__all__ = ["DATASETS", "Costs", "arch_costs", "cost_arrays", "dataset_config", "op_counts"]

# NB201 dataset name -> (num_classes, input resolution in pixels); its records use C=16, N=5 throughout.
DATASETS: dict[str, tuple[int, int]] = {
    "cifar10": (10, 32),
    "cifar10-valid": (10, 32),
    "cifar100": (100, 32),
    "ImageNet16-120": (120, 16),
}


@dataclass(frozen=True)
class Costs:
    """One network's size: ``params_m`` (millions of parameters) and ``flops_m`` (millions of MACs)."""

    params_m: float
    flops_m: float


def dataset_config(dataset: str) -> tuple[int, int]:
    """``(num_classes, resolution)`` of an NB201 dataset, e.g. ``dataset_config("cifar100") == (100, 32)``."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}") from None


def _check(C: int, N: int, num_classes: int, resolution: int) -> None:
    if C < 1 or N < 0 or num_classes < 1 or resolution < 4 or resolution % 4:
        raise ConfigError(
            f"need C >= 1, N >= 0, num_classes >= 1 and a resolution divisible by 4; "
            f"got C={C}, N={N}, num_classes={num_classes}, resolution={resolution}"
        )


def _tables(C: int, N: int, num_classes: int, resolution: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Integer costs: (fixed params, fixed MACs, params per edge-op (5,), MACs per edge-op (5,)).

    The per-op rows are summed over the 3 stages and their N cells, so an arch's cost is
    ``fixed + op_counts @ per_op``.
    """
    _check(C, N, num_classes, resolution)
    params, macs = 27 * C + 2 * C, 27 * C * resolution**2  # stem conv3x3 3->C + BN
    op_params = np.zeros(NUM_OPS, dtype=np.int64)
    op_macs = np.zeros(NUM_OPS, dtype=np.int64)
    for stage in range(3):
        c, side = C * 2**stage, resolution // 2**stage
        if stage:  # reduction block c/2 -> c, output at `side`: conv_a (stride 2), conv_b, 1x1 shortcut
            c_in = c // 2
            params += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c + c_in * c
            macs += (9 * c_in * c + 9 * c * c + c_in * c) * side**2
        for op, k in ((CONV1, 1), (CONV3, 3)):
            op_params[op] += N * (k * k * c * c + 2 * c)
            op_macs[op] += N * k * k * c * c * side**2
    c_last = 4 * C
    params += 2 * c_last + c_last * num_classes + num_classes  # final BN + linear head
    macs += c_last * num_classes + num_classes
    return params, macs, op_params, op_macs


def op_counts(ops: np.ndarray) -> np.ndarray:
    """How many of the 6 edges carry each op: ``(n, 6)`` op indices -> ``(n, 5)`` int64 counts."""
    ops = np.asarray(ops)
    return (ops[:, :, None] == np.arange(NUM_OPS)).sum(axis=1, dtype=np.int64)


def arch_costs(arch: ArchLike, C: int = 16, N: int = 5, num_classes: int = 10, resolution: int = 32) -> Costs:
    """Params (M) and MACs (M) of ``TinyNetwork(arch, C, N, num_classes)`` on ``resolution``-pixel input.

    Defaults are NB201's CIFAR-10 setting; use :func:`dataset_config` for the others.

    >>> arch_costs("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|")
    Costs(params_m=0.802426, flops_m=113.95137)
    """
    params, macs, op_params, op_macs = _tables(C, N, num_classes, resolution)
    counts = np.bincount(as_arch(arch).ops, minlength=NUM_OPS)
    return Costs(
        params_m=int(params + counts @ op_params) / 1e6,
        flops_m=int(macs + counts @ op_macs) / 1e6,
    )


@functools.lru_cache(maxsize=16)
def cost_arrays(
    C: int = 16, N: int = 5, num_classes: int = 10, resolution: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """``(params_m, flops_m)`` of all 15,625 archs, float64 arrays indexed by :attr:`Arch.ordinal`.

    Cached per configuration; the arrays are read-only.

    >>> params_m, flops_m = cost_arrays()
    >>> float(flops_m.min()), float(flops_m.max())
    (7.78305, 220.11969)
    """
    params, macs, op_params, op_macs = _tables(C, N, num_classes, resolution)
    ordinals = np.arange(NUM_ARCHS)
    digits = ordinals[:, None] // NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1) % NUM_OPS
    counts = op_counts(digits)
    params_m = (params + counts @ op_params) / 1e6
    flops_m = (macs + counts @ op_macs) / 1e6
    params_m.flags.writeable = False
    flops_m.flags.writeable = False
    return params_m, flops_m
