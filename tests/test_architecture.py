"""Import contracts of DESIGN.md, checked on the source (no import runs).

Every import counts: module level, inside functions and under
``TYPE_CHECKING``. The contracts:

* no import cycles among daskval's modules;
* the engine never imports the methods;
* estimator modules (the plans, samplers and semivalue weights) import
  neither ``distributed`` nor the engine;
* the base modules (data, utility, accumulate, result, stopping, samplers,
  semivalues) import nothing above them;
* only the engine and the dashboard import ``distributed``.

``KNOWN`` lists the imports that still break a contract or close a cycle,
each with the step of issue 18 that removes it. The tests fail on any other
breach or cycle, and when a listed import is gone (so the list shrinks as
the work lands).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "daskval"

BASE = {
    "daskval.data",
    "daskval.utility",
    "daskval.accumulate",
    "daskval.result",
    "daskval.stopping",
    "daskval.samplers",
    "daskval.semivalues",
}
# what everything may import
FOUNDATION = {
    "daskval.exceptions",
    "daskval._validation",
    "daskval._version",
    "daskval._files",
}
# the methods' front end (Valuation.fit calls the engine); every other module
# of daskval.methods is an estimator
FRONT_END = {"daskval.methods", "daskval.methods.base"}

# (importer, imported): the imports that still break a contract or close a
# cycle
KNOWN: dict[tuple[str, str], str] = {
    ("daskval.result", "daskval.dashboard.report"): (
        "ValuationResult.report() writes the static page (public API)"
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """daskval modules and top-level third-party packages ``name`` imports."""
    internal, external = set(), set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            targets = [
                f"{prefix}.{alias.name}"
                if f"{prefix}.{alias.name}" in known
                else prefix
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "daskval":
                external.add(target.split(".")[0])
                continue
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                internal.add(target)
    return internal, external


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    modules = _modules()
    names = set(modules)
    return {name: _imports(name, path, names) for name, path in modules.items()}


def _is_estimator(name: str) -> bool:
    if name.startswith("daskval.methods."):
        return name not in FRONT_END
    return name in {"daskval.plan", "daskval.samplers", "daskval.semivalues"}


def _breaches(
    graph: dict[str, tuple[set[str], set[str]]],
) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name, (internal, external) in graph.items():
        for target in internal:
            if name.startswith("daskval.engine") and target.startswith(
                "daskval.methods"
            ):
                found[name, target] = "the engine imports a method"
            if _is_estimator(name) and target.startswith("daskval.engine"):
                found[name, target] = "an estimator imports the engine"
            if name in BASE and target not in BASE | FOUNDATION:
                found[name, target] = "a base module imports a module above it"
        if "distributed" in external and not name.startswith(
            ("daskval.engine", "daskval.dashboard")
        ):
            found[name, "distributed"] = "imports distributed outside engine/dashboard"
    return found


def test_the_import_contracts_hold(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    breaches = _breaches(graph)
    new = {edge: why for edge, why in breaches.items() if edge not in KNOWN}
    assert not new, f"imports that break a contract: {new}"


def test_every_known_breach_is_still_there(
    graph: dict[str, tuple[set[str], set[str]]],
) -> None:
    gone = [(a, b) for a, b in KNOWN if b not in graph[a][0]]
    assert not gone, f"fixed, so remove them from KNOWN: {gone}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_but_the_known_breaches(
    graph: dict[str, tuple[set[str], set[str]]],
) -> None:
    edges = {
        name: {t for t in internal if (name, t) not in KNOWN}
        for name, (internal, _) in graph.items()
    }
    assert _cycles(edges) == []


def test_the_checker_sees_function_level_and_type_checking_imports(
    tmp_path: Path,
) -> None:
    """The control: imports the contracts must see, wherever they are."""
    source = tmp_path / "daskval" / "engine" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from daskval.methods.base import Valuation\n"
        "def f():\n"
        "    import distributed\n"
        "    from ..methods import knn\n"
    )
    known = {"daskval.engine.x", "daskval.methods.base", "daskval.methods.knn"}
    internal, external = _imports("daskval.engine.x", source, known)
    assert internal == {"daskval.methods.base", "daskval.methods.knn"}
    assert external == {"typing", "distributed"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
