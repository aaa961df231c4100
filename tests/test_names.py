"""Every name-taking path against every table kind, with short and full names: each works or gives a
one-line error with exit code 2, never a traceback.

The matrix is generated: paths (``fit-surrogate --targets``, ``query --targets``, ``search -o``, ``search
-c``, ``loop -o``, the ``retrain`` baseline, ``info --table``) x table kinds (the bundled CSV, a partial
SQLite table of our own with two protocols, the NB201 CSV, the NATS-Bench fixture) x names, each name
with the outcome the grammar must give on that kind: ``ok``, ``unknown`` or ``ambiguous``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import require_shared
from typer.testing import CliRunner

from cli.main import app  # every command registered
from flatnas_bench.core.metric_names import resolve_metric
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.tables.bundled import bundled_table_path
from flatnas_bench.tables.readers import load_table, read_csv
from flatnas_bench.tables.store import ResultStore
from surrogates import fit_surrogate

runner = CliRunner()
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
FAST = {"n_estimators": 5}

# kind -> [(name typed, outcome)]; "ok" names must resolve to exactly one metric of that kind's table.
NAMES: dict[str, list[tuple[str, str]]] = {
    "bundled": [
        ("val_acc", "ok"),
        ("cifar10_flatness_r_proxy", "ok"),
        ("flatness_r_std", "ok"),
        ("corr_acc_rel", "ok"),
        ("corr_acc_resid", "ok"),
        ("valid_acc", "unknown"),
    ],
    "sqlite": [  # two protocols: a short name names a metric of each
        ("val_acc", "ambiguous"),
        ("val_acc_nb201_12", "ok"),
        ("cifar10_corr_acc_rel_proxy", "ok"),
        ("corr_acc_resid_proxy", "ok"),
        ("flatness_r_std", "ambiguous"),
        ("valid_acc", "unknown"),
    ],
    "nb201": [
        ("cifar10_valid_acc_200ep", "ok"),
        ("cifar10_valid_test_acc", "ok"),
        ("cifar100_test_acc_200ep", "ok"),
        ("test_acc", "ambiguous"),
        ("val_acc", "unknown"),
    ],
    "nats": [
        ("cifar10_test_acc_200ep", "ok"),
        ("acc_200ep", "ok"),
        ("cifar10_valid_acc", "ambiguous"),  # 200 and 12 epochs
        ("params_m", "ambiguous"),  # three datasets' heads
        ("flatness_r", "unknown"),
    ],
}


def _our_sqlite(path: Path) -> Path:
    """A partial table of our own: 40 of the bundled archs under ``proxy`` (a second seed for 10, one
    failed row) and 8 under ``nb201-12``; real measured values from the bundled CSV."""
    rows = read_csv(bundled_table_path()).head(40)
    proxy, short = get_protocol("proxy"), get_protocol("nb201-12")
    with ResultStore(path) as store:
        store.add_protocol(proxy)
        store.add_protocol(short)
        for k, row in enumerate(rows.to_dict("records")):
            clean = {c: (None if pd.isna(v) else v) for c, v in row.items()}
            store.add(clean)
            if k < 10:
                store.add({**clean, "seed": 1, "val_acc": clean["val_acc"] + 1.0})
            if k < 8:
                store.add({**clean, "protocol": short.name, "protocol_hash": short.hash})
        store.add({**clean, "seed": 2, "val_acc": None, "error": "diverged: loss nan at epoch 1 step 3"})
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path | None]:
    root = tmp_path_factory.mktemp("names")
    return {"bundled": bundled_table_path(), "sqlite": _our_sqlite(root / "ours.sqlite")}


def _table(kind: str, tables: dict[str, Path]) -> Path:
    if kind == "nb201":
        return require_shared("nb201", "nb201_accuracy.csv")
    if kind == "nats":
        return require_shared("nats-tss-fixture", "NATS-tss-v1_0-3ffb9-simple")
    return tables[kind]


@pytest.fixture(scope="module")
def surrogates(tmp_path_factory, tables) -> dict[str, Path]:
    """Per kind, a tiny surrogate of every table metric an "ok" or "ambiguous" name names, so query and the
    retrain baseline see the same names as the table."""
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            table = load_table(_table(kind, tables))
            targets = [m for m in table.metrics if pd.Series(table.values(m)).nunique() >= 2]
            out = tmp_path_factory.mktemp(f"sur-{kind}")
            fit_surrogate(table, targets, n_models=1, folds=0, params=FAST).save(out)
            cache[kind] = out
        return cache[kind]

    return get  # type: ignore[return-value]


def _commands(path: str, table: Path, name: str, surrogate, out: Path) -> list[str]:
    fast = ["--strategy", "exhaustive", "--no-compare", "--surrogate", "none", "--table", str(table)]
    if path == "fit-surrogate":
        return ["fit-surrogate", "--table", str(table), "--targets", name, "--out", str(out), "--folds", "0",
                "--models", "1", "--param", "n_estimators=5"]  # fmt: skip
    if path == "query":
        return ["query", ARCH, "--surrogate", str(surrogate()), "--targets", name]
    if path == "search -o":
        return ["search", "-o", name, "-o", "params", *fast]
    if path == "search -c":
        return ["search", "-o", "params", "-o", "flops:max", "-c", f"{name}>=-1e9", *fast]
    if path == "loop -o":
        return ["loop", "--oracle", str(table), "-o", name, "-o", "params", "--budget", "3", "--n-init", "3",
                "--out", str(out)]  # fmt: skip
    return ["retrain", ARCH, "--surrogate", str(surrogate()), "--baseline-objective", f"{name}:max",
            "--protocol", "proxy", "--data", str(out / "no-data"), "--results", str(out / "r.sqlite"),
            "--out", str(out)]  # fmt: skip


def _one_line(result) -> str:
    """The single ``error: ...`` line of a failed command, checked: exit 2, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [s for s in result.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


PATHS = ["fit-surrogate", "query", "search -o", "search -c", "loop -o", "retrain baseline"]
CASES = [(p, k, n, o) for p in PATHS for k, names in NAMES.items() for n, o in names]


@pytest.mark.parametrize(("path", "kind", "name", "outcome"), CASES, ids=[" ".join(c[:3]) for c in CASES])
def test_name_taking_path(path, kind, name, outcome, tables, surrogates, tmp_path):
    table = _table(kind, tables)
    surrogate = (lambda: surrogates(kind)) if path in ("query", "retrain baseline") else None
    result = runner.invoke(app, _commands(path, table, name, surrogate, tmp_path))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if outcome != "ok":
        assert f"{outcome} " in _one_line(result) and repr(name) in result.stderr
        return
    if path == "retrain baseline":  # the name resolved and picked a baseline; training then lacks data
        assert "accuracy-only baseline" in result.stdout
        assert "no-data" in _one_line(result)
    elif path == "loop -o" and kind == "nats":  # 3 archs: the initial sample is the whole oracle
        assert result.exit_code == 0, result.output
        assert len(read_csv(tmp_path / "archive.csv")) == 3
    else:
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", list(NAMES))
def test_info_on_every_table_kind(kind, tables):
    result = runner.invoke(app, ["info", ARCH, "--table", str(_table(kind, tables)), "--json"])
    assert result.exit_code == 0, result.output
    assert '"metrics"' in result.stdout


def test_ok_names_name_one_metric_and_the_others_fail_as_declared(tables):
    """The matrix's expectations themselves, checked against the grammar on the loaded tables."""
    for kind, names in NAMES.items():
        try:
            metrics = load_table(_table(kind, tables)).metrics
        except pytest.skip.Exception:
            continue
        for name, outcome in names:
            if outcome == "ok":
                assert resolve_metric(name, metrics)
            else:
                with pytest.raises(Exception, match=outcome):
                    resolve_metric(name, metrics)
