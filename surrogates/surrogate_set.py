"""A fitted surrogate set: one model per target sharing one feature pipeline, saved to and loaded from a
directory, and queried (:class:`SurrogateSet`, :func:`load_surrogate`, :func:`query`).

Loading checks the feature version and every file's checksum, then reads each target's models on first
use (:class:`LazyModels`), so a query of one target reads only that target's ensemble. Surrogates are
fitted by :func:`surrogates.fit.fit_surrogate`.

>>> s = load_surrogate("model_dir")                                                 # doctest: +SKIP
>>> s.predict(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
...            "nor_conv_3x3~2|"])                                                      # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.core.errors import ConfigError, ModelFileError
from flatnas_bench.core.metric_names import resolve_metrics
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.space import Arch, ArchLike, parse_archs
from surrogates import io
from surrogates.base import Surrogate, surrogate_class
from surrogates.features import feature_version, featurize
from surrogates.metrics import METRICS

# Imported where they are used: a query (``flatnas-bench query``, under a second) needs none of pandas,
# scipy.stats or torch.
if TYPE_CHECKING:
    import pandas as pd

    from surrogates.zero_cost import ZeroCostConfig


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
