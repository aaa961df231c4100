"""Results: the result row, its derived columns and the operations on rows (failed rows, seed means).

Everything that reads or averages result rows goes through this module; metric names go through
:mod:`flatnas_bench.core.metric_names`, so a name means the same thing in every command and module.

**The result row** (:data:`RESULT_COLUMNS`, units in :data:`UNITS`) is what
:func:`flatnas_bench.engine.candidate.evaluate_candidate` returns and
:class:`flatnas_bench.tables.store.ResultStore`
stores: one arch, protocol and seed. :func:`complete_row` adds the derived column ``corr_acc_rel``
(= ``corr_acc_mean / test_acc``) where the row is made; :func:`normalise_rows` derives it for older tables
and CSV exports that lack it, and derives from the row's ``corr_per`` (JSON) its relative accuracy per
corruption and per family (:data:`CORRUPTION_FAMILIES`): ``corr_rel_fog``, ``corr_rel_noise``, ... (a
ratio, corruption accuracy over clean test accuracy), so every table of ours offers them as metrics,
surrogate targets and objectives (:func:`corruption_relatives`).

>>> corr_acc_rel([45.0, None], [90.0, 80.0]).tolist()
[0.5, nan]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.core.errors import TableError

if TYPE_CHECKING:
    import pandas as pd
else:

    class _Pandas:
        """``pd``, imported on first use: resolving metric names (all a query needs) takes no pandas."""

        def __getattr__(self, name: str) -> Any:
            import pandas

            return getattr(pandas, name)

    pd = _Pandas()

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
