"""Named search objectives: what the search maximises or minimises, resolved from a name.

An :class:`Objective` is a plain callable over a list of archs that returns one float per arch, plus a
sense (``"max"`` or ``"min"``) and, where it has one, a standard deviation. Search, the FlatNAS loop and
the benchmarks only ever see these callables, so the same code runs on a surrogate, on a benchmark table
used as a zero-cost oracle, or on exact costs.

A name resolves, in this order, to

* a registered objective (:func:`list_objectives`): ``params`` (M), ``flops`` (M MACs), and ``fom``, the
  FlatNAS figure of merit ``alpha * Err + alpha_norm * (1 - alpha) * R`` (minimised);
* a target of the surrogate in the :class:`ObjectiveContext` (predicted mean, std alongside);
* a column of the context's table, e.g. ``pixel3_ms`` from a joined ``nb201_latency_help.csv``.

A spec is ``name``, ``name:max`` / ``name:min`` to force the sense, or ``name(key=value,...)`` to pass
options to a registered factory. Without a suffix, names holding ``acc`` are maximised, others minimised.

>>> from flatnas_bench.space import Arch
>>> obj = make_objective("params")
>>> obj.sense, round(float(obj([Arch((3, 3, 3, 3, 3, 3))])[0]), 3)
('min', 1.532)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flatnas_bench.errors import ConfigError
from flatnas_bench.space import Arch

if TYPE_CHECKING:
    import pandas as pd

Sense = Literal["max", "min"]
ArchFunc = Callable[[Sequence[Arch]], np.ndarray]

DEFAULT_ALPHA = 0.5  # FoM weight of the error term (the paper's best trade-off)
DEFAULT_FOM_ACC = "val_acc"  # accuracy column / target (%) whose error enters the FoM
DEFAULT_FOM_R = "flatness_r"  # flatness R(sigma, M) column / target (accuracy points)


@dataclass(frozen=True, eq=False)
class Objective:
    """One search objective: ``obj(archs)`` gives raw values in the objective's own unit.

    ``sense`` says which way is better; :meth:`minimised` flips maximised objectives so that pymoo, which
    minimises, sees every objective the same way. ``std`` (optional) gives the surrogate's uncertainty in
    the same unit.
    """

    name: str
    sense: Sense
    func: ArchFunc
    unit: str = ""
    std: ArchFunc | None = None
    description: str = ""

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        values = np.asarray(self.func(list(archs)), dtype=float)
        if values.shape != (len(archs),):
            raise ConfigError(f"objective {self.name!r} returned shape {values.shape} for {len(archs)} archs")
        return values

    @property
    def sign(self) -> float:
        """+1 for minimised objectives, -1 for maximised ones (pymoo minimises ``sign * value``)."""
        return 1.0 if self.sense == "min" else -1.0

    def minimised(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.sign * self(archs)

    @property
    def label(self) -> str:
        arrow = "max" if self.sense == "max" else "min"
        return f"{self.name} ({self.unit}, {arrow})" if self.unit else f"{self.name} ({arrow})"


@dataclass
class ObjectiveContext:
    """What objectives may read: a surrogate (anything with ``.predict(archs)`` and ``.targets``), a table
    (a :class:`~flatnas_bench.table.BenchTable`, or a DataFrame with an ``arch`` column) and FoM settings.

    ``alpha_norm`` of ``None`` means "compute it": from the table when it has the FoM's columns (the
    archive, as the method prescribes), otherwise from the surrogate's predictions over every canonical
    arch (the scored set). Predictions are memoised per arch so several objectives share one call; with
    ``prefetch`` the first call predicts the whole canonical space at once, because an XGBoost call has
    a fixed cost that can exceed that of predicting all 6,466 classes in one batch.
    """

    surrogate: Any = None
    table: Any = None
    alpha: float = DEFAULT_ALPHA
    alpha_norm: float | None = None
    prefetch: bool = True  # predict all 6,466 canonical archs in the first surrogate call
    _cache: dict[Arch, dict[str, float]] = field(default_factory=dict, repr=False)
    _frames: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, repr=False)

    @property
    def targets(self) -> list[str]:
        return list(getattr(self.surrogate, "targets", []) or [])

    @property
    def columns(self) -> list[str]:
        frame = self.table_frame()
        return [] if frame is None else [c for c in frame.columns if c != "arch"]

    def predict(self, archs: Sequence[Arch], column: str) -> np.ndarray:
        """Surrogate column (``target`` or ``target_std``) for ``archs``; each arch predicted once."""
        missing = list(dict.fromkeys(a for a in archs if a not in self._cache))
        if missing and self.prefetch and not self._cache:
            from flatnas_bench.space import canonical_archs

            missing = list(dict.fromkeys([*missing, *canonical_archs()]))
        if missing:
            frame = self.surrogate.predict(missing)
            cols = [c for c in frame.columns if c != "arch"]
            for arch, row in zip(missing, frame[cols].to_numpy(dtype=float), strict=True):
                self._cache[arch] = dict(zip(cols, row, strict=True))
        return np.array([self._cache[a].get(column, np.nan) for a in archs], dtype=float)

    def table_frame(self) -> pd.DataFrame | None:
        """The table as a DataFrame indexed by NB201 arch string (see :func:`table_to_frame`)."""
        if self.table is None:
            return None
        if self._frames is None:
            own = table_to_frame(self.table)
            canonical = [str(Arch.from_str(s).canonical()) for s in own.index]
            self._frames = (own, own.groupby(canonical, sort=False).mean())
        return self._frames[0]

    def column(self, archs: Sequence[Arch], name: str) -> np.ndarray:
        """Table column ``name`` for ``archs``: the arch's own row, else the mean over its isomorphism
        class's rows (BenchTable's lookup rule), NaN where the table has neither."""
        own = self.table_frame()
        values = own[name].reindex([str(a) for a in archs]).to_numpy(dtype=float)
        absent = ~np.isin([str(a) for a in archs], own.index)
        if absent.any():
            by_class = self._frames[1][name]
            keys = [str(a.canonical()) for a, miss in zip(archs, absent, strict=True) if miss]
            values[absent] = by_class.reindex(keys).to_numpy(dtype=float)
        return values


def table_to_frame(table: Any) -> pd.DataFrame:
    """A table as one row per arch, indexed by the arch's NB201 string, numeric columns averaged over
    repeated rows (seeds). Accepts a DataFrame with an ``arch`` column or a
    :class:`~flatnas_bench.table.BenchTable` (anything with ``.to_frame()``)."""
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        frame = table
    elif hasattr(table, "to_frame"):
        frame = table.to_frame()
    else:
        raise ConfigError(f"cannot read a table from {type(table).__name__}")
    if "arch" not in frame.columns:
        frame = frame.reset_index()
    if "arch" not in frame.columns:
        raise ConfigError("the table has no 'arch' column")
    numeric = [c for c in frame.select_dtypes(include="number").columns if c != "index"]
    out = frame[["arch", *numeric]].copy()
    out["arch"] = out["arch"].map(lambda s: str(s if isinstance(s, Arch) else Arch.from_str(str(s))))
    return out.groupby("arch", sort=False).mean()


# --- the registry -----------------------------------------------------------------------------------

Factory = Callable[..., Objective]
_REGISTRY: dict[str, tuple[Factory, str]] = {}


def register_objective(name: str, description: str = "") -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(context, **options) -> Objective`` under ``name``."""

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ConfigError(f"objective {name!r} is already registered")
        _REGISTRY[name] = (factory, description or (factory.__doc__ or "").strip().splitlines()[0])
        return factory

    return decorate


