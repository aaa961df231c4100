"""Metric names: the grammar ``{dataset}_{column}_{protocol}`` and the resolver of typed names.

**The metric-name grammar** is ``{dataset}_{column}_{protocol}``: ``cifar10_val_acc_proxy`` is the
result-row column ``val_acc`` on CIFAR-10 under protocol ``proxy``; NB201's own names follow it too
(``cifar10_valid_acc_200ep``: dataset ``cifar10_valid``, column ``acc``, fidelity ``200ep``;
``cifar10_params_m`` has no protocol). :class:`MetricName` parses and formats names; the dataset is the
longest known dataset prefix and the column the longest known column after it, so ``flatness_r_std`` is
never taken for ``flatness_r``. A name with no known dataset prefix (``pixel3_ms``) is all column.

**The resolver** :func:`resolve_metric` turns what a user typed into one of the names a table or
surrogate offers. A typed name matches a full name when it is the full name, its column, its
``{dataset}_{column}`` or its ``{column}_{protocol}``; nothing else (no substrings). No match or several
matches raise a one-line :class:`~flatnas_bench.core.errors.TableError` that lists the candidates.

>>> resolve_metric("flatness_r", ["cifar10_flatness_r_std_proxy", "cifar10_flatness_r_proxy"])
'cifar10_flatness_r_proxy'
>>> MetricName.parse("cifar100_test_acc_12ep_1seed")
MetricName(dataset='cifar100', column='test_acc', protocol='12ep_1seed')
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flatnas_bench.core.errors import TableError
from flatnas_bench.core.protocol import list_protocols
from flatnas_bench.core.results import (
    CORR_ACC_RESID,
    CORR_REL,
    CORRUPTION_FAMILIES,
    FAMILY_CORRUPTIONS,
    METRIC_COLUMNS,
    N_SEEDS,
    corr_rel_column,
    label,
)

#: NB201's dataset names and the prefixes metric names give them.
DATASET_PREFIXES: dict[str, str] = {
    "cifar10-valid": "cifar10_valid",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "ImageNet16-120": "imagenet16",
}
#: Columns the grammar knows: the result row's, the per-arch and derived ones, and NB201's own.
KNOWN_COLUMNS: tuple[str, ...] = tuple(
    sorted(
        {
            *METRIC_COLUMNS,
            N_SEEDS,
            CORR_ACC_RESID,
            "acc",
            "valid_acc",
            "train_sec_per_epoch",
            *(corr_rel_column(n) for n in (*FAMILY_CORRUPTIONS, *CORRUPTION_FAMILIES)),
        },
        key=lambda c: (-len(c), c),
    )
)
_FIDELITY_PART = re.compile(r"^\d+ep(?:_\d+seeds?)?$")


def dataset_prefix(dataset: str) -> str:
    """The metric-name prefix of a dataset: ``cifar10-valid`` -> ``cifar10_valid``, ``ImageNet16-120`` ->
    ``imagenet16``, anything else through :func:`label`."""
    return DATASET_PREFIXES.get(dataset) or label(dataset)


_PREFIXES = tuple(sorted(set(DATASET_PREFIXES.values()), key=len, reverse=True))
_PROTOCOLS = tuple(label(name) for name in list_protocols())
_HASHED = re.compile(r"^(?P<name>.+)_[0-9a-f]{8}$")


def is_protocol(text: str) -> bool:
    """Whether ``text`` is a protocol part of a metric name: a registered protocol's label (``proxy``,
    ``nb201_12``), that label with ``_`` and 8 hex digits of its configuration hash, or a fidelity
    (``200ep``, ``12ep_1seed``)."""
    hashed = _HASHED.match(text)
    return (
        text in _PROTOCOLS
        or bool(hashed and hashed["name"] in _PROTOCOLS)
        or bool(_FIDELITY_PART.match(text))
    )


@dataclass(frozen=True)
class MetricName:
    """One metric name split by the grammar ``{dataset}_{column}_{protocol}`` (dataset and protocol may
    be absent)."""

    dataset: str | None
    column: str
    protocol: str | None = None

    def __str__(self) -> str:
        return "_".join(p for p in (self.dataset, self.column, self.protocol) if p)

    @classmethod
    def of(cls, dataset: str, column: str, protocol: str | None = None) -> MetricName:
        """The name of ``column`` measured on ``dataset`` (NB201 or plain name) under ``protocol``."""
        return cls(dataset_prefix(dataset), column, label(protocol) if protocol else None)

    @classmethod
    def parse(cls, name: str) -> MetricName:
        """Split ``name``: the longest known dataset prefix, then the longest known column followed by
        nothing or a protocol (a registered protocol, optionally with an 8-hex-digit configuration hash,
        or a fidelity such as ``12ep_1seed``); else a trailing protocol and the rest as column; else the
        longest known column and the rest as protocol; else all column. A name without a known dataset
        prefix is all column."""
        dataset = next((p for p in _PREFIXES if name.startswith(p + "_")), None)
        if dataset is None:
            return cls(None, name)
        rest = name[len(dataset) + 1 :]
        fits = [c for c in KNOWN_COLUMNS if rest == c or rest.startswith(c + "_")]
        for column in fits:
            protocol = rest[len(column) + 1 :] or None
            if protocol is None or is_protocol(protocol):
                return cls(dataset, column, protocol)
        parts = rest.split("_")
        for k in range(1, len(parts)):
            if is_protocol("_".join(parts[k:])):
                return cls(dataset, "_".join(parts[:k]), "_".join(parts[k:]))
        if fits:
            return cls(dataset, fits[0], rest[len(fits[0]) + 1 :])
        return cls(dataset, rest)

    @property
    def short_forms(self) -> set[str]:
        """Every typed form that names this metric: full, column, ``dataset_column``, ``column_protocol``."""
        forms = {str(self), self.column}
        if self.dataset:
            forms.add(f"{self.dataset}_{self.column}")
        if self.protocol:
            forms.add(f"{self.column}_{self.protocol}")
        return forms


def metric_name(dataset: str, column: str, protocol: str | None = None) -> str:
    """``metric_name("cifar10", "val_acc", "proxy")`` is ``cifar10_val_acc_proxy``."""
    return str(MetricName.of(dataset, column, protocol))


def metric_column(name: str) -> str:
    """The column part of a metric name: ``cifar10_flatness_r_std_proxy`` -> ``flatness_r_std``."""
    return MetricName.parse(name).column


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric ``name`` is better: accuracies (``acc`` in the column, so the
    corruption-accuracy ratio and residual too) and relative accuracy per corruption or family
    (``corr_rel_*``); not errors, costs, latencies, R or losses.

    >>> higher_is_better("cifar10_corr_rel_noise_proxy"), higher_is_better("flatness_r")
    (True, False)
    """
    column = metric_column(name).lower()
    return "acc" in column or column.startswith(CORR_REL + "_")


