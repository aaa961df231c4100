"""The FlatNAS loop: sample -> fit a surrogate -> NSGA-II on it -> evaluate picks -> refit, to a budget.

1. Evaluate ``n_init`` random canonical archs (the archive).
2. Fit a surrogate of every measured quantity the objectives need (``surrogates.fit_surrogate``).
3. Run NSGA-II (:mod:`flatnas_bench.search`) on the predicted objectives, its first population seeded
   with the archive's measured non-dominated archs.
4. Pick ``k`` archs not yet evaluated, spread evenly along the predicted front (:func:`spread_picks`),
   evaluate them and add them to the archive.
5. Repeat until ``budget`` archs have been evaluated.

Evaluation goes through an :class:`Evaluator`: :class:`TableOracle` looks archs up in a benchmark table
(zero cost; used to benchmark the loop itself) and :class:`EngineEvaluator` trains them with the engine
(``bench.run_bench`` into a SQLite result table). The evaluator's archive is durable, so re-running the
same call continues where it stopped: every decision depends only on the archive and the seed.

After each iteration the log gets the normalised hypervolume of the measured archive (bounds fixed from
the initial sample unless given) and the best measured value of each objective so far. With ``fom``
among the objectives, the search's ``alpha_norm`` is recomputed from the archive each iteration, as the
method says; the log keeps the initial sample's ``alpha_norm`` so its figures compare across iterations.

>>> from flatnas_bench.table import load_table                                   # doctest: +SKIP
>>> oracle = TableOracle(load_table("nb201_accuracy.csv"), archive="archive.csv")  # doctest: +SKIP
>>> result = run_loop(oracle, ["cifar10_valid_acc_200ep", "params"], budget=100)  # doctest: +SKIP
>>> result.log[["iteration", "n_evaluated", "hypervolume"]]                       # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from flatnas_bench.errors import ConfigError, TableError
from flatnas_bench.objectives import (
    DEFAULT_ALPHA,
    DEFAULT_FOM_ACC,
    DEFAULT_FOM_R,
    ObjectiveContext,
    alpha_norm_of,
    make_constraint,
    make_objectives,
    parse_spec,
    split_constraint,
)
from flatnas_bench.search import Bounds, SearchConfig, SearchResult, hypervolume, pareto_front, search
from flatnas_bench.space import Arch, sample_archs

COST_OBJECTIVES = frozenset({"params", "flops"})  # computed exactly; never fitted


class Evaluator(Protocol):
    """Measures archs and keeps every measurement durably (the archive)."""

    def archive(self) -> pd.DataFrame:
        """One row per evaluated arch in evaluation order: ``arch`` (canonical NB201 string) and numeric
        measured columns; an arch whose evaluation failed has NaN measurements."""
        ...

    def evaluate(self, archs: Sequence[Arch]) -> None:
        """Measure ``archs`` (canonical, not yet in the archive) and add them to the archive."""
        ...


class TableOracle:
    """Zero-cost evaluator: looks archs up in a benchmark table (an arch's own row, else its class's).

    The archive lives in memory, or in a CSV at ``archive`` that later runs resume from.
    ``metrics`` limits which table columns the archive records (default: all).
    """

    def __init__(self, table: Any, archive: str | Path | None = None, metrics: Sequence[str] | None = None):
        self.context = ObjectiveContext(table=table)
        frame = self.context.table_frame()
        self.metrics = list(metrics) if metrics is not None else list(frame.columns)
        missing = [m for m in self.metrics if m not in frame.columns]
        if missing:
            raise TableError(f"the oracle table has no column {missing[0]!r}")
        self.path = None if archive is None else Path(archive)
        if self.path is not None and self.path.exists():
            self._archive = pd.read_csv(self.path)
        else:
            self._archive = pd.DataFrame(columns=["arch", *self.metrics])

    def archive(self) -> pd.DataFrame:
        return self._archive.copy()

    def evaluate(self, archs: Sequence[Arch]) -> None:
        archs = list(archs)
        if not archs:
            return
        rows = pd.DataFrame({"arch": [str(a) for a in archs]})
        for metric in self.metrics:
            rows[metric] = self.context.column(archs, metric)
        if rows[self.metrics].isna().all(axis=1).any():
            absent = rows["arch"][rows[self.metrics].isna().all(axis=1)].iloc[0]
            raise TableError(f"the oracle table has no row for arch {absent}")
        self._archive = rows if self._archive.empty else pd.concat([self._archive, rows], ignore_index=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            self._archive.to_csv(tmp, index=False)
            tmp.replace(self.path)


class EngineEvaluator:
    """Trains archs with the engine: ``bench.run_bench`` writes each result row into the SQLite table at
    ``table_path`` (one writer; finished candidates are skipped on re-runs), and the archive is that
    table's rows for ``protocol`` averaged over ``seeds``, in the order they finished.

    Measured columns are the result row's (``val_acc``, ``flatness_r``, ``corr_acc_mean``, ...).
    """

    def __init__(
        self,
        protocol: Any,
        table_path: str | Path,
        data_path: str | Path,
        *,
        executor: Any = "serial",
        seeds: Sequence[int] = (0,),
        **bench_options: Any,
    ) -> None:
        from flatnas_bench.bench import run_protocol
        from flatnas_bench.protocol import get_protocol

        protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        # as run_bench keys its rows: bf16 on CUDA unless a precision is given
        self.protocol = run_protocol(protocol, bench_options.get("device"), bench_options.get("precision"))
        self.table_path = Path(table_path)
        self.data_path = Path(data_path)
        self.seeds = list(seeds)
        self.bench_options = bench_options
        self.executor = executor
        if isinstance(executor, str) and executor != "serial":  # one pool for every generation: see close()
            from flatnas_bench.executors import get_executor

            names = ("device", "threads", "workers", "workers_per_gpu")
            options = {name: bench_options.pop(name) for name in names if name in bench_options}
            self.executor = get_executor(executor, keep_alive=True, **options)

    def close(self) -> None:
        """Stop the worker pool kept alive across the loop's generations."""
        if not isinstance(self.executor, str):
            self.executor.close()

    def archive(self) -> pd.DataFrame:
        if not self.table_path.exists():
            return pd.DataFrame(columns=["arch"])
        from flatnas_bench.store import ResultStore

        with ResultStore(self.table_path, readonly=True) as store:
            rows = store.to_frame(self.protocol.hash)
        if rows.empty:
            return pd.DataFrame(columns=["arch"])
        if "error" in rows.columns:
            failed = rows["error"].notna() & (rows["error"].astype(str).str.strip() != "")
            numeric = rows.select_dtypes(include="number").columns
            rows.loc[failed, numeric.difference(["seed"])] = np.nan
        if "finished_at" in rows.columns:
            rows = rows.sort_values("finished_at", kind="stable")
        numeric = [c for c in rows.select_dtypes(include="number").columns if c != "seed"]
        return rows.groupby("arch", sort=False)[numeric].mean().reset_index()

    def evaluate(self, archs: Sequence[Arch]) -> None:
        from flatnas_bench.bench import run_bench

        run_bench(
            [str(a) for a in archs],
            self.protocol,
            self.table_path,
            self.data_path,
            executor=self.executor,
            seeds=self.seeds,
            **self.bench_options,
        )


