"""The rules: one module per rule, found by :func:`all_rules`.

A rule module defines ``RULE``, an object with ``name`` (the kind of recommendation and
the ``rules.<name>`` section of the configuration), ``priority`` (lower runs first and
wins a server another rule also wants, see ``engine``) and
``evaluate(fleet, thresholds) -> RuleResult``: pure logic over the loaded data, no I/O.
Adding a rule is adding a module here (plus its thresholds); modules whose name starts
with ``_`` are helpers.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Protocol, runtime_checkable

from ..model import Fleet, RuleResult
from ..thresholds import Thresholds


@runtime_checkable
class Rule(Protocol):
    name: str
    priority: int

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult: ...


def discover(package: str = __name__) -> list[Rule]:
    """Import every non-underscore module of ``package`` and collect its ``RULE``."""
    pkg = importlib.import_module(package)
    found: list[Rule] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        rule = getattr(module, "RULE", None)
        if not isinstance(rule, Rule):
            raise TypeError(f"{package}.{info.name} has no RULE with name, priority and "
                            "evaluate(fleet, thresholds)")
        found.append(rule)
    names = [r.name for r in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TypeError(f"two rules named {duplicates[0]!r}")
    return sorted(found, key=lambda r: (r.priority, r.name))


@functools.cache
def all_rules() -> tuple[Rule, ...]:
    """Every rule of this package, in the order the engine runs them."""
    return tuple(discover())
