"""The interface every surrogate model implements, and the name-based registry that creates them.

A surrogate models *one* target: ``fit(X, y)`` on a feature matrix, ``predict(X)`` returning the ensemble
mean and std, ``save`` / ``load`` in the model library's own non-pickle format, and ``report()`` with its
hyperparameters. :class:`surrogates.surrogate_set.SurrogateSet` holds one per target.

>>> "xgboost" in list_surrogates()
True
>>> model = create_surrogate("xgboost", n_models=2, n_estimators=10)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from flatnas_bench.core.registry import Registry


class Surrogate(ABC):
    """One target's model: an ensemble whose spread is the prediction's uncertainty."""

    name: ClassVar[str] = ""

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Surrogate:
        """Train on features ``X`` (n, d) float32 and target ``y`` (n,); returns ``self``."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and standard deviation (target units), each of shape (n,)."""

    @abstractmethod
    def save(self, directory: Path, stem: str) -> list[str]:
        """Write the model's files into ``directory``, names starting with ``stem``; returns the names."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, files: list[str], params: dict[str, Any]) -> Surrogate:
        """Rebuild a fitted model from the files :meth:`save` wrote and the :meth:`report` params."""

    @abstractmethod
    def report(self) -> dict[str, Any]:
        """Hyperparameters and ensemble size, JSON-serialisable (saved in the metadata)."""


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate model")
S = TypeVar("S", bound=type[Surrogate])


def register_surrogate(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Surrogate` subclass available to :func:`create_surrogate`."""

    def decorate(cls: S) -> S:
        SURROGATES.add(name, cls)
        cls.name = name
        return cls

    return decorate


def list_surrogates() -> list[str]:
    """Names of the registered surrogate models, in registration order."""
    return SURROGATES.names()


def surrogate_class(name: str) -> type[Surrogate]:
    """The registered class called ``name``; :class:`ConfigError` naming the choices otherwise."""
    return SURROGATES.get(name)


def create_surrogate(name: str, **params: Any) -> Surrogate:
    """A new, unfitted surrogate of the registered kind ``name`` with hyperparameters ``params``."""
    return surrogate_class(name)(**params)
