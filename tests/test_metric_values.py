"""Metric definitions pinned on hand-computed values: surrogate quality (Kendall tau-b, Spearman rho, R2,
RMSE, k-fold) and corruption robustness (mean corruption accuracy, mCE, normalised and relative mCE).

Every expected number below is worked out in the comment beside it, not read back from the code."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import surrogates.metrics
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.corruptions.robustness import (
    CorruptionSet,
    ReferenceModel,
    corruption_accuracies,
    corruption_metrics,
)
from surrogates.metrics import METRICS, cross_validate, kfold_indices, rank_metrics

# ------------------------------------------------------------------------------------ surrogate metrics


def test_rank_metrics_with_a_tie_in_the_predictions() -> None:
    # truth 1 2 3 4, prediction 1 1 2 3: of the 6 pairs, 5 concordant, 0 discordant, 1 tied in the
    # prediction only. tau-b = 5 / sqrt(6 * 5) (tau-a would be 5/6, tau-c 0.9375).
    # Spearman: prediction ranks 1.5 1.5 3 4 against 1 2 3 4; centred -1 -1 .5 1.5 and -1.5 -.5 .5 1.5,
    # covariance sum 4.5, variance sums 4.5 and 5, rho = 4.5 / sqrt(22.5).
    # Residuals 0 1 1 1: SS_res = 3, SS_tot = 5 -> R2 = 0.4, RMSE = sqrt(3/4).
    m = rank_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0])
    assert list(m) == list(METRICS) == ["kendall_tau", "spearman_rho", "r2", "rmse"]
    assert m["kendall_tau"] == pytest.approx(5 / math.sqrt(30), abs=1e-12)
    assert m["spearman_rho"] == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)
    assert m["r2"] == pytest.approx(0.4, abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(0.75), abs=1e-12)


def test_rank_metrics_where_parts_are_undefined() -> None:
    # constant prediction: no ranking (tau, rho NaN) but R2 = 1 - 2/2 = 0 and RMSE = sqrt(2/3) are defined
    m = rank_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert math.isnan(m["kendall_tau"]) and math.isnan(m["spearman_rho"])
    assert m["r2"] == pytest.approx(0.0, abs=1e-12) and m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    # constant truth: R2 undefined (SS_tot = 0), RMSE = sqrt((1 + 0 + 1) / 3)
    m = rank_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(m["r2"]) and math.isnan(m["kendall_tau"])
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    # one row: only RMSE
    m = rank_metrics([3.0], [1.0])
    assert m["rmse"] == 2.0 and math.isnan(m["r2"]) and math.isnan(m["kendall_tau"])
    # two rows, perfectly ordered: everything defined
    m = rank_metrics([1.0, 2.0], [10.0, 20.0])
    assert m["kendall_tau"] == pytest.approx(1.0) and m["spearman_rho"] == pytest.approx(1.0)
    # R2 = 1 - (81 + 324) / 0.5 = -809
    assert m["r2"] == pytest.approx(-809.0) and m["rmse"] == pytest.approx(math.sqrt(405 / 2))
    m = rank_metrics([], [])
    assert math.isnan(m["rmse"]) and math.isnan(m["r2"])


def test_rank_metrics_undefined_parts_are_nan_without_warnings() -> None:
    """The undefined parts are decided before numpy or scipy see them, so a report over many small
    groups prints no 'Mean of empty slice' or 'input array is constant' warnings."""
    cases = [([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]), ([3.0], [1.0]), ([], [])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t, p in cases:
            m = rank_metrics(t, p)
            assert math.isnan(m["kendall_tau"]) and math.isnan(m["spearman_rho"]), (t, p)


def test_rank_metrics_edge_values() -> None:
    # a prediction whose range is exactly 1 is not constant: 0 0.5 1 ranks 1 2 3 perfectly
    m = rank_metrics([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    assert m["kendall_tau"] == pytest.approx(1.0) and m["spearman_rho"] == pytest.approx(1.0)
    # booleans and integers are read as the numbers 0/1 and n, the same as their float versions
    as_bools = rank_metrics([False, True, True], [True, False, True])
    assert as_bools == pytest.approx(rank_metrics([0.0, 1.0, 1.0], [1.0, 0.0, 1.0]), nan_ok=True)
    assert as_bools["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert rank_metrics([1, 2, 4], [2, 2, 3])["rmse"] == pytest.approx(math.sqrt(2 / 3))


def test_rank_metrics_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"equal-length vectors, got \(2,\) and \(3,\)"):
        rank_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="equal-length vectors"):
        rank_metrics(np.ones((2, 2)), np.ones((2, 2)))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=2, max_size=12, unique=True),
    st.floats(0.5, 4.0),
    st.floats(-50, 50),
)
def test_rank_metrics_of_an_increasing_affine_map(t: list[int], scale: float, shift: float) -> None:
    """A prediction that is an increasing affine map of distinct truths ranks them perfectly; its RMSE is
    the RMS of the residuals (scale - 1) * t + shift, computed here directly."""
    t_arr = np.asarray(t, dtype=np.float64)
    p = scale * t_arr + shift
    m = rank_metrics(t_arr, p)
    expected_rmse = math.sqrt(sum(((scale - 1) * v + shift) ** 2 for v in t) / len(t))
    assert m["rmse"] == pytest.approx(expected_rmse, rel=1e-9, abs=1e-9)
    assert m["kendall_tau"] == pytest.approx(1.0) and m["spearman_rho"] == pytest.approx(1.0)


def test_kfold_indices_pinned_split() -> None:
    # the seed-0 permutation of range(7) is 4 6 2 3 5 0 1 (numpy's default_rng), split 3 + 2 + 2
    assert [f.tolist() for f in kfold_indices(7, 3, seed=0)] == [[2, 3, 4], [5, 6], [0, 1]]
    assert [f.tolist() for f in kfold_indices(7, 3, seed=1)] != [[2, 3, 4], [5, 6], [0, 1]]
    # the boundaries: 2 folds and n folds are allowed
    assert sorted(np.concatenate(kfold_indices(2, 2, seed=0)).tolist()) == [0, 1]
    assert [len(f) for f in kfold_indices(4, 4, seed=3)] == [1, 1, 1, 1]
    with pytest.raises(ConfigError, match="--folds must be at least 2, got 1"):
        kfold_indices(5, 1, seed=0)
    with pytest.raises(ConfigError, match="--folds 5 exceeds the 4 distinct archs"):
        kfold_indices(4, 5, seed=0)


def test_cross_validate_trains_on_the_complement_and_pools_out_of_fold_predictions() -> None:
    X = np.arange(7.0).reshape(-1, 1)
    y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    seen: list[tuple[list[float], list[float]]] = []

    def mean_of_train(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        seen.append((x_train[:, 0].tolist(), x_test[:, 0].tolist()))
        return np.full(len(x_test), y_train.mean())

    out = cross_validate(mean_of_train, X, y, folds=3, seed=0)
    # folds (seed 0, as pinned above): test {2,3,4}, {5,6}, {0,1}; each trains on the other rows
    assert seen == [
        ([0.0, 1.0, 5.0, 6.0], [2.0, 3.0, 4.0]),
        ([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0]),
        ([2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 1.0]),
    ]
    # out-of-fold predictions: rows 2-4 get mean(3, 1, 9, 2) = 3.75, rows 5-6 mean(3, 1, 4, 1, 5) = 2.8,
    # rows 0-1 mean(4, 1, 5, 9, 2) = 4.2
    oof = np.array([4.2, 4.2, 3.75, 3.75, 3.75, 2.8, 2.8])
    assert out == pytest.approx({**rank_metrics(y, oof), "n": 7, "folds": 3}, nan_ok=True)
    assert out["rmse"] == pytest.approx(math.sqrt(np.mean((y - oof) ** 2)))
    assert isinstance(out["folds"], int) and out["n"] == 7


def test_cross_validate_defaults_are_5_folds_seed_0() -> None:
    X = np.arange(12.0).reshape(-1, 1)
    y = X[:, 0] ** 2
    tests: list[list[int]] = []

    def record(_x_train: np.ndarray, _y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        tests.append(x_test[:, 0].astype(int).tolist())
        return x_test[:, 0]

    out = cross_validate(record, X, y)
    assert out["folds"] == 5 and out["n"] == 12
    assert tests == [f.tolist() for f in kfold_indices(12, 5, seed=0)]
    assert tests != [f.tolist() for f in kfold_indices(12, 5, seed=1)]


def test_metrics_doctests_run_and_pass() -> None:
    result = doctest.testmod(surrogates.metrics)
    assert result.attempted >= 4 and result.failed == 0


# ----------------------------------------------------------------------------------- corruption metrics


def test_corruption_metrics_order_and_severity_type_do_not_matter() -> None:
    # fog 90/70 (severities given as numpy ints, out of order), contrast 40 -> per corruption 80 and 40
    acc = {("contrast", 1): 40.0, ("fog", np.int64(2)): 70.0, ("fog", np.int64(1)): 90.0}
    out = corruption_metrics(acc, clean_acc=95.0)
    assert out["per_corruption"] == {"contrast": 40.0, "fog": 80.0}
    assert out["corr_acc_mean"] == pytest.approx((40 + 70 + 90) / 3)  # mean over the 3 pairs, not 60
    assert out["mce"] == pytest.approx((20.0 + 60.0) / 2)  # CE_fog = 20, CE_contrast = 60
    assert all(isinstance(out[k], float) for k in ("corr_acc_mean", "mce"))


def test_unequal_severity_counts_weigh_pairs_for_the_mean_and_corruptions_for_mce() -> None:
    # fog at 3 severities (100, 70, 40) and snow at 1 (10): corr_acc_mean averages the 4 pairs
    # (220 / 4 = 55), mce averages CE per corruption: fog 100 - 70 = 30, snow 90 -> 60
    acc = {("fog", 1): 100.0, ("fog", 2): 70.0, ("fog", 3): 40.0, ("snow", 1): 10.0, ("spatter", 1): 0.0}
    out = corruption_metrics(acc, clean_acc=100.0)
    assert out["corr_acc_mean"] == pytest.approx(55.0)
    assert out["mce"] == pytest.approx(60.0)
    assert out["per_corruption"]["spatter"] == 0.0  # extra corruption reported, not averaged


def test_normalised_and_relative_mce_against_a_reference() -> None:
    # model: clean 90, fog 70 / 50 (errors 30, 50), snow 80 (error 20)
    # reference: clean 80, fog 60 / 20 (errors 40, 80), snow 50 (error 50)
    acc = {("fog", 1): 70.0, ("fog", 2): 50.0, ("snow", 1): 80.0}
    ref = ReferenceModel({("fog", 1): 60.0, ("fog", 2): 20.0, ("snow", 1): 50.0, ("zoom_blur", 1): 5.0}, 80.0)
    out = corruption_metrics(acc, clean_acc=90.0, reference=ref)
    # mce_norm: fog 80 / 120, snow 20 / 50 -> mean(2/3, 0.4) in %
    assert out["mce_norm"] == pytest.approx(100 * (2 / 3 + 0.4) / 2)
    # rel_mce: fog (20 + 40) / (20 + 60), snow 10 / 30 -> mean(0.75, 1/3) in %
    assert out["rel_mce"] == pytest.approx(100 * (0.75 + 1 / 3) / 2)
    assert out["mce"] == pytest.approx((40.0 + 20.0) / 2)


def test_reference_errors_that_leave_nothing_to_normalise_by() -> None:
    acc = {("fog", 1): 70.0}
    with pytest.raises(ConfigError, match="errors on fog leave nothing"):  # reference error 0: sum 0
        corruption_metrics(acc, 90.0, ReferenceModel({("fog", 1): 100.0}, 90.0))
    with pytest.raises(ConfigError, match="errors on fog leave nothing"):  # error equals its clean error
        corruption_metrics(acc, 90.0, ReferenceModel({("fog", 1): 60.0}, 60.0))
    # a reference that is better under fog than clean is fine (negative denominator, not zero):
    # rel = (30 - 10) / (30 - 40) = -2
    out = corruption_metrics(acc, 90.0, ReferenceModel({("fog", 1): 70.0}, 60.0))
    assert out["rel_mce"] == pytest.approx(-200.0) and out["mce_norm"] == pytest.approx(100.0)
    with pytest.raises(ConfigError, match=r"lacks accuracies for \('fog', 2\) and 1 more"):
        corruption_metrics(
            {("fog", 1): 1.0, ("fog", 2): 1.0, ("snow", 3): 1.0}, 90.0, ReferenceModel({("fog", 1): 5.0}, 9.0)
        )


def test_a_reference_error_sum_below_one_point_still_normalises() -> None:
    # reference fog error 0.5 %: a small but positive denominator, so the metrics are defined
    out = corruption_metrics({("fog", 1): 99.0}, 99.5, ReferenceModel({("fog", 1): 99.5}, 99.75))
    assert out["mce_norm"] == pytest.approx(100 * 1.0 / 0.5)  # own error 1 over the reference's 0.5
    assert out["rel_mce"] == pytest.approx(100 * (1.0 - 0.5) / (0.5 - 0.25))
    with pytest.raises(ConfigError) as info:
        corruption_metrics({("speckle_noise", 1): 50.0}, 90.0)  # an extra corruption only
    assert str(info.value) == "corruption_metrics needs accuracies for at least one benchmark corruption"


def test_corruption_accuracies_per_block() -> None:
    # 4 images, labels 0 1 2 3; severity 1 keeps pixel value = label (all right), severity 2 adds 1 to
    # images 0 and 1 only (2 of 4 wrong -> 50 %), the predictor reads the first pixel
    images = np.zeros((2, 4, 2, 2, 3), np.uint8)
    for i in range(4):
        images[:, i] = i
    images[1, :2] += 1
    cset = CorruptionSet({"snow": images, "fog": images[::-1].copy()}, np.arange(4), severities=(1, 2))
    acc = corruption_accuracies(lambda x: x[:, 0, 0, 0].astype(int), cset)
    assert list(acc) == [("snow", 1), ("snow", 2), ("fog", 1), ("fog", 2)]
    assert acc == {("snow", 1): 100.0, ("snow", 2): 50.0, ("fog", 1): 50.0, ("fog", 2): 100.0}
