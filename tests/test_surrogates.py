"""Contract tests of the surrogate package: isomorph invariance, save/load round trip, one-line errors on
bad model files and unknown targets, CV metrics on known cases, and a quick fit on real NB201 data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatnas_bench.core.errors import ConfigError, ModelFileError, TableError
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.space import Arch, all_archs, iso_class, sample_archs
from surrogates import (
    SurrogateSet,
    create_surrogate,
    cross_validate,
    fit_surrogate,
    kfold_indices,
    list_surrogates,
    load_surrogate,
    query,
    rank_metrics,
)
from surrogates.features import cell_stats, featurize
from surrogates.fit import class_means
from surrogates.zero_cost import PROXIES, ZeroCostConfig, zero_cost_matrix

FAST = {"n_estimators": 20}  # boosting rounds: enough to learn the synthetic target, fast on 2 cores


def synthetic_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A table whose ``acc`` follows FLOPs (plus noise) and whose ``loss`` has a few NaN rows."""
    archs = sample_archs(n, seed)
    _, flops_m = cost_arrays()
    flops = np.array([flops_m[a.canonical().ordinal] for a in archs])
    rng = np.random.default_rng(seed)
    loss = 3.0 - flops / 100 + rng.normal(0, 0.05, n)
    loss[:3] = np.nan
    return pd.DataFrame(
        {"arch": [str(a) for a in archs], "acc": 80 + flops / 20 + rng.normal(0, 0.5, n), "loss": loss}
    )


@pytest.fixture(scope="module")
def fitted() -> SurrogateSet:
    return fit_surrogate(synthetic_frame(), ["acc", "loss"], n_models=3, folds=3, seed=0, params=FAST)


@pytest.fixture(scope="module")
def saved(fitted: SurrogateSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("surrogate"))


def copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_predict_frame_contract(fitted: SurrogateSet) -> None:
    archs = [str(a) for a in sample_archs(7, 3)]
    out = fitted.predict(archs)
    assert list(out.columns) == ["arch", "acc", "acc_std", "loss", "loss_std"]
    assert out["arch"].tolist() == archs
    assert (out["acc_std"] >= 0).all() and out["acc_std"].gt(0).any()
    assert fitted.targets == ["acc", "loss"]


def test_isomorphic_archs_get_identical_predictions(fitted: SurrogateSet) -> None:
    for arch in sample_archs(15, 7):
        members = iso_class(arch)
        out = fitted.predict(members)
        for column in ("acc", "acc_std", "loss", "loss_std"):
            assert out[column].nunique() == 1, (arch, column)


def test_training_deduplicates_isomorphs() -> None:
    group = iso_class("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    others = [a for a in sample_archs(30, 1) if a.canonical() != group[0]]
    frame = pd.DataFrame(
        {
            "arch": [str(a) for a in (*group, *others)],
            "acc": [*np.arange(len(group), dtype=float), *np.full(len(others), 50.0)],
        }
    )
    archs, y = class_means(frame, "acc")
    assert len(group) > 1 and len(archs) == len({a.canonical() for a in others}) + 1
    assert all(a.is_canonical for a in archs)
    assert y[archs.index(group[0])] == pytest.approx(np.arange(len(group)).mean())


def test_save_load_round_trip_is_exact(fitted: SurrogateSet, saved: Path) -> None:
    loaded = load_surrogate(saved)
    archs = [str(a) for a in all_archs()[::97]]
    pd.testing.assert_frame_equal(fitted.predict(archs), loaded.predict(archs), check_exact=True)
    pd.testing.assert_frame_equal(fitted.cv_report, loaded.cv_report)
    meta = json.loads((saved / "metadata.json").read_text())
    for key in ("targets", "feature_version", "feature_names", "source", "cv", "package_version", "n_models"):
        assert key in meta
    assert meta["source"]["table_hash"] and meta["hyperparameters"]["n_estimators"] == 20
    assert all(name.endswith(".json.gz") for name in meta["models"]["acc"]["files"])


def test_same_seed_same_model() -> None:
    a = fit_surrogate(synthetic_frame(30, 2), ["acc"], n_models=2, folds=0, seed=5, params=FAST)
    b = fit_surrogate(synthetic_frame(30, 2), ["acc"], n_models=2, folds=0, seed=5, params=FAST)
    archs = sample_archs(20, 9)
    pd.testing.assert_frame_equal(a.predict(archs), b.predict(archs), check_exact=True)


def test_feature_version_mismatch_is_one_line(saved: Path, tmp_path: Path) -> None:
    bad = copy_dir(saved, tmp_path / "old")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["feature_version"] = "enc-nb201-features-0+cell-0"
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="feature version") as info:
        load_surrogate(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "damage",
    ["metadata-not-json", "metadata-missing", "model-altered", "model-missing", "not-a-dir", "wrong-format"],
)
def test_corrupt_or_missing_files_are_one_line(saved: Path, tmp_path: Path, damage: str) -> None:
    bad = copy_dir(saved, tmp_path / "bad")
    model_file = sorted(bad.glob("model_*.json.gz"))[0]
    if damage == "metadata-not-json":
        (bad / "metadata.json").write_text("{not json")
    elif damage == "metadata-missing":
        (bad / "metadata.json").unlink()
    elif damage == "model-altered":
        model_file.write_bytes(model_file.read_bytes()[:-40])
    elif damage == "model-missing":
        model_file.unlink()
    elif damage == "not-a-dir":
        bad = tmp_path / "nowhere"
    else:
        (bad / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError) as info:
        load_surrogate(bad)
    assert "\n" not in str(info.value)


