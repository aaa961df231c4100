"""Results and metrics: the result row, the metric-name grammar and the operations on rows.

Everything that names a measured quantity or averages result rows goes through this module, so a name
means the same thing in every command and module.

**The result row** (:data:`RESULT_COLUMNS`, units in :data:`UNITS`) is what
:func:`flatnas_bench.engine.candidate.evaluate_candidate` returns and
:class:`flatnas_bench.tables.store.ResultStore`
stores: one arch, protocol and seed. :func:`complete_row` adds the derived column ``corr_acc_rel``
(= ``corr_acc_mean / test_acc``) where the row is made; :func:`normalise_rows` derives it for older tables
and CSV exports that lack it, and derives from the row's ``corr_per`` (JSON) its relative accuracy per
corruption and per family (:data:`CORRUPTION_FAMILIES`): ``corr_rel_fog``, ``corr_rel_noise``, ... (a
ratio, corruption accuracy over clean test accuracy), so every table of ours offers them as metrics,
surrogate targets and objectives (:func:`corruption_relatives`).

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
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flatnas_bench.core.errors import TableError
from flatnas_bench.core.protocol import list_protocols

_NAME_CHARS = re.compile(r"[^a-z0-9]+")


def label(text: str) -> str:
    """``text`` as a name part: lower case, runs of other characters turned into ``_`` (``nb201-12`` ->
    ``nb201_12``)."""
    return _NAME_CHARS.sub("_", str(text).lower()).strip("_")


# --- the result row ---------------------------------------------------------------------------------

#: The result-row contract in column order, with SQLite types (see ARCHITECTURE.md, "Result row").
RESULT_COLUMNS: dict[str, str] = {
    "arch": "TEXT NOT NULL",
    "protocol": "TEXT NOT NULL",
    "protocol_hash": "TEXT NOT NULL",
    "seed": "INTEGER NOT NULL",
    "val_acc": "REAL",
    "val_loss": "REAL",
    "test_acc": "REAL",
    "test_loss": "REAL",
    "train_acc": "REAL",
    "train_loss": "REAL",
    "flatness_r": "REAL",
    "flatness_r_std": "REAL",
    "flatness_r_se": "REAL",
    "loss_sharpness": "REAL",
    "params_m": "REAL",
    "flops_m": "REAL",
    "corr_acc_mean": "REAL",
    "corr_acc_rel": "REAL",
    "mce": "REAL",
    "corr_per": "TEXT",
    "train_sec": "REAL",
    "eval_sec": "REAL",
    "device": "TEXT",
    "version": "TEXT",
    "error": "TEXT",
}
#: Units of the numeric result columns and of the derived metrics.
UNITS: dict[str, str] = {
    "val_acc": "%",
    "test_acc": "%",
    "train_acc": "%",
    "val_loss": "mean CE",
    "test_loss": "mean CE",
    "train_loss": "mean CE",
    "flatness_r": "acc. points",
    "flatness_r_std": "acc. points",
    "flatness_r_se": "acc. points",
    "loss_sharpness": "CE",
    "params_m": "M",
    "flops_m": "M MACs",
    "corr_acc_mean": "%",
    "corr_acc_rel": "ratio",
    "corr_acc_resid": "acc. points",
    "mce": "%",
    "train_sec": "s",
    "eval_sec": "s",
    "n_seeds": "seeds",
}
#: Columns that identify a row or describe it; never metrics (``seed`` is averaged over).
KEY_COLUMNS: tuple[str, ...] = ("arch", "protocol", "protocol_hash", "seed")
TEXT_COLUMNS: tuple[str, ...] = tuple(
    name for name, kind in RESULT_COLUMNS.items() if kind.startswith("TEXT")
)
NOT_METRICS: tuple[str, ...] = (*KEY_COLUMNS, "error", "dataset")
#: The row's numeric measurements (what a per-arch table averages over seeds).
METRIC_COLUMNS: tuple[str, ...] = tuple(
    name for name, kind in RESULT_COLUMNS.items() if kind == "REAL" and name not in KEY_COLUMNS
)
N_SEEDS = "n_seeds"  # per-arch table column: successful seeds averaged
CORR_ACC_RESID = "corr_acc_resid"  # per-table derived metric (see residual_metric)

#: The CIFAR-10-C grouping of the 15 benchmark corruptions into families (Hendrycks & Dietterich, 2019),
#: each in the official order.
CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
FAMILY_CORRUPTIONS: tuple[str, ...] = tuple(c for members in CORRUPTION_FAMILIES.values() for c in members)
CORR_REL = "corr_rel"  # prefix of the derived relative accuracy per corruption / family (a ratio)


def corr_rel_column(corruption_or_family: str) -> str:
    """The row column of relative accuracy under one corruption or family: ``fog`` -> ``corr_rel_fog``."""
    return f"{CORR_REL}_{label(corruption_or_family)}"


#: Units of the derived per-corruption and per-family relative accuracies.
UNITS.update({corr_rel_column(n): "ratio" for n in (*FAMILY_CORRUPTIONS, *CORRUPTION_FAMILIES)})


def corr_acc_rel(corr_acc_mean: Any, test_acc: Any) -> np.ndarray:
    """Corruption accuracy relative to clean test accuracy, ``corr_acc_mean / test_acc`` (a ratio); NaN
    where either is missing or ``test_acc`` is 0.

    >>> corr_acc_rel([45.0, 40.0, None], [50.0, 0.0, 50.0]).tolist()
    [0.9, nan, nan]
    """
    corr = np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(corr_acc_mean)), errors="coerce"), float)
    test = np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(test_acc)), errors="coerce"), float)
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(corr) & np.isfinite(test) & (test != 0), corr / test, np.nan)


def complete_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with its derived columns filled in (``corr_acc_rel``), in contract order."""
    out = {name: row.get(name) for name in RESULT_COLUMNS}
    out.update({k: v for k, v in row.items() if k not in out})
    ratio = float(corr_acc_rel(out["corr_acc_mean"], out["test_acc"])[0])
    out["corr_acc_rel"] = None if np.isnan(ratio) else ratio
    return out