# --- fitting ----------------------------------------------------------------------------------------

FitFn = Callable[[pd.DataFrame, list[str], int], Any]


def fit_default(
    archive: pd.DataFrame,
    targets: list[str],
    seed: int,
    *,
    n_models: int = 5,
    folds: int = 2,
    params: dict[str, Any] | None = None,
) -> Any:
    """``surrogates.fit_surrogate`` (XGBoost ensemble of ``n_models``) on the archive's measured rows.

    ``folds`` is the cheapest CV the surrogate package allows; the loop never reads the CV report.
    """
    from surrogates import fit_surrogate

    rows = archive.dropna(subset=targets)[["arch", *targets]].reset_index(drop=True)
    return fit_surrogate(rows, targets, n_models=n_models, seed=seed, folds=folds, params=params)


def needed_targets(specs: Sequence[str]) -> list[str]:
    """The measured quantities the objective specs read, i.e. what the surrogate must predict."""
    targets: list[str] = []
    for spec in specs:
        name, options, _ = parse_spec(spec)
        if name == "fom":
            names = [options.get("acc", DEFAULT_FOM_ACC), options.get("r", DEFAULT_FOM_R)]
        elif name in COST_OBJECTIVES:
            names = []
        else:
            names = [name]
        targets += [n for n in names if n not in targets]
    return targets