def list_objectives(context: ObjectiveContext | None = None) -> list[str]:
    """Every name :func:`make_objective` accepts: registered ones, then surrogate targets, then columns."""
    names = list(_REGISTRY)
    if context is not None:
        names += [t for t in context.targets if t not in names]
        names += [c for c in context.columns if c not in names]
    return names


def describe_objectives() -> dict[str, str]:
    """Registered objective names and their one-line descriptions."""
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


_SPEC = re.compile(
    r"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*(?:\((?P<opts>[^)]*)\))?\s*(?::(?P<sense>max|min))?\s*$"
)


def parse_spec(spec: str) -> tuple[str, dict[str, str], Sense | None]:
    """Split ``'fom(alpha=0.3):min'`` into ``('fom', {'alpha': '0.3'}, 'min')``."""
    match = _SPEC.match(spec)
    if not match:
        raise ConfigError(
            f"cannot parse objective {spec!r}; expected NAME, NAME:max|min or NAME(key=value,...)"
        )
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (match["opts"] or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"objective option {part!r} in {spec!r} is not key=value")
        options[key.strip()] = value.strip()
    return match["name"], options, match["sense"]  # type: ignore[return-value]


def default_sense(name: str) -> Sense:
    """Accuracies are maximised, everything else (errors, costs, latencies, R, FoM) minimised."""
    return "max" if "acc" in name.lower() else "min"


