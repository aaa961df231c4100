"""Random search: uniformly random canonical archs, each at most once (the baseline every NAS paper
plots first)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.strategy import LoopState, Strategy, register_strategy


@register_strategy
@dataclass
class RandomSearch(Strategy):
    """Walks one seeded permutation of the allowed archs, proposing the next ``k`` not yet evaluated.

    >>> RandomSearch().name
    'random'
    """

    name: ClassVar[str] = "random"
    n_init: ClassVar[int] = 10
    k: ClassVar[int] = 10

    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        candidates = state.candidates()
        order = [candidates[int(i)] for i in state.rng(0).permutation(len(candidates))]
        position = 0
        while True:
            evaluated, batch = state.evaluated, []
            while position < len(order) and len(batch) < state.k:
                if order[position] not in evaluated:
                    batch.append(order[position])
                position += 1
            if not batch:
                return
            yield batch
