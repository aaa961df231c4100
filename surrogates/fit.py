"""Fitting surrogates from a benchmark table: :func:`fit_surrogate`, one model ensemble per target.

Training rows are deduplicated by isomorphism class (the class mean of each target), every arch is
featurized from its canonical representative (so isomorphic archs always get identical predictions), and
each target's model is cross-validated (k-fold, pooled out-of-fold Kendall tau, Spearman rho, R2, RMSE)
before the final fit on all classes. The training table's seed-to-seed agreement is stored beside the CV
metrics as each target's noise ceiling (:func:`noise_ceilings`). The result is a
:class:`~surrogates.surrogate_set.SurrogateSet`.

>>> from flatnas_bench.tables.readers import load_table  # doctest: +SKIP
>>> s = fit_surrogate(load_table("../shared/data/nb201/nb201_accuracy.csv"),
...                   ["cifar10_valid_acc_200ep"])                                     # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.core.errors import ConfigError, TableError
from flatnas_bench.core.metric_names import metric_column, resolve_metrics
from flatnas_bench.core.results import CORR_ACC_RESID
from flatnas_bench.nb201.space import Arch, parse_archs
from surrogates import io
from surrogates.base import Surrogate, create_surrogate, surrogate_class
from surrogates.features import feature_version, featurize
from surrogates.metrics import METRICS, cross_validate
from surrogates.surrogate_set import SurrogateSet

# Imported where they are used: pandas, scipy.stats (the reliability of a table) and torch (zero-cost
# proxies) are needed only while fitting.
if TYPE_CHECKING:
    import pandas as pd

    from flatnas_bench.tables.table import BenchTable
    from surrogates.zero_cost import ZeroCostConfig

MIN_CLASSES = 2  # fewest distinct isomorphism classes with a value that a target may be fitted on
FEW_CLASSES = 20  # below this many classes the CLI warns that the surrogate will rank poorly


def _package_version() -> str:
    from flatnas_bench import __version__

    return __version__


def _training_frame(
    table: BenchTable | pd.DataFrame, targets: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Arch strings and target columns of ``table`` (a BenchTable; a DataFrame with an ``arch`` column is
    converted), targets named by the metric-name grammar, and a description of the source with a content
    hash of exactly those columns."""
    import pandas as pd

    from flatnas_bench.tables.table import as_table

    table = as_table(table, source="pandas DataFrame")
    available = list(table.metrics)
    if not targets:
        raise ConfigError("give at least one target; available: " + ", ".join(available))
    targets = resolve_metrics(list(targets), available, what="target", where=table.source)
    columns = {t: np.array(table.values(t), dtype=np.float64) for t in targets}
    strings = [str(a) for a in table.archs]
    source = {
        "description": table.source,  # the path, plus the protocol for our own tables
        "table_hash": io.frame_hash(strings, columns),
        "n_rows": len(strings),
    }
    return pd.DataFrame({"arch": strings, **columns}), source


def class_means(frame: pd.DataFrame, target: str) -> tuple[list[Arch], np.ndarray]:
    """Canonical archs and the class mean of ``target`` over rows with a finite value, in ordinal order."""
    import pandas as pd

    values = frame[target].to_numpy(dtype=np.float64)
    ok = np.isfinite(values)
    canon = [a.canonical() for a in parse_archs(list(frame["arch"][ok]))]
    grouped = pd.Series(values[ok]).groupby([a.ordinal for a in canon]).mean()
    archs = [Arch.from_ordinal(int(k)) for k in grouped.index]
    return archs, grouped.to_numpy()


def noise_ceilings(table: BenchTable, targets: Sequence[str], boot: int = 200) -> dict[str, dict | None]:
    """Per target: the seed-to-seed agreement of its measurement over the table's archs with two seeds
    (``kendall``, ``kendall_ci``, ``spearman``, ``archs``), the mean number of seeds behind each arch's
    training value (``seeds``) and the CV Kendall tau a perfect predictor of the noise-free value would
    reach on those per-arch means (``attainable``,
    :func:`~flatnas_bench.tables.reliability.attainable_kendall`);
    None for targets without replicates (and for tables with no per-seed rows)."""
    from flatnas_bench.tables.reliability import attainable_kendall, table_reliability

    try:
        columns = [metric_column(t) for t in targets]
        found = {r.metric: r for r in table_reliability(table, columns=columns, boot=boot)}
        long = table.per_seed()
    except TableError:
        found, long = {}, None
    out: dict[str, dict | None] = {}
    for target in targets:
        r = found.get(target)
        # the residual is derived, not a stored column: its seeds are those of corruption accuracy
        column = target.replace(CORR_ACC_RESID, "corr_acc_mean", 1)
        if r is None or long is None or column not in long:
            out[target] = None
            continue
        seeds = float(long.loc[long[column].notna()].groupby("arch").size().mean())
        out[target] = {
            "kendall": r.kendall, "kendall_ci": list(r.kendall_ci), "spearman": r.spearman, "archs": r.archs,
            "seeds": seeds, "attainable": attainable_kendall(r.kendall, seeds),
        }  # fmt: skip
    return out