# --- choosing what to evaluate ----------------------------------------------------------------------


def spread_picks(result: SearchResult, k: int, exclude: set[Arch] = frozenset()) -> list[Arch]:
    """``k`` scored archs, not in ``exclude``, spread evenly along the predicted front.

    Candidates are taken front by front (non-dominated rank 1 first, feasible only). Within a front the
    first pick is the best in the first objective; each next one is the candidate farthest (in objectives
    normalised to [0, 1] over all scored archs) from everything picked so far.
    """
    keep = np.array([a not in exclude for a in result.archs]) & result.feasible
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


# --- the loop ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the FlatNAS loop; defaults follow the method (100 initial, 8 per iteration)."""

    budget: int = 300  # total archs evaluated, the initial sample included
    n_init: int = 100  # initial random sample (canonical archs)
    k: int = 8  # archs evaluated per iteration
    seed: int = 0  # seeds the initial sample, the surrogate fits and NSGA-II
    alpha: float = DEFAULT_ALPHA  # FoM weight when "fom" is an objective
    strategy: str = "nsga2"  # search on the surrogate: "nsga2" or "exhaustive"
    search: SearchConfig = field(default_factory=SearchConfig)  # NSGA-II on the surrogate

    def __post_init__(self) -> None:
        if not 1 <= self.n_init <= self.budget:
            raise ConfigError(f"need 1 <= n_init <= budget, got n_init={self.n_init}, budget={self.budget}")
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")


@dataclass
class LoopResult:
    """The archive (measured rows), the per-iteration log, and the measured Pareto front."""

    archive: pd.DataFrame
    log: pd.DataFrame
    front: pd.DataFrame


def _canonical(strings: Sequence[str]) -> list[Arch]:
    return [Arch.from_str(s).canonical() for s in strings]


