"""The durable result table: one row per (canonical arch, protocol hash, seed), failed rows kept with their
reason, foreign files refused untouched, one writer, exports that read back."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest

from flatnas_bench.core.errors import TableError
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.core.results import RESULT_COLUMNS
from flatnas_bench.nb201.space import Arch, sample_archs
from flatnas_bench.tables.readers import load_table, read_csv
from flatnas_bench.tables.store import ResultStore

PROTOCOL = get_protocol("proxy", epochs=1)
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def row(arch: str = CONV, seed: int = 0, **values: object) -> dict:
    out: dict = {name: None for name in RESULT_COLUMNS}
    out.update(arch=arch, protocol=PROTOCOL.name, protocol_hash=PROTOCOL.hash, seed=seed)
    out.update(val_acc=50.0, test_acc=49.0, flatness_r=3.5, corr_per='{"fog": 40.0}')
    out.update(values)
    return out


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "t.sqlite") as s:
        s.add_protocol(PROTOCOL)
        yield s


def test_rows_are_unique_per_canonical_arch_protocol_seed(store):
    skip = Arch.from_ops((1, 0, 0, 0, 0, 1))
    twin = next(a for a in skip.neighbours() if a != skip.canonical() and a.iso_key == skip.iso_key)
    assert store.add(row(CONV))
    assert not store.add(row(CONV, val_acc=99.0))  # a success is never replaced
    assert store.add(row(str(skip.canonical())))
    assert not store.add(row(str(twin)))  # an isomorph is the same candidate
    assert store.add(row(str(skip.canonical()), seed=1))
    frame = store.to_frame()
    assert len(frame) == 3 and frame.duplicated(["arch", "protocol_hash", "seed"]).sum() == 0
    assert frame.loc[frame["arch"] == CONV, "val_acc"].item() == 50.0
    assert store.done_keys(PROTOCOL.hash) == {
        (CONV, 0),
        (str(skip.canonical()), 0),
        (str(skip.canonical()), 1),
    }
    assert store.done_keys("other") == set()


def test_failed_rows_are_kept_and_replaced_only_by_a_retry(store):
    assert store.add(row(error="diverged: loss nan at epoch 1 step 3", val_acc=None))
    assert store.done_keys(PROTOCOL.hash) == {(CONV, 0)}
    assert store.done_keys(PROTOCOL.hash, include_failed=False) == set()
    assert store.counts() == {"rows": 1, "ok": 0, "failed": 1}
    assert store.add(row(val_acc=float("nan")))  # the retry succeeds; NaN is stored as NULL
    frame = store.to_frame()
    assert len(frame) == 1 and frame["error"].isna().all() and math.isnan(frame["val_acc"].item())
    assert store.counts(PROTOCOL.hash) == {"rows": 1, "ok": 1, "failed": 0}


def test_extra_keys_and_protocol_card_are_kept(store):
    store.add(row(new_metric=1.25))
    assert store.to_frame()["extra"].item() == '{"new_metric": 1.25}'
    protocols = store.protocols()
    assert protocols["hash"].tolist() == [PROTOCOL.hash] and protocols["rows"].tolist() == [1]
    assert protocols["card"][0] == PROTOCOL.to_dict()
    with pytest.raises(TableError, match="key column"):
        store.add({"arch": CONV, "seed": 0})


def test_each_row_is_committed_at_once_and_visible_to_a_reader(store):
    store.add(row())
    with ResultStore(store.path, readonly=True) as reader:
        assert len(reader) == 1
        with pytest.raises(TableError, match="read-only"):
            reader.add(row(seed=5))
    raw = sqlite3.connect(store.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    raw.close()


def test_one_writer_per_table(store):
    with pytest.raises(TableError, match="another bench run"):
        ResultStore(store.path)


@pytest.mark.parametrize(
    "content", [b"arch,val_acc\nx,1\n", b"\x00" * 200, b"SQLite format 3\x00garbage" * 20]
)
def test_a_file_that_is_not_our_table_is_refused_untouched(tmp_path, content):
    path = tmp_path / "t.sqlite"
    path.write_bytes(content)
    for readonly in (False, True):
        with pytest.raises(TableError) as info:
            ResultStore(path, readonly=readonly)
        assert "\n" not in str(info.value)
    assert path.read_bytes() == content


def test_a_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(TableError, match="not a flatnas-bench table"):
        ResultStore(path)
    with pytest.raises(TableError, match="no benchmark table"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(store, tmp_path, suffix):
    store.add(row())
    store.add(row(seed=1, error="diverged: loss inf at epoch 1 step 1", val_acc=None))
    out = tmp_path / f"out{suffix}"
    assert store.export(out) == 2
    back = read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(back.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert back["seed"].tolist() == [0, 1] and back["val_acc"].iloc[0] == 50.0
    with pytest.raises(TableError, match=r"\.csv or \.parquet"):
        store.export(tmp_path / "out.xlsx")


def test_reads_back_as_a_bench_table(store):
    store.add(row())
    store.add(row(str(Arch.from_ops((1, 0, 0, 0, 0, 1)).canonical()), val_acc=30.0, corr_acc_mean=24.0))
    table = load_table(store.path)
    assert len(table) == 2
    assert table.get((1, 0, 0, 0, 0, 1), "val_acc") == 30.0
    assert table.get((1, 0, 0, 0, 0, 1), "corr_acc_rel") == pytest.approx(24.0 / 49.0)  # derived on read
    assert np.isnan(table.get(CONV, "corr_acc_rel"))  # no corruption accuracy measured


def test_a_table_written_before_corr_acc_rel_is_read_and_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    with ResultStore(path) as store:
        store.add_protocol(PROTOCOL)
        store.add(row(corr_acc_mean=39.2))
    with sqlite3.connect(path) as conn:  # make it a schema-1 table: no corr_acc_rel column
        conn.execute("ALTER TABLE results DROP COLUMN corr_acc_rel")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with ResultStore(path, readonly=True) as store:
        frame = store.to_frame()
    assert list(frame.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert frame["corr_acc_rel"].isna().all()
    assert load_table(path).get(CONV, "corr_acc_rel") == pytest.approx(39.2 / 49.0)
    with ResultStore(path) as store:  # a writer adds the column; old rows keep NULL there
        store.add(row(seed=1, corr_acc_mean=24.5))
        assert store.to_frame()["corr_acc_rel"].tolist()[1] is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)


def test_device_failures_stored_by_older_versions_are_not_done(tmp_path):
    from flatnas_bench.bench.worker import DEVICE_FAILURE_MARKS

    archs = sample_archs(3, seed=0, unique=True)
    with ResultStore(tmp_path / "t.sqlite") as store:
        for arch, error in zip(
            archs, [None, "OutOfMemoryError: CUDA out of memory.", "diverged: loss nan"], strict=True
        ):
            store.add({"arch": str(arch), "protocol": "p", "protocol_hash": "h", "seed": 0, "error": error})
        done = store.done_keys("h", retry_errors=DEVICE_FAILURE_MARKS)
    assert done == {(str(archs[0].canonical()), 0), (str(archs[2].canonical()), 0)}
