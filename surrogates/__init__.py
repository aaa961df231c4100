"""Surrogate models that predict benchmark targets for any NB201 arch, with uncertainty and CV quality.

>>> from surrogates import fit_surrogate, load_surrogate, list_surrogates
>>> list_surrogates()
['xgboost']
"""

from __future__ import annotations

from surrogates import xgb  # noqa: F401  (registers "xgboost")
from surrogates.api import SurrogateSet, fit_surrogate, load_surrogate, query
from surrogates.base import Surrogate, create_surrogate, list_surrogates, register_surrogate
from surrogates.metrics import cross_validate, kfold_indices, rank_metrics

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
