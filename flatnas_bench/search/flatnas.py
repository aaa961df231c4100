"""The FlatNAS strategy: fit a surrogate on the archive, search it, pick ``k`` new archs along the
predicted front; refit after every batch.

1. Fit an XGBoost ensemble of every measured quantity the objectives read (:func:`fit_default`).
2. Score the space on the predictions, optimistically: each predicted objective is moved ``beta``
   ensemble standard deviations towards its better side (an upper confidence bound; ``beta=0`` is the
   plain mean). ``search="exhaustive"`` scores all 6,466 canonical archs (cheap: one batched prediction),
   ``"nsga2"`` runs NSGA-II seeded with the archive's measured front.
3. Pick ``k`` archs not yet evaluated, spread evenly along the predicted front (:func:`spread_picks`).

Defaults (``n_init``, ``k``, ``beta``, the ensemble's size and trees) were chosen on NB201 CIFAR-10 with
seeds 100-124, apart from the seeds 0-24 that ``benchmarks/search_oracle.py`` reports
(docs/search-comparison.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import Scorer, SearchConfig, search
from flatnas_bench.search.fronts import Bounds, pareto_front
from flatnas_bench.search.local_search import canonical_neighbours
from flatnas_bench.search.objectives import Objective, make_constraint, make_objectives
from flatnas_bench.search.result import SearchResult
from flatnas_bench.search.strategy import LoopState, Strategy, best_first, register_strategy
from flatnas_bench.tables.table import BenchTable
from surrogates import fit_surrogate

FitFn = Callable[[BenchTable, list[str], int], Any]

# The ensemble the loop refits every batch: small and single-threaded, as cheap as still finds the optimum.
FIT_PARAMS: dict[str, Any] = {"n_estimators": 100, "max_depth": 4, "nthread": 1}
N_MODELS = 3  # ensemble members; their spread is the std the picks use


def fit_default(
    archive: BenchTable,
    targets: list[str],
    seed: int,
    *,
    n_models: int = N_MODELS,
    params: dict[str, Any] | None = None,
) -> Any:
    """``surrogates.fit_surrogate`` (XGBoost ensemble of ``n_models``, :data:`FIT_PARAMS`) on the
    archive's measured rows, without cross-validation (the loop never reads it)."""
    return fit_surrogate(
        archive.dropna(targets),
        targets,
        n_models=n_models,
        seed=seed,
        folds=0,
        params={**FIT_PARAMS, **(params or {})},
    )


def optimistic(objective: Objective, beta: float) -> Objective:
    """``objective`` moved ``beta`` of its surrogate std towards its better side (itself without a std
    or with ``beta == 0``)."""
    if objective.std is None or beta == 0:
        return objective
    std, sign = objective.std, objective.sign
    return replace(objective, func=lambda archs: objective(archs) - sign * beta * std(archs))


def spread_picks(
    result: SearchResult, k: int, exclude: set[Arch] = frozenset(), pool: frozenset[Arch] | None = None
) -> list[Arch]:
    """``k`` scored archs, not in ``exclude`` (and in ``pool`` when given), spread evenly along the
    predicted front.

    Candidates are taken front by front (non-dominated rank 1 first, feasible only). Within a front the
    first pick is the best in the first objective; each next one is the candidate farthest (in objectives
    normalised to [0, 1] over all scored archs) from everything picked so far.
    """
    allowed = [a not in exclude and (pool is None or a in pool) for a in result.archs]
    keep = np.array(allowed, dtype=bool) & result.feasible
    keep &= np.all(np.isfinite(result.F), axis=1)
    idx = np.flatnonzero(keep)
    if k <= 0 or len(idx) == 0:
        return []
    Z = Bounds.of(result.F[idx]).normalise(result.F[idx])
    picked: list[int] = []
    for front in NonDominatedSorting().do(result.F[idx]):
        front = list(front[np.lexsort(Z[front].T[::-1])])
        while front and len(picked) < k:
            if picked:
                dist = np.min(np.linalg.norm(Z[front][:, None, :] - Z[picked][None, :, :], axis=2), axis=1)
                choice = front[int(np.argmax(dist))]
            else:
                choice = front[0]
            picked.append(choice)
            front.remove(choice)
        if len(picked) >= k:
            break
    return [result.archs[idx[i]] for i in picked]


@register_strategy
@dataclass
class FlatNAS(Strategy):
    """The surrogate loop; ``fit(archive, targets, seed)`` defaults to :func:`fit_default`."""

    name: ClassVar[str] = "flatnas"
    n_init: ClassVar[int] = 10
    k: ClassVar[int] = 2
    beta: float = 0.0  # optimism: ensemble stds added towards each predicted objective's better side
    search: str = "exhaustive"  # on the surrogate: "exhaustive" (every candidate) or "nsga2"
    search_config: SearchConfig = field(default_factory=SearchConfig)  # NSGA-II on the surrogate
    near: int = 1  # > 0: pick among one-edge neighbours of the measured front and `near` best archs
    fit: FitFn | None = None

    def __post_init__(self) -> None:
        if self.search not in ("exhaustive", "nsga2"):
            raise ConfigError(f"search must be 'exhaustive' or 'nsga2', got {self.search!r}")
        if self.beta < 0 or self.near < 0:
            raise ConfigError(f"beta and near must be >= 0, got {self.beta}, {self.near}")

    def neighbourhood(self, state: LoopState) -> list[Arch]:
        """With ``near``: the allowed, unevaluated one-edge neighbours of the measured front and of the
        ``near`` best measured archs (one objective: of the ``near`` best), in ordinal order; empty
        without ``near`` or once those are all measured."""
        if not self.near:
            return []
        archs, F = state.history()
        centres = {*pareto_front(F).tolist(), *best_first(F)[: self.near].tolist()}
        around = {n for i in centres for n in canonical_neighbours(archs[int(i)])}
        return sorted(a for a in around if state.allowed(a) and a not in state.evaluated)

    def picks(self, state: LoopState) -> list[Arch]:
        """One batch: fit on the measured rows, score the optimistic predictions of the neighbourhood
        (else of the whole pool: every arch, or NSGA-II seeded with the archive's measured front), and
        pick ``state.k`` archs not yet evaluated along the predicted front."""
        archs, F = state.history()
        step_seed = state.seed + len(archs)
        measured = state.archive.dropna(state.targets)
        if len(measured) == 0:
            raise TableError("every evaluation in the archive failed; nothing to fit a surrogate on")
        surrogate = (self.fit or fit_default)(measured, state.targets, step_seed)
        around = self.neighbourhood(state)
        # predicting the whole space in one call pays only when the whole space is scored
        context = ObjectiveContext(
            surrogate=surrogate, table=measured, alpha=state.alpha, prefetch=not around
        )
        predicted = [optimistic(o, self.beta) for o in make_objectives(state.specs, context)]
        constraints = [make_constraint(c, context) for c in state.constraints]
        if around or self.search == "exhaustive":
            pool = frozenset(around) if around else state.pool
            space = around or [a for a in canonical_archs() if state.allowed(a) and a not in state.evaluated]
            result = SearchResult(
                predicted, constraints, space, *Scorer(predicted, constraints).score(space), "exhaustive", 0.0
            )
        else:
            pool = state.pool
            config = replace(self.search_config, seed=step_seed)
            initial = [archs[i] for i in pareto_front(F)]
            result = search(predicted, constraints=constraints, config=config, initial=initial)
        return spread_picks(result, state.k, exclude=set(archs), pool=pool)

    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        while picks := self.picks(state):
            yield picks
