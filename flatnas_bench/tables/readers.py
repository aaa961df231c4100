"""Loading benchmark files into a :class:`~flatnas_bench.tables.table.BenchTable`: :func:`load_table`.

:func:`load_table` recognises a file by its first bytes,
not its name: SQLite, Parquet, a torch file (the official NAS-Bench-201 ``.pth``), a bz2 pickle (a
NATS-Bench single-file benchmark), else text read as CSV; a directory is a NATS-Bench topology fast-mode
archive. Each failure becomes one :class:`~flatnas_bench.core.errors.TableError` line.

Every CSV the project reads goes through :func:`read_csv`, which parses each float to the value written,
bit for bit, on every supported pandas.

NB201 / NATS-Bench records become these metrics (accuracy in %, NaN-free mean over the arch's seeds at the
last epoch; ``{fid}`` is ``200ep`` or ``12ep``, with ``_1seed`` appended when every arch has one run only):

========================  ===================  ==========================================
metric                    dataset              evaluation set
========================  ===================  ==========================================
cifar10_valid_acc_{fid}   cifar10-valid        x-valid (25k held out of the training set)
cifar10_valid_test_acc_…  cifar10-valid        ori-test (CIFAR-10 test set)
cifar10_test_acc_{fid}    cifar10 (50k train)  ori-test
cifar100_valid_acc_…      cifar100             x-valid
cifar100_test_acc_…       cifar100             x-test
imagenet16_valid_acc_…    ImageNet16-120       x-valid
imagenet16_test_acc_…     ImageNet16-120       x-test
========================  ===================  ==========================================

plus ``{cifar10,cifar100,imagenet16}_params_m`` (M parameters), ``..._flops_m`` (M multiply-accumulates)
and ``cifar10_valid_train_sec_per_epoch`` (the benchmark's GPU seconds per 200-epoch-run epoch), the
names the NB201 CSV in ``../shared/data/nb201`` uses.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatnas_bench.core.errors import FlatnasError, TableError
from flatnas_bench.core.protocol import get_protocol, list_protocols
from flatnas_bench.core.results import TEXT_COLUMNS
from flatnas_bench.tables.store import SQLITE_MAGIC, ResultStore
from flatnas_bench.tables.table import BenchTable, parse_arch_column

PARQUET_MAGIC = b"PAR1"
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
BZ2_MAGIC = b"BZh"
NATS_META = "meta.pickle.pbz2"
_NATS_RECORD = re.compile(r"^(\d+)\.pickle\.pbz2$")

#: (NB201 dataset, evaluation set) -> metric stem; the fidelity suffix is added per hyper-parameter set.
ACCURACY_METRICS: dict[tuple[str, str], str] = {
    ("cifar10-valid", "x-valid"): "cifar10_valid_acc",
    ("cifar10-valid", "ori-test"): "cifar10_valid_test_acc",
    ("cifar10", "ori-test"): "cifar10_test_acc",
    ("cifar100", "x-valid"): "cifar100_valid_acc",
    ("cifar100", "x-test"): "cifar100_test_acc",
    ("ImageNet16-120", "x-valid"): "imagenet16_valid_acc",
    ("ImageNet16-120", "x-test"): "imagenet16_test_acc",
}
#: NB201 dataset -> prefix of its cost metrics (params and MACs depend on the head only).
COST_DATASETS: dict[str, str] = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet16"}


def load_table(path: str | Path, *, arch_column: str = "arch", dataset: str | None = None) -> BenchTable:
    """Load a benchmark table from whatever ``path`` is.

    * CSV or Parquet with an arch-string column (``arch_column``) and optionally ``index`` (NB201 index):
      one row per arch, numeric columns as metrics. A CSV/Parquet export of our result rows (it has
      ``protocol`` and ``seed`` columns) is read like our SQLite table.
    * SQLite written by :mod:`flatnas_bench.tables.store` (table ``results``): every protocol's rows through
      :meth:`BenchTable.from_results`. The dataset comes from a ``dataset`` column, else the stored
      protocol card, else ``dataset=``, else the protocol registry.
    * The official NAS-Bench-201 ``.pth`` file (v1_0 / v1_1).
    * A NATS-Bench topology fast-mode directory (``NATS-tss-v1_0-3ffb9-simple``).

    Anything missing, unrecognised or corrupt raises :class:`TableError` with one line naming the
    problem. Loading the 15,625-row NB201 CSV takes about 0.1 s.

    >>> table = load_table("../shared/data/nb201/nb201_accuracy.csv")  # doctest: +SKIP
    >>> len(table), table.get(0, "cifar10_test_acc_200ep")  # doctest: +SKIP
    (15625, 85.8633)
    """
    path = Path(path)
    if not path.exists():
        raise TableError(f"benchmark table not found: {path}")
    if path.is_dir():
        archives = (
            [path]
            if (path / NATS_META).is_file()
            else [d for d in path.iterdir() if (d / NATS_META).is_file()]
        )
        if len(archives) != 1:
            found = f"{len(archives)} archives inside" if archives else f"no {NATS_META}"
            raise TableError(
                f"{path} is a directory but not a NATS-Bench topology fast-mode archive ({found}); "
                f"pass the archive directory itself, e.g. NATS-tss-v1_0-3ffb9-simple"
            )
        return read_nats(archives[0])
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc.strerror}") from None
    if not head:
        raise TableError(f"{path} is empty")
    if head.startswith(SQLITE_MAGIC):
        return read_sqlite(path, dataset=dataset)
    if head.startswith(PARQUET_MAGIC):
        return _frame_table(_read_frame(path, pd.read_parquet), str(path), arch_column, dataset)
    if head.startswith(BZ2_MAGIC):
        return read_nats(path)
    if zipfile.is_zipfile(path) or head[:1] == b"\x80":  # torch zip archive, or torch's legacy pickle stream
        return read_nb201_pth(path)
    if b"\x00" in head or path.suffix.lower() not in (".csv", ".txt", ""):
        raise TableError(
            f"unknown table format: {path} (expected CSV, Parquet, SQLite, an NB201 .pth file "
            "or a NATS-Bench directory)"
        )
    csv = functools.partial(read_csv, dtype={c: "string" for c in TEXT_COLUMNS})
    return _frame_table(_read_frame(path, csv), str(path), arch_column, dataset)


def read_csv(source: Any, **kwargs: Any) -> pd.DataFrame:
    """:func:`pandas.read_csv` with every float parsed to the nearest double, i.e. to the value that was
    written (pandas writes the shortest repr that round-trips). pandas 3 parses so by default; pandas 2's
    default parser can be one ulp off (``47.699999999999996`` reads as ``47.7``), which merges or splits
    ties, so ranks, Spearman correlations and a resumed run's decisions would differ between the two."""
    return pd.read_csv(source, **_EXACT_FLOATS, **kwargs)


