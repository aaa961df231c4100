"""The project's shape: data flows one way (no import circle, counting imports inside functions too, so
none dodges one), no function longer than 80 lines, and tests import the project's modules outright."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("flatnas_bench", "surrogates", "cli")
MAX_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Project modules imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skip = {id(n) for node in guarded for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in known}
    return found


def test_no_import_circle():
    modules = _modules()
    graph = {
        name: _imports(ast.parse(path.read_text()), set(modules)) - {name} for name, path in modules.items()
    }
    # a package's __init__ re-exporting its submodules is not a way back
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_no_function_longer_than_80_lines():
    long = []
    for path in _modules().values():
        if path.parts[-2] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and node.end_lineno - node.lineno + 1 > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long


def test_tests_never_importorskip_the_project():
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("importorskip"):
                target = ast.literal_eval(node.args[0])
                assert target.split(".")[0] not in PACKAGES, f"{path.name}: importorskip({target!r})"


# Which layers each layer may import (besides itself): the data flow of ARCHITECTURE.md, by subpackage of
# flatnas_bench plus the top-level surrogates package. Each subpackage's __init__ docstring says the same.
ALLOWED = {
    "core": set(),
    "nb201": {"core"},
    "corruptions": {"core"},
    "engine": {"core", "nb201", "corruptions"},
    "tables": {"core", "nb201"},
    "bench": {"core", "nb201", "corruptions", "engine", "tables"},
    "surrogates": {"core", "nb201", "engine", "tables"},
    "search": {"core", "nb201", "tables", "bench", "surrogates"},
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "surrogates":
        return "surrogates"
    if parts[0] == "flatnas_bench" and len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    return None


def test_subpackages_import_only_along_the_data_flow():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        layer = _layer(name)
        if layer is None:
            continue
        for dep in _imports(ast.parse(path.read_text()), set(modules)):
            target = _layer(dep)
            if target is not None and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{name} imports {dep}")
    assert not wrong


def test_every_module_lives_in_a_subpackage_that_says_what_it_may_import():
    top = sorted(p.name for p in (ROOT / "flatnas_bench").glob("*.py"))
    assert top == ["__init__.py"]
    packages = sorted(p.parent.name for p in (ROOT / "flatnas_bench").glob("*/__init__.py"))
    assert packages == sorted(set(ALLOWED) - {"surrogates"})
    for package in packages:
        doc = ast.get_docstring(ast.parse((ROOT / "flatnas_bench" / package / "__init__.py").read_text()))
        allowed = ALLOWED[package]
        said = "Imports nothing else of the project." if not allowed else "May import: "
        assert doc and said in doc, package
        for dep in allowed:
            assert f"``{dep}``" in doc, (package, dep)
