"""Surrogate models that predict benchmark targets for any NB201 arch, with uncertainty and CV quality.

>>> from surrogates import fit_surrogate, load_surrogate, list_surrogates
>>> list_surrogates()
['xgboost']
"""

from __future__ import annotations

from surrogates import xgb  # noqa: F401  (registers "xgboost")
from surrogates.base import Surrogate, create_surrogate, list_surrogates, register_surrogate
from surrogates.fit import fit_surrogate
from surrogates.metrics import cross_validate, kfold_indices, rank_metrics
from surrogates.surrogate_set import SurrogateSet, load_surrogate, query

__all__ = [
    "Surrogate",
    "SurrogateSet",
    "create_surrogate",
    "cross_validate",
    "fit_surrogate",
    "kfold_indices",
    "list_surrogates",
    "load_surrogate",
    "query",
    "rank_metrics",
    "register_surrogate",
]
