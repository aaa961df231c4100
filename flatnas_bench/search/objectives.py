"""Named search objectives: what the search maximises or minimises, resolved from a name.

An :class:`Objective` is a plain callable over a list of archs that returns one float per arch, plus a
sense (``"max"`` or ``"min"``) and, where it has one, a standard deviation. Search, the FlatNAS loop and
the benchmarks only ever see these callables, so the same code runs on a surrogate, on a benchmark table
used as a zero-cost oracle, or on exact costs.

A name resolves, in this order, to

* a registered objective (:func:`list_objectives`): ``params`` (M), ``flops`` (M MACs), and ``fom``, the
  FlatNAS figure of merit ``alpha * Err + alpha_norm * (1 - alpha) * R`` (minimised; defined in
  :mod:`flatnas_bench.search.fom`);
* a target of the surrogate in the :class:`ObjectiveContext` (predicted mean, std alongside);
* a metric of the context's table, e.g. ``pixel3_ms`` from a joined ``nb201_latency_help.csv``.

Surrogate targets and table metrics are named by the grammar of :mod:`flatnas_bench.core.metric_names`:
``val_acc`` names ``cifar10_val_acc_proxy``, an ambiguous or unknown name is a one-line error listing the
candidates.
Each registered objective declares whether it is exact (``params``, ``flops``, ``live_routes``) or
measured, and which measured quantities it reads (``fom``: ``acc`` and ``r``), so the FlatNAS loop knows
what to learn from :func:`measured_quantities` alone.

A spec is ``name``, ``name:max`` / ``name:min`` to force the sense, or ``name(key=value,...)`` to pass
options to a registered factory. Without a suffix, names holding ``acc`` are maximised, others minimised.

>>> from flatnas_bench.nb201.space import Arch
>>> obj = make_objective("params")
>>> obj.sense, round(float(obj([Arch((3, 3, 3, 3, 3, 3))])[0]), 3)
('min', 1.532)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.metric_names import higher_is_better
from flatnas_bench.core.registry import Registry
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search import fom as flatnas_fom
from flatnas_bench.search.context import ArchFunc, ObjectiveContext

Sense = Literal["max", "min"]

DEFAULT_FOM_ACC = "val_acc"  # accuracy column / target (%) whose error enters the FoM
DEFAULT_FOM_R = "flatness_r"  # flatness R(sigma, M) column / target (accuracy points)
# Every cell with at least one live input-to-output route: the default constraint of search and loop.
LIVE_CONSTRAINT = "live_routes>=1"


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


# --- the registry -----------------------------------------------------------------------------------

Factory = Callable[..., Objective]


@dataclass(frozen=True)
class Registered:
    """A registered objective: its factory, one-line description, whether its values are exact (computed
    from the arch: costs, routes) or measured (read from a surrogate or a table, so the FlatNAS loop must
    learn them), and the measured quantities it reads: option name -> default quantity name."""

    factory: Factory
    description: str
    exact: bool
    reads: Mapping[str, str]

    def quantities(self, options: Mapping[str, str]) -> list[str]:
        """The measured quantities this objective reads under ``options``."""
        return [options.get(option, default) for option, default in self.reads.items()]


OBJECTIVES: Registry[Registered] = Registry("objective")


def register_objective(
    name: str, description: str = "", *, exact: bool, reads: Mapping[str, str] | None = None
) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(context, **options) -> Objective`` under ``name``, declaring whether
    it is exact and which measured quantities it reads (see :class:`Registered`)."""

    def decorate(factory: Factory) -> Factory:
        text = description or (factory.__doc__ or "").strip().splitlines()[0]
        OBJECTIVES.add(name, Registered(factory, text, exact, dict(reads or {})))
        return factory

    return decorate


def list_objectives(context: ObjectiveContext | None = None) -> list[str]:
    """Every name :func:`make_objective` accepts: registered ones, then surrogate targets, then columns."""
    names = OBJECTIVES.names()
    if context is not None:
        names += [t for t in context.targets if t not in names]
        names += [c for c in context.columns if c not in names]
    return names


def describe_objectives() -> dict[str, str]:
    """Registered objective names and their one-line descriptions."""
    return {name: OBJECTIVES.get(name).description for name in OBJECTIVES}


def registered(name: str) -> Registered | None:
    """The registry entry of ``name``, or None for names read from a surrogate or table."""
    return OBJECTIVES.get(name) if name in OBJECTIVES else None


