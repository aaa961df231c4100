"""benchmarks/bundled_validation.py, section 5 (the FlatNAS claim corrected for noise): on synthetic tables
whose noise-free correlation and reliabilities are known by construction."""

from __future__ import annotations

import importlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats

from flatnas_bench.core.results import FAMILY_CORRUPTIONS, per_seed
from flatnas_bench.nb201.space import canonical_archs
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.reliability import disattenuate, spearman_brown


@pytest.fixture
def bv(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("bundled_validation")


def synthetic_rows(n: int, seed_noise: float, seed: int = 0) -> pd.DataFrame:
    """n archs x seeds 0 and 1. A latent robustness t: R = t + noise (flat = low R), relative accuracy
    under every corruption 0.8 - 0.02 (t + noise'), so the noise-free Spearman of R and relative
    robustness is -1; clean accuracy is independent of t. The noises are per seed with SD ``seed_noise``
    (0: both seeds identical)."""
    rng = np.random.default_rng(seed)
    archs = [str(a) for a in list(canonical_archs())[:n]]
    t, clean = rng.normal(size=n), rng.uniform(40, 60, n)
    noises = [rng.normal(scale=seed_noise, size=(2, n)) for _ in (0, 1)]
    rows = []
    for s, noise in enumerate(noises):
        r, q = 3 + t + noise[0], 0.8 - 0.02 * (t + noise[1])
        test = clean + (rng.normal(scale=0.5, size=n) if seed_noise else 0)
        for i, arch in enumerate(archs):
            corr = {c: float(test[i] * q[i]) for c in FAMILY_CORRUPTIONS}
            rows.append(
                {"arch": arch, "protocol": "proxy", "seed": s, "val_acc": test[i] + 1, "test_acc": test[i],
                 "flatness_r": r[i], "loss_sharpness": r[i] / 10, "corr_acc_mean": test[i] * q[i],
                 "corr_per": json.dumps(corr), "error": None}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_partial_from_a_spearman_matrix_is_the_rank_regression_partial(bv):
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=(2, 80))
    y = x + z + rng.normal(size=80)
    matrix = bv.rank_correlations(np.column_stack([x, z, y]))
    assert matrix[0, 2] == pytest.approx(stats.spearmanr(x, y)[0])
    assert bv.partial_from(matrix, 0, 2, 1) == pytest.approx(bv.partial_spearman(x, y, z)[0])


def test_spearman_brown_and_the_correction_for_attenuation():
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(0.5, 1) == 0.5
    assert disattenuate(-0.4, 0.5, 0.8) == pytest.approx(-0.4 / np.sqrt(0.4))
    assert np.isnan(disattenuate(0.2, 0.0, 0.5)) and np.isnan(disattenuate(0.2, 0.5, -0.1))


def test_noisy_seeds_attenuate_and_the_correction_recovers_the_true_correlation(bv):
    result = bv.claim_corrected(per_seed(synthetic_rows(600, seed_noise=1.0)), boot=100)
    assert result["archs"] == result["replicated"] == 600 and result["seeds"] == 2.0
    # one seed: Pearson reliability 0.5, Spearman 6/pi asin(0.25) = 0.483; seed means: by Spearman-Brown
    r = result["reliability"]["flatness_r"]
    assert r["one_seed"][0] == pytest.approx(0.483, abs=0.07)
    assert r["means"][0] == pytest.approx(spearman_brown(r["one_seed"][0], 2))
    for target in bv.CLAIM_TARGETS:
        claim = result["claim"][target]
        assert claim["spearman"][0] == pytest.approx(-0.65, abs=0.08)  # attenuated from -1
        assert claim["spearman_dis"][0] == pytest.approx(-1.0, abs=0.12)  # and corrected back
        assert claim["partial_dis"][0] == pytest.approx(-1.0, abs=0.12)  # clean accuracy is unrelated
        low, high = claim["spearman_dis"][1:3]
        assert low < claim["spearman_dis"][0] < high and claim["spearman_dis"][3] == 1.0
        seeds = result["by_seed"][target]
        assert seeds["agree"] and all(v[0] < -0.3 and v[2] < 0 for v in seeds["spearman"])  # both below 0


def test_identical_seeds_need_no_correction_and_agree(bv):
    result = bv.claim_corrected(per_seed(synthetic_rows(60, seed_noise=0.0)), boot=20)
    for column, rel in result["reliability"].items():
        assert rel["one_seed"][0] == pytest.approx(1.0), column
    for target in bv.CLAIM_TARGETS:
        claim = result["claim"][target]
        assert claim["spearman_dis"][0] == pytest.approx(claim["spearman"][0])
        assert claim["partial_dis"][0] == pytest.approx(claim["partial"][0])
        first, second = result["by_seed"][target]["partial"]
        assert first[0] == pytest.approx(second[0]) and result["by_seed"][target]["agree"]
    means = per_seed(synthetic_rows(60, seed_noise=0.0)).groupby("arch")[["test_acc", "corr_acc_rel"]].mean()
    clean = result["claim"]["corr_acc_rel"]["clean_dis"][0]  # reliabilities 1: the raw correlation
    assert clean == pytest.approx(stats.spearmanr(means["test_acc"], means["corr_acc_rel"])[0])


def test_a_ratio_sharing_clean_accuracys_noise_leaves_the_corrected_partial_undefined_and_says_why(
    bv, capsys
):
    """Relative accuracy divides by clean accuracy, so a seed's clean-accuracy noise enters both with opposite
    signs; where that noise dominates, the disattenuated clean-robustness correlation passes -1 and the
    corrected partial correlation has no value: the tables say which correlation broke it."""
    rng = np.random.default_rng(0)
    n = 200
    archs = [str(a) for a in list(canonical_archs())[:n]]
    clean, t = rng.uniform(40, 60, n), rng.normal(size=n)
    rows = []
    for s in (0, 1):
        test, r = clean + rng.normal(scale=10, size=n), 3 + t + rng.normal(size=n)
        corr = clean * (0.8 - 0.02 * t)  # the same corrupted accuracy in both seeds; clean accuracy is noisy
        rows += [{"arch": a, "protocol": "proxy", "seed": s, "val_acc": test[i], "test_acc": test[i],
                  "flatness_r": r[i], "loss_sharpness": r[i], "corr_acc_mean": corr[i], "error": None,
                  "corr_per": json.dumps(dict.fromkeys(FAMILY_CORRUPTIONS, float(corr[i])))}
                 for i, a in enumerate(archs)]  # fmt: skip
    result = bv.claim_corrected(per_seed(pd.DataFrame(rows)), boot=0)
    cells = result["claim"]["corr_acc_rel"]
    assert result["reliability"]["corr_acc_rel"]["means"][0] > 0.1  # the correction itself is defined ...
    assert cells["clean_dis"][0] < -1 and np.isnan(cells["partial_dis"][0])  # ... its partial is not
    table = bv.claim_markdown(result)
    assert f"| n/a (clean {cells['clean_dis'][0]:+.2f}) |" in table.splitlines()[2]
    bv.print_claim_corrected(result)
    assert (
        f"corr_acc_rel: disattenuated correlation with clean accuracy {cells['clean_dis'][0]:+.2f}, beyond"
        in capsys.readouterr().out
    )


def test_the_script_runs_on_a_table_and_writes_section_5(bv, tmp_path, capsys):
    table = tmp_path / "rows.csv"
    synthetic_rows(40, seed_noise=1.0).to_csv(table, index=False)
    out = tmp_path / "claim.json"
    absent = str(tmp_path / "absent")  # no NB201 file, no surrogate: sections 1 and 3 are skipped
    plot = str(tmp_path / "plot.png")
    args = ["--table", str(table), "--nb201", absent, "--surrogate", absent, "--plot", plot, "--boot", "20",
            "--json", str(out), "--markdown", str(tmp_path / "claim.md")]  # fmt: skip
    assert bv.main(args) == 0
    text = capsys.readouterr().out
    assert "5. The FlatNAS claim corrected for noise" in text and "signs agree" in text
    written = json.loads(out.read_text())
    assert written["archs"] == 40 and list(written["claim"]) == list(bv.CLAIM_TARGETS)
    tables = (tmp_path / "claim.md").read_text()
    blur = written["claim"]["corr_rel_blur"]["spearman"]
    assert f"| corr_rel_blur | {blur[0]:+.3f} [{blur[1]:+.3f}, {blur[2]:+.3f}] |" in tables
    assert tables.count("\n| corr_") == 2 * len(bv.CLAIM_TARGETS)


def test_section_4_gives_two_seed_mean_reliability_and_section_6_judges_the_targets(bv, capsys):
    same = bv.reliability(synthetic_rows(40, seed_noise=0.0), boot=20)
    assert same["val_acc"] == pytest.approx((1.0, 1.0, 1.0))  # identical seeds: perfectly reliable means
    noisy = bv.reliability(synthetic_rows(600, seed_noise=1.0), boot=50)
    one_seed = 0.483  # Spearman of one seed of R (Pearson reliability 0.5), as above
    assert noisy["flatness_r"][0] == pytest.approx(spearman_brown(one_seed, 2), abs=0.06)
    low, high = noisy["flatness_r"][1:]
    assert low < noisy["flatness_r"][0] < high
    rows = bv.targets(0.52, {"val_acc": (0.61, 0.7), "flatness_r": (0.40, 0.6)}, same)
    verdict = {what: (value, goal) for what, value, goal in rows}
    assert verdict["Kendall tau of val_acc against NB201's 200-epoch test accuracy"] == (0.52, 0.50)
    assert verdict["surrogate 5-fold CV Kendall tau, flatness_r"] == (0.40, 0.45)
    assert verdict["two-seed mean reliability, corr_rel_blur"][1] == 0.65
    assert np.isnan(verdict["surrogate 5-fold CV Kendall tau, corr_rel_blur"][0])
    bv.print_targets(rows, "corr_rel_blur")
    text = capsys.readouterr().out
    assert re.search(r"CV Kendall tau, flatness_r +0\.400 +goal >= 0\.45 +missed by 0\.050\n", text)
    assert re.search(r"200-epoch test accuracy +0\.520 +goal >= 0\.50 +met\n", text)
    assert re.search(r"CV Kendall tau, corr_rel_blur +nan +goal >= 0\.35 +not measured\n", text)


def test_a_corrected_partial_beyond_one_is_shown_as_undefined(bv, capsys):
    """On the bundle, noise's corrected partial is finite but beyond -1 (its clean correlation is not): the
    table and the text say n/a with the figure; weather's -0.55 stays a number."""
    from flatnas_bench.tables.bundled import bundled_table_path

    result = bv.claim_corrected(per_seed(read_csv(bundled_table_path())), boot=0)
    noise = result["claim"]["corr_rel_noise"]
    assert abs(noise["clean_dis"][0]) < 1 and noise["partial_dis"][0] < -1
    claim_table = bv.claim_markdown(result).split("\n\n")[0]  # the first of the two tables
    rows = {row.split(" | ")[0]: row for row in claim_table.splitlines()}
    assert rows["| corr_rel_noise"].endswith(f"| n/a ({noise['partial_dis'][0]:+.2f}, beyond +-1) |")
    weather = result["claim"]["corr_rel_weather"]["partial_dis"][0]
    assert -1 < weather < 0 and rows["| corr_rel_weather"].endswith(f"| {weather:+.3f} |")
    bv.print_claim_corrected(result)
    out = capsys.readouterr().out
    assert f"corr_rel_noise: corrected partial {noise['partial_dis'][0]:+.2f}, beyond +-1" in out
    assert "corr_rel_weather: corrected partial" not in out


def test_the_robustness_page_shows_section_5_on_the_bundle(bv):
    """docs/robustness.md's claim tables are section 5's point values on the bundled table, as
    ``--markdown`` writes them."""
    from flatnas_bench.tables.bundled import bundled_table_path

    result = bv.claim_corrected(per_seed(read_csv(bundled_table_path())), boot=0)
    page = (ROOT / "docs" / "robustness.md").read_text()
    for row in bv.claim_markdown(result).splitlines():  # the page's rows with their intervals cut
        if row.startswith("| corr_"):
            points = re.sub(r" \[[^]]*\]", "", row)
            assert points in re.sub(r" \[[^]]*\]", "", page), points
    assert (result["archs"], result["replicated"]) == (503, 503)
    text = (ROOT / "docs" / "robustness.md").read_text()
    number = r"([+-]\d\.\d{3}) \[[^]]*\]"
    claim = re.findall(rf"^\| (corr_\w+)[^|]* \| {number} \| [^|]+ \| {number} \| [^|]+ \|$", text, re.M)
    four = " \\| ".join([number] * 4)
    seeds = re.findall(rf"^\| (corr_\w+)[^|]* \| {four} \| (yes|no) \|$", text, re.M)
    assert [c[0] for c in claim] == [s[0] for s in seeds] == list(bv.CLAIM_TARGETS)
    for target, rho, partial in claim:
        cells = result["claim"][target]
        assert float(rho) == pytest.approx(cells["spearman"][0], abs=5e-4)
        assert float(partial) == pytest.approx(cells["partial"][0], abs=5e-4)
    for target, *values, agree in seeds:
        by_seed = result["by_seed"][target]
        expected = [by_seed["spearman"][0][0], by_seed["spearman"][1][0], by_seed["partial"][0][0],
                    by_seed["partial"][1][0]]  # fmt: skip
        np.testing.assert_allclose([float(v) for v in values], expected, atol=5e-4)
        assert (agree == "yes") == by_seed["agree"]
