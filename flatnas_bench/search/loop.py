"""The search loop: evaluate a random initial sample, then what a strategy proposes, to a budget.

1. Evaluate ``n_init`` random canonical archs (the archive).
2. Ask the strategy (:mod:`flatnas_bench.search.strategy`) for its next batch; evaluate the archs of it
   not yet in the archive, at most the budget left; repeat until ``budget`` distinct canonical archs
   have been evaluated. Strategies: ``flatnas`` (:mod:`~flatnas_bench.search.flatnas`: fit a surrogate,
   search it, pick along the predicted front), ``random``, ``evolution`` (regularized evolution),
   ``local`` (local search with restarts) and ``nsga2`` (NSGA-II on the evaluator, no surrogate).

Evaluation goes through an :class:`~flatnas_bench.search.evaluators.Evaluator`
(:mod:`flatnas_bench.search.evaluators`): ``TableOracle`` looks archs up in a benchmark table (zero cost; used
to benchmark the strategies) and ``EngineEvaluator`` trains them with the engine (``bench.run_bench`` into a
SQLite result table). The evaluator's archive is durable, so re-running the same call continues where it
stopped: every decision depends only on the archive and the seed.

After each batch the log gets the normalised hypervolume of the measured archive (bounds fixed from
the initial sample unless given), the best measured value of each objective so far, and the seconds the
strategy took to decide. With ``fom`` among the objectives, the FlatNAS strategy recomputes the search's
``alpha_norm`` from the archive each batch, as the method says; the log keeps the initial sample's
``alpha_norm`` so its figures compare across batches.

>>> from flatnas_bench.search.evaluators import TableOracle                       # doctest: +SKIP
>>> from flatnas_bench.tables.readers import load_table                           # doctest: +SKIP
>>> oracle = TableOracle(load_table("nb201_accuracy.csv"), archive="archive.csv")  # doctest: +SKIP
>>> result = run_loop(oracle, ["cifar10_valid_acc_200ep", "params"], config=LoopConfig(budget=100),
...                   strategy="evolution")                                         # doctest: +SKIP
>>> result.log[["iteration", "n_evaluated", "hypervolume"]]                       # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import Arch, canonical_archs, sample_archs
from flatnas_bench.search import evolution, flatnas, local_search, nsga2_direct, random_search  # noqa: F401
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.evaluators import Evaluator
from flatnas_bench.search.fom import DEFAULT_ALPHA, alpha_norm
from flatnas_bench.search.fronts import Bounds, hypervolume, pareto_front
from flatnas_bench.search.objectives import (
    LIVE_CONSTRAINT,
    make_constraint,
    make_objectives,
    measured_quantities,
    parse_spec,
    registered,
)
from flatnas_bench.search.strategy import LoopState, Strategy, make_strategy
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.table import BenchTable


def _live_archs() -> frozenset[Arch]:
    """The canonical archs with at least one live input-to-output route."""
    archs = canonical_archs()
    return frozenset(a for a, n in zip(archs, live_route_counts(archs), strict=True) if n > 0)


def initial_sample(n: int, seed: int, pool: frozenset[Arch] | None = None) -> list[Arch]:
    """``n`` distinct canonical archs drawn uniformly by ``seed`` from ``pool`` (default: all 6,466
    classes, the same draw as ``sample_archs(n, seed, unique=True)``); fewer when the pool is smaller."""
    if pool is None:
        return sample_archs(n, seed, unique=True)
    members = sorted(pool)
    picks = np.random.default_rng(seed).choice(len(members), size=min(n, len(members)), replace=False)
    return [members[int(k)] for k in picks]


def needed_targets(specs: Sequence[str]) -> list[str]:
    """The measured quantities the objective and constraint specs read (what a surrogate must predict),
    as declared where each objective is registered
    (:func:`~flatnas_bench.search.objectives.measured_quantities`)."""
    return list(dict.fromkeys(q for spec in specs for q in measured_quantities(spec)))


# --- the loop ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the loop every strategy shares; ``None`` takes the strategy's own default."""

    budget: int = 300  # total distinct canonical archs evaluated, the initial sample included
    n_init: int | None = None  # initial random sample (canonical archs)
    k: int | None = None  # archs evaluated per batch, where the strategy chooses the batch size
    seed: int = 0  # seeds the initial sample and every decision of the strategy
    alpha: float = DEFAULT_ALPHA  # FoM weight when "fom" is an objective

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"budget must be at least 1, got {self.budget}")
        if self.n_init is not None and not 1 <= self.n_init <= self.budget:
            raise ConfigError(f"need 1 <= n_init <= budget, got n_init={self.n_init}, budget={self.budget}")
        if self.k is not None and self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")


