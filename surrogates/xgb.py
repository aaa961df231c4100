"""XGBoost ensemble surrogate: ``n_models`` boosters with their own seeds; mean and std of their outputs.

The members differ by seed through row and column subsampling (``bootstrap=True`` adds bagging: a wider,
more honest std, but on NB201 at 200 training archs it costs about 0.025 Kendall tau).

Each member is saved in XGBoost's own JSON model format (never pickle). Defaults were tuned on NB201
CIFAR-10 validation accuracy with 200 training archs (``benchmarks/surrogate_learning_curve.py``).

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(50, 3)).astype("float32"); y = X[:, 0] * 2
>>> mean, std = XGBEnsemble(n_models=3, n_estimators=20).fit(X, y, seed=0).predict(X[:2])
>>> mean.shape, bool((std >= 0).all())
((2,), True)
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from flatnas_bench.core.errors import ConfigError, ModelFileError
from surrogates.base import Surrogate, register_surrogate

DEFAULTS: dict[str, Any] = {
    "n_models": 5,  # ensemble members; their spread is the reported std
    "bootstrap": False,  # True: each member trains on a bootstrap resample (wider std, lower tau)
    "n_estimators": 300,  # boosting rounds per member
    "max_depth": 6,  # tree depth
    "learning_rate": 0.05,  # shrinkage per round
    "subsample": 0.7,  # row fraction per tree
    "colsample_bytree": 0.6,  # feature fraction per tree
    "min_child_weight": 1.0,  # minimum hessian (row count for squared error) per leaf
    "nthread": 1,  # CPU threads per booster; 0 = all cores (faster on big tables, if the cores are idle)
}


@register_surrogate("xgboost")
class XGBEnsemble(Surrogate):
    """Bagged XGBoost regressors (squared error) for one target; see :data:`DEFAULTS` for the knobs."""

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise ConfigError(
                f"unknown xgboost hyperparameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}"
            )
        self.params: dict[str, Any] = {**DEFAULTS, **params}
        if int(self.params["n_models"]) < 1:
            raise ConfigError(f"n_models must be at least 1, got {self.params['n_models']}")
        self.boosters: list[xgb.Booster] = []

    def _booster_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        out = {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "max_depth": int(p["max_depth"]),
            "eta": float(p["learning_rate"]),
            "subsample": float(p["subsample"]),
            "colsample_bytree": float(p["colsample_bytree"]),
            "min_child_weight": float(p["min_child_weight"]),
            "seed": int(seed),
        }
        if int(p["nthread"]) > 0:
            out["nthread"] = int(p["nthread"])
        return out

    def _threads(self, booster: xgb.Booster) -> xgb.Booster:
        # A booster without nthread starts a full OpenMP team per call: 10+ ms for one row on a busy host.
        if int(self.params["nthread"]) > 0:
            booster.set_param({"nthread": int(self.params["nthread"])})
        return booster

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> XGBEnsemble:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        rng = np.random.default_rng(seed)
        self.boosters = []
        for member in range(int(self.params["n_models"])):
            rows = rng.integers(0, len(y), len(y)) if self.params["bootstrap"] else np.arange(len(y))
            data = xgb.DMatrix(X[rows], label=y[rows], nthread=int(self.params["nthread"]) or None)
            member_seed = int(rng.integers(0, 2**31 - 1)) + member
            booster = xgb.train(self._booster_params(member_seed), data, int(self.params["n_estimators"]))
            self.boosters.append(self._threads(booster))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.boosters:
            raise ModelFileError("this xgboost surrogate has not been fitted or loaded")
        X = np.ascontiguousarray(X, dtype=np.float32)
        outs = np.stack([np.asarray(b.inplace_predict(X), dtype=np.float64) for b in self.boosters])
        return outs.mean(axis=0), outs.std(axis=0)

    def save(self, directory: Path, stem: str) -> list[str]:
        names = []
        for k, booster in enumerate(self.boosters):
            name = f"{stem}_{k}.json.gz"  # XGBoost's JSON model, gzipped (about 5x smaller; mtime 0)
            raw = bytes(booster.save_raw(raw_format="json"))
            (Path(directory) / name).write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
            names.append(name)
        return names

    @classmethod
    def load(cls, directory: Path, files: list[str], params: dict[str, Any]) -> XGBEnsemble:
        model = cls(**{k: v for k, v in params.items() if k in DEFAULTS})
        for name in files:
            path = Path(directory) / name
            booster = xgb.Booster()
            try:
                if path.suffix == ".gz":
                    booster.load_model(bytearray(gzip.decompress(path.read_bytes())))
                else:
                    booster.load_model(str(path))
            except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
                raise ModelFileError(f"cannot read XGBoost model {path}: {exc}") from None
            except xgb.core.XGBoostError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
                raise ModelFileError(f"cannot read XGBoost model {path}: {first}") from None
            model.boosters.append(model._threads(booster))
        return model

    def report(self) -> dict[str, Any]:
        return dict(self.params)
