"""What search objectives read: a surrogate's predictions and a benchmark table's metrics, by name.

An :class:`ObjectiveContext` is shared by every objective of one search, so names resolve the same way
for all of them (surrogate targets first, then table metrics, by the metric-name grammar) and the
surrogate is asked once per arch. The objectives themselves are built from names in
:mod:`flatnas_bench.search.objectives`.

>>> import pandas as pd
>>> from flatnas_bench.nb201.space import Arch
>>> arch = Arch((3, 3, 3, 3, 3, 3))
>>> context = ObjectiveContext(table=pd.DataFrame({"arch": [str(arch)], "pixel3_ms": [12.5]}))
>>> context.find("pixel3_ms"), context.column([arch], "pixel3_ms").tolist()
(('column', 'pixel3_ms'), [12.5])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.metric_names import matches, resolve_metric
from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search.fom import DEFAULT_ALPHA
from flatnas_bench.tables.table import as_table

ArchFunc = Callable[[Sequence[Arch]], np.ndarray]  # archs -> one float per arch


@dataclass
class ObjectiveContext:
    """What objectives may read: a surrogate (anything with ``.predict(archs)`` and ``.targets``), a table
    (a :class:`~flatnas_bench.tables.table.BenchTable`; a DataFrame with an ``arch`` column is converted) and
    FoM
    settings.

    Names resolve by the metric-name grammar (:func:`flatnas_bench.core.metric_names.resolve_metric`):
    surrogate targets first, then table metrics. ``alpha_norm`` of ``None`` means "compute it": from the
    table when it has the FoM's metrics (the archive, as the method prescribes), otherwise from the
    surrogate's predictions over every canonical arch. Predictions are memoised per arch so several
    objectives share one call; with ``prefetch`` the first call predicts the whole canonical space at
    once, because an XGBoost call has a fixed cost that can exceed that of predicting all 6,466 classes in
    one batch.
    """

    surrogate: Any = None
    table: Any = None
    alpha: float = DEFAULT_ALPHA
    alpha_norm: float | None = None
    prefetch: bool = True  # predict all 6,466 canonical archs in the first surrogate call
    _cache: dict[Arch, dict[str, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.table is not None:
            self.table = as_table(self.table)

    @property
    def targets(self) -> list[str]:
        return list(getattr(self.surrogate, "targets", []) or [])

    @property
    def columns(self) -> list[str]:
        return [] if self.table is None else list(self.table.metrics)

    def find(self, name: str) -> tuple[str, str] | None:
        """``("target", full name)`` or ``("column", full name)`` for what ``name`` names, surrogate
        targets first; None when neither has it; ambiguous names raise, listing the candidates."""
        for kind, available in (("target", self.targets), ("column", self.columns)):
            found = matches(name, available)
            if len(found) > 1:
                resolve_metric(name, available, what="objective")  # raises, listing the candidates
            if found:
                return kind, found[0]
        return None

    def reader(self, name: str) -> tuple[str, ArchFunc]:
        """(full name, function of archs) reading ``name`` from the surrogate or the table."""
        found = self.find(name)
        if found is None:
            offered = ", ".join(self.targets + self.columns) or "nothing (pass a surrogate or a table)"
            raise ConfigError(f"no surrogate target or table metric {name!r}; they offer: {offered}")
        kind, full = found
        if kind == "target":
            return full, lambda archs: self.predict(archs, full)
        return full, lambda archs: self.column(archs, full)

    def predict(self, archs: Sequence[Arch], column: str) -> np.ndarray:
        """Surrogate column (``target`` or ``target_std``) for ``archs``; each arch predicted once."""
        missing = list(dict.fromkeys(a for a in archs if a not in self._cache))
        if missing and self.prefetch and not self._cache:
            missing = list(dict.fromkeys([*missing, *canonical_archs()]))
        if missing:
            frame = self.surrogate.predict(missing)
            cols = [c for c in frame.columns if c != "arch"]
            for arch, row in zip(missing, frame[cols].to_numpy(dtype=float), strict=True):
                self._cache[arch] = dict(zip(cols, row, strict=True))
        return np.array([self._cache[a].get(column, np.nan) for a in archs], dtype=float)

    def column(self, archs: Sequence[Arch], name: str) -> np.ndarray:
        """Table metric ``name`` for ``archs``: the arch's own row, else the mean over its isomorphism
        class's rows, NaN where the table has neither (:meth:`BenchTable.lookup` with ``fill="class"``)."""
        return self.table.values(name, archs, fill="class")


__all__ = ["ArchFunc", "ObjectiveContext"]
