"""Seed-to-seed reliability statistics: exact values on hand-checked inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.reliability import (
    attainable_kendall,
    icc1,
    metric_reliability,
    pair_reliability,
    replicate_pairs,
)


def test_icc1_matches_the_anova_formula_by_hand() -> None:
    pairs = np.array([[1.0, 2.0], [3.0, 3.0], [5.0, 7.0]])
    # grand mean 3.5; arch means 1.5, 3, 6; MSB = 2 * (4 + 0.25 + 6.25) / 2 = 10.5
    # MSW = (0.25 + 0.25 + 0 + 0 + 1 + 1) / 3 = 2.5 / 3
    msb, msw = 10.5, 2.5 / 3
    assert icc1(pairs) == pytest.approx((msb - msw) / (msb + msw))


def test_identical_replicates_are_perfectly_reliable_and_noise_is_not() -> None:
    x = np.arange(20, dtype=float)
    rel = pair_reliability(np.column_stack([x, x]), "m", boot=200)
    assert (rel.spearman, rel.kendall, rel.icc) == (1.0, 1.0, 1.0)
    assert rel.spearman_ci == pytest.approx((1.0, 1.0))
    rng = np.random.default_rng(0)
    noise = pair_reliability(rng.normal(size=(400, 2)), "m", boot=200)
    assert abs(noise.spearman) < 0.15 and abs(noise.icc) < 0.15
    assert noise.spearman_ci[0] < noise.spearman < noise.spearman_ci[1]


def test_reliability_of_signal_plus_noise_is_its_variance_share() -> None:
    """ICC estimates var(signal) / (var(signal) + var(noise)) = 0.8 here."""
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 2.0, 3000)
    pairs = signal[:, None] + rng.normal(0, 1.0, (3000, 2))
    rel = pair_reliability(pairs, "m", boot=0)
    assert rel.icc == pytest.approx(0.8, abs=0.02)
    assert math.isnan(rel.icc_ci[0])  # no bootstrap asked for


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_attainable_tau_is_what_the_noise_free_value_reaches_against_seed_means(seeds: int) -> None:
    """Signal + Gaussian seed noise (reliability 0.5): the true value's Kendall tau against the mean of
    k measurements, predicted from the seed-to-seed tau alone."""
    rng = np.random.default_rng(2)
    signal = rng.normal(0, 1.0, 4000)
    measured = signal[:, None] + rng.normal(0, 1.0, (4000, max(2, seeds)))
    seed_tau = stats.kendalltau(measured[:, 0], measured[:, 1])[0]
    reached = stats.kendalltau(signal, measured[:, :seeds].mean(1))[0]
    assert attainable_kendall(seed_tau, seeds) == pytest.approx(reached, abs=0.02)
    assert seed_tau < attainable_kendall(seed_tau, 1) < attainable_kendall(seed_tau, 2)


def test_attainable_tau_edges() -> None:
    assert attainable_kendall(1.0) == pytest.approx(1.0) and attainable_kendall(1.0, 3) == pytest.approx(1.0)
    assert attainable_kendall(-0.2) == 0.0 and attainable_kendall(0.0, 2) == 0.0
    assert math.isnan(attainable_kendall(math.nan)) and math.isnan(attainable_kendall(0.5, 0.5))


def test_replicate_pairs_takes_the_two_lowest_seeds_and_skips_single_or_missing() -> None:
    frame = pd.DataFrame(
        {
            "arch": ["a", "a", "a", "b", "c", "c", "d", "d"],
            "seed": [2, 0, 1, 0, 0, 1, 0, 1],
            "v": [9.0, 1.0, 2.0, 5.0, 3.0, 4.0, np.nan, 1.0],
        }
    )
    np.testing.assert_array_equal(replicate_pairs(frame, "v"), [[1.0, 2.0], [3.0, 4.0]])


def test_metric_reliability_reports_the_within_standard_error() -> None:
    frame = pd.DataFrame(
        {"arch": list("aabbccdd"), "seed": [0, 1] * 4, "r": [1, 1.2, 2, 2.1, 3, 2.7, 4, 4.4], "sd": [2.0] * 8}
    )
    rel = metric_reliability(frame, "r", boot=100, se_column="sd", se_scale=1 / math.sqrt(16))
    assert rel.archs == 4 and rel.within_se == pytest.approx(0.5)
    assert rel.spearman == 1.0 and rel.kendall == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=3, max_size=30))
def test_rank_agreement_equals_scipy(rows) -> None:
    pairs = np.array(rows)
    rel = pair_reliability(pairs, boot=0)
    if np.ptp(pairs[:, 0]) == 0 or np.ptp(pairs[:, 1]) == 0:
        assert math.isnan(rel.spearman)
    else:
        assert rel.spearman == pytest.approx(stats.spearmanr(pairs[:, 0], pairs[:, 1])[0], nan_ok=True)
        assert rel.kendall == pytest.approx(stats.kendalltau(pairs[:, 0], pairs[:, 1])[0], nan_ok=True)


def _results_csv(tmp_path, n_archs: int = 12):
    """A results export of our own: n archs x seeds 0 and 1 (plus a third seed and a failed row)."""
    from flatnas_bench.core.protocol import get_protocol
    from flatnas_bench.nb201.space import canonical_archs

    archs = [str(a) for a in list(canonical_archs())[100 : 100 + n_archs]]
    rng = np.random.default_rng(0)
    signal = rng.normal(size=n_archs)
    rows = []
    for seed in (0, 1):
        for i, arch in enumerate(archs):
            rows.append(
                {"arch": arch, "protocol": "proxy", "protocol_hash": get_protocol("proxy").hash, "seed": seed,
                 "val_acc": 40 + 2 * signal[i] + rng.normal(), "test_acc": 45 + signal[i],
                 "flatness_r": 1 + 0.1 * i + 0.5 * seed, "flatness_r_se": 0.1 * (1 + seed),
                 "corr_acc_mean": 40 + signal[i] + rng.normal(scale=0.5), "error": None}
            )  # fmt: skip
    rows.append({**rows[0], "seed": 2, "val_acc": 99.0})  # a third seed: ignored by the pairs
    rows.append({**rows[1], "seed": 3, "val_acc": np.nan, "error": "diverged: loss nan"})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, pd.DataFrame(rows[: 2 * n_archs])


def test_table_reliability_of_a_results_table_matches_its_pairs(tmp_path) -> None:
    from flatnas_bench.tables.readers import load_table
    from flatnas_bench.tables.reliability import table_reliability

    path, rows = _results_csv(tmp_path)
    results = {r.metric: r for r in table_reliability(load_table(path), boot=100)}
    val = results["cifar10_val_acc_proxy"]
    a, b = rows[rows.seed == 0]["val_acc"].to_numpy(), rows[rows.seed == 1]["val_acc"].to_numpy()
    assert val.archs == 12
    assert val.spearman == pytest.approx(stats.spearmanr(a, b)[0])
    assert val.icc == pytest.approx(icc1(np.column_stack([a, b])))
    r = results["cifar10_flatness_r_proxy"]
    assert r.spearman == pytest.approx(1.0) and r.within_se == pytest.approx(0.15)
    assert "cifar10_corr_acc_rel_proxy" in results and "cifar10_corr_acc_resid_proxy" in results


def test_table_reliability_command_prints_and_writes_json(tmp_path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    path, _ = _results_csv(tmp_path)
    runner = CliRunner()
    shown = runner.invoke(app, ["table", "reliability", str(path), "--boot", "50"])
    assert shown.exit_code == 0, shown.output
    line = next(s for s in shown.output.splitlines() if s.startswith("cifar10_flatness_r_proxy"))
    assert " 12 " in line and "1.000" in line and "0.150" in line
    as_json = runner.invoke(app, ["table", "reliability", str(path), "--json", "--protocol", "proxy"])
    records = {r["metric"]: r for r in json.loads(as_json.output)}
    assert records["cifar10_flatness_r_proxy"]["kendall"] == pytest.approx(1.0)
    val = records["cifar10_val_acc_proxy"]  # 1000 resamples by default: a real interval around the value
    assert val["spearman_ci"][0] < val["spearman"] < val["spearman_ci"][1]
    unbooted = runner.invoke(app, ["table", "reliability", str(path), "--json", "--boot", "0"])
    val0 = {r["metric"]: r for r in json.loads(unbooted.output)}["cifar10_val_acc_proxy"]
    assert val0["spearman"] == val["spearman"] and np.isnan(val0["spearman_ci"]).all()  # --boot 0: none
    other = runner.invoke(app, ["table", "reliability", str(path), "--protocol", "nb201"])
    assert other.exit_code == 2 and "no rows of protocol 'nb201'" in other.output
    single = tmp_path / "single.csv"
    read_csv(path).query("seed == 0").to_csv(single, index=False)
    refused = runner.invoke(app, ["table", "reliability", str(single)])
    assert refused.exit_code == 2 and "two seeds" in refused.output


def test_fit_surrogate_reports_each_target_beside_its_noise_ceiling(tmp_path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    path, rows = _results_csv(tmp_path)
    runner = CliRunner()
    out = tmp_path / "sur"
    fitted = runner.invoke(
        app,
        ["fit-surrogate", "--table", str(path), "--targets", "val_acc,flatness_r,corr_acc_resid",
         "--out", str(out), "--folds", "3", "--models", "2"],
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert "1.0000 (n=12)" in fitted.output  # R's seeds rank the archs identically
    meta = json.loads((out / "metadata.json").read_text())
    a, b = rows[rows.seed == 0]["val_acc"].to_numpy(), rows[rows.seed == 1]["val_acc"].to_numpy()
    assert meta["ceiling"]["cifar10_val_acc_proxy"]["kendall"] == pytest.approx(stats.kendalltau(a, b)[0])
    assert meta["ceiling"]["cifar10_flatness_r_proxy"]["archs"] == 12
    val = meta["ceiling"]["cifar10_val_acc_proxy"]
    assert val["seeds"] == pytest.approx(25 / 12)  # 12 archs x 2 seeds, one with a third
    assert val["attainable"] == pytest.approx(attainable_kendall(val["kendall"], 25 / 12))
    assert val["kendall"] < val["attainable"] < 1.0
    from flatnas_bench.tables.readers import load_table
    from flatnas_bench.tables.reliability import table_reliability

    resid = {r.metric: r for r in table_reliability(load_table(path), boot=10)}[
        "cifar10_corr_acc_resid_proxy"
    ]
    derived = meta["ceiling"]["cifar10_corr_acc_resid_proxy"]  # a derived target has its ceiling too
    assert derived["kendall"] == pytest.approx(resid.kendall) and derived["archs"] == 12
    assert derived["seeds"] == pytest.approx(25 / 12)  # the seeds behind corruption accuracy
    # the surrogate trains on per-arch seed means
    from surrogates import load_surrogate

    model = load_surrogate(out)
    assert model.meta["models"]["cifar10_val_acc_proxy"]["n_train"] == 12

    arch = rows["arch"].iloc[0]
    queried = runner.invoke(app, ["query", arch, "--surrogate", str(out), "--json"])
    record = json.loads(queried.output)[0]
    report = model.cv_report.set_index("target")
    assert record["cifar10_val_acc_proxy_cv_tau"] == pytest.approx(
        report.loc["cifar10_val_acc_proxy", "kendall_tau"]
    )
    assert record["cifar10_flatness_r_proxy_ceiling_tau"] == pytest.approx(1.0)
    assert record["cifar10_val_acc_proxy_attainable_tau"] == pytest.approx(val["attainable"])
    shown = runner.invoke(app, ["query", arch, "--surrogate", str(out)]).output.splitlines()
    line = next(s.split() for s in shown if s.startswith("cifar10_flatness_r_proxy "))
    assert line[-2:] == ["1.00", "1.00"] and "seed tau" in shown[2]  # seed tau, attainable tau
