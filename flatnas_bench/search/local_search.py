"""Local search with restarts (as in White et al., 2021, "Local search is state of the art for neural
architecture search benchmarks"): from the best arch of the initial sample, evaluate every one-edge
neighbour and move to the best if it improves; when no neighbour improves, restart from a random arch
not seen yet.

The climb keeps the archs met since its start; its centre is the best of them not yet expanded, so one
objective gives best-improvement hill climbing. With several objectives the centre is a not yet expanded
member of the climb's Pareto front (Pareto local search), and the climb is stuck when every front member
is expanded. Neighbours are canonical, allowed, and proposed in a seeded random order; those evaluated
before cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.fronts import pareto_front
from flatnas_bench.search.strategy import LoopState, Strategy, best_first, register_strategy


def canonical_neighbours(arch: Arch) -> list[Arch]:
    """The distinct canonical archs one edge's op away from ``arch`` (itself excluded), in ordinal order."""
    centre = arch.canonical()
    return sorted({n.canonical() for n in arch.neighbours()} - {centre})


@register_strategy
@dataclass
class LocalSearch(Strategy):
    """Best-improvement local search over one-edge neighbours, restarting when stuck."""

    name: ClassVar[str] = "local"
    n_init: ClassVar[int] = 10
    k: ClassVar[int] = 1

    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        initial, F = state.initial()
        seen = set(initial)
        climb = [initial[int(best_first(F)[0])]]
        candidates = state.candidates()
        restarts = (candidates[int(i)] for i in state.rng(1).permutation(len(candidates)))
        while True:
            expanded: set[Arch] = set()
            while True:
                front = [climb[i] for i in pareto_front(state.values(climb))]
                todo = [a for a in front if a not in expanded]
                if not todo:
                    break
                centre = todo[0]
                expanded.add(centre)
                neighbours = [a for a in canonical_neighbours(centre) if state.allowed(a)]
                order = state.rng(2, centre.ordinal).permutation(len(neighbours))
                batch = [neighbours[int(i)] for i in order]
                yield batch
                climb += [a for a in batch if a not in set(climb)]
                seen.update(batch)
            start = next((a for a in restarts if a not in seen), None)
            if start is None:
                return
            yield [start]
            seen.add(start)
            climb = [start]
