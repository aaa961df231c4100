"""The typer application object and the one rule every command follows for user mistakes.

Commands live one per module in :mod:`cli` and register themselves on :data:`app` with
:func:`command`, which turns any :class:`~flatnas_bench.core.errors.FlatnasError` into a single line on
stderr and exit code 2 (typer's own usage errors already exit with 2), and an interrupt into one line and
exit code 130.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from flatnas_bench.core.errors import FlatnasError

app = typer.Typer(
    name="flatnas-bench",
    help="Flatness-aware NAS on NAS-Bench-201: bench, fit-surrogate, query, search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _commands() -> None:
    # A callback keeps the app a group of commands even when only the one that runs is registered
    # (cli.main imports just that command's module).
    pass


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit-code-2 exception to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@app.command`` plus one-line errors: a :class:`FlatnasError` exits with code 2 and no traceback."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except FlatnasError as exc:
                raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: one line, the shell's code for SIGINT
                typer.echo("interrupted: finished results are kept (bench, loop, retrain resume)", err=True)
                raise typer.Exit(code=130) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def wide_console():
    """A rich console for tables: the terminal's width, or 200 columns when output is piped (so arch
    strings and metric names stay on one line in logs)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)
