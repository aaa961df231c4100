"""The FlatNAS figure of merit, defined once: ``FoM = alpha * Err + alpha_norm * (1 - alpha) * R``.

Err is the top-1 error in % and R the flatness R(sigma, M) in accuracy points
(:mod:`flatnas_bench.engine.flatness`); both smaller = better, so the FoM is minimised. ``alpha_norm`` =
mean(Err) / mean(R) over the networks evaluated so far makes both terms weigh alike. One NaN rule holds
throughout: a missing value (NaN or None, e.g. a failed row) gives a NaN FoM for that row, and
``alpha_norm`` averages only the complete rows, those with a finite Err *and* a finite R.

The search's ``fom`` objective (:mod:`flatnas_bench.search.objectives`), the FlatNAS loop and the
definition tests all call these two functions.

>>> errs, rs = [10.0, 20.0], [2.0, 4.0]
>>> fom(errs, rs, alpha=0.5, alpha_norm=alpha_norm(errs, rs))
array([10., 20.])
>>> alpha_norm([10.0, 20.0], [np.nan, 2.0])  # only the complete row: 20 / 2
10.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_ALPHA = 0.5  # FoM weight of the error term (the paper's best trade-off)

Values = float | Sequence[float | None] | np.ndarray


def fom(err: Values, r: Values, alpha: float = DEFAULT_ALPHA, alpha_norm: float = 1.0) -> np.ndarray:
    """FlatNAS's first objective (minimised): ``alpha * Err + alpha_norm * (1 - alpha) * R``, float64.

    ``err`` is top-1 error in %, ``r`` is R(sigma, M) in accuracy points; both broadcast, and a missing
    value (NaN or None) gives NaN. ``fom(9.0, 2.0, alpha=0.5, alpha_norm=4.5)`` -> 9.0.
    """
    err, r = np.asarray(err, dtype=np.float64), np.asarray(r, dtype=np.float64)
    return alpha * err + alpha_norm * (1.0 - alpha) * r


def alpha_norm(errs: Values, rs: Values) -> float:
    """mean(Err) / mean(R) over the complete rows (finite Err and finite R; NaN, None and inf rows are
    ignored), so both terms of :func:`fom` weigh alike; 1.0 when there is nothing to normalise by (no
    complete row, or their mean R is not positive)."""
    errs, rs = np.asarray(errs, dtype=np.float64), np.asarray(rs, dtype=np.float64)
    ok = np.isfinite(errs) & np.isfinite(rs)
    mean_r = rs[ok].mean() if ok.any() else 0.0
    return float(errs[ok].mean() / mean_r) if mean_r > 0 else 1.0


__all__ = ["DEFAULT_ALPHA", "alpha_norm", "fom"]
