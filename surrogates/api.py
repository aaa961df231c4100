"""One surrogate per target, fitted from a benchmark table: :func:`fit_surrogate`, :class:`SurrogateSet`,
:func:`load_surrogate`.

Training rows are deduplicated by isomorphism class (the class mean of each target), every arch is
featurized from its canonical representative (so isomorphic archs always get identical predictions), and
each target's model is cross-validated (k-fold, pooled out-of-fold Kendall tau, Spearman rho, R2, RMSE)
before the final fit on all classes.

>>> from flatnas_bench.tables.readers import load_table  # doctest: +SKIP
>>> s = fit_surrogate(load_table("../shared/data/nb201/nb201_accuracy.csv"),
...                   ["cifar10_valid_acc_200ep"])                                     # doctest: +SKIP
>>> s.predict(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
...            "nor_conv_3x3~2|"])                                                      # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.core.errors import ConfigError, ModelFileError, TableError
from flatnas_bench.core.metric_names import metric_column, resolve_metrics
from flatnas_bench.core.results import CORR_ACC_RESID
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.space import Arch, ArchLike, parse_archs
from surrogates import io
from surrogates.base import Surrogate, create_surrogate, surrogate_class
from surrogates.features import feature_version, featurize
from surrogates.metrics import METRICS, cross_validate

# Imported where they are used: a query (``flatnas-bench query``, under a second) needs none of pandas,
# scipy.stats (the reliability of a table) or torch (zero-cost proxies).
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


class LazyModels(Mapping[str, Surrogate]):
    """Target -> model, each read from its files on first use: a query of one target reads only that
    target's ensemble (the bundled surrogate holds 7 targets of 5 boosters each)."""

    def __init__(self, targets: Sequence[str], load: Callable[[str], Surrogate]) -> None:
        self._targets = list(targets)
        self._load = load
        self._loaded: dict[str, Surrogate] = {}

    def __getitem__(self, target: str) -> Surrogate:
        if target not in self._targets:
            raise KeyError(target)
        if target not in self._loaded:
            self._loaded[target] = self._load(target)
        return self._loaded[target]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    @property
    def loaded(self) -> list[str]:
        """The targets whose models have been read so far, in the order they were."""
        return list(self._loaded)


