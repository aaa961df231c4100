"""Entry point of the ``flatnas-bench`` console script: imports every command module, then runs the app."""

from __future__ import annotations

from cli import (
    bench,  # noqa: F401
    corrupt,  # noqa: F401
    info,  # noqa: F401  (each import registers its commands on the app)
    search,  # noqa: F401
    surrogate,  # noqa: F401
    table,  # noqa: F401
)
from cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
