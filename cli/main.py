"""Entry point of the ``flatnas-bench`` console script: imports the module of the command it runs, then runs
the app.

A command's module is imported only when that command runs, so ``flatnas-bench query ARCH`` does not pay
for the bench, search and table machinery (torch, pandas, pymoo); ``flatnas-bench --help``, an unknown
command and ``from cli.main import app`` (what the tests use) import every command module. A command
missing from :data:`COMMANDS` still works: its name is unknown here, so every module is imported.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["COMMANDS", "main", "register"]  # and app, through __getattr__

#: Each command's name -> the module under ``cli`` that defines it (its import registers it on the app).
COMMANDS = {
    "bench": "bench",
    "corrupt": "corrupt",
    "corrupt-grid": "corrupt",
    "info": "info",
    "search": "search",
    "loop": "search",
    "retrain": "search",
    "fit-surrogate": "surrogate",
    "query": "surrogate",
    "table": "table",
}


def register(command: str | None = None) -> None:
    """Import the module that defines ``command``, or every command module (None, or a name not in
    :data:`COMMANDS`, such as ``--help``)."""
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"cli.{module}")


def __getattr__(name: str) -> Any:
    """``cli.main.app``: the app with every command registered."""
    if name == "app":
        register()
        from cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    from cli.app import app

    register(sys.argv[1] if len(sys.argv) > 1 else None)
    app()


if __name__ == "__main__":
    main()
