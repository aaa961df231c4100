"""What the loop asks of a search strategy: the next archs to evaluate, given everything measured so far.

:func:`~flatnas_bench.search.loop.run_loop` owns the lifecycle (the initial sample, the budget of distinct
canonical archs, evaluation, the log, resuming); a :class:`Strategy` supplies only
:meth:`Strategy.proposals`, a generator of batches. The loop evaluates the archs of each batch that are
not yet in the archive (at most the budget left), then resumes the generator, which reads the measured
values through the :class:`LoopState` it was given. A batch wholly in the archive costs nothing.

A resumed loop starts the generator afresh on the stored archive: every batch it proposed before is
already measured, so it replays (without evaluations) to the state it stopped in, as long as each decision
depends only on the archive and the seed. That is the one rule for a strategy.

Strategies register by name (:func:`register_strategy`); ``loop --strategy`` offers
:func:`list_strategies`. Each names its own default initial sample and batch size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from flatnas_bench.core.registry import Registry
from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search.fom import DEFAULT_ALPHA
from flatnas_bench.search.fronts import pareto_front
from flatnas_bench.tables.table import BenchTable

ScoreFn = Callable[[BenchTable], tuple[list[Arch], np.ndarray, np.ndarray]]


@dataclass
class LoopState:
    """What a strategy sees: the objective and constraint specs, the archive metrics they read
        (``targets``, full names), the archs it may propose (``pool``; None: every
        canonical arch), the seed, the batch size ``k``, and the evaluator's archive so far (evaluation
        order), which the loop replaces after every evaluation; its first ``n_init`` archs are the initial
    random sample, and the loop stops at ``budget`` archs. ``score(archive)`` gives (archs, F minimised,
        feasible) of the measured values; failed or infeasible archs score ``inf`` here."""

    specs: list[str]
    constraints: list[str]
    targets: list[str]
    pool: frozenset[Arch] | None
    seed: int
    k: int
    score: ScoreFn
    archive: BenchTable
    n_init: int
    budget: int
    alpha: float = DEFAULT_ALPHA
    _cache: dict[int, tuple[list[Arch], np.ndarray, dict[Arch, int]]] = field(default_factory=dict)

    def _scored(self) -> tuple[list[Arch], np.ndarray, dict[Arch, int]]:
        n = len(self.archive)
        if n not in self._cache:
            archs, F, ok = self.score(self.archive)
            F = np.where(ok[:, None], F, np.inf)
            self._cache.clear()
            self._cache[n] = (archs, F, {a: i for i, a in enumerate(archs)})
        return self._cache[n]

    @property
    def evaluated(self) -> dict[Arch, int]:
        """Each evaluated (canonical) arch and its position in the archive."""
        return self._scored()[2]

    def values(self, archs: Sequence[Arch]) -> np.ndarray:
        """(len(archs), objectives) measured values, minimised; ``inf`` for failed or infeasible archs.
        Every arch must be in the archive."""
        _, F, index = self._scored()
        return F[[index[a.canonical()] for a in archs]]

    def history(self) -> tuple[list[Arch], np.ndarray]:
        """Every evaluated arch in evaluation order and its values (as :meth:`values`)."""
        archs, F, _ = self._scored()
        return archs, F

    def initial(self) -> tuple[list[Arch], np.ndarray]:
        """The initial sample (the archive's first ``n_init`` archs) and its values (as :meth:`values`)."""
        archs, F = self.history()
        return archs[: self.n_init], F[: self.n_init]

    def allowed(self, arch: Arch) -> bool:
        return self.pool is None or arch in self.pool

    def candidates(self) -> list[Arch]:
        """The archs a strategy may propose, in ordinal order (evaluated ones included)."""
        return sorted(self.pool) if self.pool is not None else list(canonical_archs())

    def rng(self, *key: int) -> np.random.Generator:
        """A generator fixed by the loop seed and ``key`` (e.g. the archive length at a decision), so a
        replayed decision draws the same numbers."""
        return np.random.default_rng([self.seed, *key])


def best_first(F: np.ndarray) -> np.ndarray:
    """Row order from best to worst of minimised values ``F`` (n, m): by non-dominated rank, then the
    first objective, then position (one objective: ascending value, ties by position)."""
    F = np.asarray(F, dtype=float)
    if F.shape[1] == 1:
        return np.lexsort((np.arange(len(F)), F[:, 0]))
    rank = np.full(len(F), len(F), dtype=int)
    left = np.flatnonzero(np.all(np.isfinite(F), axis=1))
    level = 0
    while len(left):
        front = left[pareto_front(F[left])]
        rank[front] = level
        left = np.setdiff1d(left, front)
        level += 1
    return np.lexsort((np.arange(len(F)), F[:, 0], rank))


class Strategy(ABC):
    """A search strategy the loop drives: :meth:`proposals` yields batches of canonical archs.

    ``n_init`` and ``k`` are the strategy's defaults for the loop's initial random sample and its
    batch size (the loop's config overrides them).
    """

    name: ClassVar[str]
    n_init: ClassVar[int] = 10
    k: ClassVar[int] = 1

    @abstractmethod
    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        """Batches of archs to evaluate, forever or until the strategy has nothing left to propose."""


# The strategies register from their own modules, in whatever order a caller imports them: the listing
# order is declared here (the order of ``loop --strategy``'s help).
STRATEGIES: Registry[type[Strategy]] = Registry(
    "loop strategy", order=("flatnas", "random", "evolution", "local", "nsga2")
)


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a :class:`Strategy` available by its ``name``."""
    return STRATEGIES.add(cls.name, cls)


def list_strategies() -> list[str]:
    """Registered strategy names (the choices of ``loop --strategy``)."""
    return STRATEGIES.names()


def make_strategy(name: str, **options: Any) -> Strategy:
    """The registered strategy ``name`` built with ``options``; an unknown name is a one-line
    :class:`~flatnas_bench.core.errors.ConfigError` naming the choices."""
    return STRATEGIES.get(name)(**options)
