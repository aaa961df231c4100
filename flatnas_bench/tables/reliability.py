"""Seed-to-seed reliability of a measured metric: how well two training seeds of the same arch agree.

A metric is only a result when two independent measurements of one arch rank the archs alike. From a long
frame with one row per (arch, seed), :func:`metric_reliability` takes, for every arch with at least two
seeds, its two lowest seeds as the replicate pair and reports over those archs:

* ``spearman`` and ``kendall`` (tau-b) between the first and the second replicate;
* ``icc``: the one-way random-effects intraclass correlation ICC(1) over the pairs,
  (MSB - MSW) / (MSB + MSW), the share of the metric's variance that is between archs;
* a percentile bootstrap 95 % interval for each (archs resampled with replacement, seeded);
* ``within_se``: the mean within-measurement standard error, where the caller has one per row (e.g. R over
  its M draws: ``flatness_r_std / sqrt(M)``).

:func:`table_reliability` reports a table's metrics in a view: every measured metric, or relative
robustness (corruption accuracy / clean test accuracy) per corruption or per CIFAR-10-C family.

These are the metric's noise ceilings. A surrogate's cross-validated Kendall tau is read against them
through :func:`attainable_kendall`: a predictor of the noise-free value correlates with one noisy
measurement more closely than a second noisy measurement does, so the tau it can reach lies above
``kendall`` (by about its square root, in correlation).

>>> frame = pd.DataFrame({"arch": list("aabbcc"), "seed": [0, 1] * 3, "acc": [1.0, 1.1, 2.0, 2.2, 3.0, 2.9]})
>>> r = metric_reliability(frame, "acc", boot=0)
>>> r.archs, r.spearman, r.kendall
(3, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from flatnas_bench.core.errors import TableError
from flatnas_bench.core.metric_names import MetricName
from flatnas_bench.core.results import (
    CORR_ACC_RESID,
    CORR_REL,
    CORRUPTION_FAMILIES,
    corr_rel_column,
    label,
    residual_metric,
)
from flatnas_bench.tables.table import BenchTable


@dataclass(frozen=True)
class Reliability:
    """Seed-to-seed agreement of one metric over ``archs`` archs with two replicates (see module doc).

    Intervals are ``(low, high)`` bootstrap percentiles (NaN when ``boot`` was 0 or too few archs)."""

    metric: str
    archs: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    icc: float
    icc_ci: tuple[float, float]
    within_se: float
    mean: float
    between_sd: float

    def as_dict(self) -> dict:
        return asdict(self)


def spearman_brown(reliability: float | np.ndarray, seeds: float | np.ndarray) -> float | np.ndarray:
    """Reliability of the mean of ``seeds`` measurements from the reliability of one (Spearman-Brown):
    ``k r / (1 + (k - 1) r)``. For archs averaged over different numbers of seeds, pass the harmonic mean
    of their counts (the mean noise variance of the averages is the one-seed noise over that mean).
    Approximate for rank correlations; NaN in, NaN out.

    >>> round(spearman_brown(0.6, 2), 4), spearman_brown(0.6, 1)
    (0.75, 0.6)
    """
    r, k = np.asarray(reliability, float), np.asarray(seeds, float)
    with np.errstate(all="ignore"):
        out = k * r / (1 + (k - 1) * r)
    return float(out) if out.ndim == 0 else out


def disattenuate(correlation: float | np.ndarray, rel_x: float | np.ndarray, rel_y: float | np.ndarray):
    """Spearman's correction for attenuation, ``r / sqrt(rel_x rel_y)``: the correlation two measures
    would show without their measurement noise, given each one's reliability (of the values correlated,
    e.g. :func:`spearman_brown` for seed means). NaN where a reliability is not positive (no signal to
    correct towards); values beyond +-1 are sampling error of the inputs and are returned as they are.

    >>> disattenuate(0.3, 0.5, 0.5), disattenuate(0.3, -0.1, 0.5)
    (0.6, nan)
    """
    r, x, y = (np.asarray(v, float) for v in (correlation, rel_x, rel_y))
    with np.errstate(all="ignore"):
        out = np.where((x > 0) & (y > 0), r / np.sqrt(np.abs(x * y)), np.nan)
    return float(out) if out.ndim == 0 else out


def attainable_kendall(seed_kendall: float, seeds: float = 1.0) -> float:
    """The Kendall tau a perfect predictor of an arch's noise-free value reaches against the mean of
    ``seeds`` measurements of it, given the metric's seed-to-seed Kendall tau: the ceiling of a
    surrogate's cross-validated tau on such targets.

    Gaussian model (measurement = true value + independent seed noise): Greiner's relation turns the
    seed-to-seed tau t into a Pearson reliability rho = sin(pi t / 2); a mean of k seeds has reliability
    k rho / (1 + (k - 1) rho) (Spearman-Brown); the true value correlates with it by that reliability's
    square root, which Greiner's relation turns back into a tau. 0 when t <= 0 (no signal); NaN in, NaN
    out. ``seeds`` may be fractional (the mean number of seeds per arch of a mixed table).

    >>> round(attainable_kendall(0.5), 3), round(attainable_kendall(0.5, seeds=2), 3)
    (0.636, 0.728)
    """
    if not math.isfinite(seed_kendall) or not math.isfinite(seeds) or seeds < 1:
        return math.nan
    if seed_kendall <= 0:
        return 0.0
    rho = math.sin(math.pi * min(seed_kendall, 1.0) / 2)
    return 2 / math.pi * math.asin(math.sqrt(spearman_brown(rho, seeds)))


def _pair_rows(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that form the replicate pairs: each arch's two lowest seeds with a finite ``metric``, for
    archs that have two, sorted by arch then seed."""
    sub = frame[np.isfinite(pd.to_numeric(frame[metric], errors="coerce"))]
    sub = sub.sort_values(["arch", "seed"], kind="stable")
    sub = sub[sub.groupby("arch", sort=False).cumcount() < 2]
    return sub[sub.groupby("arch", sort=False)["seed"].transform("size") == 2]


