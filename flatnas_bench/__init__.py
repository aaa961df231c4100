"""flatnas-bench: flatness-aware neural architecture search on the NAS-Bench-201 space."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flatnas-bench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