def _read_frame(path: Path, reader: Any) -> pd.DataFrame:
    try:
        return reader(path)
    except pd.errors.EmptyDataError:
        raise TableError(f"{path} has no columns") from None
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TableError(f"cannot read {path}: {_reason(exc)}") from None


def _frame_table(frame: pd.DataFrame, where: str, arch_column: str, dataset: str | None) -> BenchTable:
    """A CSV/Parquet frame: our exported result rows (``protocol`` and ``seed`` columns) are averaged per
    protocol; anything else is one row per arch."""
    if {"protocol", "seed"} <= set(frame.columns) and arch_column == "arch":
        return results_table(frame, where, dataset=dataset)
    return BenchTable.from_frame(frame, arch_column=arch_column, source=where)


# ---------------------------------------------------------------------------------------- our results
def read_sqlite(path: Path, *, dataset: str | None = None) -> BenchTable:
    """Our SQLite result table (:class:`~flatnas_bench.tables.store.ResultStore`), every protocol in it.

    The dataset of each protocol comes from its stored card (``protocols`` table), else ``dataset``.
    """
    try:
        with ResultStore(path, readonly=True) as store:
            frame = store.to_frame()
            known = store.protocols()
    except sqlite3.DatabaseError as exc:
        raise TableError(f"{path} is not a readable SQLite table: {_reason(exc)}") from None
    cards = dict(zip(known["hash"], known["card"], strict=True))
    datasets = {h: str(card["dataset"]) for h, card in cards.items() if card.get("dataset")}
    return results_table(frame, str(path), dataset=dataset, datasets=datasets)


