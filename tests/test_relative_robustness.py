"""Relative robustness per corruption and per CIFAR-10-C family: the derived ``corr_rel_*`` metrics, their
names, and ``table reliability --by corruption|family``, on a synthetic table whose seed-to-seed rank
agreement is known by construction."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from flatnas_bench.core.errors import TableError
from flatnas_bench.core.metric_names import MetricName, higher_is_better, resolve_metric
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.core.results import CORRUPTION_FAMILIES, FAMILY_CORRUPTIONS, corruption_relatives
from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS
from flatnas_bench.nb201.space import canonical_archs
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.objectives import make_objective
from flatnas_bench.tables.readers import load_table
from flatnas_bench.tables.reliability import table_reliability

N = 12
STEPS = np.arange(N)
# seed-1 rank of each arch (seed 0 ranks them 0..11), per family: identical, reversed, neighbours swapped
# (sum d^2 = 12), rolled by one (sum d^2 = 11 + 121); Spearman = 1 - 6 sum d^2 / (n (n^2 - 1) = 1716)
SEED1_RANK = {
    "noise": STEPS,
    "blur": STEPS[::-1],
    "weather": STEPS ^ 1,
    "digital": (STEPS + 1) % N,
}
SPEARMAN = {"noise": 1.0, "blur": -1.0, "weather": 1 - 6 * 12 / 1716, "digital": 1 - 6 * 132 / 1716}


def relative(family: str, seed: int, member: int) -> np.ndarray:
    """The designed relative accuracy of each arch: rank 0..11 spread over 0.50..0.72, the family's members
    offset by 0.01 each (same ranks, so the family mean ranks alike)."""
    rank = STEPS if seed == 0 else SEED1_RANK[family]
    return 0.5 + 0.02 * rank + 0.01 * member


def synthetic_rows() -> pd.DataFrame:
    """12 archs x seeds 0 and 1 with all 15 corruptions: corruption accuracy = clean accuracy (random per
    row) x the designed relative accuracy; plus a failed row that must not count."""
    archs = [str(a) for a in list(canonical_archs())[200 : 200 + N]]
    rng = np.random.default_rng(3)
    rows = []
    for seed in (0, 1):
        clean = rng.uniform(40, 60, N)
        per = {
            c: clean * relative(family, seed, k)
            for family, members in CORRUPTION_FAMILIES.items()
            for k, c in enumerate(members)
        }
        for i, arch in enumerate(archs):
            rows.append(
                {"arch": arch, "protocol": "proxy", "protocol_hash": get_protocol("proxy").hash, "seed": seed,
                 "test_acc": clean[i], "corr_acc_mean": np.mean([per[c][i] for c in per]),
                 "corr_per": json.dumps({c: per[c][i] for c in per}), "error": None}
            )  # fmt: skip
    rows.append({**rows[0], "seed": 2, "corr_per": json.dumps({"fog": 1.0}), "error": "diverged"})
    return pd.DataFrame(rows)


@pytest.fixture()
def table_csv(tmp_path):
    path = tmp_path / "results.csv"
    synthetic_rows().to_csv(path, index=False)
    return path


def test_the_families_are_the_benchmark_corruptions():
    assert sorted(FAMILY_CORRUPTIONS) == sorted(BENCHMARK_CORRUPTIONS)
    assert [len(m) for m in CORRUPTION_FAMILIES.values()] == [3, 4, 4, 4]


def test_relative_accuracy_is_derived_where_rows_load(table_csv):
    table = load_table(table_csv)
    fog = CORRUPTION_FAMILIES["weather"].index("fog")
    expected = (relative("weather", 0, fog) + relative("weather", 1, fog)) / 2  # seed mean of the ratio
    np.testing.assert_allclose(table.values("corr_rel_fog"), expected, rtol=1e-12)
    noise = np.mean([(relative("noise", 0, k) + relative("noise", 1, k)) / 2 for k in range(3)], axis=0)
    np.testing.assert_allclose(table.values("cifar10_corr_rel_noise_proxy"), noise, rtol=1e-12)
    long = table.per_seed()
    assert len(long) == 2 * N  # the failed row is not a measurement
    one = long[long["seed"] == 1]["cifar10_corr_rel_blur_proxy"].to_numpy()
    np.testing.assert_allclose(one, np.mean([relative("blur", 1, k) for k in range(4)], axis=0), rtol=1e-12)


def test_every_table_of_ours_has_them_sqlite_and_parquet_too(table_csv, tmp_path):
    from flatnas_bench.core.results import RESULT_COLUMNS
    from flatnas_bench.tables.store import ResultStore

    rows = synthetic_rows()
    rows.to_parquet(tmp_path / "results.parquet")
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.add_protocol(get_protocol("proxy"))
        for record in rows.to_dict("records"):
            store.add({name: record.get(name) for name in RESULT_COLUMNS})
    expected = load_table(table_csv)
    for path in (tmp_path / "results.parquet", tmp_path / "results.sqlite"):
        table = load_table(path)
        for name in ("corr_rel_fog", "corr_rel_weather", "corr_rel_digital", "corr_acc_rel"):
            np.testing.assert_allclose(table.values(name), expected.values(name), rtol=1e-12, err_msg=name)
        assert {r.metric for r in table_reliability(table, by="family", boot=0)} == {
            r.metric for r in table_reliability(expected, by="family", boot=0)
        }


def test_partial_corruption_sets_give_no_family_and_missing_clean_accuracy_gives_nan():
    out = corruption_relatives(['{"fog": 30.0, "contrast": 20.0}', '{"fog": 10.0}', None], [60.0, 0.0, 50.0])
    assert list(out) == ["corr_rel_fog", "corr_rel_contrast"]  # benchmark order; no family is complete
    np.testing.assert_allclose(out["corr_rel_fog"], [0.5, np.nan, np.nan])
    np.testing.assert_allclose(out["corr_rel_contrast"], [1 / 3, np.nan, np.nan])
    extra = corruption_relatives(['{"speckle_noise": 45.0}'], [50.0])
    assert extra == {"corr_rel_speckle_noise": pytest.approx(np.array([0.9]))}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"fog": "high"}', '{"fog": true}'])
def test_malformed_corr_per_is_one_line_naming_the_row(text):
    with pytest.raises(TableError, match=r"malformed corr_per in row 1 of here"):
        corruption_relatives(['{"fog": 40.0}', text], [50.0, 50.0], where="here")


def test_the_names_fit_the_grammar_and_are_maximised(table_csv):
    for part in (*FAMILY_CORRUPTIONS, *CORRUPTION_FAMILIES):
        for protocol in ("proxy", "proxy_e6c3fcf1", "12ep_1seed", None):
            name = MetricName("cifar10", f"corr_rel_{part}", protocol)
            assert MetricName.parse(str(name)) == name
    table = load_table(table_csv)
    # short names resolve to one metric: a family never matches its members, nor the overall ratio
    assert table.resolve("corr_rel_noise") == "cifar10_corr_rel_noise_proxy"
    assert table.resolve("corr_rel_gaussian_noise_proxy") == "cifar10_corr_rel_gaussian_noise_proxy"
    assert table.resolve("corr_acc_rel") == "cifar10_corr_acc_rel_proxy"
    with pytest.raises(TableError, match="unknown metric 'corr_rel'"):
        resolve_metric("corr_rel", table.metrics)
    assert higher_is_better("corr_rel_fog") and not higher_is_better("flatness_r")
    objective = make_objective("corr_rel_weather", ObjectiveContext(table=table))
    assert objective.sense == "max"
    first = table.archs[:3]
    np.testing.assert_allclose(objective(first), table.values("corr_rel_weather")[:3])


def test_reliability_by_family_and_corruption_has_the_designed_rank_agreement(table_csv):
    table = load_table(table_csv)
    family = {r.metric: r for r in table_reliability(table, by="family", boot=200)}
    assert list(family) == ["cifar10_corr_acc_rel_proxy"] + [f"cifar10_corr_rel_{f}_proxy" for f in SPEARMAN]
    for name, rho in SPEARMAN.items():
        r = family[f"cifar10_corr_rel_{name}_proxy"]
        assert r.archs == N and r.spearman == pytest.approx(rho)
    assert family["cifar10_corr_rel_noise_proxy"].icc == pytest.approx(1.0)  # identical seeds
    lo, hi = family["cifar10_corr_rel_digital_proxy"].spearman_ci
    assert lo < SPEARMAN["digital"] < hi
    by_corruption = {r.metric: r for r in table_reliability(table, by="corruption", boot=0)}
    assert list(by_corruption) == [f"cifar10_corr_rel_{c}_proxy" for c in FAMILY_CORRUPTIONS]
    for fam, members in CORRUPTION_FAMILIES.items():
        for k, c in enumerate(members):
            r = by_corruption[f"cifar10_corr_rel_{c}_proxy"]
            assert r.spearman == pytest.approx(SPEARMAN[fam])
            assert r.mean == pytest.approx(np.mean([relative(fam, s, k) for s in (0, 1)]))


def test_table_reliability_by_command(table_csv, tmp_path):
    runner = CliRunner()
    shown = runner.invoke(app, ["table", "reliability", str(table_csv), "--by", "family", "--boot", "50"])
    assert shown.exit_code == 0, shown.output
    lines = {s.split()[0]: s.split() for s in shown.output.splitlines() if s.startswith("cifar10_")}
    assert list(lines) == ["cifar10_corr_acc_rel_proxy"] + [f"cifar10_corr_rel_{f}_proxy" for f in SPEARMAN]
    for name, rho in SPEARMAN.items():
        cells = lines[f"cifar10_corr_rel_{name}_proxy"]
        assert cells[1] == str(N) and float(cells[3]) == pytest.approx(rho, abs=5e-4)  # archs, Spearman
    as_json = runner.invoke(app, ["table", "reliability", str(table_csv), "--by", "corruption", "--json"])
    records = {r["metric"]: r for r in json.loads(as_json.output)}
    assert len(records) == 15 and records["cifar10_corr_rel_fog_proxy"]["spearman"] == pytest.approx(
        SPEARMAN["weather"]
    )
    plain = tmp_path / "plain.csv"
    synthetic_rows().drop(columns="corr_per").to_csv(plain, index=False)
    refused = runner.invoke(app, ["table", "reliability", str(plain), "--by", "corruption"])
    assert refused.exit_code == 2 and "no per-corruption relative accuracy" in refused.output
    wrong = runner.invoke(app, ["table", "show", str(table_csv), "--by", "family"])
    assert wrong.exit_code == 2 and "--by is an option of table reliability" in wrong.output
    broken = tmp_path / "broken.csv"
    synthetic_rows().assign(corr_per="{oops").to_csv(broken, index=False)
    bad = runner.invoke(app, ["table", "reliability", str(broken), "--by", "family"])
    assert bad.exit_code == 2 and "malformed corr_per in row 0" in bad.output


def test_a_relative_robustness_target_gets_its_noise_ceiling(table_csv):
    from surrogates.fit import noise_ceilings

    ceilings = noise_ceilings(load_table(table_csv), ["cifar10_corr_rel_weather_proxy"], boot=0)
    weather = ceilings["cifar10_corr_rel_weather_proxy"]
    assert weather["archs"] == N and weather["spearman"] == pytest.approx(SPEARMAN["weather"])
    assert weather["seeds"] == pytest.approx(2.0)


def test_the_robustness_page_shows_the_bundled_reliabilities():
    """docs/robustness.md's reliability table is what table reliability --by computes on the bundle."""
    from conftest import ROOT

    from flatnas_bench.tables.bundled import load_bundled_table

    text = (ROOT / "docs" / "robustness.md").read_text()
    shown = re.findall(r"^\| (corr_\w+)(?: \(all 15\))? \| (\d\.\d{3}) \| ([+-]\d\.\d\d) \[", text, re.M)
    table = load_bundled_table()
    computed = {
        r.metric.removeprefix("cifar10_").removesuffix("_proxy"): r
        for by in ("corruption", "family")
        for r in table_reliability(table, by=by, boot=0)
    }
    assert [name for name, _, _ in shown] == list(computed)  # 15 corruptions, the overall ratio, 4 families
    for name, mean, rho in shown:
        assert abs(float(mean) - computed[name].mean) <= 5e-4 + 1e-9, name
        assert abs(float(rho) - computed[name].spearman) <= 5e-3 + 1e-9, name


def test_issue_19s_figures_on_the_0_2_bundle():
    """Issue 19's per-corruption seed-to-seed Spearmans over the 150 replicated archs of bundle 0.2 (its
    build table, kept in benchmarks/bundled_build/)."""
    from conftest import ROOT

    table = load_table(ROOT / "benchmarks" / "bundled_build" / "proxy_cifar10.sqlite")
    assert (len(table), len(table.per_seed())) == (503, 653)
    computed = {r.metric: r.spearman for r in table_reliability(table, by="corruption", boot=0)}
    issue = {"gaussian_noise": -0.08, "frost": 0.40, "fog": 0.27, "contrast": 0.16, "brightness": 0.20}
    for name, rho in issue.items():
        assert round(computed[f"cifar10_corr_rel_{name}_proxy"], 2) == rho, name
