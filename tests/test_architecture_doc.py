"""ARCHITECTURE.md stays true: it maps every module of ``flatnas_bench/``, ``surrogates/`` and ``cli/``,
every module path it names exists, and its table of allowed imports is the one ``test_layout`` enforces.

Modules are listed in tables under a heading that names their package (``## `flatnas_bench/engine/` ...``),
one row per module starting with the file name (``| `flatness.py` | ...``); anywhere else a module is
named by its path from the repository root (``flatnas_bench/search/fom.py``) or dotted
(``flatnas_bench.search.fom``, optionally followed by an attribute)."""

from __future__ import annotations

import importlib
import re

from conftest import ROOT
from test_layout import ALLOWED, PACKAGES

DOC = ROOT / "ARCHITECTURE.md"
HEADING = re.compile(r"^#+ `(?P<package>(?:flatnas_bench|surrogates|cli)(?:/\w+)*/)`")
ROW = re.compile(r"^\| `(?P<file>\w+\.py)` \|")
PATH = re.compile(r"`(?P<path>(?:[\w.-]+/)+[\w.-]+\.(?:py|md|toml|csv|json))`")
DOTTED = re.compile(r"`(?P<name>(?:flatnas_bench|surrogates|cli)(?:\.\w+)+)")


def _listed() -> set[str]:
    """Paths of the modules the doc's tables list, from the repository root."""
    listed, package = set(), None
    for line in DOC.read_text().splitlines():
        heading = HEADING.match(line)
        if heading:
            package = heading["package"]
        elif line.startswith("#"):
            package = None
        row = ROW.match(line)
        if row:
            assert package, f"ARCHITECTURE.md lists {row['file']} under no package heading"
            listed.add(package + row["file"])
    return listed


def _modules() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def test_every_module_is_in_architecture_md() -> None:
    missing = sorted(_modules() - _listed())
    assert not missing, f"ARCHITECTURE.md does not list {', '.join(missing)}"


def test_architecture_md_names_only_modules_that_exist() -> None:
    text = DOC.read_text()
    stale = sorted(_listed() - _modules())
    stale += [p for p in PATH.findall(text) if not (ROOT / p).exists()]
    for name in DOTTED.findall(text):
        parts = name.split(".")
        k = max(i for i in range(1, len(parts) + 1) if _is_module(parts[:i]))
        module = importlib.import_module(".".join(parts[:k]))
        if k < len(parts) and not hasattr(module, parts[k]):
            stale.append(name)
    assert not stale, f"ARCHITECTURE.md names what does not exist: {', '.join(sorted(set(stale)))}"


def _is_module(parts: list[str]) -> bool:
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_architecture_md_gives_the_allowed_imports_test_layout_enforces() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", DOC.read_text(), flags=re.M)
    said = {layer: set(re.findall(r"`(\w+)`", deps)) for layer, deps in rows if layer in ALLOWED}
    assert said == ALLOWED
