"""Imports in jobs/ go one way: no module reaches, even lazily inside a function, up to one that imports it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing package
            parent = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parent, base] if base else parent)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    files = [*sorted((ROOT / "jobs").rglob("*.py")), ROOT / "entrypoint.py"]
    modules = {_module_name(path): path for path in files}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for imported in _imported(node, package):
                target = imported
                while target and target not in modules:  # `from jobs.x import name` -> jobs.x
                    target = target.rpartition(".")[0]
                # A submodule importing its own package (or a package its parent) is not an upward edge.
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {tuple(sorted(m for m in reach[node] if node in reach[m])) for node in graph if node in reach[node]}
    return sorted(list(group) for group in groups)


def test_jobs_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50  # the walk really saw the package
    assert cycles(graph) == []


def test_the_check_sees_lazy_imports() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    assert "jobs.training" in import_graph()["jobs.worker"]  # imported inside run_worker only