def make_objective(spec: str | Objective, context: ObjectiveContext | None = None) -> Objective:
    """Resolve an objective spec against ``context``; unknown names raise :class:`ConfigError`.

    >>> make_objective("flops:max").sense
    'max'
    """
    if isinstance(spec, Objective):
        return spec
    context = context or ObjectiveContext()
    name, options, sense = parse_spec(spec)
    if name in _REGISTRY:
        objective = _REGISTRY[name][0](context, **options)
    elif options:
        raise ConfigError(f"objective {name!r} takes no options (only registered objectives do)")
    elif name in context.targets:
        objective = _surrogate_objective(context, name)
    elif name in context.columns:
        objective = _column_objective(context, name)
    else:
        choices = ", ".join(list_objectives(context))
        raise ConfigError(f"unknown objective {name!r}; choose from: {choices}")
    if sense and sense != objective.sense:
        objective = Objective(objective.name, sense, objective.func, objective.unit, objective.std)
    return objective


def make_objectives(
    specs: Sequence[str | Objective], context: ObjectiveContext | None = None
) -> list[Objective]:
    """Resolve several specs against one shared context; names must be distinct."""
    context = context or ObjectiveContext()
    objectives = [make_objective(s, context) for s in specs]
    names = [o.name for o in objectives]
    if not objectives:
        raise ConfigError("at least one objective is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives repeat a name: {', '.join(names)}")
    return objectives


def _surrogate_objective(context: ObjectiveContext, target: str) -> Objective:
    return Objective(
        target,
        default_sense(target),
        lambda archs: context.predict(archs, target),
        unit="pred",
        std=lambda archs: context.predict(archs, f"{target}_std"),
        description=f"surrogate prediction of {target}",
    )


def _column_objective(context: ObjectiveContext, column: str) -> Objective:
    return Objective(column, default_sense(column), lambda archs: context.column(archs, column), unit="table")


# --- exact costs ------------------------------------------------------------------------------------


def cost_values(archs: Sequence[Arch], kind: Literal["params_m", "flops_m"]) -> np.ndarray:
    """Exact CIFAR-10 params (M) or MACs (M) of the TinyNetwork (C=16, N=5) for ``archs``."""
    from flatnas_bench.costs import cost_arrays

    params_m, flops_m = cost_arrays()
    column = params_m if kind == "params_m" else flops_m
    return column[[a.ordinal for a in archs]].astype(float)


@register_objective("params", "exact parameter count (M, CIFAR-10 head), minimised")
def _params(context: ObjectiveContext) -> Objective:
    return Objective("params", "min", lambda archs: cost_values(archs, "params_m"), unit="M")


@register_objective("flops", "exact multiply-accumulates (M MACs, the benchmark's 'flops'), minimised")
def _flops(context: ObjectiveContext) -> Objective:
    return Objective("flops", "min", lambda archs: cost_values(archs, "flops_m"), unit="M MACs")


@register_objective(
    "live_routes",
    "input-to-output routes without 'none' (0..4), maximised; '-c live_routes>=1' drops dead cells",
)
def _live_routes(context: ObjectiveContext) -> Objective:
    from flatnas_bench.encodings import live_route_counts

    return Objective("live_routes", "max", lambda archs: live_route_counts(archs).astype(float))


# --- the FlatNAS figure of merit --------------------------------------------------------------------


def fom_values(err: np.ndarray, r: np.ndarray, alpha: float, alpha_norm: float) -> np.ndarray:
    """``alpha * Err + alpha_norm * (1 - alpha) * R``; Err in %, R in accuracy points (smaller = better).

    >>> fom_values(np.array([10.0]), np.array([2.0]), 0.5, 5.0).tolist()
    [10.0]
    """
    return alpha * np.asarray(err, float) + alpha_norm * (1.0 - alpha) * np.asarray(r, float)


def alpha_norm_of(err: np.ndarray, r: np.ndarray) -> float:
    """``mean(Err) / mean(R)`` over a scored set (NaNs ignored); 1.0 when R's mean is not positive."""
    mean_r = float(np.nanmean(r)) if np.size(r) else float("nan")
    if not np.isfinite(mean_r) or mean_r <= 0:
        return 1.0
    return float(np.nanmean(err)) / mean_r


