"""Every name-based family (protocols, executors, objectives, surrogate models, corruptions, loop
strategies) is one :class:`~flatnas_bench.core.registry.Registry`, and every registry meets the same
contract: each listed name gets its entry, the family's lister gives the names in registration order, an
unknown name is a one-line ``ConfigError`` naming every known entry, and a name registered twice is the
same one-line ``ConfigError`` in each, leaving the registry as it was. The registries are found by
importing every module of the library, so one that moves is still checked."""

from __future__ import annotations

import importlib

import pytest
from conftest import ROOT

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.registry import Registry

# The families, by the kind each registry names itself with in its errors.
FAMILIES = ("protocol", "executor", "objective", "surrogate model", "corruption", "loop strategy")
# Each family's public lister (what the CLI's choices come from): it lists its registry's names, in
# registration order.
LISTERS = {
    "protocol": ("flatnas_bench.core.protocol", "list_protocols"),
    "executor": ("flatnas_bench.bench.executors", "list_executors"),
    "objective": ("flatnas_bench.search.objectives", "list_objectives"),
    "surrogate model": ("surrogates.base", "list_surrogates"),
    "corruption": ("flatnas_bench.corruptions.operations", "list_corruptions"),
    "loop strategy": ("flatnas_bench.search.strategy", "list_strategies"),
}


def _registries() -> dict[str, list[Registry]]:
    """kind -> the distinct module-level registries of that kind in ``flatnas_bench`` and ``surrogates``."""
    found: dict[int, Registry] = {}
    for package in ("flatnas_bench", "surrogates"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            found.update({id(v): v for v in vars(module).values() if isinstance(v, Registry)})
    by_kind: dict[str, list[Registry]] = {}
    for registry in found.values():
        by_kind.setdefault(registry.kind, []).append(registry)
    return by_kind


REGISTRIES = _registries()


def test_every_family_has_exactly_one_registry_and_there_are_no_others() -> None:
    assert sorted(REGISTRIES) == sorted(FAMILIES)
    assert all(len(registries) == 1 for registries in REGISTRIES.values())


@pytest.mark.parametrize("kind", FAMILIES)
def test_registry_contract(kind: str) -> None:
    assert kind in REGISTRIES, f"no Registry({kind!r}) in the library"
    registry = REGISTRIES[kind][0]
    names = registry.names()
    assert names and len(set(names)) == len(names) == len(registry)
    assert list(registry) == names and all(name in registry for name in names)
    for name in names:
        assert registry.get(name) is not None
    module, lister = LISTERS[kind]
    assert list(getattr(importlib.import_module(module), lister)()) == names

    with pytest.raises(ConfigError) as unknown:
        registry.get("no-such-name")
    assert str(unknown.value) == f"unknown {kind} 'no-such-name'; known: {', '.join(names)}"

    first = names[0]
    with pytest.raises(ConfigError) as twice:
        registry.add(first, registry.get(first))
    assert str(twice.value) == f"{kind} {first!r} is already registered"
    assert registry.names() == names


def test_registry_lists_in_registration_order_and_refuses_a_taken_name() -> None:
    fruits: Registry[int] = Registry("fruit")
    assert fruits.register("pear")(3) == 3
    fruits.add("apple", 1)
    assert fruits.names() == ["pear", "apple"] and fruits.get("apple") == 1
    with pytest.raises(ConfigError, match=r"^fruit 'pear' is already registered$"):
        fruits.register("pear")(4)
    assert fruits.get("pear") == 3 and len(fruits) == 2
    with pytest.raises(ConfigError, match=r"^unknown fruit 'fig'; known: pear, apple$"):
        fruits.get("fig")
    assert "fig" not in fruits and repr(fruits) == "Registry('fruit': pear, apple)"


def test_a_declared_order_lists_first_whatever_the_registration_order() -> None:
    # entries registering from several modules: which registers first depends on the caller's imports
    colours: Registry[str] = Registry("colour", order=("red", "green", "blue"))
    for name in ("blue", "cyan", "red"):
        colours.add(name, name)
    assert colours.names() == list(colours) == ["red", "blue", "cyan"]
    with pytest.raises(ConfigError, match=r"^unknown colour 'green'; known: red, blue, cyan$"):
        colours.get("green")
