"""The in-memory benchmark table: per-arch metrics with explicit names, looked up by any form of arch.

A :class:`BenchTable` holds one row per arch as its source has them (NB201 and NATS-Bench hold all 15,625
strings; the tables this project measures hold one canonical representative per isomorphism class) and a
float column per metric. Lookups accept an NB201 string, 6 op indices, an
:class:`~flatnas_bench.nb201.space.Arch`
or an NB201 index, and find that arch's own row or else its isomorphism class's row. It is the one table
abstraction that objectives, surrogates, the FlatNAS loop's archives and retraining consume; files load
into it through :func:`flatnas_bench.tables.readers.load_table`.

Metric names follow the grammar of :mod:`flatnas_bench.core.metric_names`
(``{dataset}_{column}_{protocol}``), and every name-taking method accepts a short name resolved by that
grammar (:meth:`BenchTable.resolve`):

* NB201-style sources use ``cifar10_valid_acc_200ep`` (the ``cifar10-valid`` split's validation
  accuracy, %, mean over seeds), ``cifar10_test_acc_200ep``, ``cifar100_test_acc_12ep_1seed`` (the suffix
  ``_1seed`` says that every arch has one run only), plus ``{dataset}_params_m`` and ``{dataset}_flops_m``.
* Our own result tables (:meth:`BenchTable.from_results`) use ``cifar10_val_acc_proxy``: the result row's
  column averaged over the successful seeds, plus ``cifar10_n_seeds_proxy``; the per-seed rows stay
  available (:meth:`BenchTable.per_seed`).
* Wherever a table has ``{d}_corr_acc_mean_{p}`` and ``{d}_test_acc_{p}`` it also has the derived
  ``{d}_corr_acc_resid_{p}``: corruption accuracy minus its least-squares line on clean test accuracy over
  this table's rows that have both (:func:`flatnas_bench.core.results.residual_metric`).
* Wherever result rows carry ``corr_per`` (accuracy per corruption) the table has relative accuracy per
  corruption and per CIFAR-10-C family, seed means of the per-row ratio corruption / clean test accuracy:
  ``cifar10_corr_rel_fog_proxy``, ``cifar10_corr_rel_noise_proxy`` (noise, blur, weather, digital; see
  :func:`flatnas_bench.core.results.corruption_relatives`), named ``corr_rel_fog`` or ``corr_rel_noise``.

>>> arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
>>> table.get(arch, "cifar10_test_acc_200ep"), table.get(1, "cifar10_test_acc_200ep")  # doctest: +SKIP
(93.66, 93.66)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from flatnas_bench.core.errors import ArchError, TableError
from flatnas_bench.core.metric_names import MetricName, metric_name, resolve_metric
from flatnas_bench.core.results import (
    CORR_ACC_RESID,
    N_SEEDS,
    label,
    numeric_columns,
    per_seed,
    residual_metric,
    seed_means,
)
from flatnas_bench.nb201.space import NUM_ARCHS, Arch, arch_by_string, as_arch, canonical_ordinals

#: What a lookup accepts: an Arch, an NB201 string, 6 op indices, or an NB201 index (int).
ArchKey = Arch | str | Sequence[int] | int | np.integer
#: What a lookup gives an arch without its own row: its class's mean (NaN without one), NaN, or an error.
Fill = Literal["class", "nan", "raise"]
FILLS: tuple[str, ...] = ("class", "nan", "raise")


def parse_arch_column(strings: Iterable[object], where: str) -> list[Arch]:
    """Parse a column of NB201 arch strings; a malformed entry raises :class:`TableError` naming its row
    (0-based data row) and ``where`` (the table's description)."""
    known = arch_by_string()
    archs = []
    for row, text in enumerate(strings):
        arch = text if isinstance(text, Arch) else known.get(text) if isinstance(text, str) else None
        if arch is None:
            try:
                arch = Arch.from_str(text)  # type: ignore[arg-type]
            except ArchError as exc:
                raise TableError(f"malformed arch string in row {row} of {where}: {exc}") from None
        archs.append(arch)
    return archs


def with_residuals(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``columns`` plus ``{d}_corr_acc_resid_{p}`` for every ``{d}_corr_acc_mean_{p}`` whose
    ``{d}_test_acc_{p}`` is there too, computed over these rows (a stale one is recomputed)."""
    out = {
        name: values for name, values in columns.items() if MetricName.parse(name).column != CORR_ACC_RESID
    }
    for name in list(out):
        parsed = MetricName.parse(name)
        clean = str(MetricName(parsed.dataset, "test_acc", parsed.protocol))
        if parsed.column == "corr_acc_mean" and clean in out:
            resid = str(MetricName(parsed.dataset, CORR_ACC_RESID, parsed.protocol))
            out[resid] = residual_metric(out[name], out[clean])
    return out


class BenchTable:
    """Per-arch benchmark metrics (floats), looked up by arch, NB201 index or isomorphism class.

    Rows are per arch as the source has them. A lookup of an arch whose own row is absent falls back to
    its isomorphism class (``fill="class"``): the mean over the class's rows (NaN-skipping); the vectorised
    :meth:`values` lets the caller choose NaN instead (``fill="nan"``) or an error (``fill="raise"``).

    >>> ours = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"  # canonical
    >>> t = BenchTable.from_frame(pd.DataFrame({"arch": [ours], "cifar10_val_acc_proxy": [61.5]}))
    >>> t.get(ours, "val_acc")
    61.5
    >>> twin = "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    >>> t.get(twin, "cifar10_val_acc_proxy")  # node 2 is dead: the same function, so the same row
    61.5
    >>> (3, 3, 3, 3, 3, 3) in t  # neither it nor an isomorph: t.get(...) raises TableError
    False
    """

    def __init__(
        self,
        archs: Sequence[Arch],
        columns: Mapping[str, np.ndarray],
        *,
        source: str,
        index: Mapping[Arch, int] | None = None,
        seed_rows: pd.DataFrame | None = None,
    ) -> None:
        """``archs``: one per row; ``columns``: metric name -> float array of ``len(archs)``; ``source``:
        a path or description; ``index``: NB201 index per arch (may cover archs without rows);
        ``seed_rows``: the per-seed long frame behind seed-averaged rows (see :meth:`per_seed`)."""
        self._source = str(source)
        self._archs = tuple(archs)
        n = len(self._archs)
        columns = with_residuals(columns)
        self._metrics = tuple(columns)
        self._values = np.empty((n, len(self._metrics)), dtype=np.float64)
        for k, (name, column) in enumerate(columns.items()):
            array = np.asarray(column, dtype=np.float64)
            if array.shape != (n,):
                raise TableError(f"metric {name!r} of {self._source} has {array.shape} values for {n} archs")
            self._values[:, k] = array
        self._values.setflags(write=False)
        self._column = {name: k for k, name in enumerate(self._metrics)}
        self._row_of: dict[Arch, int] = {}
        for row, arch in enumerate(self._archs):
            first = self._row_of.setdefault(arch, row)
            if first != row:
                raise TableError(f"duplicate rows in {self._source}: row {row} repeats row {first} ({arch})")
        self._index = dict(index or {})
        self._arch_at = {i: arch for arch, i in self._index.items()}
        if len(self._arch_at) != len(self._index):
            raise TableError(f"{self._source} gives the same NB201 index to two archs")
        self._seed_rows = seed_rows

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        arch_column: str = "arch",
        index_column: str | None = "index",
        source: str = "DataFrame",
    ) -> BenchTable:
        """One row per arch from a frame with an arch-string column; numeric columns become metrics.

        ``index_column`` (when present in the frame) holds NB201 indices (0..15,624). Text columns other
        than the arch are not metrics and are left out.
        """
        if arch_column not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:12])) + (" ..." if len(frame.columns) > 12 else "")
            raise TableError(
                f"{source} has no arch column {arch_column!r} (columns: {shown}); pass arch_column="
            )
        archs = parse_arch_column(frame[arch_column], source)
        index = None
        skip = [arch_column]
        if index_column is not None and index_column in frame.columns:
            index = dict(zip(archs, _index_values(frame[index_column], source), strict=True))
            skip.append(index_column)
        return cls(archs, numeric_columns(frame, skip, source), source=source, index=index)

    @classmethod
    def from_results(
        cls,
        frame: pd.DataFrame,
        dataset: str,
        protocol: str,
        *,
        protocol_hash: str | None = None,
        source: str = "results",
    ) -> BenchTable:
        """Our result rows (ARCHITECTURE.md, "Result row") for one protocol, averaged over seeds.

        Failed rows (``error`` set) are left out; an arch whose every seed failed has no row. Every
        numeric column measured at least once becomes ``{dataset}_{column}_{protocol}`` (e.g.
        ``cifar10_val_acc_proxy``, %, NaN-skipping mean over seeds), plus ``{dataset}_n_seeds_{protocol}``.
        Rows of the protocol with two different ``protocol_hash`` values raise unless ``protocol_hash``
        picks one.

        >>> ours = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
        >>> rows = pd.DataFrame({"arch": [ours] * 3, "protocol": "proxy", "seed": [0, 1, 2],
        ...                      "val_acc": [60.0, 62.0, None], "error": [None, None, "diverged"]})
        >>> BenchTable.from_results(rows, "cifar10", "proxy").row(ours)
        {'cifar10_val_acc_proxy': 61.0, 'cifar10_n_seeds_proxy': 2.0}
        """
        rows = _protocol_rows(frame, protocol, protocol_hash, source)
        archs = parse_arch_column(rows["arch"], source)
        rows = rows.assign(arch=[str(a) for a in archs])
        long = per_seed(rows, source)
        means = seed_means(long)
        rename = {c: metric_name(dataset, c, protocol) for c in long.columns if c not in ("arch", "seed")}
        rename[N_SEEDS] = metric_name(dataset, N_SEEDS, protocol)
        columns = {rename[c]: means[c].to_numpy(float) for c in means.columns if c != "arch"}
        order = [arch_by_string()[s] for s in means["arch"]]
        kept = [c for c in long.columns if c in ("arch", "seed") or rename.get(c) in columns]
        seed_rows = long[kept].rename(columns=rename)
        return cls(order, columns, source=f"{source} (protocol {protocol})", seed_rows=seed_rows)

    @classmethod
    def side_by_side(cls, tables: Sequence[BenchTable], source: str) -> BenchTable:
        """Outer union of tables with disjoint metrics (e.g. one per protocol of a result file): every arch
        of any table, NaN where one lacks it; per-seed rows are kept side by side too."""
        order: dict[Arch, int] = {}
        for table in tables:
            for arch in table.archs:
                order.setdefault(arch, len(order))
        columns: dict[str, np.ndarray] = {}
        for table in tables:
            rows = np.array([order[a] for a in table.archs], dtype=np.int64)
            for metric in table.metrics:
                if metric in columns:
                    raise TableError(f"{source}: metric {metric!r} comes from two tables")
                column = np.full(len(order), np.nan)
                column[rows] = table.values(metric)
                columns[metric] = column
        seeds = [t._seed_rows for t in tables if t._seed_rows is not None]
        return cls(list(order), columns, source=source, seed_rows=_concat_seed_rows(seeds))

    # -------------------------------------------------------------------------------------- accessors
    @property
    def source(self) -> str:
        """Where the table came from: a path, or a description such as ``DataFrame``."""
        return self._source

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in column order."""
        return self._metrics

    @property
    def archs(self) -> tuple[Arch, ...]:
        """The archs of the rows, in row order, as the source has them."""
        return self._archs

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: object) -> bool:
        try:
            self._rows(arch)  # type: ignore[arg-type]
        except (TableError, ArchError):
            return False
        return True

    def __repr__(self) -> str:
        return f"BenchTable({len(self)} archs, {len(self._metrics)} metrics, source={self._source!r})"

    def resolve(self, name: str) -> str:
        """The metric ``name`` names by the metric-name grammar (:func:`resolve_metric`)."""
        return resolve_metric(name, self._metrics, where=self._source)

    def has(self, name: str) -> bool:
        """Whether ``name`` names exactly one metric of this table."""
        try:
            self.resolve(name)
        except TableError:
            return False
        return True

    # ---------------------------------------------------------------------------------------- lookups
    def _arch(self, key: ArchKey) -> Arch:
        if isinstance(key, Arch):
            return key
        if isinstance(key, bool):
            raise ArchError(f"invalid NB201 arch {key!r}: expected an arch string, 6 op indices or an index")
        if isinstance(key, int | np.integer):
            arch = self._arch_at.get(int(key))
            if arch is None:
                if not self._index:
                    raise TableError(f"{self._source} has no NB201 indices; look up {key} by arch string")
                raise TableError(f"NB201 index {key} is not in {self._source}")
            return arch
        return as_arch(key)

    @functools.cached_property
    def _own_row(self) -> np.ndarray:
        """Ordinal (0..15,624) -> this table's row of that arch, -1 where it has none."""
        out = np.full(NUM_ARCHS, -1, dtype=np.int64)
        out[[a.ordinal for a in self._archs]] = np.arange(len(self._archs))
        return out

    @functools.cached_property
    def _class_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(canonical ordinal -> class position or -1, class means (classes, metrics), NaN-skipping)."""
        canon = canonical_ordinals()[[a.ordinal for a in self._archs]] if self._archs else np.zeros(0, int)
        classes, position = np.unique(canon, return_inverse=True)
        total = np.zeros((len(classes), len(self._metrics)))
        count = np.zeros_like(total)
        finite = np.isfinite(self._values)
        np.add.at(total, position, np.where(finite, self._values, 0.0))
        np.add.at(count, position, finite)
        with np.errstate(all="ignore"):
            means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        where = np.full(NUM_ARCHS, -1, dtype=np.int64)
        where[classes] = np.arange(len(classes))
        return where, means

    def _rows(self, key: ArchKey) -> np.ndarray:
        """The rows that answer for ``key``: its own row, else its isomorphism class's rows."""
        arch = self._arch(key)
        row = self._own_row[arch.ordinal]
        if row >= 0:
            return np.array([row])
        canon = canonical_ordinals()
        rows = np.flatnonzero(canon[[a.ordinal for a in self._archs]] == canon[arch.ordinal])
        if len(rows) == 0:
            raise TableError(f"arch {str(arch)!r} (nor any isomorphic arch) is not in {self._source}")
        return rows

    def lookup(self, metrics: Sequence[str], archs: Iterable[ArchKey], *, fill: Fill = "class") -> np.ndarray:
        """Values (len(archs), len(metrics)) of the named metrics for ``archs``, vectorised: each arch's
        own row; for an arch without one, its class's mean (``fill="class"``, NaN where the class is
        absent too), NaN (``"nan"``), or the class mean and a :class:`TableError` where that is absent
        too (``"raise"``). Scoring all 6,466 canonical archs takes a few milliseconds."""
        if fill not in FILLS:
            raise TableError(f"fill={fill!r}: expected one of {', '.join(FILLS)}")
        columns = [self._column[self.resolve(m)] for m in metrics]
        keys = [self._arch(a) for a in archs]
        ordinals = np.fromiter((a.ordinal for a in keys), dtype=np.int64, count=len(keys))
        own = self._own_row[ordinals]
        out = np.full((len(keys), len(columns)), np.nan)
        have = own >= 0
        out[have] = self._values[own[have]][:, columns]
        if fill == "nan" or have.all():
            return out
        where, means = self._class_table
        position = where[canonical_ordinals()[ordinals[~have]]]
        if fill == "raise" and (position < 0).any():
            absent = keys[int(np.flatnonzero(~have)[np.argmax(position < 0)])]
            raise TableError(f"arch {str(absent)!r} (nor any isomorphic arch) is not in {self._source}")
        found = np.full((len(position), len(columns)), np.nan)
        found[position >= 0] = means[position[position >= 0]][:, columns]
        out[~have] = found
        return out

    def values(
        self, metric: str, archs: Iterable[ArchKey] | None = None, *, fill: Fill = "raise"
    ) -> np.ndarray:
        """Metric ``metric`` (a full or short name) as a float array: for every row (``archs=None``, in
        :attr:`archs` order; a read-only view) or for the given archs in their order (see :meth:`lookup`;
        by default an arch with neither its own nor a class row raises)."""
        if archs is None:
            return self._values[:, self._column[self.resolve(metric)]]
        return self.lookup([metric], list(archs), fill=fill)[:, 0]

    def index_of(self, arch: ArchKey) -> int | None:
        """The NB201 index (0..15,624) of ``arch`` where the source has one, else None.

        The index belongs to the arch string itself, not its class: NATS-Bench and ``.pth`` sources know
        the index of all 15,625 archs even where they hold records for a few.
        """
        return self._index.get(self._arch(arch))

    def row(self, arch: ArchKey) -> dict[str, float]:
        """All metrics of ``arch`` (its own row, else its class's mean) as ``{metric: value}``."""
        values = self.lookup(self._metrics, [arch], fill="raise")[0]
        return {name: float(v) for name, v in zip(self._metrics, values, strict=True)}

    def get(self, arch: ArchKey, metric: str) -> float:
        """One metric of one arch, e.g. ``table.get(0, "cifar10_test_acc_200ep")`` -> 85.8633 (%)."""
        return float(self.lookup([metric], [arch], fill="raise")[0, 0])

    # ------------------------------------------------------------------------------------------- seeds
    def per_seed(self) -> pd.DataFrame:
        """The per-seed rows behind a table of our results: ``arch`` (canonical string), ``seed``, then
        the full metric names (failed rows dropped). Tables without seed rows (NB201) raise."""
        if self._seed_rows is None:
            raise TableError(f"{self._source} holds per-arch values only, no per-seed rows")
        keep = set(map(str, self._archs))
        rows = self._seed_rows[self._seed_rows["arch"].isin(keep)]
        return rows.reset_index(drop=True).copy()

    def seed_counts(self, protocol: str | None = None) -> np.ndarray:
        """Successful seeds per row (float, :attr:`archs` order) from the table's ``n_seeds`` metric;
        ``protocol`` picks one where the table holds several. Tables without seed counts raise."""
        counts = [m for m in self._metrics if MetricName.parse(m).column == N_SEEDS]
        if protocol is not None:
            counts = [m for m in counts if MetricName.parse(m).protocol == label(protocol)]
        if len(counts) != 1:
            what = "no seed counts" if not counts else f"several: {', '.join(counts)}; pass protocol="
            raise TableError(f"{self._source} has {what}")
        return self.values(counts[0]).copy()

    # ------------------------------------------------------------------------------------------ frames
    def take(self, rows: Sequence[int] | np.ndarray, source: str | None = None) -> BenchTable:
        """A table of the given rows (positions, in that order), per-seed rows and derived metrics
        following them."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        columns = {name: self._values[rows, k] for k, name in enumerate(self._metrics)}
        return BenchTable(
            [self._archs[r] for r in rows],
            columns,
            source=source or self._source,
            index=self._index,
            seed_rows=self._seed_rows,
        )

    def head(self, n: int) -> BenchTable:
        """The first ``n`` rows."""
        return self.take(np.arange(min(n, len(self))))

    def dropna(self, metrics: Sequence[str]) -> BenchTable:
        """The rows where every named metric is finite."""
        columns = [self._column[self.resolve(m)] for m in metrics]
        return self.take(np.flatnonzero(np.all(np.isfinite(self._values[:, columns]), axis=1)))

    def to_frame(self) -> pd.DataFrame:
        """A copy as a DataFrame: ``arch`` (NB201 string), ``index`` (NB201 index, nullable; only where
        the source has indices), then one float column per metric."""
        frame = pd.DataFrame({"arch": [str(a) for a in self._archs]})
        if self._index:
            frame["index"] = pd.array([self._index.get(a) for a in self._archs], dtype="Int64")
        metrics = pd.DataFrame(self._values.copy(), columns=list(self._metrics))
        return pd.concat([frame, metrics], axis=1)

    def class_frame(self) -> pd.DataFrame:
        """One row per isomorphism class present: ``arch`` (canonical string), ``n_rows`` (rows of the
        class in this table), then each metric's NaN-skipping mean over those rows."""
        where, means = self._class_table
        classes = np.flatnonzero(where >= 0)
        canon = canonical_ordinals()[[a.ordinal for a in self._archs]]
        frame = pd.DataFrame(
            {
                "arch": [str(Arch.from_ordinal(int(c))) for c in classes],
                "n_rows": np.bincount(where[canon], minlength=len(classes)),
            }
        )
        return pd.concat([frame, pd.DataFrame(means[where[classes]], columns=list(self._metrics))], axis=1)

    def join(self, other: BenchTable | pd.DataFrame, *, how: str = "inner") -> BenchTable:
        """This table's rows with ``other``'s metrics appended, matched by the lookup rule (the arch's
        own row in ``other``, else its isomorphism class's).

        ``other`` is a :class:`BenchTable` or a frame with an ``arch`` column (and optionally ``index``).
        ``how="inner"`` keeps the rows ``other`` can answer; ``"left"`` keeps all, with NaN. Metric names
        present in both tables raise.
        """
        if how not in ("inner", "left"):
            raise TableError(f"join how={how!r}: expected 'inner' or 'left'")
        if isinstance(other, pd.DataFrame):
            other = BenchTable.from_frame(other)
        clash = sorted(set(self._metrics) & set(other.metrics))
        if clash:
            raise TableError(
                f"cannot join {other.source} to {self._source}: both have {', '.join(clash[:8])}"
            )
        extra = other.lookup(other.metrics, self._archs, fill="class")
        answered = _answered(other, self._archs)
        keep = np.arange(len(self._archs)) if how == "left" else np.flatnonzero(answered)
        columns = {name: self._values[keep, k] for k, name in enumerate(self._metrics)}
        columns.update({name: extra[keep, k] for k, name in enumerate(other.metrics)})
        seeds = [t._seed_rows for t in (self, other) if t._seed_rows is not None]
        return BenchTable(
            [self._archs[r] for r in keep],
            columns,
            source=f"{self._source} + {other.source}",
            index={**other._index, **self._index},
            seed_rows=_concat_seed_rows(seeds),
        )


def _answered(table: BenchTable, archs: Sequence[Arch]) -> np.ndarray:
    """Which archs ``table`` has a row for: their own or their class's."""
    ordinals = np.array([a.ordinal for a in archs], dtype=np.int64)
    where, _ = table._class_table
    return (table._own_row[ordinals] >= 0) | (where[canonical_ordinals()[ordinals]] >= 0)


def _concat_seed_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _protocol_rows(
    frame: pd.DataFrame, protocol: str, protocol_hash: str | None, source: str
) -> pd.DataFrame:
    """The rows of one protocol (and configuration), checked: one hash unless ``protocol_hash`` picks."""
    for column in ("arch", "protocol"):
        if column not in frame.columns:
            raise TableError(f"{source} has no {column!r} column: not a table of result rows")
    rows = frame[frame["protocol"] == protocol]
    if rows.empty:
        present = ", ".join(sorted(map(str, frame["protocol"].dropna().unique()))) or "none"
        raise TableError(f"no rows of protocol {protocol!r} in {source} (protocols: {present})")
    if "protocol_hash" in rows.columns:
        if protocol_hash is not None:
            rows = rows[rows["protocol_hash"] == protocol_hash]
            if rows.empty:
                raise TableError(f"no rows of protocol {protocol!r} with hash {protocol_hash!r} in {source}")
        hashes = sorted(map(str, rows["protocol_hash"].dropna().unique()))
        if len(hashes) > 1:
            raise TableError(
                f"protocol {protocol!r} has {len(hashes)} configurations in {source} "
                f"(hashes {', '.join(hashes)}); pass protocol_hash="
            )
    return rows


def _index_values(column: pd.Series, where: str) -> list[int]:
    """Validate an NB201 index column: integers in 0..15,624, no gaps in the column, no repeats."""
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round()) | (numbers < 0) | (numbers >= NUM_ARCHS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableError(f"bad NB201 index in row {row} of {where}: {column.iloc[row]!r} (expected 0..15624)")
    values = numbers.astype(np.int64).tolist()
    repeated = pd.Series(values).duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise TableError(f"duplicate rows in {where}: NB201 index {values[row]} repeats in row {row}")
    return values


def as_table(table: BenchTable | pd.DataFrame, source: str = "DataFrame") -> BenchTable:
    """A :class:`BenchTable` as is, or one built from a frame with an ``arch`` column (one row per arch;
    numeric columns become metrics): where a DataFrame arrives, this is the one conversion."""
    if isinstance(table, BenchTable):
        return table
    if isinstance(table, pd.DataFrame):
        frame = table if "arch" in table.columns else table.reset_index()
        return BenchTable.from_frame(frame, source=source)
    raise TableError(f"cannot read a benchmark table from {type(table).__name__}")


__all__ = ["FILLS", "ArchKey", "BenchTable", "Fill", "as_table", "parse_arch_column", "with_residuals"]