def _corr_per_records(texts: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """Each row's ``corr_per`` JSON as a dict ({} where absent); malformed text raises naming its row."""
    records = []
    for row, text in enumerate(texts):
        if text is None or (not isinstance(text, str) and pd.isna(text)) or not str(text).strip():
            records.append({})
            continue
        try:
            parsed = json.loads(text)
        except (TypeError, ValueError):
            parsed = None
        numbers = isinstance(parsed, dict) and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in parsed.values()
        )
        if not numbers:
            raise TableError(
                f"malformed corr_per in row {row} of {where}: {str(text)[:80]!r} "
                "(expected JSON {corruption: accuracy %})"
            )
        records.append(parsed)
    return records


def corruption_relatives(
    corr_per: Sequence[Any], test_acc: Any, where: str = "results"
) -> dict[str, np.ndarray]:
    """Per row, relative accuracy (corruption accuracy / clean test accuracy, a ratio) under each corruption
    the rows' ``corr_per`` JSON names (``corr_rel_{corruption}``, benchmark order first) and per family of
    :data:`CORRUPTION_FAMILIES` whose every member is named (``corr_rel_{family}``: the mean over its
    members, NaN in a row that lacks one). NaN where ``test_acc`` is missing or 0; columns with no finite
    value are left out. Malformed JSON raises :class:`TableError` naming its row and ``where``.

    >>> out = corruption_relatives(['{"fog": 40.0, "frost": 45.0}', None], [50.0, 60.0])
    >>> {k: v.tolist() for k, v in out.items()}
    {'corr_rel_frost': [0.9, nan], 'corr_rel_fog': [0.8, nan]}
    """
    records = _corr_per_records(list(corr_per), where)
    named = dict.fromkeys(k for record in records for k in record)
    order = [c for c in FAMILY_CORRUPTIONS if c in named] + sorted(set(named) - set(FAMILY_CORRUPTIONS))
    test = np.asarray(pd.to_numeric(pd.Series(np.atleast_1d(test_acc)), errors="coerce"), float)
    out: dict[str, np.ndarray] = {}
    for corruption in order:
        accuracy = np.array([np.nan if r.get(corruption) is None else r[corruption] for r in records], float)
        out[corr_rel_column(corruption)] = corr_acc_rel(accuracy, test)
    for family, members in CORRUPTION_FAMILIES.items():
        if all(corr_rel_column(m) in out for m in members):
            out[corr_rel_column(family)] = np.mean([out[corr_rel_column(m)] for m in members], axis=0)
    return {name: values for name, values in out.items() if np.isfinite(values).any()}