def find_quantity(context: ObjectiveContext, name: str, *, table_only: bool = False) -> str | None:
    """The surrogate target or table column holding ``name``: itself, else the one name that carries it
    between underscores, e.g. ``val_acc`` -> ``cifar10_val_acc_proxy`` (a result table's metric name)."""
    names = context.columns if table_only else context.targets + context.columns
    if name in names:
        return name
    pattern = re.compile(rf"(^|_){re.escape(name)}(_|$)")
    found = list(dict.fromkeys(n for n in names if pattern.search(n) and not n.endswith("_std")))
    return found[0] if len(found) == 1 else None


@register_objective("fom", "FlatNAS FoM = alpha*Err + alpha_norm*(1-alpha)*R, minimised")
def _fom(
    context: ObjectiveContext,
    alpha: float | str | None = None,
    acc: str = DEFAULT_FOM_ACC,
    r: str = DEFAULT_FOM_R,
    alpha_norm: float | str | None = None,
) -> Objective:
    """FlatNAS FoM from an accuracy (%) and a flatness R, read from the surrogate or else the table.

    ``alpha_norm`` = mean(Err) / mean(R) over the table (the archive) when it holds both columns, else over
    the surrogate's predictions for every canonical arch; pass it explicitly to freeze it.
    """
    try:
        weight = float(alpha if alpha is not None else context.alpha)
        fixed_norm = alpha_norm if alpha_norm is not None else context.alpha_norm
        fixed_norm = None if fixed_norm is None else float(fixed_norm)
    except ValueError as exc:
        raise ConfigError(f"fom options must be numbers: {exc}") from None
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"fom alpha must lie in [0, 1], got {weight}")

    def source(name: str | None) -> ArchFunc:
        if name in context.targets:
            return lambda archs: context.predict(archs, name)
        if name in context.columns:
            return lambda archs: context.column(archs, name)
        have = ", ".join(context.targets + context.columns) or "nothing"
        raise ConfigError(f"fom needs {acc!r} and {r!r} from the surrogate or table; they offer: {have}")

    acc_of, r_of = source(find_quantity(context, acc)), source(find_quantity(context, r))
    if fixed_norm is None:
        frame = context.table_frame()
        acc_col, r_col = (
            find_quantity(context, acc, table_only=True),
            find_quantity(context, r, table_only=True),
        )
        if acc_col is not None and r_col is not None:
            fixed_norm = alpha_norm_of(100.0 - frame[acc_col].to_numpy(float), frame[r_col].to_numpy(float))
        else:
            from flatnas_bench.space import canonical_archs

            space = list(canonical_archs())
            fixed_norm = alpha_norm_of(100.0 - acc_of(space), r_of(space))
    norm = fixed_norm

    def func(archs: Sequence[Arch]) -> np.ndarray:
        return fom_values(100.0 - acc_of(archs), r_of(archs), weight, norm)

    return Objective(
        "fom",
        "min",
        func,
        unit="%",
        description=f"alpha={weight:g}, alpha_norm={norm:.4g}, Err=100-{acc}, R={r}",
    )


# --- constraints ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """``objective <= bound`` (or ``>=``); a search keeps only archs that satisfy every constraint."""

    objective: Objective
    bound: float
    upper: bool = True

    def violation(self, archs: Sequence[Arch]) -> np.ndarray:
        """pymoo's ``G``: positive where violated, by how much (in the objective's unit)."""
        values = self.objective(archs)
        return values - self.bound if self.upper else self.bound - values

    def __str__(self) -> str:
        return f"{self.objective.name}{'<=' if self.upper else '>='}{self.bound:g}"


_CONSTRAINT = re.compile(r"^\s*(?P<spec>.+?)\s*(?P<op><=|>=)\s*(?P<bound>[-+0-9.eE]+)\s*$")


def split_constraint(spec: str) -> tuple[str, str, str]:
    """``'params<=0.8'`` -> ``('params', '<=', '0.8')``; anything else raises :class:`ConfigError`."""
    match = _CONSTRAINT.match(spec)
    if not match:
        raise ConfigError(f"cannot parse constraint {spec!r}; expected NAME<=VALUE or NAME>=VALUE")
    return match["spec"], match["op"], match["bound"]


def make_constraint(spec: str, context: ObjectiveContext | None = None) -> Constraint:
    """Parse ``'params<=0.8'`` or ``'pixel3_ms<=12'`` into a :class:`Constraint`."""
    name, op, bound_text = split_constraint(spec)
    try:
        bound = float(bound_text)
    except ValueError:
        raise ConfigError(f"constraint {spec!r} has a non-numeric bound") from None
    return Constraint(make_objective(name, context), bound, upper=op == "<=")
