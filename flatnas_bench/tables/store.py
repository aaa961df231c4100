"""The durable benchmark table: one SQLite file that the bench driver, and only the driver, writes.

Each finished candidate is one row keyed by ``(canonical arch, protocol_hash, seed)`` and committed in its
own transaction the moment it arrives, so a killed run loses at most the candidates still in flight and a
re-run skips everything already stored. The file holds three tables:

* ``results``: every column of the result-row contract (see ``ARCHITECTURE.md``) plus ``finished_at``
  (UTC, ISO 8601) and ``extra`` (JSON text of any keys a newer candidate adds), with a UNIQUE key;
* ``protocols``: each protocol's JSON card by its hash, so every number carries the settings behind it;
* ``meta``: the format tag and schema version, so a foreign SQLite file is refused instead of written to.

One writer per file (NB201 users' complaint 9: many writers deadlocking on a shared SQLite file): a writing
store takes an exclusive advisory lock on ``<table>.lock`` that the kernel releases even on SIGKILL, and
workers never open the file; they return rows and the driver writes them.

>>> store = ResultStore("bench.sqlite")                                    # doctest: +SKIP
>>> store.add({"arch": "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
...            "protocol": "proxy", "protocol_hash": "3f2a...", "seed": 0, "val_acc": 61.2})  # doctest: +SKIP
True
>>> store.export("bench.parquet")                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from flatnas_bench.core.errors import ArchError, TableError
from flatnas_bench.core.results import RESULT_COLUMNS
from flatnas_bench.nb201.space import as_arch

FORMAT_TAG = "flatnas-bench-results"
SCHEMA_VERSION = 3  # 2: corr_acc_rel, 3: flatness_r_se (older tables gain them when opened for writing)
SQLITE_MAGIC = b"SQLite format 3\x00"

STORE_COLUMNS: tuple[str, ...] = (*RESULT_COLUMNS, "finished_at", "extra")
KEY_COLUMNS = ("arch", "protocol_hash", "seed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS protocols (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    card TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    {", ".join(f"{name} {kind}" for name, kind in RESULT_COLUMNS.items())},
    finished_at TEXT NOT NULL,
    extra TEXT,
    UNIQUE (arch, protocol_hash, seed)
);
CREATE INDEX IF NOT EXISTS results_by_protocol ON results (protocol_hash);
"""

# A failed row may be replaced by a later attempt (``--retry-failed``); a successful row never is.
_UPSERT = (
    f"INSERT INTO results ({', '.join(STORE_COLUMNS)}) VALUES ({', '.join('?' * len(STORE_COLUMNS))}) "
    f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STORE_COLUMNS if c not in KEY_COLUMNS)
    + " WHERE results.error IS NOT NULL"
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sql_value(value: Any) -> Any:
    """A row value as SQLite stores it: NaN becomes NULL, numpy scalars become Python ones."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def protocol_card(protocol: Any) -> dict[str, Any]:
    """A protocol's settings as a JSON-ready dict: ``card()`` or ``to_dict()``, else its dataclass fields."""
    for method in ("card", "to_dict"):
        if callable(getattr(protocol, method, None)):
            return dict(getattr(protocol, method)())
    if is_dataclass(protocol) and not isinstance(protocol, type):
        return asdict(protocol)
    raise TableError(f"cannot describe protocol {protocol!r}: expected a dataclass or a card() method")