def test_unknown_target_lists_the_available_ones(fitted: SurrogateSet) -> None:
    with pytest.raises(TableError, match=r"unknown target 'nope'.*choose from: acc, loss"):
        fit_surrogate(synthetic_frame(), ["nope"], folds=0, params=FAST)
    with pytest.raises(TableError, match=r"unknown target .nope. in this surrogate; choose from: acc, loss"):
        fitted.predict([all_archs()[0]], targets=["nope"])


def test_short_target_names_resolve_to_the_result_metric() -> None:
    frame = synthetic_frame().rename(columns={"acc": "cifar10_acc_proxy", "loss": "cifar10_loss_proxy"})
    frame["cifar10_acc_std_proxy"] = 0.5  # a column whose name holds the short name; never chosen for it
    fitted = fit_surrogate(frame, ["acc", "loss_proxy"], n_models=1, folds=0, params=FAST)
    assert fitted.targets == ["cifar10_acc_proxy", "cifar10_loss_proxy"]
    arch = sample_archs(1, 3)
    short, full = fitted.predict(arch, ["acc"]), fitted.predict(arch, ["cifar10_acc_proxy"])
    assert list(short.columns) == ["arch", "cifar10_acc_proxy", "cifar10_acc_proxy_std"]
    assert short.equals(full)
    with pytest.raises(TableError, match=r"unknown target 'nope' in this surrogate; "):
        fitted.predict(arch, ["nope"])
    with pytest.raises(TableError, match=r"ambiguous target 'test_acc'.*cifar10_test_acc_200ep, cifar100_"):
        fit_surrogate(
            frame.assign(cifar10_test_acc_200ep=1.0, cifar100_test_acc_200ep=2.0), ["test_acc"], folds=0
        )


def test_bootstrap_members_spread_wider() -> None:
    frame = synthetic_frame()
    plain = fit_surrogate(frame, ["acc"], n_models=3, folds=0, params=FAST)
    bagged = fit_surrogate(frame, ["acc"], n_models=3, folds=0, params={**FAST, "bootstrap": True})
    archs = sample_archs(50, 7)
    spread = {k: m.predict(archs)["acc_std"].mean() for k, m in (("plain", plain), ("bagged", bagged))}
    assert spread["bagged"] > spread["plain"] > 0


def test_too_few_archs_is_a_clear_error() -> None:
    with pytest.raises(TableError, match="only 1 distinct archs"):
        fit_surrogate(synthetic_frame(1), ["acc"], folds=0)
    with pytest.raises(TableError, match=r"only 4 distinct archs.*5-fold"):
        fit_surrogate(synthetic_frame(4), ["acc"], folds=5)