def measured_scores(
    archive: pd.DataFrame,
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
    archs = _canonical(archive["arch"].tolist())
    F = np.column_stack([o.minimised(archs) for o in objectives])
    feasible = np.ones(len(archs), dtype=bool)
    for c in cons:
        feasible &= c.violation(archs) <= 0
    return archs, F, feasible & np.all(np.isfinite(F), axis=1), objectives


def _archive_alpha_norm(archive: pd.DataFrame, specs: Sequence[str]) -> float | None:
    """mean(Err) / mean(R) of the archive for the first ``fom`` spec's columns (None without a FoM)."""
    for spec in specs:
        name, options, _ = parse_spec(spec)
        if name == "fom":
            acc, r = options.get("acc", DEFAULT_FOM_ACC), options.get("r", DEFAULT_FOM_R)
            if acc in archive.columns and r in archive.columns:
                return alpha_norm_of(100.0 - archive[acc].to_numpy(float), archive[r].to_numpy(float))
    return None


def run_loop(
    evaluator: Evaluator,
    objectives: Sequence[str],
    *,
    constraints: Sequence[str] = (),
    config: LoopConfig | None = None,
    fit: FitFn | None = None,
    bounds: Bounds | None = None,
    log_path: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> LoopResult:
    """Run (or resume) the FlatNAS loop until ``config.budget`` archs are in the evaluator's archive.

    ``objectives``/``constraints`` are specs as in :mod:`flatnas_bench.objectives` (e.g.
    ``["fom", "params"]``, ``["params<=0.8"]``); the surrogate is fitted on the quantities they read.
    ``fit(archive, targets, seed)`` defaults to :func:`fit_default`. ``bounds`` fixes the hypervolume
    normalisation (default: min/max of the initial sample). ``progress`` gets each log row.
    """
    cfg = config or LoopConfig()
    specs, cons = list(objectives), list(constraints)
    targets = needed_targets(specs + [split_constraint(c)[0] for c in cons])
    if not targets:
        raise ConfigError("the objectives read no measured quantity; nothing for the loop to learn")
    fit = fit or fit_default
    log_rows: list[dict[str, Any]] = []
    log_file = None if log_path is None else Path(log_path)
    if log_file is not None and log_file.exists():
        log_rows = pd.read_csv(log_file).to_dict("records")

    archive = evaluator.archive()
    if len(archive) < cfg.n_init:
        done = set(_canonical(archive["arch"].tolist()))
        initial = [a for a in sample_archs(cfg.n_init, cfg.seed, unique=True) if a not in done]
        evaluator.evaluate(initial[: cfg.n_init - len(archive)])
        archive = evaluator.archive()
    # The log scores a FoM with alpha_norm frozen at the initial sample's, so that its hypervolume and
    # best-so-far are comparable across iterations; the search itself uses the current archive's.
    initial = archive.iloc[: cfg.n_init]
    log_norm = _archive_alpha_norm(initial, specs)
    if bounds is None:
        _, F0, ok0, _ = measured_scores(initial, specs, cons, cfg.alpha, log_norm)
        bounds = Bounds.of(F0[ok0])

    def log(iteration: int, picks: Sequence[Arch], fit_s: float, search_s: float) -> None:
        _, F, ok, objs = measured_scores(archive, specs, cons, cfg.alpha, log_norm)
        row: dict[str, Any] = {
            "iteration": iteration,
            "n_evaluated": len(archive),
            "hypervolume": hypervolume(F[pareto_front(F, ok)], bounds),
        }
        for j, obj in enumerate(objs):
            best = np.min(F[ok, j]) if ok.any() else np.nan
            row[f"best_{obj.name}"] = obj.sign * best
        row.update(fit_s=round(fit_s, 3), search_s=round(search_s, 3), picks=";".join(map(str, picks)))
        log_rows.append(row)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(log_rows).to_csv(log_file, index=False)
        if progress is not None:
            progress(row)

    if not log_rows:
        log(0, [], 0.0, 0.0)
    while len(archive) < cfg.budget:
        iteration = int(log_rows[-1]["iteration"]) + 1 if log_rows else 1
        step_seed = cfg.seed + len(archive)
        measured = archive.dropna(subset=targets)
        if measured.empty:
            raise TableError("every evaluation in the archive failed; nothing to fit a surrogate on")
        start = time.perf_counter()
        surrogate = fit(measured.reset_index(drop=True), targets, step_seed)
        fit_s = time.perf_counter() - start
        context = ObjectiveContext(surrogate=surrogate, table=measured, alpha=cfg.alpha)
        predicted = make_objectives(specs, context)
        predicted_cons = [make_constraint(c, context) for c in cons]
        archs, F, ok, _ = measured_scores(archive, specs, cons, cfg.alpha)
        seeds = [archs[i] for i in pareto_front(F, ok)]
        start = time.perf_counter()
        result = search(
            predicted,
            constraints=predicted_cons,
            strategy=cfg.strategy,
            config=replace(cfg.search, seed=step_seed),
            initial=seeds,
        )
        search_s = time.perf_counter() - start
        want = min(cfg.k, cfg.budget - len(archive))
        picks = spread_picks(result, want, exclude=set(archs))
        if not picks:
            break
        evaluator.evaluate(picks)
        archive = evaluator.archive()
        log(iteration, picks, fit_s, search_s)

    _, F, ok, _ = measured_scores(archive, specs, cons, cfg.alpha)
    front = archive.iloc[pareto_front(F, ok)].reset_index(drop=True)
    return LoopResult(archive, pd.DataFrame(log_rows), front)
