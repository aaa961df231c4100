"""Multi-objective search over the NB201 cell space: pymoo NSGA-II or exhaustive.

NSGA-II runs on 6 integer genes with the categorical operators of :mod:`flatnas_bench.search.operators`.
Every gene vector is scored as its canonical representative, each canonical arch once (:class:`Scorer`
memoises), and the returned front is the non-dominated set of everything scored
(:class:`~flatnas_bench.search.result.SearchResult`).

``strategy="exhaustive"`` scores all 6,466 canonical archs and returns the exact front; the space is small
enough that this takes one batched call per objective.

Entry levels over one engine: :func:`flatnas_bench.search.api.run_search` (from names to a front; what
``flatnas-bench search`` runs), :func:`search` (objective objects in, a result out) and :class:`Search`
(pymoo's ask/tell: step it, inspect it, or tell it values measured outside, as a training loop does).

>>> from flatnas_bench.search.objectives import make_objectives
>>> result = search(make_objectives(["params", "flops:max"]), strategy="exhaustive")
>>> result.n_evaluated, bool(result.front_table["params"].min() < 0.1)
(6466, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import NUM_EDGES, NUM_OPS, Arch, canonical_archs
from flatnas_bench.search.objectives import Constraint, Objective
from flatnas_bench.search.operators import (
    IsomorphElimination,
    RandomResetMutation,
    UniformCrossover,
    genes_to_archs,
)
from flatnas_bench.search.result import SearchResult

STRATEGIES: tuple[str, ...] = ("nsga2", "exhaustive")


@dataclass(frozen=True)
class SearchConfig:
    """NSGA-II settings. The defaults reach >= 0.999 of the exhaustive front's hypervolume on NB201
    surrogates in about 0.3 s on 2 cores (``benchmarks/search_hypervolume.py``)."""

    pop_size: int = 50  # individuals per generation
    n_gen: int = 40  # generations (the initial population is generation 1)
    crossover_prob: float = 0.9  # probability that a mating recombines (else parents are copied)
    mutation_prob_var: float = 1.0 / NUM_EDGES  # per-gene probability of a random reset
    seed: int = 0  # seeds pymoo's generator and the initial fill
    max_evals: int | None = None  # stop once this many distinct canonical archs are scored

    def __post_init__(self) -> None:
        if self.pop_size < 2 or self.n_gen < 1:
            raise ConfigError(f"pop_size must be >= 2 and n_gen >= 1, got {self.pop_size}, {self.n_gen}")
        for name in ("crossover_prob", "mutation_prob_var"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.max_evals is not None and self.max_evals < 1:
            raise ConfigError(f"max_evals must be positive, got {self.max_evals}")


class Scorer:
    """Scores canonical archs on objectives and constraints, each arch once, remembering the order.

    ``F`` holds minimised values (maximised objectives negated), ``G`` constraint violations (<= 0 is
    feasible).
    """

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> None:
        if not objectives:
            raise ConfigError("at least one objective is needed")
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self._rows: dict[Arch, int] = {}
        self._F: list[np.ndarray] = []
        self._G: list[np.ndarray] = []

    @property
    def n_evaluated(self) -> int:
        return len(self._rows)

    @property
    def archs(self) -> list[Arch]:
        """Every arch scored, in the order first scored."""
        return list(self._rows)

    def record(
        self, archs: Sequence[Arch], values: np.ndarray | None = None, violations: np.ndarray | None = None
    ) -> None:
        """Remember archs not seen before. ``values`` (len(archs), objectives) are objective values in
        each objective's own unit and sense, evaluated elsewhere (else the objectives are called);
        ``violations`` (len(archs), constraints) are pymoo's G (else the constraints are called)."""
        first = {a: i for i, a in reversed(list(enumerate(archs)))}
        new = [a for a in first if a not in self._rows]
        if not new:
            return
        pick = [first[a] for a in new]
        if values is None:
            F = np.column_stack([o.minimised(new) for o in self.objectives])
        else:
            F = np.asarray(values, dtype=float)[pick] * np.array([o.sign for o in self.objectives])
        if violations is not None:
            G = np.asarray(violations, dtype=float)[pick].reshape(len(new), len(self.constraints))
        elif self.constraints:
            G = np.column_stack([c.violation(new) for c in self.constraints])
        else:
            G = np.zeros((len(new), 0))
        F = np.where(np.isnan(F), np.inf, F)
        for arch, f, g in zip(new, F, G, strict=True):
            self._rows[arch] = len(self._F)
            self._F.append(f)
            self._G.append(g)

    def score(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """(F, G) for ``archs`` (canonical), scoring only archs not seen before."""
        self.record(archs)
        idx = [self._rows[a] for a in archs]
        F_all = np.array(self._F).reshape(len(self._F), len(self.objectives))
        G_all = np.array(self._G).reshape(len(self._G), len(self.constraints))
        return F_all[idx], G_all[idx]

    def arrays(self) -> tuple[list[Arch], np.ndarray, np.ndarray]:
        archs = self.archs
        F, G = self.score(archs)
        return archs, F, G


class NB201Problem(Problem):
    """pymoo problem: 6 integer genes in 0..4, objectives and constraints from a :class:`Scorer`."""

    def __init__(self, scorer: Scorer) -> None:
        super().__init__(
            n_var=NUM_EDGES,
            n_obj=len(scorer.objectives),
            n_ieq_constr=len(scorer.constraints),
            xl=0,
            xu=NUM_OPS - 1,
            vtype=int,
        )
        self.scorer = scorer

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        F, G = self.scorer.score(genes_to_archs(X))
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = G


class Search:
    """NSGA-II on the NB201 genes, driven by pymoo's ask/tell so callers can step or inspect it.

    >>> from flatnas_bench.search.objectives import make_objectives
    >>> s = Search(make_objectives(["params", "flops:max"]), config=SearchConfig(n_gen=3, seed=1))
    >>> archs = s.ask(); s.tell(archs); len(archs)
    50
    >>> s.run().n_evaluated >= 50
    True
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        config: SearchConfig | None = None,
        initial: Sequence[Arch] | None = None,
    ) -> None:
        self.config = config or SearchConfig()
        self.scorer = Scorer(objectives, constraints)
        self.problem = NB201Problem(self.scorer)
        cfg = self.config
        self.algorithm = NSGA2(
            pop_size=cfg.pop_size,
            sampling=self._initial_population(initial or ()),
            crossover=UniformCrossover(prob=cfg.crossover_prob),
            mutation=RandomResetMutation(prob_var=cfg.mutation_prob_var),
            eliminate_duplicates=IsomorphElimination(),
        )
        self.algorithm.setup(self.problem, termination=("n_gen", cfg.n_gen), seed=cfg.seed, verbose=False)
        self._pending: Any = None
        self._start = time.perf_counter()

    def _initial_population(self, initial: Sequence[Arch]) -> np.ndarray:
        """The given archs (deduplicated by isomorphism, at most pop_size) topped up with uniformly random
        genes of other isomorphism classes, so the first generation has pop_size distinct functions."""
        rows, seen = [], set()
        for arch in initial:
            key = arch.canonical().ordinal
            if key not in seen and len(rows) < self.config.pop_size:
                seen.add(key)
                rows.append(arch.ops)
        rng = np.random.default_rng(self.config.seed)
        while len(rows) < self.config.pop_size:
            ops = tuple(int(v) for v in rng.integers(0, NUM_OPS, NUM_EDGES))
            key = Arch(ops).canonical().ordinal
            if key not in seen:
                seen.add(key)
                rows.append(ops)
        return np.array(rows, dtype=np.int64)

    @property
    def done(self) -> bool:
        budget = self.config.max_evals
        return not self.algorithm.has_next() or (budget is not None and self.scorer.n_evaluated >= budget)

    def ask(self) -> list[Arch]:
        """The next generation's archs (canonical) to score."""
        self._pending = self.algorithm.ask()
        return genes_to_archs(self._pending.get("X"))

    def tell(
        self,
        archs: Sequence[Arch] | None = None,
        values: np.ndarray | Sequence[Sequence[float]] | None = None,
        violations: np.ndarray | None = None,
    ) -> None:
        """Advance the algorithm by the pending generation. Without ``values`` the objectives score it;
        with them, ``values[i]`` holds the objective values of ``archs[i]`` measured outside (each in its
        objective's own unit and sense), for exactly the archs :meth:`ask` returned, in any order; NaN
        counts as infeasibly bad. ``violations`` likewise gives the constraints' G (<= 0 is feasible)."""
        if self._pending is None:
            raise ConfigError("tell() called without a pending ask()")
        asked = genes_to_archs(self._pending.get("X"))
        if values is not None:
            if archs is None:
                raise ConfigError("tell(values=...) needs the archs the values belong to")
            archs = [a.canonical() for a in archs]
            shape = (len(archs), len(self.scorer.objectives))
            if np.shape(values) != shape:
                raise ConfigError(f"tell() got values of shape {np.shape(values)}, expected {shape}")
            if set(archs) != set(asked):
                raise ConfigError("tell() got values for archs other than the pending generation's")
            self.scorer.record(archs, np.asarray(values, dtype=float), violations)
        elif archs is not None and len(archs) != len(asked):
            raise ConfigError(f"tell() got {len(archs)} archs for a generation of {len(asked)}")
        pop, self._pending = self._pending, None
        with np.errstate(invalid="ignore", divide="ignore"):  # unmeasured archs score inf: no warnings
            self.algorithm.evaluator.eval(self.problem, pop, algorithm=self.algorithm)
            self.algorithm.tell(infills=pop)

    def run(self) -> SearchResult:
        while not self.done:
            self.tell(self.ask())
        return self.result()

    def result(self) -> SearchResult:
        archs, F, G = self.scorer.arrays()
        return SearchResult(
            self.scorer.objectives,
            self.scorer.constraints,
            archs,
            F,
            G,
            "nsga2",
            time.perf_counter() - self._start,
            self.config,
        )


def exhaustive(objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> SearchResult:
    """Score all 6,466 canonical archs and return the exact Pareto front."""
    start = time.perf_counter()
    scorer = Scorer(objectives, constraints)
    scorer.score(canonical_archs())
    archs, F, G = scorer.arrays()
    return SearchResult(
        list(objectives), list(constraints), archs, F, G, "exhaustive", time.perf_counter() - start
    )


def search(
    objectives: Sequence[Objective],
    *,
    constraints: Sequence[Constraint] = (),
    strategy: str = "nsga2",
    config: SearchConfig | None = None,
    initial: Sequence[Arch] | None = None,
) -> SearchResult:
    """Find the Pareto front of ``objectives`` over NB201 under ``constraints``.

    ``strategy`` is ``"nsga2"`` (pymoo, see :class:`SearchConfig`) or ``"exhaustive"``. ``initial``
    seeds NSGA-II's first population (e.g. an archive's non-dominated archs). Neither ``objectives`` nor
    ``initial`` is modified.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from: {', '.join(STRATEGIES)}")
    if strategy == "exhaustive":
        return exhaustive(objectives, constraints)
    return Search(objectives, constraints, config, list(initial) if initial else None).run()


__all__ = ["STRATEGIES", "NB201Problem", "Scorer", "Search", "SearchConfig", "exhaustive", "search"]