@dataclass
class LoopResult:
    """The archive (measured rows), the per-iteration log, and the measured Pareto front."""

    archive: pd.DataFrame
    log: pd.DataFrame
    front: pd.DataFrame


def measured_scores(
    archive: BenchTable,
    specs: Sequence[str],
    constraints: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
    alpha_norm: float | None = None,
) -> tuple[list[Arch], np.ndarray, np.ndarray, list[Any]]:
    """(archs, F minimised, feasible mask, objectives) of the archive's measured values; a FoM uses
    ``alpha_norm``, or the archive's own mean(Err) / mean(R) when it is ``None``."""
    context = ObjectiveContext(table=archive, alpha=alpha, alpha_norm=alpha_norm)
    objectives = make_objectives(specs, context)
    cons = [make_constraint(c, context) for c in constraints]
    archs = [a.canonical() for a in archive.archs]
    F = np.column_stack([o.minimised(archs) for o in objectives])
    feasible = np.ones(len(archs), dtype=bool)
    for c in cons:
        feasible &= c.violation(archs) <= 0
    return archs, F, feasible & np.all(np.isfinite(F), axis=1), objectives


def _archive_alpha_norm(archive: BenchTable, specs: Sequence[str]) -> float | None:
    """mean(Err) / mean(R) of the archive for the first ``fom`` spec's quantities (None without a FoM)."""
    for spec in specs:
        name, options, _ = parse_spec(spec)
        entry = registered(name)
        if name == "fom" and entry is not None:
            acc, r = entry.quantities(options)
            if archive.has(acc) and archive.has(r):
                return alpha_norm(100.0 - archive.values(acc), archive.values(r))
    return None


