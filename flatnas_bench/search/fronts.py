"""Pareto fronts and normalised hypervolume of minimised objective values.

Hypervolume is normalised so numbers compare across runs: each minimised objective is scaled by the
min and max over a reference set (the exhaustive, feasible scored set), ``(f - min) / (max - min)``, and
the reference point is 1.1 in every objective (:data:`REF_POINT`).

>>> F = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
>>> pareto_front(F).tolist(), round(hypervolume(F, Bounds.of(F)), 4)
([0, 1], 0.21)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import Hypervolume
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

REF_POINT = 1.1  # hypervolume reference point in every normalised objective


def pareto_front(F: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (n, m; all minimised) among the feasible rows,
    sorted by the first objective. Ties (equal rows) are all kept."""
    F = np.asarray(F, dtype=float)
    candidates = np.arange(len(F)) if feasible is None else np.flatnonzero(feasible)
    candidates = candidates[np.all(np.isfinite(F[candidates]), axis=1)]
    if len(candidates) == 0:
        return candidates
    front = candidates[NonDominatedSorting().do(F[candidates], only_non_dominated_front=True)]
    return front[np.lexsort(F[front].T[::-1])]


@dataclass(frozen=True)
class Bounds:
    """Per-objective min and max of minimised values; maps F to [0, 1] for hypervolume."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def of(cls, F: np.ndarray) -> Bounds:
        F = np.asarray(F, dtype=float)
        F = F[np.all(np.isfinite(F), axis=1)]
        return cls(F.min(axis=0), F.max(axis=0))

    def normalise(self, F: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (np.asarray(F, dtype=float) - self.lo) / span


def hypervolume(F: np.ndarray, bounds: Bounds, ref: float = REF_POINT) -> float:
    """Hypervolume of minimised points ``F`` after :meth:`Bounds.normalise`, reference ``ref`` per axis;
    points outside the reference box contribute nothing."""
    Z = bounds.normalise(F)
    Z = Z[np.all(ref > Z, axis=1)]
    if len(Z) == 0:
        return 0.0
    ref_point = np.full(Z.shape[1], ref)
    return float(Hypervolume(ref_point=ref_point, norm_ref_point=False)(Z))


__all__ = ["REF_POINT", "Bounds", "hypervolume", "pareto_front"]
