"""pymoo operators for NB201 genes: an arch is 6 integer genes in 0..4 (the op index of each edge).

The operators are made for categorical genes: :class:`UniformCrossover` and :class:`RandomResetMutation`
(SBX and polynomial mutation would treat op indices as ordered numbers), and :class:`IsomorphElimination`,
which drops offspring that compute the same function as another individual (:func:`iso_ids`).

>>> [str(a) for a in genes_to_archs(np.array([[0, 0, 0, 0, 0, 0]]))]
['|none~0|+|none~0|none~1|+|none~0|none~1|none~2|']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem

from flatnas_bench.nb201.space import NUM_EDGES, NUM_OPS, Arch, canonical_ordinals

_PLACE = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)


def iso_ids(X: np.ndarray) -> np.ndarray:
    """Isomorphism-class id (the canonical ordinal) of each gene row of ``X`` (n, 6)."""
    return canonical_ordinals()[np.asarray(X, dtype=np.int64) @ _PLACE]


def genes_to_archs(X: np.ndarray) -> list[Arch]:
    """Canonical :class:`Arch` of each gene row."""
    return [Arch.from_ordinal(int(k)) for k in iso_ids(X)]


class UniformCrossover(Crossover):
    """Two parents -> two children; each gene comes from either parent with probability 1/2."""

    def __init__(self, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)

    def _do(self, problem: Problem, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any):
        first, second = X[0], X[1]
        take = random_state.random(first.shape) < 0.5
        return np.stack([np.where(take, first, second), np.where(take, second, first)])


class RandomResetMutation(Mutation):
    """Each gene, with probability ``prob_var``, is reset to a different value drawn uniformly from its
    bounds (for op genes: another op), so every mutation changes the arch."""

    def _do(self, problem: Problem, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any):
        X = np.array(X, dtype=np.int64, copy=True)
        xl, xu = (np.asarray(b, dtype=np.int64) for b in problem.bounds())
        span = xu - xl + 1
        hit = random_state.random(X.shape) < self.get_prob_var(problem, size=X.shape)
        shift = random_state.integers(1, np.maximum(span, 2), size=X.shape)
        reset = xl + (X - xl + shift) % span
        return np.where(hit & (span > 1), reset, X)


class IsomorphElimination(DuplicateElimination):
    """Duplicates are archs with the same iso_key (one canonical representative): O(n) by hashing."""

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        ids = iso_ids(pop.get("X"))
        seen = set() if other is None else set(iso_ids(other.get("X")).tolist())
        for i, key in enumerate(ids.tolist()):
            if key in seen:
                is_duplicate[i] = True
            seen.add(key)
        return is_duplicate


__all__ = ["IsomorphElimination", "RandomResetMutation", "UniformCrossover", "genes_to_archs", "iso_ids"]
