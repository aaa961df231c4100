"""benchmarks/flatnas_experiment.py in its tiny setting: the searches pick what the surrogate ranks best
under the budget, every pick is retrained with each seed through retrain, and the report's groups and
differences are the means of the stored rows."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import ROOT, shared_data_dir
from helpers import make_imagefolder

from flatnas_bench.core.results import per_seed
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import canonical_archs
from flatnas_bench.tables.bundled import bundled_surrogate_dir
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.store import ResultStore
from surrogates import load_surrogate


@pytest.fixture
def experiment(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("flatnas_experiment")


def test_tiny_experiment_searches_retrains_and_compares(experiment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=4)
    out = tmp_path / "exp"
    nb201 = shared_data_dir() / "nb201" / "nb201_accuracy.csv"  # the hybrid surface runs where it exists
    args = ["--tiny", "--data", str(data), "--out", str(out), "--boot", "200", "--nb201", str(nb201)]
    assert experiment.main(args) == 0
    assert "CPU core-hours" in capsys.readouterr().out

    picks = read_csv(out / "picks.csv")
    surfaces = ["surrogate", "hybrid"] if nb201.is_file() else ["surrogate"]
    assert picks["surface"].unique().tolist() == surfaces and len(picks) == 2 * len(surfaces)
    space = list(canonical_archs())
    params = cost_arrays()[0][[a.ordinal for a in space]]
    allowed = (params <= 0.8) & (live_route_counts(space) > 0)
    predicted = load_surrogate(bundled_surrogate_dir()).predict(space)["cifar10_val_acc_proxy"].to_numpy()
    best = str(space[int(np.flatnonzero(allowed)[np.argmax(predicted[allowed])])])
    accuracy_pick = picks.query("surface == 'surrogate' and alpha == 1.0")["arch"].item()
    assert accuracy_pick == best  # alpha 1: the best predicted accuracy within the budget
    assert (picks["params_m"] <= 0.8).all()

    with ResultStore(out / "experiment.sqlite", readonly=True) as store:
        rows = store.to_frame()
    assert rows["error"].isna().all()
    assert set(zip(rows["arch"], rows["seed"], strict=True)) == {
        (a, s) for a in picks["arch"] for s in (0, 1)
    }
    long = per_seed(rows)
    report = read_csv(out / "flatnas_experiment.csv")
    assert (
        set(report["metric"]) == set(experiment.METRICS) and report["surface"].unique().tolist() == surfaces
    )
    for row in report.itertuples(index=False):
        group = picks[picks["surface"] == row.surface]
        fom, acc = (group.loc[group["alpha"] == a, "arch"].item() for a in (0.5, 1.0))
        if row.metric == "params_m":  # NB201's size, the budget's unit
            expected = [group.loc[group["arch"] == a, "params_m"].item() for a in (fom, acc)]
            counts = [2, 2]
        else:  # NaN where clean accuracy was 0 (a ratio): the seeds with a value
            values = [long.loc[long["arch"] == a, row.metric] for a in (fom, acc)]
            expected, counts = [v.mean() for v in values], [v.notna().sum() for v in values]
        assert row.fom == pytest.approx(expected[0]) and row.acc == pytest.approx(expected[1])
        assert row.diff == pytest.approx(row.fom - row.acc)
        assert row.diff_low <= row.diff + 1e-9 and row.diff <= row.diff_high + 1e-9
        assert [row.fom_seeds, row.acc_seeds] == counts
    assert (out / "flatnas_experiment.md").read_text().count("| test_acc |") == len(surfaces)
    assert (out / "retrain" / "retrain.csv").is_file()  # retrain's own report, baseline included


def test_plan_stops_after_the_search(experiment, tmp_path, capsys):
    out = tmp_path / "plan"
    absent = str(tmp_path / "absent.csv")
    args = [
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--plan",
        "--nb201",
        absent,
        "--picks",
        "3",
        "--budget",
        "0.5",
    ]
    assert experiment.main(args) == 0
    text = capsys.readouterr().out
    assert "hybrid surface skipped" in text and "6 cells x 5 seeds = 30 candidates" in text
    picks = read_csv(out / "picks.csv")
    assert len(picks) == 6 and (picks["params_m"] <= 0.5).all() and not (out / "experiment.sqlite").exists()
    for alpha, group in picks.groupby("alpha"):
        assert group["fom"].is_monotonic_increasing and group["rank"].tolist() == [1, 2, 3], alpha


def test_the_committed_run_is_its_tables_report_and_the_robustness_page_shows_it(experiment):
    """benchmarks/results/flatnas_experiment/: the report is compare_groups over the stored rows of the
    picks (2,000 resamples, seed 0, the script's defaults), every pick has its 5 seeds, and
    docs/robustness.md's table shows each difference with its interval."""
    results = ROOT / "benchmarks" / "results" / "flatnas_experiment"
    picks = read_csv(results / "picks.csv")
    with ResultStore(results / "experiment.sqlite", readonly=True) as store:
        rows = store.to_frame()
    assert rows["error"].isna().all()
    assert set(zip(rows["arch"], rows["seed"], strict=True)) == {
        (a, s) for a in picks["arch"] for s in range(5)
    }
    long = experiment.measured_rows(results / "experiment.sqlite", "proxy", picks, range(5))
    report = experiment.compare_groups(long, picks)  # NB201's size for params_m, as main() does
    committed = read_csv(results / "flatnas_experiment.csv")
    assert report.columns.tolist() == committed.columns.tolist()
    for column in report.columns:
        values = report[column].to_numpy()
        if values.dtype == object:
            assert values.tolist() == committed[column].tolist()
        else:
            np.testing.assert_allclose(values, committed[column].to_numpy(float), rtol=1e-12)
    assert set(report["picks"]) == {5}

    page = (ROOT / "docs" / "robustness.md").read_text()
    table = page[page.index("| metric | hybrid surface") :].split("\n\n")[0]
    labels = {
        "test_acc": "clean test accuracy (%)",
        "flatness_r": "flatness R (points)",
        "mce": "mCE (%)",
        "corr_acc_rel": "relative robustness, overall",
        "corr_rel_blur": "relative robustness, blur (the bundle's measure)",
    }
    by_cell = report.set_index(["surface", "metric"])
    for metric, label in labels.items():
        line = next(row for row in table.splitlines() if row.startswith(f"| {label} |"))
        places = 2 if metric in ("test_acc", "flatness_r", "mce") else 3
        for surface in ("hybrid", "surrogate"):
            r = by_cell.loc[(surface, metric)]
            cell = f"{r['diff']:+.{places}f} [{r['diff_low']:+.{places}f}, {r['diff_high']:+.{places}f}]"
            assert cell in line, (surface, metric, cell)
