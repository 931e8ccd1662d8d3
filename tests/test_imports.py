"""The import structure: no cycle in any package, and the import-linter contracts hold.

The cycle check builds the graph itself from the AST of every module under ``*/src``,
with every import a module makes: at the top, inside functions (the usual way to hide
a cycle from the interpreter) and under ``if TYPE_CHECKING``. The layers and the
pure/I-O split are import-linter's contracts (``.importlinter``); ``lint-imports``, the
real command, must pass.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def modules(src_dirs: Iterable[Path]) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's ``__init__``)."""
    found: dict[str, tuple[Path, bool]] = {}
    for src in src_dirs:
        for path in sorted(src.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


def import_graph(found: Mapping[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``found`` it imports, anywhere in its code. ``from a
    import b`` is an import of ``a.b`` when that is a module, else of ``a``."""
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, (path, is_package) in found.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in found
                           else module for alias in node.names]
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def example_cycle(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One path around ``component``, to name in the failure."""
    members = set(component)
    path = [component[0]]
    while True:
        step = min(w for w in graph[path[-1]] if w in members)
        if step in path:
            return path[path.index(step):] + [step]
        path.append(step)


def test_no_import_cycle_in_any_package() -> None:
    graph = import_graph(modules(sorted(ROOT.glob("*/src"))))
    assert any(name.startswith("infrascope_exporter.") for name in graph)
    found = [" -> ".join(example_cycle(graph, c)) for c in cycles(graph)]
    assert found == [], "import cycles (move the shared part into a module of its own)"


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import helper\n")
    (package / "b.py").write_text("def helper():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from pkg.a import helper\n")
    graph = import_graph(modules([tmp_path / "src"]))
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert graph["pkg.c"] == {"pkg.a"}
    assert example_cycle(graph, ["pkg.a", "pkg.b"]) == ["pkg.a", "pkg.b", "pkg.a"]


def test_lint_imports_passes() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: `make venv` installs import-linter "
                    "(requirements-dev.txt)")
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 broken" in result.stdout
    config = (ROOT / ".importlinter").read_text()
    for contract in ("layers", "simulator", "exporter-pure", "recommender-pure"):
        assert f"[importlinter:contract:{contract}]" in config