def measured_quantities(spec: str) -> list[str]:
    """The measured quantities an objective or constraint spec reads (what the FlatNAS loop's surrogate
    must predict): a registered objective's declared reads, else the name itself.

    >>> measured_quantities("fom(acc=test_acc)"), measured_quantities("params"), measured_quantities("mce")
    (['test_acc', 'flatness_r'], [], ['mce'])
    """
    name, options, _ = parse_spec(split_constraint(spec)[0] if _CONSTRAINT.match(spec) else spec)
    entry = registered(name)
    return [name] if entry is None else entry.quantities(options)


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
    """Accuracies (and the corruption-accuracy ratios and residual, ``corr_rel_*`` included) are
    maximised; everything else (errors, costs, latencies, R, FoM) minimised."""
    return "max" if higher_is_better(name) else "min"


def make_objective(spec: str | Objective, context: ObjectiveContext | None = None) -> Objective:
    """Resolve an objective spec against ``context``; unknown names raise :class:`ConfigError`.

    >>> make_objective("flops:max").sense
    'max'
    """
    if isinstance(spec, Objective):
        return spec
    context = context or ObjectiveContext()
    name, options, sense = parse_spec(spec)
    if name in OBJECTIVES:
        try:
            objective = OBJECTIVES.get(name).factory(context, **options)
        except TypeError:
            raise ConfigError(f"objective {name!r} got unknown options {sorted(options)}") from None
    elif options:
        raise ConfigError(f"objective {name!r} takes no options (only registered objectives do)")
    elif context.find(name) is None:
        choices = ", ".join(list_objectives(context))
        raise ConfigError(f"unknown objective {name!r}; choose from: {choices}")
    else:
        kind, full = context.find(name)  # type: ignore[misc]
        objective = (
            _surrogate_objective(context, full) if kind == "target" else _column_objective(context, full)
        )
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
    params_m, flops_m = cost_arrays()
    column = params_m if kind == "params_m" else flops_m
    return column[[a.ordinal for a in archs]].astype(float)


@register_objective("params", "exact parameter count (M, CIFAR-10 head), minimised", exact=True)
def _params(context: ObjectiveContext) -> Objective:
    return Objective("params", "min", lambda archs: cost_values(archs, "params_m"), unit="M")


@register_objective(
    "flops", "exact multiply-accumulates (M MACs, the benchmark's 'flops'), minimised", exact=True
)
def _flops(context: ObjectiveContext) -> Objective:
    return Objective("flops", "min", lambda archs: cost_values(archs, "flops_m"), unit="M MACs")


@register_objective(
    "live_routes",
    "input-to-output routes without 'none' (0..4), maximised; '-c live_routes>=1' drops dead cells",
    exact=True,
)
def _live_routes(context: ObjectiveContext) -> Objective:
    return Objective("live_routes", "max", lambda archs: live_route_counts(archs).astype(float))


# --- the FlatNAS figure of merit --------------------------------------------------------------------


@register_objective(
    "fom",
    "FlatNAS FoM = alpha*Err + alpha_norm*(1-alpha)*R, minimised",
    exact=False,
    reads={"acc": DEFAULT_FOM_ACC, "r": DEFAULT_FOM_R},
)
def _fom(
    context: ObjectiveContext,
    alpha: float | str | None = None,
    acc: str = DEFAULT_FOM_ACC,
    r: str = DEFAULT_FOM_R,
    alpha_norm: float | str | None = None,
) -> Objective:
    """FlatNAS FoM from an accuracy (%) and a flatness R, read from the surrogate or else the table.

    ``alpha_norm`` = mean(Err) / mean(R) over the table (the archive) when it holds both metrics, else over
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
    try:
        (acc_name, acc_of), (r_name, r_of) = context.reader(acc), context.reader(r)
    except ConfigError as exc:
        raise ConfigError(f"fom needs {acc!r} and {r!r}: {exc}") from None
    if fixed_norm is None:
        table = context.table
        if table is not None and table.has(acc) and table.has(r):
            fixed_norm = flatnas_fom.alpha_norm(100.0 - table.values(acc), table.values(r))
        else:
            space = list(canonical_archs())
            fixed_norm = flatnas_fom.alpha_norm(100.0 - acc_of(space), r_of(space))
    norm = fixed_norm

    def func(archs: Sequence[Arch]) -> np.ndarray:
        return flatnas_fom.fom(100.0 - acc_of(archs), r_of(archs), weight, norm)

    return Objective(
        "fom",
        "min",
        func,
        unit="%",
        description=f"alpha={weight:g}, alpha_norm={norm:.4g}, Err=100-{acc_name}, R={r_name}",
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