def replicate_pairs(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """(n_archs, 2) array: the metric at each arch's two lowest seeds, for archs with >= 2 finite values."""
    return _pair_rows(frame, metric)[metric].to_numpy(dtype=np.float64).reshape(-1, 2)


def icc1(pairs: np.ndarray) -> float:
    """One-way random-effects ICC(1) of an (n, k) array of k replicates per arch."""
    n, k = pairs.shape
    if n < 2 or k < 2:
        return math.nan
    grand = pairs.mean()
    msb = k * ((pairs.mean(1) - grand) ** 2).sum() / (n - 1)
    msw = ((pairs - pairs.mean(1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    denom = msb + (k - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else math.nan


def _agreement(pairs: np.ndarray) -> tuple[float, float, float]:
    a, b = pairs[:, 0], pairs[:, 1]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan, icc1(pairs)
    return float(stats.spearmanr(a, b)[0]), float(stats.kendalltau(a, b)[0]), icc1(pairs)


def pair_reliability(
    pairs: np.ndarray, metric: str = "", *, boot: int = 1000, seed: int = 0, within_se: float = math.nan
) -> Reliability:
    """:class:`Reliability` of an (n, 2) array of replicate measurements (rows = archs)."""
    pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    rho, tau, icc = _agreement(pairs)
    cis = [(math.nan, math.nan)] * 3
    if boot and len(pairs) >= 5:
        rng = np.random.default_rng(seed)
        draws = np.array([_agreement(pairs[rng.integers(0, len(pairs), len(pairs))]) for _ in range(boot)])
        cis = [
            tuple(float(v) for v in np.nanpercentile(draws[:, j], [2.5, 97.5]))
            if np.isfinite(draws[:, j]).any()
            else (math.nan, math.nan)
            for j in range(3)
        ]
    between = float(np.std(pairs.mean(1), ddof=1)) if len(pairs) > 1 else math.nan
    mean = float(pairs.mean()) if len(pairs) else math.nan
    return Reliability(metric, len(pairs), rho, cis[0], tau, cis[1], icc, cis[2], within_se, mean, between)


def metric_reliability(
    frame: pd.DataFrame,
    metric: str,
    *,
    boot: int = 1000,
    seed: int = 0,
    se_column: str | None = None,
    se_scale: float = 1.0,
) -> Reliability:
    """:class:`Reliability` of column ``metric`` of a long (arch, seed, ...) frame.

    ``se_column`` names a per-row spread whose mean over the paired rows, times ``se_scale``, is the
    within-measurement standard error (``flatness_r_se``; or ``flatness_r_std`` with ``se_scale = 1 /
    sqrt(M)``)."""
    rows = _pair_rows(frame, metric)
    pairs = rows[metric].to_numpy(dtype=np.float64).reshape(-1, 2)
    within = math.nan
    if se_column is not None and se_column in rows:
        values = pd.to_numeric(rows[se_column], errors="coerce")
        within = float(values.mean() * se_scale) if values.notna().any() else math.nan
    return pair_reliability(pairs, metric, boot=boot, seed=seed, within_se=within)


#: Result-row columns (and the derived residual) whose reliability ``table reliability`` reports.
RELIABILITY_COLUMNS = (
    "val_acc", "test_acc", "train_acc", "val_loss", "test_loss", "flatness_r", "loss_sharpness",
    "corr_acc_mean", "corr_acc_rel", "corr_acc_resid", "mce",
)  # fmt: skip
#: The views of :func:`table_reliability`: every measured metric, relative accuracy per corruption, or per
#: CIFAR-10-C family (beside the overall ``corr_acc_rel``).
RELIABILITY_VIEWS = ("metric", "corruption", "family")


def view_columns(by: str, present: Sequence[str]) -> list[str]:
    """The row columns a view reports, in order, among ``present`` (the columns a table's rows hold):
    ``metric``: :data:`RELIABILITY_COLUMNS`; ``corruption``: every ``corr_rel_{corruption}``;
    ``family``: ``corr_acc_rel`` then ``corr_rel_{family}`` for noise, blur, weather, digital."""
    families = [corr_rel_column(f) for f in CORRUPTION_FAMILIES]
    if by == "metric":
        wanted = list(RELIABILITY_COLUMNS)
    elif by == "corruption":
        wanted = [c for c in present if c.startswith(CORR_REL + "_") and c not in families]
    elif by == "family":
        wanted = ["corr_acc_rel", *families]
    else:
        raise TableError(f"unknown reliability view {by!r}; choose from {', '.join(RELIABILITY_VIEWS)}")
    return [c for c in wanted if c in present]


def table_reliability(
    table: BenchTable,
    protocol: str | None = None,
    *,
    by: str = "metric",
    columns: Sequence[str] | None = None,
    boot: int = 1000,
    seed: int = 0,
) -> list[Reliability]:
    """Seed-to-seed :class:`Reliability` of a table of our results over its archs with at least two seeds:
    one per reported column and protocol (``protocol`` picking one).

    ``by`` picks the view (:data:`RELIABILITY_VIEWS`): every measured metric (``metric``), relative
    accuracy per corruption (``corruption``: ``corr_rel_fog``, ...) or per family (``family``);
    ``columns`` (row columns such as ``corr_rel_noise``) replaces the view. ``corr_acc_resid`` is computed
    per seed row here (corruption accuracy minus its least-squares line in clean test accuracy over all
    seed rows of the protocol); R's within-measurement standard error is the mean of the rows'
    ``flatness_r_se``. Raises :class:`TableError` when no arch has two seeds or the view finds nothing.
    """
    long = table.per_seed()
    by_protocol: dict[str, dict[str, str]] = {}
    for name in long.columns.drop(["arch", "seed"], errors="ignore"):
        parsed = MetricName.parse(name)
        by_protocol.setdefault(parsed.protocol or "", {})[parsed.column] = name
    if protocol is not None:
        wanted = label(protocol)
        if wanted not in by_protocol:
            raise TableError(
                f"{table.source} has no rows of protocol {protocol!r}; it has {', '.join(by_protocol)}"
            )
        by_protocol = {wanted: by_protocol[wanted]}
    if "seed" not in long.columns or (long.groupby("arch")["seed"].nunique() < 2).all():
        raise TableError(
            f"no arch in {table.source} has two seeds; measure replicates with bench --seeds 0,1"
        )
    out = []
    for names in by_protocol.values():
        if "corr_acc_mean" in names and "test_acc" in names:
            resid = names["corr_acc_mean"].replace("corr_acc_mean", CORR_ACC_RESID, 1)
            long[resid] = residual_metric(long[names["corr_acc_mean"]], long[names["test_acc"]])
            names = {**names, CORR_ACC_RESID: resid}
        present = [c for c in names if long[names[c]].notna().any()]
        chosen = [c for c in columns if c in present] if columns is not None else view_columns(by, present)
        for column in chosen:
            se = names.get("flatness_r_se") if column == "flatness_r" else None
            out.append(metric_reliability(long, names[column], boot=boot, seed=seed, se_column=se))
    if not out and columns is None and by != "metric":
        raise TableError(f"{table.source} has no per-{by} relative accuracy: its rows carry no corr_per")
    return out
