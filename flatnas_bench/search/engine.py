"""Multi-objective search over the NB201 cell space: pymoo NSGA-II or exhaustive, and hypervolume.

An arch is 6 integer genes in 0..4 (the op index of each edge). NSGA-II runs with operators made for
categorical genes, :class:`UniformCrossover` and :class:`RandomResetMutation` (SBX and polynomial mutation
would treat op indices as ordered numbers), and :class:`IsomorphElimination`, which drops offspring that
compute the same function as another individual. Every gene vector is scored as its canonical
representative, each canonical arch once (:class:`Scorer` memoises), and the returned front is the
non-dominated set of everything scored.

``strategy="exhaustive"`` scores all 6,466 canonical archs and returns the exact front; the space is small
enough that this takes one batched call per objective.

Hypervolume is normalised so numbers compare across runs: each minimised objective is scaled by the
min and max over the exhaustive (feasible) scored set, ``(f - min) / (max - min)``, and the reference point
is 1.1 in every objective; :func:`hypervolume_ratio` divides by the exhaustive front's value.

Entry levels over one engine: :func:`run_search` (from names to a front; what ``flatnas-bench search``
runs), :func:`search` (objective objects in, :class:`SearchResult` out) and :class:`Search` (pymoo's
ask/tell: step it, inspect it, or tell it values measured outside, as a training loop does).

>>> from flatnas_bench.search.objectives import make_objectives
>>> result = search(make_objectives(["params", "flops:max"]), strategy="exhaustive")
>>> result.n_evaluated, bool(result.front_table["params"].min() < 0.1)
(6466, True)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.indicators.hv import Hypervolume
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import NUM_EDGES, NUM_OPS, Arch, canonical_archs, canonical_ordinals
from flatnas_bench.search.objectives import (
    DEFAULT_ALPHA,
    DEFAULT_FOM_ACC,
    DEFAULT_FOM_R,
    Constraint,
    Objective,
    ObjectiveContext,
    cost_values,
    default_sense,
    make_constraint,
    make_objectives,
)
from flatnas_bench.tables.bundled import bundled_surrogate_dir
from flatnas_bench.tables.readers import load_table
from surrogates import load_surrogate

STRATEGIES: tuple[str, ...] = ("nsga2", "exhaustive")
REF_POINT = 1.1  # hypervolume reference point in every normalised objective


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


# --- genes <-> archs --------------------------------------------------------------------------------

_PLACE = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)


def iso_ids(X: np.ndarray) -> np.ndarray:
    """Isomorphism-class id (the canonical ordinal) of each gene row of ``X`` (n, 6)."""
    return canonical_ordinals()[np.asarray(X, dtype=np.int64) @ _PLACE]


def genes_to_archs(X: np.ndarray) -> list[Arch]:
    """Canonical :class:`Arch` of each gene row."""
    return [Arch.from_ordinal(int(k)) for k in iso_ids(X)]


# --- pymoo operators --------------------------------------------------------------------------------


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


# --- scoring ----------------------------------------------------------------------------------------


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


# --- fronts and hypervolume -------------------------------------------------------------------------


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


# --- results ----------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Everything a search scored and its Pareto front.

    ``archs``/``F``/``G`` cover every scored canonical arch (``F`` minimised); ``front`` indexes the
    feasible non-dominated ones. :attr:`front_table` and :attr:`scored_table` give user-facing values.
    """

    objectives: list[Objective]
    constraints: list[Constraint]
    archs: list[Arch]
    F: np.ndarray
    G: np.ndarray
    strategy: str
    seconds: float
    config: SearchConfig | None = None
    hv_ratio: float | None = None  # front hypervolume / exhaustive front's, when compared
    front: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.front = pareto_front(self.F, self.feasible)

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.G <= 0, axis=1) if self.G.size else np.ones(len(self.archs), dtype=bool)

    @property
    def front_archs(self) -> list[Arch]:
        return [self.archs[i] for i in self.front]

    @property
    def n_evaluated(self) -> int:
        return len(self.archs)

    def values(self) -> np.ndarray:
        """Objective values in their own sense and unit (maximised ones positive again)."""
        signs = np.array([o.sign for o in self.objectives])
        return self.F * signs

    def hypervolume(self, bounds: Bounds | None = None) -> float:
        """Normalised hypervolume of the front (bounds default to this result's own feasible set)."""
        bounds = bounds or Bounds.of(self.F[self.feasible])
        return hypervolume(self.F[self.front], bounds)

    def table(self, rows: np.ndarray | None = None, costs: bool = True) -> pd.DataFrame:
        """One row per arch (all scored, or ``rows``): arch, objective values (+ ``_std``), costs."""
        idx = np.arange(len(self.archs)) if rows is None else np.asarray(rows, dtype=int)
        archs = [self.archs[i] for i in idx]
        frame = pd.DataFrame({"arch": [str(a) for a in archs]})
        values = self.values()
        for j, obj in enumerate(self.objectives):
            frame[obj.name] = values[idx, j]
            if obj.std is not None:
                frame[f"{obj.name}_std"] = obj.std(archs) if archs else []
        if costs and archs:
            for name, column in (("params", "params_m"), ("flops", "flops_m")):
                if name not in frame.columns:
                    frame[column] = cost_values(archs, column)
        frame["feasible"] = self.feasible[idx]
        return frame

    @property
    def front_table(self) -> pd.DataFrame:
        return self.table(self.front)

    def save(self, out: str | Path, *, plot: bool = True) -> dict[str, Path]:
        """Write ``pareto.csv``, ``pareto.json``, ``scored.csv`` and ``front.png`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        front = self.front_table
        paths = {"csv": out / "pareto.csv", "json": out / "pareto.json", "scored": out / "scored.csv"}
        front.to_csv(paths["csv"], index=False)
        meta = {
            "strategy": self.strategy,
            "objectives": [{"name": o.name, "sense": o.sense, "unit": o.unit} for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "n_evaluated": self.n_evaluated,
            "seconds": round(self.seconds, 3),
            "config": None if self.config is None else self.config.__dict__,
            "hv_ratio": self.hv_ratio,
            "pareto": json.loads(front.to_json(orient="records")),
        }
        paths["json"].write_text(json.dumps(meta, indent=2) + "\n")
        self.table(costs=False).to_csv(paths["scored"], index=False)
        if plot:
            paths["png"] = out / "front.png"
            self.plot(paths["png"])
        return paths

    def plot(self, path: str | Path) -> Path:
        """PNG of every scored arch (grey; infeasible faded) and the front (red) on the first two
        objectives; a single objective is plotted against exact params."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        values = self.values()
        if len(self.objectives) >= 2:
            # a cost (params, flops, latency) goes on x, as in the usual accuracy-vs-size plots
            i, j = (1, 0) if _is_cost(self.objectives[1]) and not _is_cost(self.objectives[0]) else (0, 1)
            x, y = values[:, i], values[:, j]
            xlabel, ylabel = self.objectives[i].label, self.objectives[j].label
        else:
            x, y = cost_values(self.archs, "params_m"), values[:, 0]
            xlabel, ylabel = "params (M)", self.objectives[0].label
        feasible = self.feasible
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
        if (~feasible).any():
            ax.scatter(x[~feasible], y[~feasible], s=5, c="0.85", label="infeasible", rasterized=True)
        ax.scatter(
            x[feasible], y[feasible], s=5, c="0.55", label=f"scored ({self.n_evaluated})", rasterized=True
        )
        order = self.front[np.argsort(x[self.front], kind="stable")]
        ax.plot(x[order], y[order], "o-", c="tab:red", ms=4, lw=1, label=f"Pareto front ({len(order)})")
        for axis, v in ((ax.set_xlim, x), (ax.set_ylim, y)):  # a few wild predictions must not squash it
            finite = v[np.isfinite(v)]
            lo = min(np.quantile(finite, 0.01), np.min(v[self.front]))
            hi = max(np.quantile(finite, 0.99), np.max(v[self.front]))
            pad = 0.05 * (hi - lo or 1.0)
            axis(lo - pad, hi + pad)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        constraints = f"; {', '.join(map(str, self.constraints))}" if self.constraints else ""
        hv = f"; hypervolume {self.hv_ratio:.4f} of exhaustive" if self.hv_ratio is not None else ""
        ax.set_title(f"NB201 {self.strategy} search{constraints}{hv}", fontsize=10)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return Path(path)


