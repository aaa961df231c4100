"""Regularized evolution (Real et al., 2019, "Regularized evolution for image classifier architecture
search"): a population of the ``population`` most recently evaluated archs; each child is a one-edge
mutation of the best of a random ``sample`` of it (a tournament), and evaluating it retires the oldest
member. Aging, not fitness, removes archs: that is the regularisation.

The population is the archive's last ``population`` archs, so the state lives in the archive and a
resumed run continues exactly. With several objectives the tournament winner is the sample's best by
non-dominated rank, then by the first objective. A child already evaluated is redrawn (the budget counts
distinct canonical archs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.strategy import LoopState, Strategy, best_first, register_strategy

MAX_DRAWS = 200  # tournaments tried for an unseen child before falling back to a random unseen arch


def mutate(parent: Arch, rng: np.random.Generator) -> Arch:
    """``parent`` with one uniformly chosen edge set to a different uniformly chosen op (canonical)."""
    neighbours = parent.neighbours()
    return neighbours[int(rng.integers(len(neighbours)))].canonical()


@register_strategy
@dataclass
class RegularizedEvolution(Strategy):
    """``population`` archs (also the default initial sample), tournaments of ``sample``, one child per
    evaluation (``k`` children per batch when the loop's ``k`` is larger)."""

    name: ClassVar[str] = "evolution"
    n_init: ClassVar[int] = 20
    k: ClassVar[int] = 1
    population: int = 20  # archs alive: the most recently evaluated
    sample: int = 5  # tournament size

    def __post_init__(self) -> None:
        if not 1 <= self.sample <= self.population:
            raise ConfigError(f"need 1 <= sample <= population, got {self.sample}, {self.population}")

    def children(self, state: LoopState) -> list[Arch]:
        """The next batch: ``state.k`` new children of the archive's current population."""
        archs, F = state.history()
        alive = np.arange(max(0, len(archs) - self.population), len(archs))
        rng = state.rng(len(archs))
        seen, batch = set(state.evaluated), []
        while len(batch) < state.k:
            child = None
            for _ in range(MAX_DRAWS):
                entrants = rng.choice(alive, size=min(self.sample, len(alive)), replace=False)
                parent = archs[int(entrants[best_first(F[entrants])[0]])]
                draw = mutate(parent, rng)
                if draw not in seen and state.allowed(draw):
                    child = draw
                    break
            if child is None:
                fresh = [a for a in state.candidates() if a not in seen]
                if not fresh:
                    break
                child = fresh[int(rng.integers(len(fresh)))]
            seen.add(child)
            batch.append(child)
        return batch

    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        while batch := self.children(state):
            yield batch
