"""The package's import graph: no circle, and nothing imports ``__main__`` (the front door is search/cli.py).

Every import statement counts, also those inside functions (a lazy import still closes a circle when both
ends run), except under ``if __name__ == "__main__":``, which runs only as a script."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = {"infersearch": ROOT / "search", "infersearch.models": ROOT / "models",
            "hydra_plugins.infersearch_sweeper": ROOT / "hydra_plugins" / "infersearch_sweeper"}  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join([package, *parts[: -1 if parts[-1] == "__init__" else None]])] = path
    return found


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test)


def _statements(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if _is_main_guard(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def imported(name: str, path: Path) -> set[str]:
    """Every module ``name`` names in an import (``from a import b`` names ``a`` and, if a module, ``a.b``)."""
    named = set()
    for node in _statements(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the package of ``name``
            package = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
            base = ".".join(package + ([node.module] if node.module else []))
        named.add(base)
        named.update(f"{base}.{a.name}" for a in node.names)
    return named


def graph() -> dict[str, set[str]]:
    mods = modules()

    def own(module: str) -> str | None:  # the package module an imported name lives in
        while module and module not in mods:
            module = module.rpartition(".")[0]
        return module or None

    return {n: {m for i in imported(n, p) if (m := own(i)) and m != n} for n, p in mods.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``edges`` (a depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    return next((c for n in sorted(edges) if n not in state and (c := visit(n))), None)


def test_the_walk_sees_the_package():
    edges = graph()
    assert "infersearch.cli" in edges and "infersearch.run" in edges["infersearch.cli"]
    assert "infersearch.serve.service" in edges["infersearch.serve.tune"]  # a lazy import inside a function counts
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the search finds a circle
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_main():
    importers = sorted(n for n, deps in graph().items() if "infersearch.__main__" in deps)
    assert importers == [], f"{importers} import infersearch.__main__; shared code belongs in its own module"


def test_no_import_circle():
    found = cycle(graph())
    assert found is None, "import circle: " + " -> ".join(found or [])


def test_the_top_level_holds_the_entry_points():
    """search/ reads as the architecture: the entry points and the typed config at the top, every other module
    in the package named for what it does (docs/contributing.md, Layout); a new top-level module is a decision."""
    top = {p.stem for p in (ROOT / "search").glob("*.py")}
    assert top == {"__init__", "__main__", "cli", "compose", "run", "config"}, sorted(top)
    packages = {p.parent.name for p in (ROOT / "search").glob("*/__init__.py")}
    assert packages == {"core", "trial", "passes", "engines", "measure", "study", "report", "serve"}, sorted(packages)