def test_rank_metrics_known_case() -> None:
    m = rank_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0])
    assert m["kendall_tau"] == pytest.approx(4 / 6)
    assert m["spearman_rho"] == pytest.approx(0.8)
    assert m["rmse"] == pytest.approx(np.sqrt(0.5))
    assert m["r2"] == pytest.approx(1 - 2 / 5)
    assert rank_metrics([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["kendall_tau"] == pytest.approx(-1.0)
    assert np.isnan(rank_metrics([1.0, 1.0], [1.0, 2.0])["kendall_tau"])


def test_kfold_and_cross_validate() -> None:
    parts = kfold_indices(23, 5, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(23))
    assert [len(p) for p in parts] == [5, 5, 5, 4, 4]
    assert all(np.array_equal(a, b) for a, b in zip(parts, kfold_indices(23, 5, seed=1), strict=True))
    X = np.arange(30.0).reshape(-1, 1)
    y = 3 * X[:, 0] + 1
    perfect = cross_validate(lambda _a, _b, x: 3 * x[:, 0] + 1, X, y, folds=5)
    assert perfect["kendall_tau"] == 1.0 and perfect["r2"] == 1.0 and perfect["rmse"] == 0.0
    off = cross_validate(lambda _a, _b, x: 3 * x[:, 0] + 3, X, y, folds=5)
    assert off["kendall_tau"] == 1.0 and off["rmse"] == pytest.approx(2.0)
    with pytest.raises(ConfigError):
        kfold_indices(3, 5, seed=0)


def test_cv_report_has_all_four_metrics(fitted: SurrogateSet) -> None:
    report = fitted.cv_report
    assert list(report["target"]) == ["acc", "loss"]
    metrics = ["kendall_tau", "spearman_rho", "r2", "rmse"]
    assert list(report.columns) == [
        "target",
        *metrics,
        "n",
        "folds",
        "ceiling_kendall",
        "ceiling_archs",
        "attainable_kendall",
    ]
    assert report["ceiling_kendall"].isna().all()  # a table without replicate seeds has no ceiling
    assert report.set_index("target").loc["loss", "n"] < report.set_index("target").loc["acc", "n"]
    assert report["kendall_tau"].gt(0.5).all()  # acc follows FLOPs, which are features


@pytest.mark.parametrize("name", list_surrogates())
def test_every_registered_model_keeps_the_contract(name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = X[:, 0] - X[:, 1]
    model = create_surrogate(name, n_models=2, n_estimators=10).fit(X, y, seed=0)
    mean, std = model.predict(X[:5])
    assert mean.shape == std.shape == (5,) and (std >= 0).all()
    files = model.save(tmp_path, "m")
    again = type(model).load(tmp_path, files, model.report()).predict(X[:5])
    np.testing.assert_array_equal(again[0], mean)
    with pytest.raises(ConfigError, match="unknown"):
        create_surrogate(name, no_such_knob=1)
    with pytest.raises(ConfigError, match=r"unknown surrogate model .no-such-model.; known: xgboost"):
        create_surrogate("no-such-model")


def test_features_come_from_the_canonical_arch() -> None:
    arch = Arch.from_str("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    X, names = featurize([arch, arch.canonical()])
    np.testing.assert_array_equal(X[0], X[1])
    assert len(names) == X.shape[1] and names[-2:] == ["cell:min_live_convs", "cell:convfree_live_routes"]
    assert cell_stats(Arch.from_str("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")).tolist() == [0, 0]


def test_zero_cost_scores_are_seeded_and_cached(tmp_path: Path) -> None:
    config = ZeroCostConfig(C=4, N=1, batch_size=4)
    archs = [a.canonical() for a in sample_archs(2, 4)]
    cache = tmp_path / "zc.json"
    first = zero_cost_matrix(archs, config=config, cache_path=cache)
    assert first.shape == (2, len(PROXIES)) and np.isfinite(first).all()
    assert set(json.loads(cache.read_text())["scores"]) == {str(a) for a in archs}
    cache.write_text(cache.read_text())  # reading back gives the same numbers, without recomputing
    np.testing.assert_array_equal(zero_cost_matrix(archs, config=config, cache_path=cache), first)
    cache.write_text("{broken")
    with pytest.raises(ModelFileError, match="corrupt zero-cost cache"):
        zero_cost_matrix(archs, config=config, cache_path=cache)


def test_fit_with_zero_cost_features(tmp_path: Path) -> None:
    config = ZeroCostConfig(C=4, N=1, batch_size=4)
    frame = synthetic_frame(12, 3)
    s = fit_surrogate(
        frame,
        ["acc"],
        n_models=2,
        folds=0,
        zero_cost=True,
        zero_cost_config=config,
        zero_cost_cache=tmp_path / "zc.json",
        params=FAST,
    )
    assert s.meta["feature_names"][-3:] == [f"zc_{p}" for p in PROXIES]
    loaded = load_surrogate(s.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(s.predict(frame["arch"][:4]), loaded.predict(frame["arch"][:4]))


def test_query_adds_exact_costs(fitted: SurrogateSet) -> None:
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    row = query(fitted, [arch]).iloc[0]
    assert row["params_m"] == pytest.approx(0.802426) and row["flops_m"] == pytest.approx(113.95137)


def test_real_nb201_subset_ranks_well(nb201_csv: Path) -> None:
    from flatnas_bench.tables.readers import load_table

    table = load_table(nb201_csv)
    s = fit_surrogate(table, ["cifar10_valid_acc_200ep"], n_models=2, folds=3, params={"n_estimators": 60})
    report = s.cv_report.iloc[0]
    assert report["n"] == 6466  # 15,625 rows, deduplicated to isomorphism classes
    assert report["kendall_tau"] > 0.8 and report["r2"] > 0.8


def test_nats_fixture_fits_without_cv_and_asks_for_fewer_folds(shared_data: Path) -> None:
    from flatnas_bench.tables.readers import load_table

    path = shared_data / "nats-tss-fixture" / "NATS-tss-v1_0-3ffb9-simple"
    if not path.exists():
        pytest.skip(f"NATS fixture not found at {path}")
    table = load_table(path)
    with pytest.raises(TableError, match=r"only 3 distinct archs.*5-fold cross-validation"):
        fit_surrogate(table, ["cifar10_valid_acc_200ep"])
    model = fit_surrogate(table, ["cifar10_valid_acc_200ep"], n_models=2, folds=0, params=FAST)
    predicted = model.predict(list(table.archs))["cifar10_valid_acc_200ep"]
    truth = table.values("cifar10_valid_acc_200ep")
    assert np.argmax(predicted.to_numpy()) == np.argmax(truth)  # the best of the three stays the best


def test_without_cv_the_metadata_stays_standard_json(tmp_path: Path) -> None:
    s = fit_surrogate(synthetic_frame(20, 4), ["acc"], n_models=1, folds=0, params=FAST)
    text = (s.save(tmp_path) / "metadata.json").read_text()
    assert "NaN" not in text and json.loads(text)["cv"]["acc"]["kendall_tau"] is None
    assert load_surrogate(tmp_path).cv_report["kendall_tau"].isna().all()
