"""Each component declares exactly the distributions its code imports (issue 13, point 5).

For every installable component (a folder with ``pyproject.toml`` and ``src/``): the
top-level modules its ``src/`` imports (read with ``ast``: every ``import`` and absolute
``from … import``, type-checking ones included) minus the standard library and the
component's own packages must be provided by the distributions ``[project]
dependencies`` names, and every distribution named there must provide something that is
imported. Distribution names are mapped to import names by the installed metadata
(``PyYAML`` provides ``yaml``, ``prometheus-client`` ``prometheus_client``), so the test
needs the components' dependencies installed, as ``make venv`` does.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = sorted(p.parent.name for p in ROOT.glob("*/pyproject.toml")
                    if (p.parent / "src").is_dir())


def normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``PyYAML`` -> ``pyyaml``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(component: str, extras: bool = False) -> set[str]:
    """The distributions ``component`` requires (and, with ``extras``, those of its
    optional extras too)."""
    project = tomllib.loads((ROOT / component / "pyproject.toml").read_text())["project"]
    out = set()
    requirements = list(project.get("dependencies", []))
    if extras:
        requirements += [r for group in project.get("optional-dependencies", {}).values()
                         for r in group]
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"{component}: cannot read the requirement {requirement!r}"
        out.add(normalised(match.group(1)))
    return out


def imported(component: str) -> dict[str, list[str]]:
    """Third-party top-level modules imported by the component's src/ -> where."""
    src = ROOT / component / "src"
    own = {p.name for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, []).append(
                        f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_component_is_checked() -> None:
    assert {"core", "agent", "exporter", "recommender", "simulator", "cli"} <= \
        set(COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_declared_dependencies_are_exactly_the_imported_ones(component: str) -> None:
    providers = {module: {normalised(d) for d in dists}
                 for module, dists in importlib.metadata.packages_distributions().items()}
    wanted = declared(component, extras=True)
    problems = []
    used: set[str] = set()
    for module, places in sorted(imported(component).items()):
        dists = providers.get(module)
        if not dists:
            problems.append(f"imports {module} ({places[0]}), which no installed "
                            "distribution provides")
        elif not dists & wanted:
            problems.append(f"imports {module} ({places[0]}) without declaring "
                            f"{' or '.join(sorted(dists))} in {component}/pyproject.toml")
        used |= dists
    for dist in sorted(wanted - used):
        problems.append(f"declares {dist} in {component}/pyproject.toml, but nothing in "
                        f"{component}/src imports it")
    assert not problems, f"{component}: " + "; ".join(problems)


def test_the_check_reads_distribution_names_as_pip_does() -> None:
    assert normalised("PyYAML") == "pyyaml"
    assert normalised("prometheus_client") == normalised("prometheus-client")
    assert "infrascope-core" in declared("agent")
