"""The benchmark table and surrogate this project measured itself, shipped inside the package.

They make ``flatnas-bench search`` and ``flatnas-bench query ARCH`` work on a fresh install with no data
and no GPU. Provenance (protocol card, the command that reproduces them, hardware, wall time) is in
``bundled/PROVENANCE.md``.

>>> from flatnas_bench.tables.bundled import load_bundled_table
>>> len(load_bundled_table()) >= 500  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flatnas_bench.core.errors import ModelFileError, TableError

if TYPE_CHECKING:  # the readers (pandas) are imported when the table is read: a query needs only the paths
    from flatnas_bench.tables.table import BenchTable

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"
TABLE_FILE = "proxy_cifar10.csv"
SURROGATE_DIR = "surrogate"
ARCH_FILE = "archs.txt"
PROTOCOL = "proxy"  # the protocol label of every bundled row, its metrics' suffix (bundled/PROVENANCE.md)
MEASURED_UNDER = "proxy"  # the registered protocol whose hash every bundled row carries (0.3)

# What the bundled surrogate predicts (short names; stored as cifar10_<name>_proxy).
SURROGATE_TARGETS = (
    "val_acc", "test_acc", "flatness_r", "loss_sharpness", "corr_acc_mean", "corr_acc_rel", "corr_acc_resid",
    "corr_rel_blur",
)  # fmt: skip


def bundled_table_path() -> Path:
    """Path of the bundled benchmark table (CSV, one row per measured canonical arch and seed)."""
    path = BUNDLED_DIR / TABLE_FILE
    if not path.is_file():
        raise TableError(f"the bundled benchmark table is missing from this install: {path}")
    return path


def bundled_surrogate_dir() -> Path:
    """Directory of the bundled surrogate (XGBoost JSON models plus metadata)."""
    path = BUNDLED_DIR / SURROGATE_DIR
    if not path.is_dir():
        raise ModelFileError(
            f"the bundled surrogate is missing from this install: {path}; pass --surrogate DIR"
        )
    return path


def bundled_arch_file() -> Path:
    """The arch list the bundled benchmark was measured on (one NB201 string per line)."""
    return BUNDLED_DIR / ARCH_FILE


def load_bundled_table() -> BenchTable:
    """The bundled table as a :class:`~flatnas_bench.tables.table.BenchTable`: one row per arch, each metric
    the mean over the arch's two training seeds (``cifar10_n_seeds_proxy`` says how many), per-seed rows
    kept for :func:`~flatnas_bench.tables.reliability.table_reliability`."""
    from flatnas_bench.tables.readers import load_table

    return load_table(bundled_table_path())