class SurrogateSet:
    """Fitted surrogates for several targets sharing one feature pipeline.

    ``predict(archs)`` returns one row per arch (in the given order): ``arch``, then ``{target}`` (ensemble
    mean) and ``{target}_std`` for every target. Features are cached per canonical arch, so repeated
    queries and whole-space scoring (15,625 archs, 6,466 classes) are fast. ``models`` maps each target to
    its model (for a loaded set, a :class:`LazyModels` that reads a target's files on first use).
    """

    def __init__(self, models: Mapping[str, Surrogate], meta: dict[str, Any]) -> None:
        self.models = models
        self.meta = meta
        self.zero_cost_cache: Path | None = None
        self._rows: dict[int, int] = {}
        self._features = np.zeros((0, len(meta["feature_names"])), dtype=np.float32)

    @property
    def targets(self) -> list[str]:
        return list(self.models)

    def quality(self, target: str) -> dict[str, Any]:
        """The CV metrics of one target (kendall_tau, spearman_rho, r2, rmse, n, folds) and its noise
        ceiling: ``ceiling_kendall`` (seed-to-seed Kendall tau; None without replicates),
        ``ceiling_archs`` and ``attainable_kendall`` (see :attr:`cv_report`)."""
        ceiling = (self.meta.get("ceiling") or {}).get(target) or {}
        return {
            **self.meta["cv"][target],
            "ceiling_kendall": ceiling.get("kendall"),
            "ceiling_archs": ceiling.get("archs", 0),
            "attainable_kendall": ceiling.get("attainable"),
        }

    @property
    def cv_report(self) -> pd.DataFrame:
        """Cross-validation metrics, one row per target: kendall_tau, spearman_rho, r2, rmse, n, folds,
        then the target's noise ceiling from the training table's replicate seeds: ``ceiling_kendall``
        (seed-to-seed Kendall tau; NaN when the table had no replicates), ``ceiling_archs`` and
        ``attainable_kendall`` (the CV tau a predictor of the noise-free value would reach; NaN for
        surrogates fitted before it was stored)."""
        import pandas as pd

        rows = [{"target": t, **self.quality(t)} for t in self.targets]
        columns = ["target", *METRICS, "n", "folds", "ceiling_kendall", "ceiling_archs", "attainable_kendall"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype(
            {m: float for m in (*METRICS, "ceiling_kendall", "attainable_kendall")}
        )  # null: NaN

    def __getitem__(self, target: str) -> Surrogate:
        return self.models[self._check_targets([target])[0]]

    def _check_targets(self, targets: Sequence[str] | None) -> list[str]:
        """The full target names that ``targets`` (full or short names) name; all targets for None."""
        if targets is None:
            return self.targets
        return resolve_metrics(list(targets), self.targets, what="target", where="this surrogate")

    def resolve(self, target: str) -> str:
        """The full name of the target ``target`` names (``val_acc`` -> ``cifar10_val_acc_proxy``)."""
        return self._check_targets([target])[0]

    def _zero_cost_config(self) -> ZeroCostConfig | None:
        if not self.meta.get("zero_cost"):
            return None
        from surrogates.zero_cost import ZeroCostConfig

        try:
            return ZeroCostConfig(**self.meta["zero_cost_config"])
        except (TypeError, KeyError) as exc:
            raise ModelFileError(f"corrupt zero-cost config in the surrogate metadata: {exc}") from None

    def features(self, archs: Sequence[ArchLike]) -> np.ndarray:
        """Feature rows (float32) for ``archs``, from the per-canonical-arch cache."""
        canon = [a.canonical() for a in parse_archs(archs)]
        missing = list(dict.fromkeys(a for a in canon if a.ordinal not in self._rows))
        if missing:
            X, names = featurize(
                missing,
                zero_cost=bool(self.meta.get("zero_cost")),
                zero_cost_cache=self.zero_cost_cache,
                zero_cost_config=self._zero_cost_config(),
            )
            if names != self.meta["feature_names"]:
                raise ModelFileError(
                    "the feature names computed by this code differ from the model's; refit the surrogate"
                )
            start = len(self._features)
            self._features = np.concatenate([self._features, X])
            self._rows.update({a.ordinal: start + k for k, a in enumerate(missing)})
        return self._features[[self._rows[a.ordinal] for a in canon]]

    def predictions(
        self, archs: Sequence[ArchLike], targets: Sequence[str] | None = None
    ) -> dict[str, list[str] | np.ndarray]:
        """The columns of :meth:`predict` as a dict of arrays (no pandas): ``arch`` (the given strings),
        then ``{target}`` and ``{target}_std`` per target. Only the chosen targets' models are read."""
        chosen = self._check_targets(targets)
        parsed = parse_archs(archs)
        canon = [a.canonical() for a in parsed]
        ordinals, inverse = np.unique([a.ordinal for a in canon], return_inverse=True)
        X = self.features([Arch.from_ordinal(int(k)) for k in ordinals])  # one row per class present
        out: dict[str, list[str] | np.ndarray] = {"arch": [str(a) for a in parsed]}
        for target in chosen:
            mean, std = self.models[target].predict(X)
            out[target] = mean[inverse]
            out[f"{target}_std"] = std[inverse]
        return out

    def predict(self, archs: Sequence[ArchLike], targets: Sequence[str] | None = None) -> pd.DataFrame:
        """Mean and std per target for each arch (isomorphic archs get identical values).

        >>> s.predict(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
        ...            "nor_conv_3x3~1|nor_conv_3x3~2|"])                          # doctest: +SKIP
        """
        import pandas as pd

        return pd.DataFrame(self.predictions(archs, targets))

    def save(self, directory: str | Path) -> Path:
        """Write every model (XGBoost JSON) and ``metadata.json`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta)
        models = {}
        for k, (target, model) in enumerate(self.models.items()):
            names = model.save(directory, f"model_{k:02d}")
            models[target] = {
                "files": {name: io.sha256_file(directory / name) for name in names},
                "n_train": self.meta["models"][target]["n_train"],
            }
        meta["models"] = models
        cache = Path(self.zero_cost_cache) if self.zero_cost_cache else None
        target = directory / "zero_cost.json"
        if meta.get("zero_cost") and cache and cache.exists() and cache.resolve() != target.resolve():
            shutil.copyfile(cache, target)
        io.write_json(directory / io.METADATA_FILE, meta)
        self.meta = meta
        return directory

    def __repr__(self) -> str:
        return f"SurrogateSet(model={self.meta['model']!r}, targets={self.targets})"


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


def load_surrogate(directory: str | Path) -> SurrogateSet:
    """Load a directory written by :meth:`SurrogateSet.save`; every problem is a one-line ModelFileError.

    The model's feature version must equal the running code's (:func:`surrogates.features.feature_version`),
    and every model file must match the checksum recorded in the metadata (all are checked here, a few
    milliseconds); each target's models are then read on first use (:class:`LazyModels`).
    """
    directory = Path(directory)
    meta = io.read_metadata(directory)
    expected = feature_version(bool(meta.get("zero_cost")))
    if meta["feature_version"] != expected:
        raise ModelFileError(
            f"surrogate {directory} uses feature version {meta['feature_version']!r} but this code computes "
            f"{expected!r}; refit it with flatnas-bench fit-surrogate"
        )
    try:
        cls = surrogate_class(meta["model"])
    except ConfigError as exc:
        raise ModelFileError(f"surrogate {directory}: {exc}") from None
    files: dict[str, list[str]] = {}
    for target in meta["targets"]:
        entry = meta["models"].get(target)
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict) or not entry["files"]:
            raise ModelFileError(f"corrupt surrogate metadata in {directory}: no model files for {target!r}")
        io.verify_files(directory, entry["files"])
        files[target] = list(entry["files"])
    out = SurrogateSet(
        LazyModels(meta["targets"], lambda t: cls.load(directory, files[t], meta["hyperparameters"])), meta
    )
    if meta.get("zero_cost"):
        out.zero_cost_cache = directory / "zero_cost.json"
    else:
        out.features([Arch.from_ordinal(0)])  # builds the encoding tables once, so the first query is fast
    return out


def query_columns(
    surrogate: SurrogateSet, archs: Sequence[ArchLike], targets: Sequence[str] | None = None
) -> dict[str, list[str] | np.ndarray]:
    """The columns of :func:`query` as a dict of arrays (no pandas): :meth:`SurrogateSet.predictions`
    plus ``params_m`` and ``flops_m``."""
    columns = surrogate.predictions(archs, targets)
    params_m, flops_m = cost_arrays()
    ordinals = [a.ordinal for a in parse_archs(columns["arch"])]
    return {**columns, "params_m": params_m[ordinals], "flops_m": flops_m[ordinals]}


def query(
    surrogate: SurrogateSet, archs: Sequence[ArchLike], targets: Sequence[str] | None = None
) -> pd.DataFrame:
    """Predictions (mean, std per target) plus the exact ``params_m`` (M) and ``flops_m`` (M MACs) of each
    arch's CIFAR-10 network, one row per arch in the given order: what ``flatnas-bench query`` prints.

    >>> query(load_surrogate("model_dir"), ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|"
    ...        "skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"])                  # doctest: +SKIP
    """
    import pandas as pd

    return pd.DataFrame(query_columns(surrogate, archs, targets))
