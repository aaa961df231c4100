"""Surrogate quality: rank and error metrics, and k-fold cross-validation.

One metric alone misleads (a low RMSE can hide a poor ranking), so every report carries all four:
Kendall tau, Spearman rho, R2 and RMSE (in the target's units).

>>> rank_metrics([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0])["kendall_tau"]
1.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flatnas_bench.core.errors import ConfigError

METRICS: tuple[str, ...] = ("kendall_tau", "spearman_rho", "r2", "rmse")


def rank_metrics(y_true: np.ndarray | list[float], y_pred: np.ndarray | list[float]) -> dict[str, float]:
    """Kendall tau-b, Spearman rho, R2 and RMSE of predictions against truth (NaN where undefined).

    >>> m = rank_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    >>> round(m["rmse"], 4), m["spearman_rho"]
    (0.5774, 1.0)
    """
    from scipy.stats import kendalltau, spearmanr  # 1 s to import: not for a query

    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be equal-length vectors, got {t.shape} and {p.shape}")
    rmse = float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")
    ss_tot = float(np.sum((t - t.mean()) ** 2)) if t.size else 0.0
    r2 = 1.0 - float(np.sum((t - p) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    constant = t.size < 2 or np.ptp(t) == 0 or np.ptp(p) == 0
    tau = float("nan") if constant else float(kendalltau(t, p).statistic)
    rho = float("nan") if constant else float(spearmanr(t, p).statistic)
    return {"kendall_tau": tau, "spearman_rho": rho, "r2": r2, "rmse": rmse}


def kfold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Shuffled k-fold test-index splits of ``range(n)``: ``folds`` disjoint arrays covering every row.

    >>> [len(f) for f in kfold_indices(11, 5, seed=0)]
    [3, 2, 2, 2, 2]
    """
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if folds > n:
        raise ConfigError(f"--folds {folds} exceeds the {n} distinct archs available for training")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validate(
    fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """k-fold CV: metrics of the pooled out-of-fold predictions, plus ``n`` and ``folds``.

    ``fit_predict(X_train, y_train, X_test)`` trains a fresh model and returns its predictions for
    ``X_test``. Pooling the out-of-fold predictions ranks all ``n`` rows at once, so tau and rho are
    comparable with a held-out test of the same size.

    >>> import numpy as np
    >>> X = np.arange(20.0).reshape(-1, 1); y = 2 * X[:, 0]
    >>> cross_validate(lambda a, b, c: 2 * c[:, 0], X, y)["r2"]
    1.0
    """
    oof = np.full(len(y), np.nan)
    for test in kfold_indices(len(y), folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        oof[test] = fit_predict(X[train], y[train], X[test])
    return {**rank_metrics(y, oof), "n": len(y), "folds": int(folds)}