def residual_metric(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y`` minus its least-squares linear prediction from ``x``, fitted over the entries that have both;
    NaN where either is missing (or everywhere when fewer than 2 distinct ``x`` values have both).

    ``corr_acc_resid`` is this with ``y`` = corruption accuracy and ``x`` = clean test accuracy: the
    robustness left once clean accuracy is accounted for.

    >>> residual_metric(np.array([1.0, 3.0, 4.0, np.nan]), np.array([0.0, 1.0, 2.0, 3.0])).round(3).tolist()
    [-0.167, 0.333, -0.167, nan]
    """
    y, x = np.asarray(y, float), np.asarray(x, float)
    both = np.isfinite(y) & np.isfinite(x)
    out = np.full(y.shape, np.nan)
    if np.unique(x[both]).size < 2:
        return out
    slope, intercept = np.polyfit(x[both], y[both], 1)
    out[both] = y[both] - (intercept + slope * x[both])
    return out


# --- the metric-name grammar ------------------------------------------------------------------------

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


# --- operations on result rows ----------------------------------------------------------------------


def failed(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of failed rows: ``error`` set to a non-blank text."""
    if "error" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    error = frame["error"]
    return (error.notna() & (error.astype(str).str.strip() != "")).to_numpy()


def drop_failed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose candidate did not fail."""
    return frame[~failed(frame)]


def normalise_rows(frame: pd.DataFrame, where: str = "results") -> pd.DataFrame:
    """Result rows with the contract's metric columns as float, ``corr_acc_rel`` derived wherever the
    stored rows lack it (tables and CSV exports older than that column), and the relative accuracy per
    corruption and per family derived from ``corr_per`` (:func:`corruption_relatives`)."""
    out = frame.copy()
    for column in METRIC_COLUMNS:
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    if "test_acc" not in out.columns:
        return out
    derived = {}
    if "corr_acc_mean" in out.columns:
        derived["corr_acc_rel"] = corr_acc_rel(out["corr_acc_mean"], out["test_acc"])
    if "corr_per" in out.columns:
        derived.update(corruption_relatives(out["corr_per"].tolist(), out["test_acc"], where))
    for name, values in derived.items():
        stored = pd.to_numeric(out[name], errors="coerce").to_numpy(float) if name in out.columns else values
        out[name] = np.where(np.isnan(stored), values, stored)
    return out


def numeric_columns(frame: pd.DataFrame, skip: Iterable[str], where: str) -> dict[str, np.ndarray]:
    """The frame's numeric columns as float64 arrays. Text columns (devices, JSON, versions) are not
    metrics and are left out; a text column that mixes numbers and words raises."""
    out: dict[str, np.ndarray] = {}
    skipped = set(skip)
    for name in frame.columns:
        if name in skipped:
            continue
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            out[str(name)] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        present = column.dropna()
        present = present[present.astype(str).str.strip() != ""]
        numbers = pd.to_numeric(present, errors="coerce")
        if len(present) and numbers.notna().all():
            out[str(name)] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        elif numbers.notna().any():
            bad = present.index[numbers.isna().to_numpy()][0]
            row = frame.index.get_loc(bad)
            raise TableError(
                f"column {name!r} of {where} mixes numbers and text (row {row}: {column[bad]!r})"
            )
    return out


def per_seed(frame: pd.DataFrame, where: str = "results") -> pd.DataFrame:
    """The long frame of successful rows: ``arch``, ``seed`` (when present), then every numeric metric
    column (float, NaN = not measured), in the rows' order. A repeated (arch, seed) raises."""
    rows = normalise_rows(drop_failed(frame), where)
    keys = ["arch", *(["seed"] if "seed" in rows.columns else [])]
    if "seed" in rows.columns:
        repeated = rows.duplicated(subset=keys).to_numpy()
        if repeated.any():
            first = rows[repeated].iloc[0]
            raise TableError(f"duplicate rows in {where}: arch {first['arch']} seed {first['seed']} repeats")
    metrics = numeric_columns(rows, NOT_METRICS, where)
    out = pd.DataFrame({key: rows[key].to_numpy() for key in keys})
    for name, values in metrics.items():
        out[name] = values
    return out


def seed_means(long: pd.DataFrame) -> pd.DataFrame:
    """Per-arch NaN-skipping means over seeds of a :func:`per_seed` frame, archs in first-seen order,
    plus ``n_seeds`` (the successful seeds averaged); columns never measured are left out."""
    metrics = [c for c in long.columns if c not in ("arch", "seed") and long[c].notna().any()]
    grouped = long.groupby("arch", sort=False)
    out = grouped[metrics].mean() if metrics else pd.DataFrame(index=grouped.size().index)
    out[N_SEEDS] = grouped.size().astype(float)
    return out.reset_index()


def seed_stats(long: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per arch: ``n_seeds``, then ``{metric}`` (mean) and ``{metric}_std`` (sample std, ddof 1; NaN with
    one seed) over the successful seeds of a :func:`per_seed` frame, for ``metrics`` (absent ones NaN)."""
    frame = long.copy()
    for metric in metrics:
        if metric not in frame.columns:
            frame[metric] = np.nan
    grouped = frame.groupby("arch", sort=False)
    out = pd.DataFrame({N_SEEDS: grouped.size()})
    for metric in metrics:
        out[metric] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=1)
    return out.reset_index()
