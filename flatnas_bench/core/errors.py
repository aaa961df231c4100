"""The project's exception types.

Every mistake a user can make (a malformed arch string, a wrong data path, a corrupt table or model file,
a diverged training run reported as an error) raises a subclass of :class:`FlatnasError`. The CLI turns
any :class:`FlatnasError` into one line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class FlatnasError(Exception):
    """Base class of every user-facing error; its message is one line that names the problem."""


class ArchError(FlatnasError, ValueError):
    """A malformed NB201 arch string, op-index tuple or op name."""


class DataError(FlatnasError):
    """A dataset path or layout that cannot be read."""


class TableError(FlatnasError):
    """A benchmark table that is missing, corrupt, or lacks the arch or metric asked for."""


class ModelFileError(FlatnasError):
    """A surrogate model file that is missing, corrupt or from an incompatible feature version."""


class ConfigError(FlatnasError, ValueError):
    """An invalid protocol, objective, executor or option value."""


class DeviceError(FlatnasError):
    """The device a worker computes on failed (CUDA out of memory, an illegal memory access, a lost
    worker or node): not the candidate's result, so it is retried on a fresh worker, never stored."""
