"""motionkit's modules import one way: no circles (function-level imports count), and the library never
imports the command line or the app."""

from __future__ import annotations

import ast
from pathlib import Path

import motionkit

PACKAGE_ROOT = Path(motionkit.__file__).resolve().parent
FRONT_ENDS = ("motionkit.commands", "motionkit.app")


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ["motionkit", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every motionkit module ``module`` imports anywhere in its body (``from pkg import submodule`` names the
    submodule; ``from mod import name`` names ``mod``)."""

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(owner(alias.name) for alias in node.names if alias.name.startswith("motionkit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source == "motionkit" or source.startswith("motionkit."):
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    found.add(full if full in known else owner(source))
    found.discard(None)
    found.discard(module)
    return found  # type: ignore[return-value]


def _graph() -> dict[str, set[str]]:
    known = _module_names()
    return {name: _imported(name, path, known) for name, path in known.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_function_level_imports():
    graph = _graph()
    # pipeline/__init__ imports its pipelines inside __getattr__ only.
    assert "motionkit.pipeline.motion_pipeline_xl" in graph["motionkit.pipeline"]
    assert "motionkit.pipeline.motion_pipeline" in graph["motionkit.pipeline.motion_pipeline_xl"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_library_never_imports_the_front_ends():
    offenders = {
        name: sorted(dep for dep in deps if dep.startswith(FRONT_ENDS))
        for name, deps in _graph().items()
        if not name.startswith(FRONT_ENDS) and name != "motionkit.cli"
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}
