"""The one-call search: from objective names, a surrogate and tables to a front (``flatnas-bench search``).

This is the composition root of the search layer: it loads the surrogate (the bundled one by default)
and benchmark tables, builds the objectives and constraints by name (:mod:`flatnas_bench.search.objectives`)
and runs the engine (:mod:`flatnas_bench.search.engine`), comparing with the exhaustive front.

>>> r = run_search(["params", "flops:max"], surrogate=None, max_params=0.5)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import SearchConfig, exhaustive, search
from flatnas_bench.search.fom import DEFAULT_ALPHA
from flatnas_bench.search.objectives import (
    DEFAULT_FOM_ACC,
    DEFAULT_FOM_R,
    LIVE_CONSTRAINT,
    default_sense,
    make_constraint,
    make_objectives,
)
from flatnas_bench.search.result import SearchResult, hypervolume_ratio
from flatnas_bench.tables.bundled import bundled_surrogate_dir
from flatnas_bench.tables.readers import load_table
from surrogates import load_surrogate


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


__all__ = ["default_objectives", "run_search"]