def matches(name: str, available: Iterable[str]) -> list[str]:
    """The names in ``available`` that ``name`` names by the grammar (exact name first, alone)."""
    available = list(available)
    if name in available:
        return [name]
    return [full for full in available if name in MetricName.parse(full).short_forms]


def resolve_metric(name: str, available: Sequence[str], *, what: str = "metric", where: str = "") -> str:
    """The one name of ``available`` that ``name`` names (see the module doc); unknown or ambiguous
    names raise a one-line :class:`TableError` listing the candidates.

    >>> resolve_metric("val_acc", ["cifar10_val_acc_proxy", "cifar10_n_seeds_proxy"])
    'cifar10_val_acc_proxy'
    """
    found = matches(str(name), available)
    if len(found) == 1:
        return found[0]
    place = f" in {where}" if where else ""
    if found:
        raise TableError(f"ambiguous {what} {name!r}{place}: say which of {', '.join(found[:10])}")
    close = difflib.get_close_matches(str(name), list(available), n=5, cutoff=0.5)
    shown = close or list(available)[:12]
    more = " ..." if not close and len(available) > 12 else ""
    listing = (
        f"close names: {', '.join(shown)}" if close else f"choose from: {', '.join(shown) or 'none'}{more}"
    )
    raise TableError(f"unknown {what} {name!r}{place}; {listing}")


def resolve_metrics(
    names: Sequence[str], available: Sequence[str], *, what: str = "metric", where: str = ""
) -> list[str]:
    """:func:`resolve_metric` of each name; two names that resolve to one metric raise."""
    resolved = [resolve_metric(n, available, what=what, where=where) for n in names]
    if len(set(resolved)) != len(resolved):
        raise TableError(f"{what}s {', '.join(names)} name the same metric twice ({', '.join(resolved)})")
    return resolved
