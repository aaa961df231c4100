"""Retraining report: pick loading, the seed summary, and the Markdown/CSV/PNG report on synthetic rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.retrain import load_picks, summarise, write_report
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.table import BenchTable

PICK = Arch.from_str(
    "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
OTHER = Arch.from_str("|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
BASE = Arch((3,) * 6)


def _rows() -> BenchTable:
    rows = []
    for arch, acc, corr, r in ((PICK, 92.0, 70.0, 2.0), (OTHER, 88.0, 66.0, 1.5), (BASE, 93.0, 67.0, 4.0)):
        for seed in (0, 1):
            rows.append(
                {"arch": str(arch), "seed": seed, "val_acc": acc - 1 + seed, "test_acc": acc + seed,
                 "flatness_r": r, "corr_acc_mean": corr + seed, "mce": 100 - corr, "error": None}
            )  # fmt: skip
    rows.append({"arch": str(PICK), "seed": 2, "val_acc": np.nan, "error": "diverged: loss nan at epoch 1"})
    return BenchTable.from_results(pd.DataFrame(rows).assign(protocol="proxy"), "cifar10", "proxy")


def test_summary_averages_seeds_and_skips_failures():
    summary = summarise(_rows(), [PICK, OTHER], BASE)
    assert list(summary["role"]) == ["pick", "pick", "baseline"]
    first = summary.iloc[0]
    assert first["n_seeds"] == 2 and first["test_acc"] == 92.5
    assert first["test_acc_std"] == pytest.approx(np.std([92.0, 93.0], ddof=1))
    assert first["params_m"] == pytest.approx(0.615386, abs=1e-6)  # NB201 C=16, N=5 when rows lack params
    assert first["corr_acc_rel"] == pytest.approx(np.mean([70.0 / 92.0, 71.0 / 93.0]))  # derived per seed
    both = summarise(_rows(), [BASE], BASE)
    assert list(both["role"]) == ["pick+baseline"]


def test_differences_from_the_baseline_are_paired_by_seed():
    rows = [
        {"arch": str(arch), "seed": seed, "test_acc": acc, "flatness_r": 1.0, "error": None}
        for arch, accs in ((PICK, (92.0, 95.0, 90.0)), (BASE, (93.0, 93.0, np.nan)))
        for seed, acc in enumerate(accs)
    ]
    table = BenchTable.from_results(pd.DataFrame(rows).assign(protocol="proxy"), "cifar10", "proxy")
    pick = summarise(table, [PICK], BASE).set_index("role").loc["pick"]
    # seeds 0 and 1 are shared: differences -1 and +2 (seed 2 has no baseline value)
    assert (pick["test_acc_diff"], pick["test_acc_diff_n"]) == (0.5, 2)
    assert pick["test_acc_diff_std"] == pytest.approx(np.std([-1.0, 2.0], ddof=1))
    assert pick["flatness_r_diff"] == 0.0 and np.isnan(pick["corr_acc_mean_diff"])  # not measured


def test_report_files(tmp_path):
    paths = write_report(summarise(_rows(), [PICK, OTHER], BASE), tmp_path / "report", title="test report")
    md = paths["md"].read_text()
    assert md.startswith("# test report")
    assert str(BASE).replace("|", "\\|") in md  # escaped inside the table
    header = next(line for line in md.splitlines() if line.startswith("| arch"))
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 3 and all(r.replace("\\|", "").count("|") == header.count("|") for r in rows)
    assert "corr_acc_mean +3.000 ± 0.000 % (2 seeds)" in md  # PICK minus baseline, seed by seed (70.5 - 67.5)
    assert len(read_csv(paths["csv"])) == 3
    assert paths["png"].stat().st_size > 10_000


def test_load_picks(tmp_path):
    csv = tmp_path / "pareto.csv"
    pd.DataFrame({"arch": [str(PICK), str(OTHER)], "params": [0.6, 0.2]}).to_csv(csv, index=False)
    assert load_picks(csv) == [PICK, OTHER]
    js = tmp_path / "pareto.json"
    js.write_text(json.dumps({"pareto": [{"arch": str(OTHER)}]}))
    assert load_picks(js) == [OTHER]
    with pytest.raises(ConfigError, match="no Pareto file"):
        load_picks(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("x\n1\n")
    with pytest.raises(ConfigError, match="cannot read archs"):
        load_picks(tmp_path / "bad.csv")


@pytest.mark.slow
def test_retrain_with_the_engine_on_cpu(tmp_path, monkeypatch):
    from helpers import TINY, make_imagefolder  # the bench tests' tiny protocol and image folder

    from flatnas_bench.bench.driver import resolve_protocol
    from flatnas_bench.bench.options import ExecutorOptions
    from flatnas_bench.search.retrain import retrain

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=4)
    protocol = resolve_protocol("proxy", {**TINY, "epochs": 1, "corruption_subset": 4})
    summary = retrain(
        [OTHER], protocol=protocol, data_path=data, table_path=tmp_path / "rt.sqlite", baseline=PICK,
        out=tmp_path / "report", seeds=[0], options=ExecutorOptions(threads=1), progress=False,
    )  # fmt: skip
    assert list(summary["role"]) == ["pick", "baseline"] and (summary["n_seeds"] == 1).all()
    assert summary[["test_acc", "flatness_r", "corr_acc_mean"]].notna().all().all()
    assert summary["params_m"].iloc[0] < 0.01  # the proxy network's own size (C=4, N=1), from the rows
    assert (tmp_path / "report" / "retrain.png").exists() and (tmp_path / "report" / "retrain.md").exists()


@pytest.mark.slow
def test_retrain_command_with_pareto_file_baseline_and_corruptions(tmp_path, monkeypatch):
    from helpers import TINY, make_imagefolder
    from typer.testing import CliRunner

    from cli.main import app
    from flatnas_bench.corruptions.generate import write_corruption_set
    from flatnas_bench.engine.data import load_images
    from flatnas_bench.tables.store import ResultStore

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=4)
    test = load_images(data, "cifar10").test
    write_corruption_set(test.x[:4], test.y[:4], tmp_path / "cifar-c", ["fog"], [1, 3], seed=0)
    pareto = tmp_path / "pareto.csv"
    pd.DataFrame({"arch": [str(OTHER)], "params": [0.2]}).to_csv(pareto, index=False)
    sets = [f"--set={k}={v}" for k, v in {**TINY, "epochs": 1, "corruption_subset": 4}.items()]
    args = ["retrain", "--from-pareto", str(pareto), "--baseline", str(PICK), "--protocol", "proxy", *sets]
    args += [
        "--data",
        str(data),
        "--results",
        str(tmp_path / "rt.sqlite"),
        "--corruptions",
        str(tmp_path / "cifar-c"),
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "accuracy-only baseline" not in result.output  # --baseline given: no surrogate consulted
    report = read_csv(tmp_path / "report" / "retrain.csv")
    assert list(zip(report["arch"], report["role"], strict=True)) == [
        (str(OTHER.canonical()), "pick"),
        (str(PICK.canonical()), "baseline"),
    ]
    assert report[["test_acc", "flatness_r", "corr_acc_mean"]].notna().all().all()
    with ResultStore(tmp_path / "rt.sqlite", readonly=True) as store:
        rows = store.to_frame()
    assert {tuple(json.loads(c)) for c in rows["corr_per"]} == {("fog",)}  # the given set, not the default 15
    assert (
        report["corr_acc_mean"].tolist()
        == rows.set_index("arch").loc[report["arch"], "corr_acc_mean"].tolist()
    )
    markdown = (tmp_path / "report" / "retrain.md").read_text()
    assert str(PICK.canonical()).replace("|", "\\|") in markdown
    per = read_csv(tmp_path / "report" / "retrain_corruptions.csv").set_index("arch")
    assert list(per.columns) == ["fog"] and list(per.index) == list(report["arch"])
    stored = {a: json.loads(c)["fog"] for a, c in zip(rows["arch"], rows["corr_per"], strict=True)}
    assert per["fog"].to_dict() == pytest.approx(stored)  # one seed: the stored per-corruption accuracy
    assert "Accuracy per corruption" in markdown and f"{stored[str(PICK.canonical())]:.2f}" in markdown