class ResultStore:
    """The SQLite result table at ``path``: add rows, list what is done, read, export.

    ``ResultStore(path)`` opens (creating if absent) a table for writing and holds the one-writer lock
    until :meth:`close`; ``ResultStore(path, readonly=True)`` opens an existing table for reading and may
    be used while a bench run writes it. A file that is not SQLite, or a SQLite file that is not a
    flatnas-bench table, raises :class:`TableError` and is left untouched.

    >>> with ResultStore("runs/proxy.sqlite") as store:                   # doctest: +SKIP
    ...     store.done_keys(protocol.hash)
    {('|nor_conv_3x3~0|+|...|', 0), ...}
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock_file: Any = None
        if readonly and not self.path.is_file():
            raise TableError(f"no benchmark table at {self.path}")
        self._check_header()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_writer_lock()
        try:
            self._conn = self._connect()
        except BaseException:
            self._release_writer_lock()
            raise

    # ----- opening ---------------------------------------------------------------------------------------
    def _check_header(self) -> None:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise TableError(f"benchmark table {self.path} is a directory, expected a .sqlite file")
        with open(self.path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise TableError(f"{self.path} is not a SQLite file; refusing to read or overwrite it")

    def _take_writer_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: rely on SQLite's own locking
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fh = open(lock_path, "a+")  # noqa: SIM115  (held open until close())
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise TableError(
                f"{self.path} is being written by another bench run (lock {lock_path}); one writer per table"
            ) from None
        self._lock_file = fh

    def _release_writer_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise self._foreign()
            if "meta" in tables:
                self._check_meta(conn)
            elif self.readonly:
                raise TableError(f"{self.path} is an empty SQLite file, not a flatnas-bench table")
            if not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(_SCHEMA)
                with self._transaction(conn):
                    self._migrate(conn)
                    conn.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [("format", FORMAT_TAG), ("schema_version", str(SCHEMA_VERSION))],
                    )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise TableError(f"{self.path} is not a readable SQLite table: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Add the contract columns an older table lacks (NULL in its old rows)."""
        stored = {row[1] for row in conn.execute("PRAGMA table_info(results)")}
        for name, kind in RESULT_COLUMNS.items():
            if name not in stored:
                conn.execute(f"ALTER TABLE results ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")

    def _foreign(self) -> TableError:
        return TableError(f"{self.path} is a SQLite file but not a flatnas-bench table; refusing to use it")

    def _check_meta(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_TAG:
            raise self._foreign()
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise TableError(
                f"{self.path} has schema {version}, newer than this flatnas-bench's {SCHEMA_VERSION}; upgrade"
            )

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _writable(self) -> sqlite3.Connection:
        if self.readonly:
            raise TableError(f"{self.path} was opened read-only")
        return self._conn

    # ----- writing ---------------------------------------------------------------------------------------
    def add_protocol(self, protocol: Any) -> None:
        """Record ``protocol``'s JSON card under its hash (once; a known hash is left as it is)."""
        card = json.dumps(protocol_card(protocol), sort_keys=True, default=str)
        conn = self._writable()
        with self._transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO protocols (hash, name, card, added_at) VALUES (?, ?, ?, ?)",
                (str(protocol.hash), str(protocol.name), card, _now()),
            )

    def add(self, row: Mapping[str, Any]) -> bool:
        """Commit one result row in its own transaction; returns False when the key already holds a success.

        The arch is stored in canonical form, so isomorphs share one key. A failed row (``error`` set) is
        replaced by a later row for the same key; a successful row is never replaced or duplicated. Keys
        outside the contract go to the ``extra`` JSON column.
        """
        missing = [k for k in ("arch", "protocol", "protocol_hash", "seed") if row.get(k) is None]
        if missing:
            raise TableError(f"result row lacks its key column(s) {', '.join(missing)}")
        try:
            arch = str(as_arch(row["arch"]).canonical())
        except ArchError as exc:
            raise TableError(f"result row has a bad arch: {exc}") from None
        values = {name: _sql_value(row.get(name)) for name in RESULT_COLUMNS}
        values["arch"] = arch
        values["seed"] = int(values["seed"])
        values["finished_at"] = _now()
        extra = {k: v for k, v in row.items() if k not in RESULT_COLUMNS}
        values["extra"] = json.dumps(extra, sort_keys=True, default=str) if extra else None
        conn = self._writable()
        with self._transaction(conn):
            cursor = conn.execute(_UPSERT, [values[c] for c in STORE_COLUMNS])
        return cursor.rowcount > 0

    # ----- reading ---------------------------------------------------------------------------------------
    def done_keys(
        self, protocol_hash: str, *, include_failed: bool = True, retry_errors: Sequence[str] = ()
    ) -> set[tuple[str, int]]:
        """The ``(canonical arch string, seed)`` pairs stored for ``protocol_hash``.

        With ``include_failed=False`` failed rows are left out, so a ``--retry-failed`` run evaluates them
        again; failed rows whose ``error`` contains one of ``retry_errors`` are left out either way (e.g.
        device failures that older versions stored as the candidate's result).
        """
        sql = "SELECT arch, seed FROM results WHERE protocol_hash = ?"
        args: list[str] = [protocol_hash]
        if not include_failed:
            sql += " AND error IS NULL"
        for text in retry_errors:
            sql += " AND (error IS NULL OR instr(error, ?) = 0)"
            args.append(text)
        return {(arch, int(seed)) for arch, seed in self._conn.execute(sql, args)}

    def protocols(self) -> pd.DataFrame:
        """One row per protocol: ``hash``, ``name``, ``card`` (a dict), ``added_at``, ``rows`` (stored)."""
        frame = pd.read_sql_query(
            "SELECT p.hash, p.name, p.card, p.added_at, COUNT(r.arch) AS rows FROM protocols p "
            "LEFT JOIN results r ON r.protocol_hash = p.hash GROUP BY p.hash ORDER BY p.added_at, p.hash",
            self._conn,
        )
        frame["card"] = [json.loads(card) for card in frame["card"]]
        return frame

    def counts(self, protocol_hash: str | None = None) -> dict[str, int]:
        """``{"rows": n, "ok": n, "failed": n}``, for one protocol or the whole table."""
        where, args = ("WHERE protocol_hash = ?", (protocol_hash,)) if protocol_hash else ("", ())
        total, failed = self._conn.execute(
            f"SELECT COUNT(*), COUNT(error) FROM results {where}", args
        ).fetchone()
        return {"rows": total, "ok": total - failed, "failed": failed}

    def to_frame(self, protocol_hash: str | None = None, *, include_failed: bool = True) -> pd.DataFrame:
        """The stored rows as a DataFrame in contract column order, oldest first (NULL reads as NaN/None)."""
        clauses, args = [], []
        if protocol_hash is not None:
            clauses.append("protocol_hash = ?")
            args.append(protocol_hash)
        if not include_failed:
            clauses.append("error IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        stored = {row[1] for row in self._conn.execute("PRAGMA table_info(results)")}
        present = [c for c in STORE_COLUMNS if c in stored]
        frame = pd.read_sql_query(
            f"SELECT {', '.join(present)} FROM results {where} ORDER BY rowid", self._conn, params=args
        )
        frame = frame.reindex(columns=[c for c in STORE_COLUMNS if c in stored or c in RESULT_COLUMNS])
        # an all-NULL column reads as object; the contract's REAL columns are always float (NaN = missing)
        real = [name for name, kind in RESULT_COLUMNS.items() if kind == "REAL"]
        return frame.astype({name: "float64" for name in real} | {"seed": "int64"})

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def export(self, path: str | os.PathLike[str], protocol_hash: str | None = None) -> int:
        """Write the rows to ``path``: CSV (``.csv``) or Parquet (``.parquet``, ``.pq``), with a last column
        ``dataset`` from each row's protocol card, so an export of a protocol the registry does not hold (a
        ``--set`` override) loads on its own. Returns how many."""
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise TableError(f"cannot export to {out.name!r}: use a .csv or .parquet file name")
        if out.resolve() == self.path.resolve():
            raise TableError(f"refusing to export {self.path} onto itself")
        frame = self.to_frame(protocol_hash)
        known = self.protocols()
        datasets = {h: card.get("dataset") for h, card in zip(known["hash"], known["card"], strict=True)}
        frame["dataset"] = frame["protocol_hash"].map(datasets)
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
        return len(frame)

    def resolve_protocol(self, protocol_hash: str | None = None) -> tuple[str, dict[str, Any]]:
        """The ``(hash, card)`` of one protocol in the table: the one named (a hash or a unique prefix or a
        protocol name), or the only one there is."""
        known = self.protocols()
        if known.empty:
            raise TableError(f"{self.path} holds no protocol yet")
        if protocol_hash is None:
            chosen = known
        else:
            chosen = known[known["hash"].str.startswith(protocol_hash) | (known["name"] == protocol_hash)]
        if len(chosen) != 1:
            listing = ", ".join(f"{n} ({h[:10]})" for n, h in zip(known["name"], known["hash"], strict=True))
            what = f"{len(chosen)} matches for {protocol_hash!r}" if protocol_hash else "several protocols"
            raise TableError(f"{self.path} has {what}; choose one of: {listing}")
        return str(chosen["hash"].iloc[0]), dict(chosen["card"].iloc[0])

    # ----- lifetime --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (checkpointing the WAL into the main file) and release the writer lock."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            if not self.readonly:
                with contextlib.suppress(sqlite3.DatabaseError):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            self._conn = None  # type: ignore[assignment]
        self._release_writer_lock()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writer"
        return f"ResultStore({str(self.path)!r}, {mode})"
