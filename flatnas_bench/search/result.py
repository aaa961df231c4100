"""A search's result: every scored arch, its Pareto front, the tables, files and plot users read.

:class:`SearchResult` holds minimised values (``F``) and constraint violations (``G``) of every scored
canonical arch; :attr:`SearchResult.front_table` gives the front in each objective's own unit and sense,
:meth:`SearchResult.save` writes ``pareto.csv``, ``pareto.json``, ``scored.csv`` and ``front.png``, and
:func:`hypervolume_ratio` compares a front with the exhaustive one (:mod:`flatnas_bench.search.fronts`).

>>> from flatnas_bench.search.engine import exhaustive
>>> from flatnas_bench.search.objectives import make_objectives
>>> result = exhaustive(make_objectives(["params", "flops:max"]))
>>> list(result.front_table.columns), hypervolume_ratio(result, result)
(['arch', 'params', 'flops', 'feasible'], 1.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flatnas_bench.nb201.space import Arch
from flatnas_bench.search.fronts import Bounds, hypervolume, pareto_front
from flatnas_bench.search.objectives import Constraint, Objective, cost_values

if TYPE_CHECKING:
    from flatnas_bench.search.engine import SearchConfig


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


def hypervolume_ratio(result: SearchResult, reference: SearchResult) -> float:
    """``result``'s front hypervolume over ``reference``'s (an exhaustive result), both normalised by the
    reference's feasible min/max with reference point 1.1."""
    bounds = Bounds.of(reference.F[reference.feasible])
    return result.hypervolume(bounds) / reference.hypervolume(bounds)


__all__ = ["SearchResult", "hypervolume_ratio"]