def _fit_targets(
    X_by_target: dict[str, tuple[np.ndarray, np.ndarray]],
    model: str,
    params: dict[str, Any],
    seed: int,
    folds: int,
) -> tuple[dict[str, Surrogate], dict[str, dict[str, float]]]:
    """Per target (in order, seeded ``seed + 1000 * k``): the ``folds``-fold CV metrics (NaN with 0
    folds) and the model fitted on every class."""
    models: dict[str, Surrogate] = {}
    cv: dict[str, dict[str, float]] = {}
    for k, (target, (X, y)) in enumerate(X_by_target.items()):
        target_seed = seed + 1000 * k

        def fit_predict(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray, s: int = target_seed):
            return create_surrogate(model, **params).fit(X_tr, y_tr, seed=s).predict(X_te)[0]

        if folds:
            cv[target] = cross_validate(fit_predict, X, y, folds=folds, seed=target_seed)
        else:
            cv[target] = {**dict.fromkeys(METRICS, float("nan")), "n": len(y), "folds": 0}
        models[target] = create_surrogate(model, **params).fit(X, y, seed=target_seed)
    return models, cv


def _features_by_target(
    frame: pd.DataFrame,
    targets: Sequence[str],
    folds: int,
    zero_cost: bool,
    zero_cost_cache: str | Path | None,
    zero_cost_config: ZeroCostConfig | None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Per target: (features, class-mean values) of the isomorphism classes that have it, and the feature
    names; a target with too few classes for fitting or ``folds``-fold CV raises TableError."""
    X_by_target: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: list[str] = []
    for target in targets:
        archs, y = class_means(frame, target)
        if len(archs) < max(MIN_CLASSES, folds):
            cv = f" for {folds}-fold cross-validation (fewer folds, or 0 to skip it)" if folds > 1 else ""
            raise TableError(
                f"target {target!r} has values for only {len(archs)} distinct archs (isomorphism classes); "
                f"fitting needs at least {max(MIN_CLASSES, folds)}{cv}"
            )
        X, names = featurize(
            archs, zero_cost=zero_cost, zero_cost_cache=zero_cost_cache, zero_cost_config=zero_cost_config
        )
        X_by_target[target] = (X, y)
    return X_by_target, names


def fit_surrogate(
    table: BenchTable | pd.DataFrame,
    targets: Sequence[str],
    *,
    n_models: int = 5,
    seed: int = 0,
    folds: int = 5,
    zero_cost: bool = False,
    model: str = "xgboost",
    params: dict[str, Any] | None = None,
    zero_cost_cache: str | Path | None = None,
    zero_cost_config: ZeroCostConfig | None = None,
) -> SurrogateSet:
    """Fit one ``model`` ensemble (``n_models`` members) per target, with ``folds``-fold CV metrics.

    ``table`` is a :class:`~flatnas_bench.tables.table.BenchTable` (or a DataFrame with an ``arch`` column,
    one
    row per arch); ``targets`` are full or short metric names (``val_acc``, see
    :func:`flatnas_bench.core.metric_names.resolve_metric`).
    ``zero_cost=True`` adds the zero-cost proxy features (``zero_cost_config``, cached in
    ``zero_cost_cache``; see :mod:`surrogates.zero_cost`). Rows whose target is NaN are skipped for that
    target; each target needs at least :data:`MIN_CLASSES` distinct isomorphism classes. ``folds=0``
    skips cross-validation (NaN metrics). ``params`` overrides the model's hyperparameters (see
    :data:`surrogates.xgb.DEFAULTS`). Everything random follows ``seed``.

    >>> s = fit_surrogate(df, ["val_acc"], n_models=3, params={"n_estimators": 50})  # doctest: +SKIP
    """
    from flatnas_bench.tables.table import as_table

    surrogate_class(model)
    params = {**(params or {}), "n_models": n_models}
    frame, source = _training_frame(table, list(targets))
    targets = [c for c in frame.columns if c != "arch"]  # short names resolved to the table's metrics
    X_by_target, names = _features_by_target(
        frame, targets, folds, zero_cost, zero_cost_cache, zero_cost_config
    )
    models, cv = _fit_targets(X_by_target, model, params, seed, folds)
    ceiling = noise_ceilings(as_table(table, source="pandas DataFrame"), targets)
    zc_config = None
    if zero_cost:
        from surrogates.zero_cost import ZeroCostConfig

        zc_config = asdict(zero_cost_config or ZeroCostConfig())
    first = next(iter(models.values()))
    meta = {
        "format": io.FORMAT,
        "format_version": io.FORMAT_VERSION,
        "model": model,
        "targets": list(targets),
        "feature_version": feature_version(zero_cost),
        "feature_names": names,
        "zero_cost": zero_cost,
        "zero_cost_config": zc_config,
        "source": source,
        "cv": cv,
        "ceiling": ceiling,
        "n_models": n_models,
        "seed": seed,
        "folds": folds,
        "hyperparameters": first.report(),
        "models": {t: {"n_train": len(X_by_target[t][1])} for t in targets},
        "package_version": _package_version(),
        "library_versions": _library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = SurrogateSet(models, meta)
    if zero_cost:
        from surrogates.zero_cost import ZeroCostConfig, default_cache_path

        config = zero_cost_config or ZeroCostConfig()
        out.zero_cost_cache = Path(zero_cost_cache) if zero_cost_cache else default_cache_path(config)
    return out


def _library_versions() -> dict[str, str]:
    import pandas as pd
    import xgboost

    return {"xgboost": xgboost.__version__, "numpy": np.__version__, "pandas": pd.__version__}
