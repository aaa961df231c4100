"""NSGA-II on the evaluator itself, without a surrogate: each generation's new archs are evaluated and
told back (:class:`~flatnas_bench.search.engine.Search` driven by ask/tell). The first population is the
loop's initial sample, topped up with random archs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import Search, SearchConfig
from flatnas_bench.search.objectives import make_objectives
from flatnas_bench.search.strategy import LoopState, Strategy, register_strategy


@register_strategy
@dataclass
class DirectNSGA2(Strategy):
    """pymoo NSGA-II (population ``config.pop_size``) whose every evaluation is a real one. Archs outside
    the loop's pool (dead cells, unless allowed) are never evaluated: they score worst in every
    objective."""

    name: ClassVar[str] = "nsga2"
    n_init: ClassVar[int] = 20
    k: ClassVar[int] = 20
    config: SearchConfig = field(default_factory=lambda: SearchConfig(pop_size=20, n_gen=10**6))

    def proposals(self, state: LoopState) -> Iterator[list[Arch]]:
        initial, _ = state.initial()
        # the objects give only the senses: every value is told from the archive
        objectives = make_objectives(state.specs, ObjectiveContext(table=state.archive, alpha=state.alpha))
        signs = np.array([o.sign for o in objectives])
        search = Search(objectives, config=replace(self.config, seed=state.seed), initial=initial)
        while True:
            asked = search.ask()
            allowed = [a for a in dict.fromkeys(asked) if state.allowed(a)]
            if allowed:
                yield allowed
            F = np.full((len(asked), len(signs)), np.inf)
            keep = [i for i, a in enumerate(asked) if state.allowed(a)]
            if keep:
                F[keep] = state.values([asked[i] for i in keep])
            search.tell(asked, F * signs)
