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

These are the noise ceilings of the metric: a surrogate cannot rank archs better than a second
measurement does, so its cross-validated Kendall tau is read against ``kendall`` here.

>>> frame = pd.DataFrame({"arch": list("aabbcc"), "seed": [0, 1] * 3, "acc": [1.0, 1.1, 2.0, 2.2, 3.0, 2.9]})
>>> r = metric_reliability(frame, "acc", boot=0)
>>> r.archs, r.spearman, r.kendall
(3, 1.0, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


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


def replicate_pairs(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """(n_archs, 2) array: the metric at each arch's two lowest seeds, for archs with >= 2 finite values."""
    sub = frame.loc[np.isfinite(pd.to_numeric(frame[metric], errors="coerce")), ["arch", "seed", metric]]
    sub = sub.sort_values(["arch", "seed"], kind="stable")
    rank = sub.groupby("arch", sort=False).cumcount()
    first = sub[rank == 0].set_index("arch")[metric]
    second = sub[rank == 1].set_index("arch")[metric]
    both = pd.concat([first, second], axis=1, join="inner")
    return both.to_numpy(dtype=np.float64)


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

    ``se_column`` names a per-row spread whose mean times ``se_scale`` is the within-measurement standard
    error (for R: ``flatness_r_std`` with ``se_scale = 1 / sqrt(M)``)."""
    pairs = replicate_pairs(frame, metric)
    within = math.nan
    if se_column is not None and se_column in frame:
        values = pd.to_numeric(frame[se_column], errors="coerce")
        within = float(values[np.isfinite(values)].mean() * se_scale) if values.notna().any() else math.nan
    return pair_reliability(pairs, metric, boot=boot, seed=seed, within_se=within)
