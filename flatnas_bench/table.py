"""The in-memory benchmark table: per-arch metrics with explicit names, looked up by any form of arch.

A :class:`BenchTable` holds one row per arch as its source has them (NB201 and NATS-Bench hold all 15,625
strings; the tables this project measures hold one canonical representative per isomorphism class) and a
float column per metric. Lookups accept an NB201 string, 6 op indices, an :class:`~flatnas_bench.space.Arch`
or an NB201 index, and find that arch's own row or else its isomorphism class's row. Unknown archs and
metrics raise :class:`~flatnas_bench.errors.TableError`; nothing ever returns -1.

Metric names carry dataset, split and fidelity, and there are no defaults:

* NB201-style sources (the CSV in ``../shared/data/nb201``, the official ``nas_201_api`` ``.pth`` file,
  the NATS-Bench topology directory) use ``{dataset}_{split}_acc_{epochs}ep`` such as
  ``cifar10_valid_acc_200ep`` (the ``cifar10-valid`` split's validation accuracy, %, mean over seeds),
  ``cifar10_test_acc_200ep``, ``cifar100_test_acc_12ep_1seed`` (the suffix ``_1seed`` says that every arch
  has one run only), plus ``{dataset}_params_m`` (M) and ``{dataset}_flops_m`` (M MACs).
* Our own result tables (:meth:`BenchTable.from_results`) use ``{dataset}_{column}_{protocol}`` such as
  ``cifar10_val_acc_proxy``: the result row's column, averaged over the successful seeds.

>>> table = load_table("../shared/data/nb201/nb201_accuracy.csv")  # doctest: +SKIP
>>> arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
>>> metric = "cifar10_test_acc_200ep"  # CIFAR-10 test accuracy (%), 200 epochs, mean of the seeds
>>> table.get(arch, metric), table.get((3, 3, 4, 1, 3, 1), metric), table.get(1, metric)  # doctest: +SKIP
(93.66, 93.66, 93.66)
>>> table.index_of(arch)  # doctest: +SKIP
1
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatnas_bench.errors import ArchError, TableError
from flatnas_bench.space import Arch, all_archs, as_arch

#: What a lookup accepts: an Arch, an NB201 string, 6 op indices, or an NB201 index (int).
ArchKey = Arch | str | Sequence[int] | int | np.integer

#: NB201's dataset names and the prefixes our metric names give them.
DATASET_PREFIXES: dict[str, str] = {
    "cifar10-valid": "cifar10_valid",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "ImageNet16-120": "imagenet16",
}

#: Result-row columns that are bookkeeping, not metrics (``seed`` is averaged over, not reported).
RESULT_KEY_COLUMNS: tuple[str, ...] = ("arch", "protocol", "protocol_hash", "seed", "error", "dataset")

_NAME_CHARS = re.compile(r"[^a-z0-9]+")


def dataset_prefix(dataset: str) -> str:
    """The metric-name prefix of a dataset: ``cifar10-valid`` -> ``cifar10_valid``, ``ImageNet16-120`` ->
    ``imagenet16``, anything else lower-cased with runs of other characters turned into ``_``."""
    if dataset in DATASET_PREFIXES:
        return DATASET_PREFIXES[dataset]
    return _NAME_CHARS.sub("_", dataset.lower()).strip("_")


def result_metric_name(dataset: str, column: str, protocol: str) -> str:
    """The metric name of a result-row column: ``result_metric_name("cifar10", "val_acc", "proxy")`` is
    ``cifar10_val_acc_proxy``; a protocol such as ``nb201-12`` becomes ``nb201_12``."""
    return f"{dataset_prefix(dataset)}_{column}_{_NAME_CHARS.sub('_', protocol.lower()).strip('_')}"


@functools.cache
def _arch_by_string() -> dict[str, Arch]:
    """Every NB201 string -> its Arch: parsing a 15,625-row column is then one dict look-up per row."""
    return {str(arch): arch for arch in all_archs()}


def parse_arch_column(strings: Iterable[object], where: str) -> list[Arch]:
    """Parse a column of NB201 arch strings; a malformed entry raises :class:`TableError` naming its row
    (0-based data row) and ``where`` (the table's description)."""
    known = _arch_by_string()
    archs = []
    for row, text in enumerate(strings):
        arch = known.get(text) if isinstance(text, str) else None
        if arch is None:
            try:
                arch = Arch.from_str(text)  # type: ignore[arg-type]
            except ArchError as exc:
                raise TableError(f"malformed arch string in row {row} of {where}: {exc}") from None
        archs.append(arch)
    return archs


def _numeric_columns(frame: pd.DataFrame, skip: Iterable[str], where: str) -> dict[str, np.ndarray]:
    """The frame's numeric columns as float64 arrays. Text columns (devices, JSON, versions) are not
    metrics and are left out; a text column that mixes numbers and words raises."""
    out: dict[str, np.ndarray] = {}
    skipped = set(skip)
    for name in frame.columns:
        if name in skipped:
            continue
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            out[str(name)] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        present = column.dropna()
        present = present[present.astype(str).str.strip() != ""]
        numbers = pd.to_numeric(present, errors="coerce")
        if len(present) and numbers.notna().all():
            out[str(name)] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        elif numbers.notna().any():
            bad = present.index[numbers.isna().to_numpy()][0]
            row = frame.index.get_loc(bad)
            raise TableError(
                f"column {name!r} of {where} mixes numbers and text (row {row}: {column[bad]!r})"
            )
    return out


class BenchTable:
    """Per-arch benchmark metrics (floats), looked up by arch, NB201 index or isomorphism class.

    Rows are per arch as the source has them. A lookup of an arch whose own row is absent falls back to
    its isomorphism class: the class's row, or the mean over the class's rows (NaN-skipping) where the
    source holds several members of the class (NB201 holds all of them; our own tables hold canonical
    archs only). An arch with neither raises :class:`TableError`.

    Build one with :func:`load_table` (any supported file), :meth:`from_frame` or :meth:`from_results`.

    >>> ours = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"  # canonical
    >>> t = BenchTable.from_frame(pd.DataFrame({"arch": [ours], "cifar10_val_acc_proxy": [61.5]}))
    >>> t.get(ours, "cifar10_val_acc_proxy")
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
    ) -> None:
        """``archs``: one per row; ``columns``: metric name -> float array of ``len(archs)``; ``source``:
        a path or description; ``index``: NB201 index per arch (may cover archs without rows)."""
        self._source = str(source)
        self._archs = tuple(archs)
        n = len(self._archs)
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

    @functools.cached_property
    def _class_rows(self) -> dict[Arch, np.ndarray]:
        """Canonical arch -> the rows of its class (built on first use: exact lookups never need it)."""
        classes: dict[Arch, list[int]] = {}
        for row, arch in enumerate(self._archs):
            classes.setdefault(arch.canonical(), []).append(row)
        return {rep: np.asarray(rows) for rep, rows in classes.items()}

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
        return cls(archs, _numeric_columns(frame, skip, source), source=source, index=index)

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
        """Our result rows (see ARCHITECTURE.md, "Result row") for one protocol, averaged over seeds.

        Failed rows (``error`` set) are left out; an arch whose every seed failed has no row. Every
        numeric column measured at least once becomes ``{dataset}_{column}_{protocol}`` (e.g.
        ``cifar10_val_acc_proxy``, %, NaN-skipping mean over seeds), plus ``{dataset}_n_seeds_{protocol}``,
        the number of successful seeds averaged. Rows of the protocol with two different ``protocol_hash``
        values (the same name with different overrides) raise unless ``protocol_hash`` picks one.

        >>> ours = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
        >>> rows = pd.DataFrame({"arch": [ours] * 3, "protocol": "proxy", "seed": [0, 1, 2],
        ...                      "val_acc": [60.0, 62.0, None], "error": [None, None, "diverged"]})
        >>> BenchTable.from_results(rows, "cifar10", "proxy").row(ours)
        {'cifar10_val_acc_proxy': 61.0, 'cifar10_n_seeds_proxy': 2.0}
        """
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
                    raise TableError(
                        f"no rows of protocol {protocol!r} with hash {protocol_hash!r} in {source}"
                    )
            hashes = sorted(map(str, rows["protocol_hash"].dropna().unique()))
            if len(hashes) > 1:
                raise TableError(
                    f"protocol {protocol!r} has {len(hashes)} configurations in {source} "
                    f"(hashes {', '.join(hashes)}); pass protocol_hash="
                )
        if "error" in rows.columns:
            failed = rows["error"].notna() & (rows["error"].astype(str).str.strip() != "")
            rows = rows[~failed.to_numpy()]
        archs = parse_arch_column(rows["arch"], source)
        if "seed" in rows.columns:
            keys = pd.DataFrame({"arch": [a.ops for a in archs], "seed": rows["seed"].to_numpy()})
            repeated = keys.duplicated()
            if repeated.any():
                row = int(np.flatnonzero(repeated.to_numpy())[0])
                raise TableError(
                    f"duplicate rows in {source}: arch {archs[row]} seed {keys['seed'].iloc[row]} repeats"
                )
        metrics = _numeric_columns(rows, RESULT_KEY_COLUMNS, source)
        groups: dict[Arch, list[int]] = {}
        for row, arch in enumerate(archs):
            groups.setdefault(arch, []).append(row)
        order = list(groups)
        columns: dict[str, np.ndarray] = {}
        for name, values in metrics.items():
            if np.isnan(values).all():
                continue  # never measured under this protocol (e.g. corruption metrics before that suite)
            columns[result_metric_name(dataset, name, protocol)] = np.array(
                [_nanmean(values[groups[arch]]) for arch in order]
            )
        columns[result_metric_name(dataset, "n_seeds", protocol)] = np.array(
            [float(len(groups[arch])) for arch in order]
        )
        return cls(order, columns, source=f"{source} (protocol {protocol})")

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

    # ---------------------------------------------------------------------------------------- lookups
    def _arch(self, key: ArchKey) -> Arch:
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

    def _rows(self, key: ArchKey) -> np.ndarray:
        """The rows that answer for ``key``: its own row, else its isomorphism class's rows."""
        arch = self._arch(key)
        row = self._row_of.get(arch)
        if row is not None:
            return np.array([row])
        rows = self._class_rows.get(arch.canonical())
        if rows is None:
            raise TableError(f"arch {str(arch)!r} (nor any isomorphic arch) is not in {self._source}")
        return rows

    def _answer(self, key: ArchKey, column: int | slice = slice(None)) -> np.ndarray:
        """Values for ``key`` (one column or all): its own row, else the NaN-skipping mean of its class's."""
        rows = self._rows(key)
        return (
            self._values[rows[0], column] if len(rows) == 1 else _nanmean(self._values[rows, column], axis=0)
        )

    def _column_of(self, name: str) -> int:
        """Column position of metric ``name``; an unknown or ambiguous name raises, listing close names."""
        k = self._column.get(name)
        if k is not None:
            return k
        partial = [m for m in self._metrics if isinstance(name, str) and name and name in m]
        if len(partial) > 1:
            raise TableError(
                f"ambiguous metric {name!r} in {self._source}: say which of {', '.join(partial[:8])}"
            )
        close = partial or difflib.get_close_matches(str(name), self._metrics, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"metrics: {', '.join(self._metrics[:12])}"
        raise TableError(f"unknown metric {name!r} in {self._source}; {hint}")

    def index_of(self, arch: ArchKey) -> int | None:
        """The NB201 index (0..15,624) of ``arch`` where the source has one, else None.

        The index belongs to the arch string itself, not its class: NATS-Bench and ``.pth`` sources know
        the index of all 15,625 archs even where they hold records for a few.
        """
        return self._index.get(self._arch(arch))

    def row(self, arch: ArchKey) -> dict[str, float]:
        """All metrics of ``arch`` (its own row, else its class's mean) as ``{metric: value}``."""
        return {name: float(v) for name, v in zip(self._metrics, self._answer(arch), strict=True)}

    def get(self, arch: ArchKey, metric: str) -> float:
        """One metric of one arch, e.g. ``table.get(0, "cifar10_test_acc_200ep")`` -> 85.8633 (%)."""
        return float(self._answer(arch, self._column_of(metric)))

    def values(self, metric: str, archs: Iterable[ArchKey] | None = None) -> np.ndarray:
        """Metric ``metric`` as a float array: for every row (``archs=None``, in :attr:`archs` order; a
        read-only view) or for the given archs in their order (each by the lookup rule; an unknown one
        raises)."""
        k = self._column_of(metric)
        if archs is None:
            return self._values[:, k]
        return np.array([self._answer(arch, k) for arch in archs], dtype=np.float64)

    # ------------------------------------------------------------------------------------------ frames
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
        reps = sorted(self._class_rows)
        values = np.empty((len(reps), len(self._metrics)))
        for k, rep in enumerate(reps):
            values[k] = _nanmean(self._values[self._class_rows[rep]], axis=0)
        frame = pd.DataFrame(
            {"arch": [str(r) for r in reps], "n_rows": [len(self._class_rows[r]) for r in reps]}
        )
        return pd.concat([frame, pd.DataFrame(values, columns=list(self._metrics))], axis=1)

    def join(self, other: BenchTable | pd.DataFrame, *, how: str = "inner") -> BenchTable:
        """This table's rows with ``other``'s metrics appended, matched by the lookup rule (the arch's
        own row in ``other``, else its isomorphism class's).

        ``other`` is a :class:`BenchTable` or a frame with an ``arch`` column (and optionally ``index``).
        ``how="inner"`` keeps the rows ``other`` can answer; ``"left"`` keeps all, with NaN. Metric names
        present in both tables raise.

        >>> acc = load_table("../shared/data/nb201/nb201_accuracy.csv")  # doctest: +SKIP
        >>> both = acc.join(load_table("../shared/data/nb201/nb201_latency_help.csv"))  # doctest: +SKIP
        >>> both.get(0, "pixel3_ms")  # doctest: +SKIP
        3.6058
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
        keep, extra = [], []
        for row, arch in enumerate(self._archs):
            try:
                extra.append(other._answer(arch))
            except TableError:
                if how == "inner":
                    continue
                extra.append(np.full(len(other.metrics), np.nan))
            keep.append(row)
        extra_values = np.stack(extra) if extra else np.empty((0, len(other.metrics)))
        columns = {name: self._values[keep, k] for k, name in enumerate(self._metrics)}
        columns.update({name: extra_values[:, k] for k, name in enumerate(other.metrics)})
        index = {**other._index, **self._index}
        return BenchTable(
            [self._archs[r] for r in keep], columns, source=f"{self._source} + {other.source}", index=index
        )


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean that skips NaN and gives NaN (no warning) where every value is NaN."""
    with np.errstate(all="ignore"):
        count = np.sum(~np.isnan(values), axis=axis)
        total = np.nansum(values, axis=axis)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _index_values(column: pd.Series, where: str) -> list[int]:
    """Validate an NB201 index column: integers in 0..15,624, no gaps in the column, no repeats."""
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round()) | (numbers < 0) | (numbers >= len(all_archs()))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableError(f"bad NB201 index in row {row} of {where}: {column.iloc[row]!r} (expected 0..15624)")
    values = numbers.astype(np.int64).tolist()
    repeated = pd.Series(values).duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise TableError(f"duplicate rows in {where}: NB201 index {values[row]} repeats in row {row}")
    return values


def load_table(path: str | Path, *, arch_column: str = "arch", dataset: str | None = None) -> BenchTable:
    """Load a benchmark table from whatever ``path`` is.

    * CSV or Parquet with an arch-string column (``arch_column``) and optionally ``index`` (NB201 index):
      one row per arch, numeric columns as metrics. A CSV/Parquet export of our result rows (it has
      ``protocol`` and ``seed`` columns) is read like our SQLite table.
    * SQLite written by :mod:`flatnas_bench.store` (table ``results``): every protocol's rows through
      :meth:`BenchTable.from_results`. The dataset comes from a ``dataset`` column, else ``dataset=``,
      else the protocol registry.
    * The official NAS-Bench-201 ``.pth`` file (v1_0 / v1_1).
    * A NATS-Bench topology fast-mode directory (``NATS-tss-v1_0-3ffb9-simple``).

    Anything missing, unrecognised or corrupt raises :class:`TableError` with one line naming the
    problem. Loading the 15,625-row NB201 CSV takes about 0.1 s.

    >>> table = load_table("../shared/data/nb201/nb201_accuracy.csv")  # doctest: +SKIP
    >>> len(table), table.get(0, "cifar10_test_acc_200ep")  # doctest: +SKIP
    (15625, 85.8633)
    """
    from flatnas_bench import table_readers

    return table_readers.read_table(Path(path), arch_column=arch_column, dataset=dataset)