def results_table(
    frame: pd.DataFrame, where: str, *, dataset: str | None = None, datasets: Mapping[str, str] | None = None
) -> BenchTable:
    """Result rows of every protocol, each through :meth:`BenchTable.from_results`, side by side.

    A protocol's dataset is, in order: a ``dataset`` column, ``datasets[protocol_hash]`` (stored cards),
    ``dataset``, the registry's preset of that name if its hash matches the rows' (else this raises).
    A protocol name stored with several configurations (hashes) gets ``_{hash[:8]}`` appended to its
    metric names.
    """
    if frame.empty:
        raise TableError(f"{where} holds no result rows")
    if "protocol_hash" not in frame.columns:
        frame = frame.assign(protocol_hash="")
    groups = frame[["protocol", "protocol_hash"]].drop_duplicates()
    per_name = groups["protocol"].value_counts()
    tables = []
    for protocol, phash in groups.itertuples(index=False):
        rows = frame[(frame["protocol"] == protocol) & (frame["protocol_hash"] == phash)]
        data = _protocol_dataset(rows, str(protocol), str(phash), where, dataset, datasets or {})
        label = f"{protocol}_{str(phash)[:8]}" if per_name[protocol] > 1 else str(protocol)
        rows = rows.assign(protocol=label)
        tables.append(BenchTable.from_results(rows, data, label, protocol_hash=str(phash), source=where))
    return BenchTable.side_by_side(tables, where) if len(tables) > 1 else tables[0]


def _protocol_dataset(
    rows: pd.DataFrame,
    protocol: str,
    phash: str,
    where: str,
    dataset: str | None,
    datasets: Mapping[str, str],
) -> str:
    if "dataset" in rows.columns:
        named = rows["dataset"].dropna().unique()
        if len(named) == 1:
            return str(named[0])
        if len(named) > 1:
            raise TableError(
                f"protocol {protocol!r} ({phash}) in {where} names several datasets: {list(named)}"
            )
    if phash in datasets:
        return datasets[phash]
    if dataset is not None:
        return dataset
    try:
        preset = get_protocol(protocol)
    except FlatnasError:
        preset = None
    if preset is not None and phash in ("", preset.hash):  # the registry's preset, unchanged
        return preset.dataset
    for name in list_protocols():  # rows of a preset's earlier definition kept under its new name
        if get_protocol(name).hash == phash:
            return get_protocol(name).dataset
    raise TableError(
        f"cannot tell which dataset protocol {protocol!r} ({phash}) in {where} used; pass dataset="
    )


# ----------------------------------------------------------------------------------- NB201 / NATS-Bench
def _nb201_records(hp2results: Mapping[str, Any]) -> dict[str, tuple[float, int]]:
    """Metrics of one arch from its ``{hp: ArchResults}``: ``{name without seed suffix: (value, seeds)}``,
    accuracies (longest fidelity first) then costs.

    Reads through the official ``ArchResults.get_metrics(..., is_random=False)``, which averages the
    last epoch over every recorded seed (``is_random=True``, the official default, picks one at random).
    """
    out: dict[str, tuple[float, int]] = {}
    for hp in sorted(hp2results, key=lambda h: -int(h)):
        results = hp2results[hp]
        names = set(results.get_dataset_names())
        for (data, split), stem in ACCURACY_METRICS.items():
            if data not in names:
                continue
            try:
                value = results.get_metrics(data, split, is_random=False)["accuracy"]
            except (KeyError, ValueError, AssertionError, TypeError):
                continue  # this set was not evaluated for this dataset / fidelity (e.g. NB201 v1_0 'less')
            if value is not None:
                out[f"{stem}_{hp}ep"] = (float(value), len(results.get_dataset_seeds(data)))
    full = hp2results.get("200")
    if full is not None:
        names = set(full.get_dataset_names())
        for data, prefix in COST_DATASETS.items():
            if data in names:
                costs = full.get_compute_costs(data)
                out[f"{prefix}_params_m"] = (float(costs["params"]), 0)
                out[f"{prefix}_flops_m"] = (float(costs["flops"]), 0)
        if "cifar10-valid" in names:
            per_epoch = full.get_compute_costs("cifar10-valid").get("T-train@epoch")
            if per_epoch is not None:
                out["cifar10_valid_train_sec_per_epoch"] = (float(per_epoch), 0)
    return out


