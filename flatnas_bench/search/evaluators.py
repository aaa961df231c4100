"""Evaluators: how the search loop measures archs and keeps every measurement durably (the archive).

:class:`Evaluator` is the interface the loop drives (an ABC: ``archive``, ``evaluate``, ``pool``).
:class:`TableOracle` looks archs up in a benchmark table (zero cost; used to benchmark the strategies)
and :class:`EngineEvaluator` trains them with the engine (``bench.run_bench`` into a SQLite result
table). Both archives are durable, so a re-run of the same loop continues where it stopped.

>>> import pandas as pd
>>> from flatnas_bench.nb201.space import Arch
>>> arch = Arch((3, 3, 3, 3, 3, 3))
>>> oracle = TableOracle(pd.DataFrame({"arch": [str(arch)], "acc": [91.5]}))
>>> oracle.evaluate([arch]); oracle.archive().get(arch, "acc")
91.5
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatnas_bench.bench.driver import run_bench, run_protocol
from flatnas_bench.bench.executors import get_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import TableError
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.core.results import failed
from flatnas_bench.nb201.space import Arch
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import ResultStore
from flatnas_bench.tables.table import BenchTable, as_table


class Evaluator(ABC):
    """Measures archs and keeps every measurement durably (the archive)."""

    @abstractmethod
    def archive(self) -> BenchTable:
        """One row per evaluated arch in evaluation order (canonical archs), metrics named by the grammar
        of :mod:`flatnas_bench.core.metric_names`; an arch whose evaluation failed has NaN measurements."""

    @abstractmethod
    def evaluate(self, archs: Sequence[Arch]) -> None:
        """Measure ``archs`` (canonical, not yet in the archive) and add them to the archive."""

    @abstractmethod
    def pool(self, quantities: Sequence[str]) -> frozenset[Arch] | None:
        """The canonical archs this evaluator can measure ``quantities`` (full or short names) for, or
        None for any arch."""


class TableOracle(Evaluator):
    """Zero-cost evaluator: looks archs up in a benchmark table (an arch's own row, else its class's).

    The archive lives in memory, or in a CSV at ``archive`` that later runs resume from.
    ``metrics`` limits which table metrics (full or short names) the archive records (default: all).
    """

    def __init__(
        self,
        table: BenchTable | pd.DataFrame,
        archive: str | Path | None = None,
        metrics: Sequence[str] | None = None,
    ) -> None:
        self.table = as_table(table)
        self.metrics = (
            [self.table.resolve(m) for m in metrics] if metrics is not None else list(self.table.metrics)
        )
        self.path = None if archive is None else Path(archive)
        if self.path is not None and self.path.exists():
            self._archive = read_csv(self.path)
        else:
            self._archive = pd.DataFrame(columns=["arch", *self.metrics])

    def pool(self, quantities: Sequence[str]) -> frozenset[Arch]:
        """The canonical archs whose rows hold every one of ``quantities``: a partial table (or a metric
        measured for a few archs) can answer for those only."""
        have = self.table.dropna(quantities)
        return frozenset(a.canonical() for a in have.archs)

    def archive(self) -> BenchTable:
        return as_table(self._archive.astype({m: float for m in self.metrics}), source="oracle archive")

    def evaluate(self, archs: Sequence[Arch]) -> None:
        archs = list(archs)
        if not archs:
            return
        values = self.table.lookup(self.metrics, archs, fill="class")
        absent = np.isnan(values).all(axis=1)
        if absent.any():
            raise TableError(f"the oracle table has no row for arch {archs[int(np.argmax(absent))]}")
        rows = pd.DataFrame(values, columns=self.metrics)
        rows.insert(0, "arch", [str(a) for a in archs])
        self._archive = rows if self._archive.empty else pd.concat([self._archive, rows], ignore_index=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            self._archive.to_csv(tmp, index=False)
            tmp.replace(self.path)


class EngineEvaluator(Evaluator):
    """Trains archs with the engine: ``bench.run_bench`` writes each result row into the SQLite table at
    ``table_path`` (one writer; finished candidates are skipped on re-runs), and the archive is that
    table's rows for ``protocol`` averaged over ``seeds``, in the order they finished.

    Its metrics are named as a :class:`~flatnas_bench.tables.table.BenchTable` of the same rows names them
    (``cifar10_val_acc_proxy``, ...), so an oracle over an exported table and the engine agree.
    """

    def __init__(
        self,
        protocol: Any,
        table_path: str | Path,
        data_path: str | Path,
        *,
        executor: Any = "serial",
        seeds: Sequence[int] = (0,),
        options: ExecutorOptions | None = None,
        **bench_options: Any,
    ) -> None:
        protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        if isinstance(executor, str):  # one pool for every generation: see close()
            executor = get_executor(executor, options, keep_alive=True)
        self.executor = executor
        # as run_bench keys its rows: the executor's numerics, bf16 on CUDA unless a precision is given
        self.protocol = run_protocol(protocol, executor.numerics, bench_options.get("precision"))
        self.table_path = Path(table_path)
        self.data_path = Path(data_path)
        self.seeds = list(seeds)
        self.bench_options = bench_options

    def close(self) -> None:
        """Stop the worker pool kept alive across the loop's generations."""
        self.executor.close()

    def archive(self) -> BenchTable:
        rows = pd.DataFrame(columns=["arch", "protocol", "seed"])
        if self.table_path.exists():
            with ResultStore(self.table_path, readonly=True) as store:
                rows = store.to_frame(self.protocol.hash)
        rows = (
            rows[rows["seed"].isin(self.seeds)].sort_values("finished_at", kind="stable")
            if len(rows)
            else rows
        )
        order = list(dict.fromkeys(Arch.from_str(a) for a in rows["arch"]))
        if rows.empty or not (~failed(rows)).any():
            return BenchTable(order, {}, source=f"{self.table_path} (protocol {self.protocol.name})")
        means = BenchTable.from_results(
            rows, self.protocol.dataset, self.protocol.name, protocol_hash=self.protocol.hash,
            source=str(self.table_path),
        )  # fmt: skip
        values = means.lookup(means.metrics, order, fill="nan")  # an arch whose every seed failed: NaN
        columns = {name: values[:, k] for k, name in enumerate(means.metrics)}
        return BenchTable(order, columns, source=means.source, seed_rows=means.per_seed())

    def pool(self, quantities: Sequence[str]) -> None:
        """None: the engine trains any arch."""
        return None

    def evaluate(self, archs: Sequence[Arch]) -> None:
        run_bench(
            [str(a) for a in archs],
            self.protocol,
            self.table_path,
            self.data_path,
            executor=self.executor,
            seeds=self.seeds,
            **self.bench_options,
        )


__all__ = ["EngineEvaluator", "Evaluator", "TableOracle"]