def _is_cost(objective: Objective) -> bool:
    return objective.name in ("params", "flops") or objective.name.endswith("_ms")


# --- the search engines -----------------------------------------------------------------------------


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


def hypervolume_ratio(result: SearchResult, reference: SearchResult) -> float:
    """``result``'s front hypervolume over ``reference``'s (an exhaustive result), both normalised by the
    reference's feasible min/max with reference point 1.1."""
    bounds = Bounds.of(reference.F[reference.feasible])
    return result.hypervolume(bounds) / reference.hypervolume(bounds)


def default_objectives(context: ObjectiveContext) -> list[str]:
    """``["fom", "params"]`` when the context offers the FoM's accuracy and R, else the first accuracy-like
    target or column with ``params``."""
    names = context.targets + context.columns
    if context.find(DEFAULT_FOM_ACC) and context.find(DEFAULT_FOM_R):
        return ["fom", "params"]
    accuracies = [n for n in names if default_sense(n) == "max"]
    if not accuracies and not names:
        raise ConfigError("no surrogate or table to take objectives from; pass --surrogate or --table")
    return [(accuracies or names)[0], "params"]


# Every cell with at least one live input-to-output route: the default constraint of search and loop.
LIVE_CONSTRAINT = "live_routes>=1"


def run_search(
    objectives: Sequence[str] | None = None,
    *,
    surrogate: Any = "bundled",
    tables: Sequence[str | Path] = (),
    constraints: Sequence[str] = (),
    max_params: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    strategy: str = "nsga2",
    config: SearchConfig | None = None,
    compare_exhaustive: bool = True,
    allow_dead: bool = False,
) -> SearchResult:
    """One call from names to a front: what ``flatnas-bench search`` runs.

    Cells with no live input-to-output route (they sit at chance with R = 0, yet are the smallest) are
    left out by the constraint :data:`LIVE_CONSTRAINT` unless ``allow_dead``.

    ``surrogate`` is a directory written by ``fit-surrogate``, a fitted ``SurrogateSet``, ``"bundled"``
    (the package's own) or ``None``. ``tables`` are joined into one table whose columns become objectives
    (e.g. the latency CSV's ``pixel3_ms``). ``max_params`` (M) adds ``params<=max_params``. With
    ``compare_exhaustive`` an NSGA-II result also gets :attr:`SearchResult.hv_ratio`.

    >>> r = run_search(["params", "flops:max"], surrogate=None, max_params=0.5)   # doctest: +SKIP
    """
    if surrogate == "bundled":
        surrogate = bundled_surrogate_dir()
    if isinstance(surrogate, (str, Path)):
        surrogate = load_surrogate(surrogate)
    table = None
    if tables:
        table = load_table(tables[0])
        for extra in tables[1:]:
            table = table.join(load_table(extra))
    context = ObjectiveContext(surrogate=surrogate, table=table, alpha=alpha)
    objs = make_objectives(list(objectives) if objectives else default_objectives(context), context)
    specs = list(constraints) + ([f"params<={max_params}"] if max_params is not None else [])
    specs += [] if allow_dead else [LIVE_CONSTRAINT]
    cons = [make_constraint(c, context) for c in specs]
    result = search(objs, constraints=cons, strategy=strategy, config=config)
    if compare_exhaustive:
        reference = result if strategy == "exhaustive" else exhaustive(objs, cons)
        result.hv_ratio = hypervolume_ratio(result, reference)
    return result


__all__ = [
    "LIVE_CONSTRAINT",
    "STRATEGIES",
    "Bounds",
    "IsomorphElimination",
    "NB201Problem",
    "RandomResetMutation",
    "Scorer",
    "Search",
    "SearchConfig",
    "SearchResult",
    "UniformCrossover",
    "exhaustive",
    "genes_to_archs",
    "hypervolume",
    "hypervolume_ratio",
    "iso_ids",
    "pareto_front",
    "run_search",
    "search",
]