def _records_table(
    records: dict[int, dict[str, tuple[float, int]]], meta_archs: list[str], where: str
) -> BenchTable:
    """Assemble per-index records into a table; ``_1seed`` marks accuracy columns with one run per arch."""
    archs_all = parse_arch_column(meta_archs, f"the arch list of {where}")
    index = {arch: i for i, arch in enumerate(archs_all)}
    if len(index) != len(archs_all):
        raise TableError(f"duplicate rows in the arch list of {where}")
    indices = sorted(records)
    for i in indices:
        if not 0 <= i < len(archs_all):
            raise TableError(
                f"{where} holds a record for index {i}, outside its arch list of {len(archs_all)}"
            )
    names = dict.fromkeys(name for i in indices for name in records[i])
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = np.array([records[i].get(name, (np.nan, 0))[0] for i in indices])
        seeds = {records[i][name][1] for i in indices if name in records[i]}
        columns[f"{name}_1seed" if seeds == {1} else name] = values
    return BenchTable([archs_all[i] for i in indices], columns, source=where, index=index)


def read_nb201_pth(path: Path) -> BenchTable:
    """The official NAS-Bench-201 file (``NAS-Bench-201-v1_0-e61699.pth`` / ``v1_1-096897.pth``).

    Its layout: ``{"meta_archs": [15,625 strings], "arch2infos": {index: {"full": ArchResults state,
    "less": ...}}, "evaluated_indexes": [...]}``; ``full`` is the 200-epoch set, ``less`` the 12-epoch one.
    The v1_1 file is 4.7 GB and needs that much memory: a limitation of the file, which pickles every
    trained network's weights.
    """
    import torch
    from nas_201_api.api_utils import ArchResults

    try:
        # weights_only=False: the official file is a plain pickle of Python dicts holding numpy scalars and
        # OrderedDicts that torch's safe loader refuses. Only this third-party benchmark file is loaded this
        # way; every file this project writes is SQLite, CSV, Parquet or JSON.
        data = torch.load(path, map_location="cpu", weights_only=False, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # a corrupt or foreign pickle can raise nearly anything
        raise TableError(f"cannot read {path} as a torch file: {_reason(exc)}") from None
    keys = ("meta_archs", "arch2infos", "evaluated_indexes")
    if not isinstance(data, dict) or not all(k in data for k in keys):
        raise TableError(
            f"{path} is a torch file but not a NAS-Bench-201 benchmark (needs {', '.join(keys)})"
        )
    records = {}
    for index, infos in data["arch2infos"].items():
        try:
            hp2results = {"200": ArchResults.create_from_state_dict(infos["full"])}
            if infos.get("less") is not None:
                hp2results["12"] = ArchResults.create_from_state_dict(infos["less"])
            records[int(index)] = _nb201_records(hp2results)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise TableError(f"malformed record of index {index} in {path}: {_reason(exc)}") from None
    return _records_table(records, list(data["meta_archs"]), str(path))


def read_nats(path: Path) -> BenchTable:
    """A NATS-Bench topology benchmark through the official ``nats_bench`` API.

    ``path`` is the fast-mode directory (``NATS-tss-v1_0-3ffb9-simple``: ``meta.pickle.pbz2`` plus one
    ``NNNNNN.pickle.pbz2`` per arch; every record file present is read, about 10 ms each, so a full
    archive takes 2-3 minutes) or the single ``.pickle.pbz2`` file. NATS-Bench's files are pickles that
    its API unpickles: read them only from its official release.

    >>> table = read_nats(Path("../shared/data/nats-tss-fixture/NATS-tss-v1_0-3ffb9-simple"))  # doctest:+SKIP
    >>> len(table), table.get(0, "cifar10_test_acc_200ep"), table.get(0, "cifar10_params_m")  # doctest: +SKIP
    (3, 85.86333333333334, 0.129306)
    """
    import nats_bench

    fast = path.is_dir()
    try:
        api = nats_bench.create(str(path), "tss", fast_mode=fast, verbose=False)
    except Exception as exc:  # the official loader raises assorted types on a bad file
        raise TableError(f"cannot read {path} as a NATS-Bench topology benchmark: {_reason(exc)}") from None
    if fast:
        indices = sorted(int(m.group(1)) for f in path.iterdir() if (m := _NATS_RECORD.match(f.name)))
    else:
        indices = sorted(api.evaluated_indexes)
    records = {}
    for index in indices:
        try:
            if fast:
                api.reload(str(path), index)
            records[index] = _nb201_records(api.arch2infos_dict[index])
        except Exception as exc:  # a truncated bz2 or foreign pickle raises OSError, EOFError, ...
            raise TableError(f"malformed record of index {index} in {path}: {_reason(exc)}") from None
        if fast:
            del api.arch2infos_dict[index]  # keep memory flat while reading a full archive
    return _records_table(records, list(api.meta_archs), str(path))


def _reason(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
