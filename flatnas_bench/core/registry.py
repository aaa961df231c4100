"""The name-based registry that every family of the project uses: protocols, executors, objectives,
surrogates and corruptions.

One :class:`Registry` per family maps a name to an entry (a factory, a class or a record). Registering
is a decorator (:meth:`Registry.register`) or a call (:meth:`Registry.add`); a name registered twice is a
one-line :class:`~flatnas_bench.core.errors.ConfigError`, ``"<kind> '<name>' is already registered"``;
:meth:`Registry.get` of an unknown name is a one-line ``ConfigError`` naming every known entry; and
:meth:`Registry.names` lists the entries in registration order (the order the CLI shows its choices in).
A family whose entries register from several modules declares its order instead (``order=``), since
which of those modules is imported first depends on the caller.

>>> colours = Registry("colour")
>>> @colours.register("red")
... def red() -> str:
...     return "#f00"
>>> green = colours.add("green", lambda: "#0f0")
>>> colours.names()
['red', 'green']
>>> colours.get("red")()
'#f00'
>>> colours.get("blue")
Traceback (most recent call last):
...
flatnas_bench.core.errors.ConfigError: unknown colour 'blue'; known: red, green
>>> colours.add("red", red)
Traceback (most recent call last):
...
flatnas_bench.core.errors.ConfigError: colour 'red' is already registered
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from flatnas_bench.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one family by name; ``kind`` names the family in errors. Names list in registration
    order, those in ``order`` first and in that order."""

    def __init__(self, kind: str, order: Sequence[str] = ()) -> None:
        self.kind = kind
        self.order = tuple(order)
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` and return it; a taken name raises :class:`ConfigError`."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("name")``."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`ConfigError` naming every known entry otherwise."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names: those of the declared ``order`` first, then the rest in registration order."""
        first = [name for name in self.order if name in self._entries]
        return first + [name for name in self._entries if name not in self.order]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


__all__ = ["Registry"]
