"""``flatnas-bench fit-surrogate`` and ``query`` in-process (typer's CliRunner) and once as a subprocess, on a
small CSV, a real NB201 subset and the NATS fixture; user mistakes end in one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from flatnas_bench.nb201.costs import arch_costs, cost_arrays
from flatnas_bench.nb201.space import iso_class, sample_archs
from flatnas_bench.tables.readers import read_csv
from surrogates import load_surrogate

ROOT = Path(__file__).resolve().parents[1]
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
runner = CliRunner()


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [s for s in result.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archs = sample_archs(40, 11)
    _, flops_m = cost_arrays()
    flops = np.array([flops_m[a.canonical().ordinal] for a in archs])
    frame = pd.DataFrame(
        {"arch": [str(a) for a in archs], "val_acc": 80 + flops / 20, "flatness_r": flops / 50}
    )
    path = tmp_path_factory.mktemp("csv") / "small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "surrogate"
    args = ["fit-surrogate", "--table", str(small_csv), "--targets", "val_acc,flatness_r", "--out", str(out)]
    result = runner.invoke(app, [*args, "--folds", "3", "--models", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (
        "kendall tau" in result.stdout
        and "val_acc" in result.stdout
        and "saved 2 surrogate(s)" in result.stdout
    )
    return out


def test_fit_writes_json_models_and_metadata(model_dir: Path) -> None:
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["targets"] == ["val_acc", "flatness_r"] and meta["n_models"] == 2 and meta["folds"] == 3
    assert set(meta["cv"]["val_acc"]) >= {"kendall_tau", "spearman_rho", "r2", "rmse"}
    assert len(list(model_dir.glob("model_*.json.gz"))) == 4


def test_query_json_has_mean_std_and_costs(model_dir: Path, tmp_path: Path) -> None:
    members = [str(a) for a in iso_class(ARCH)]
    result = runner.invoke(app, ["query", *members, ARCH, "--json", "--surrogate", str(model_dir)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["arch"] for r in rows] == [*members, ARCH]
    assert {"val_acc", "val_acc_std", "flatness_r", "flatness_r_std", "params_m", "flops_m"} <= set(rows[0])
    assert len({r["val_acc"] for r in rows}) == 1  # isomorphs: identical predictions
    assert rows[-1]["params_m"] == pytest.approx(0.802426)


def test_query_file_and_table_output(model_dir: Path, tmp_path: Path) -> None:
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text("arch\n# a comment\n" + "\n".join(str(a) for a in sample_archs(3, 2)) + "\n\n")
    result = runner.invoke(
        app, ["query", "--file", str(arch_file), "--surrogate", str(model_dir), "--targets", "val_acc"]
    )
    assert result.exit_code == 0, result.output
    assert "val_acc" in result.stdout and "±" in result.stdout and "flatness_r" not in result.stdout


def test_user_mistakes_are_one_line(model_dir: Path, small_csv: Path, tmp_path: Path) -> None:
    bad_target = runner.invoke(
        app, ["fit-surrogate", "--table", str(small_csv), "--targets", "nope", "--out", str(tmp_path / "x")]
    )
    assert "nope" in one_line_error(bad_target) and "val_acc" in bad_target.stderr
    query_target = runner.invoke(app, ["query", ARCH, "--surrogate", str(model_dir), "--targets", "nope"])
    assert "choose from: val_acc, flatness_r" in one_line_error(query_target)
    assert "invalid NB201 arch" in one_line_error(
        runner.invoke(app, ["query", "|x~0|", "--surrogate", str(model_dir)])
    )
    assert "at least one arch" in one_line_error(runner.invoke(app, ["query", "--surrogate", str(model_dir)]))
    missing = runner.invoke(app, ["query", ARCH, "--surrogate", str(tmp_path / "none")])
    assert "surrogate directory not found" in one_line_error(missing)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.json").write_text("{oops")
    assert "corrupt surrogate metadata" in one_line_error(
        runner.invoke(app, ["query", ARCH, "--surrogate", str(corrupt)])
    )


def test_default_surrogate_missing_says_pass_surrogate(tmp_path: Path, monkeypatch) -> None:
    import flatnas_bench.tables.bundled

    monkeypatch.setattr(
        flatnas_bench.tables.bundled, "BUNDLED_DIR", tmp_path
    )  # an install without the bundle
    for command in (["query", ARCH], ["search"]):
        message = one_line_error(runner.invoke(app, command))
        assert "bundled surrogate is missing" in message and "--surrogate" in message


def test_real_nb201_subset(nb201_csv: Path, tmp_path: Path) -> None:
    subset = tmp_path / "nb201_subset.csv"
    read_csv(nb201_csv).sample(300, random_state=0).to_csv(subset, index=False)
    out = tmp_path / "nb201"
    result = runner.invoke(
        app,
        [
            "fit-surrogate",
            "--table",
            str(subset),
            "--targets",
            "cifar10_valid_acc_200ep",
            "--out",
            str(out),
            "--models",
            "2",
            "--folds",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    tau = json.loads((out / "metadata.json").read_text())["cv"]["cifar10_valid_acc_200ep"]["kendall_tau"]
    assert tau > 0.7


def test_nats_fixture_fits_with_folds_0_and_answers_queries(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "nats-tss-fixture" / "NATS-tss-v1_0-3ffb9-simple"
    if not path.exists():
        pytest.skip(f"NATS fixture not found at {path}")
    fit = [
        "fit-surrogate",
        "--table",
        str(path),
        "--targets",
        "cifar10_valid_acc_200ep",
        "--out",
        str(tmp_path / "n"),
    ]
    assert "only 3 distinct archs" in one_line_error(runner.invoke(app, fit))
    result = runner.invoke(app, [*fit, "--folds", "0", "--models", "2"])
    assert result.exit_code == 0, result.output
    assert "fitted on only 3 archs" in result.output
    result = runner.invoke(app, ["query", ARCH, "--json", "--surrogate", str(tmp_path / "n")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["cifar10_valid_acc_200ep"] > 0


def test_query_as_a_real_subprocess(model_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "query", ARCH, "--json", "--surrogate", str(model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["arch"] == ARCH


def test_fit_and_query_on_our_sqlite_table(tmp_path: Path) -> None:
    from flatnas_bench.core.protocol import get_protocol
    from flatnas_bench.tables.store import ResultStore

    protocol = get_protocol("nb201")
    path = tmp_path / "bench.sqlite"
    with ResultStore(path) as store:
        store.add_protocol(protocol)
        for i, arch in enumerate(sample_archs(20, 0, unique=True)):
            for seed in (0, 1):
                row = {
                    "arch": str(arch),
                    "protocol": protocol.name,
                    "protocol_hash": protocol.hash,
                    "seed": seed,
                }
                store.add({**row, "val_acc": 50.0 + i + seed, "flatness_r": 0.1 * i})
    out = tmp_path / "model"
    targets = "cifar10_val_acc_nb201,cifar10_flatness_r_nb201"
    result = runner.invoke(
        app, ["fit-surrogate", "--table", str(path), "--targets", targets, "--out", str(out), "--models", "2"]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert "protocol nb201" in meta["source"]["description"] and meta["source"]["n_rows"] == 20
    rows = json.loads(runner.invoke(app, ["query", ARCH, "--json", "--surrogate", str(out)]).stdout)
    assert np.isfinite(rows[0]["cifar10_val_acc_nb201"]) and rows[0]["cifar10_flatness_r_nb201_std"] >= 0


def fit_args(table: Path, out: Path, *extra: str) -> list[str]:
    """A quick fit of val_acc: no CV, 2 members."""
    return ["fit-surrogate", "--table", str(table), "--targets", "val_acc", "--out", str(out), "--folds", "0",
            "--models", "2", *extra]  # fmt: skip


def test_fit_options_reach_the_models(small_csv: Path, tmp_path: Path) -> None:
    """``--param`` sets the boosters' size, ``--bootstrap`` resamples each member's rows (other
    predictions), ``--seed`` seeds them (same seed: same model, another seed: another)."""
    archs = [str(a) for a in sample_archs(20, 3)]
    predictions = {}
    for name, extra in (
        ("bagged", ["--bootstrap", "--seed", "3"]),
        ("again", ["--bootstrap", "--seed", "3"]),
        ("other seed", ["--bootstrap", "--seed", "4"]),
        ("plain", ["--seed", "3"]),
    ):
        out = tmp_path / name.replace(" ", "_")
        result = runner.invoke(
            app, fit_args(small_csv, out, "--param", "n_estimators=7", "--param", "max_depth=2", *extra)
        )
        assert result.exit_code == 0, result.output
        model = load_surrogate(out)
        hyper = model.meta["hyperparameters"]
        assert (hyper["n_estimators"], hyper["max_depth"], hyper["bootstrap"]) == (
            7,
            2,
            "--bootstrap" in extra,
        )
        assert model.meta["seed"] == int(extra[-1])
        assert [b.num_boosted_rounds() for b in model.models["val_acc"].boosters] == [7, 7]
        predictions[name] = model.predict(archs)[["val_acc", "val_acc_std"]].to_numpy()
    assert np.array_equal(predictions["bagged"], predictions["again"])
    assert not np.allclose(predictions["bagged"], predictions["other seed"])
    assert not np.allclose(predictions["bagged"], predictions["plain"])


def test_fit_with_zero_cost_features(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    few = tmp_path / "few.csv"
    read_csv(small_csv).head(4).to_csv(few, index=False)
    out = tmp_path / "zc"
    result = runner.invoke(
        app, fit_args(few, out, "--zero-cost", "--models", "1", "--param", "n_estimators=5")
    )
    assert result.exit_code == 0, result.output
    model = load_surrogate(out)
    assert model.meta["zero_cost"] is True
    names = model.meta["feature_names"]
    assert all(any(proxy in name for name in names) for proxy in ("synflow", "jacob_cov", "snip"))
    assert len(json.loads((out / "zero_cost.json").read_text())) >= 4  # the scores travel with the model
    plain = tmp_path / "plain"
    assert (
        runner.invoke(app, fit_args(few, plain, "--models", "1", "--param", "n_estimators=5")).exit_code == 0
    )
    assert set(names) - set(load_surrogate(plain).meta["feature_names"]) != set()


def test_query_prints_the_api_predictions_and_exact_costs(model_dir: Path, tmp_path: Path) -> None:
    archs = [str(a) for a in sample_archs(4, 5)]
    expected = load_surrogate(model_dir).predict(archs)
    rows = json.loads(runner.invoke(app, ["query", *archs, "--json", "--surrogate", str(model_dir)]).stdout)
    assert [r["arch"] for r in rows] == archs
    for row, (_, want), arch in zip(rows, expected.iterrows(), archs, strict=True):
        for column in ("val_acc", "val_acc_std", "flatness_r", "flatness_r_std"):
            assert row[column] == pytest.approx(want[column], rel=1e-12)
        costs = arch_costs(arch)
        assert (row["params_m"], row["flops_m"]) == (costs.params_m, costs.flops_m)
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text("\n".join(archs) + "\n")
    from_file = runner.invoke(
        app,
        [
            "query",
            "--file",
            str(arch_file),
            "--json",
            "--surrogate",
            str(model_dir),
            "--targets",
            "flatness_r",
        ],
    )
    only = json.loads(from_file.stdout)
    assert [r["arch"] for r in only] == archs and "val_acc" not in only[0]
    assert [r["flatness_r"] for r in only] == [r["flatness_r"] for r in rows]
    shown = runner.invoke(app, ["query", *archs, "--surrogate", str(model_dir)], terminal_width=300).stdout
    for (_, want), arch in zip(expected.iterrows(), archs, strict=True):
        costs = arch_costs(arch)
        cells = [f"{want[t]:.3f} ± {want[t + '_std']:.3f}" for t in ("val_acc", "flatness_r")]
        cells += [f"{costs.params_m:.6f}", f"{costs.flops_m:.5f}"]
        assert all(cell in shown for cell in cells), (cells, shown)


# ---- query's text: one line per target; only the asked-for models are read ----------------------------

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_query_of_one_arch_prints_one_line_per_target() -> None:
    from flatnas_bench.tables.bundled import bundled_surrogate_dir

    result = runner.invoke(app, ["query", BEST])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    model = load_surrogate(bundled_surrogate_dir())
    want = model.predict([BEST]).iloc[0]
    report = model.cv_report.set_index("target")
    assert lines[0] == BEST and lines[1] == "params 1.073466 M, FLOPs 153.27297 M MACs"
    assert lines[2].split() == ["target", "prediction", "CV", "tau", "seed", "tau", "attainable"]
    assert len(model.targets) == 8  # the bundled surrogate's targets, corr_rel_blur last
    for line, target in zip(lines[3:11], model.targets, strict=True):
        q = report.loc[target]
        cells = [f"{want[target]:.3f}", "±", f"{want[target + '_std']:.3f}", f"{q.kendall_tau:.2f}"]
        cells += [f"{q.ceiling_kendall:.2f}", f"{q.attainable_kendall:.2f}"]
        assert line.split() == [target, *cells]
    assert lines[11] == "" and "CV tau: the surrogate's cross-validated Kendall tau" in lines[12]
    assert max(len(line) for line in lines[1:]) <= 80  # only the arch string itself is longer


def test_query_of_several_archs_and_one_target_is_a_table(model_dir: Path) -> None:
    archs = [str(a) for a in sample_archs(3, 4)]
    result = runner.invoke(app, ["query", *archs, "--surrogate", str(model_dir), "--targets", "flatness_r"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    want = load_surrogate(model_dir).predict(archs, ["flatness_r"])
    assert lines[0].startswith("flatness_r: CV tau ") and lines[1].split()[-1] == "arch"
    for line, (_, row) in zip(lines[2:5], want.iterrows(), strict=True):
        costs = arch_costs(row["arch"])
        value = f"{row['flatness_r']:.3f} ± {row['flatness_r_std']:.3f}"
        assert line.split() == [*value.split(), f"{costs.params_m:.6f}", f"{costs.flops_m:.5f}", row["arch"]]


def test_query_of_one_target_reads_only_that_targets_models(monkeypatch) -> None:
    from flatnas_bench.tables.bundled import bundled_surrogate_dir
    from surrogates.xgb import XGBEnsemble

    read: list[str] = []
    load = XGBEnsemble.load.__func__

    def recording(cls, directory, files, params):
        read.extend(files)
        return load(cls, directory, files, params)

    monkeypatch.setattr(XGBEnsemble, "load", classmethod(recording))
    result = runner.invoke(app, ["query", BEST, "--targets", "flatness_r"])
    assert result.exit_code == 0, result.output
    meta = json.loads((bundled_surrogate_dir() / "metadata.json").read_text())
    assert read == list(meta["models"]["cifar10_flatness_r_proxy"]["files"])  # 5 of the 40 files
    assert len(read) == 5 and sum(len(m["files"]) for m in meta["models"].values()) == 40
    model = load_surrogate(bundled_surrogate_dir())
    assert model.models.loaded == []  # checksums verified, nothing parsed yet
    model.predict([BEST], ["val_acc"])
    assert model.models.loaded == ["cifar10_val_acc_proxy"]