@dataclass
class _Log:
    """The per-iteration log: hypervolume of the measured archive (fixed bounds) and best values so far,
    scored with a frozen ``alpha_norm`` so figures compare across iterations; written to ``path``."""

    specs: list[str]
    constraints: list[str]
    alpha: float
    path: Path | None
    progress: Callable[[dict[str, Any]], None] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    norm: float | None = None
    bounds: Bounds | None = None

    def start(self, archive: BenchTable, n_init: int, bounds: Bounds | None) -> None:
        if self.path is not None and self.path.exists():
            self.rows = read_csv(self.path).to_dict("records")
        initial = archive.head(n_init)
        self.norm = _archive_alpha_norm(initial, self.specs)
        if bounds is None:
            _, F0, ok0, _ = measured_scores(initial, self.specs, self.constraints, self.alpha, self.norm)
            if not ok0.any():
                raise TableError(
                    f"none of the {len(initial)} initial archs has finite, feasible values of "
                    f"{', '.join(self.specs)}; the oracle lacks them (a metric measured for few archs?)"
                )
            bounds = Bounds.of(F0[ok0])
        self.bounds = bounds

    @property
    def next_iteration(self) -> int:
        return int(self.rows[-1]["iteration"]) + 1 if self.rows else 1

    def add(self, archive: BenchTable, iteration: int, picks: Sequence[Arch], decide_s: float) -> None:
        _, F, ok, objs = measured_scores(archive, self.specs, self.constraints, self.alpha, self.norm)
        row: dict[str, Any] = {
            "iteration": iteration,
            "n_evaluated": len(archive),
            "hypervolume": hypervolume(F[pareto_front(F, ok)], self.bounds),
        }
        for j, obj in enumerate(objs):
            row[f"best_{obj.name}"] = obj.sign * (np.min(F[ok, j]) if ok.any() else np.nan)
        row.update(decide_s=round(decide_s, 3), picks=";".join(map(str, picks)))
        self.rows.append(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(self.rows).to_csv(self.path, index=False)
        if self.progress is not None:
            self.progress(row)


def _pool(evaluator: Evaluator, quantities: list[str], allow_dead: bool) -> frozenset[Arch] | None:
    """The archs the loop may evaluate: those the evaluator can measure, live cells only unless
    ``allow_dead``; None for every canonical arch."""
    pool = evaluator.pool(quantities) if hasattr(evaluator, "pool") else None
    pool = None if pool is None or len(pool) == len(canonical_archs()) else frozenset(pool)
    if not allow_dead:
        live = _live_archs()
        pool = live if pool is None else pool & live
    return pool


def run_loop(
    evaluator: Evaluator,
    objectives: Sequence[str],
    *,
    constraints: Sequence[str] = (),
    config: LoopConfig | None = None,
    strategy: Strategy | str = "flatnas",
    bounds: Bounds | None = None,
    log_path: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    allow_dead: bool = False,
) -> LoopResult:
    """Run (or resume) a search ``strategy`` until ``config.budget`` distinct canonical archs are in the
    evaluator's archive.

    ``objectives``/``constraints`` are specs as in :mod:`flatnas_bench.search.objectives` (e.g.
    ``["fom", "params"]``, ``["params<=0.8"]``); at least one must read a measured quantity. ``strategy``
    is a registered name (:func:`~flatnas_bench.search.strategy.list_strategies`: ``flatnas``,
    ``random``, ``evolution``, ``local``, ``nsga2``) or a :class:`Strategy` with its settings. The loop
    evaluates ``n_init`` random archs, then each batch the strategy proposes (its archs not yet
    evaluated, up to the budget), logging every batch. ``bounds`` fixes the hypervolume normalisation
    (default: min/max of the initial sample). ``progress`` gets each log row. Cells with no live
    input-to-output route are neither sampled nor proposed unless ``allow_dead`` (they sit at chance with
    R = 0).
    """
    cfg = config or LoopConfig()
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    n_init, k = cfg.n_init or min(strategy.n_init, cfg.budget), cfg.k or strategy.k
    specs, cons = list(objectives), list(constraints) + ([] if allow_dead else [LIVE_CONSTRAINT])
    quantities = needed_targets(specs + cons)
    if not quantities:
        raise ConfigError("the objectives read no measured quantity; nothing for the loop to learn")
    pool = _pool(evaluator, quantities, allow_dead)
    archive = evaluator.archive()
    if len(archive) < n_init:
        done = {a.canonical() for a in archive.archs}
        initial = [a for a in initial_sample(n_init, cfg.seed, pool) if a not in done]
        evaluator.evaluate(initial[: n_init - len(archive)])
        archive = evaluator.archive()
    log = _Log(specs, cons, cfg.alpha, None if log_path is None else Path(log_path), progress)
    log.start(archive, n_init, bounds)
    if not log.rows:
        log.add(archive, 0, [], 0.0)

    def score(table: BenchTable) -> tuple[list[Arch], np.ndarray, np.ndarray]:
        archs, F, ok, _ = measured_scores(table, specs, cons, cfg.alpha)
        return archs, F, ok

    targets = [archive.resolve(q) for q in quantities]
    state = LoopState(specs, cons, targets, pool, cfg.seed, k, score, archive, n_init, cfg.budget, cfg.alpha)
    batches, idle = strategy.proposals(state), 0
    while len(archive) < cfg.budget and idle <= len(canonical_archs()):
        start = time.perf_counter()
        batch = next(batches, None)
        decide_s = time.perf_counter() - start
        if batch is None:
            break
        new = [a for a in dict.fromkeys(b.canonical() for b in batch) if a not in state.evaluated]
        new = new[: cfg.budget - len(archive)]
        idle = 0 if new else idle + 1  # a resumed strategy replays its measured batches for free
        if new:
            evaluator.evaluate(new)
            archive = state.archive = evaluator.archive()
            log.add(archive, log.next_iteration, new, decide_s)
    _, F, ok, _ = measured_scores(archive, specs, cons, cfg.alpha)
    front = archive.take(pareto_front(F, ok)).to_frame()
    return LoopResult(archive.to_frame(), pd.DataFrame(log.rows), front)
