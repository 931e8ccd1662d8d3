"""The registered rules as Markdown: what ``recommender/docs/rules.md`` and the README
show of them, produced from the rules' own declarations (``scripts/rules_docs.py``
writes it into the files, and checks it there).

Rules appear in the order they run (their first step's priority); each with its label,
kind and steps, its description, its settings table (every setting's default and why,
from :func:`~infrascope_recommender.settings.setting`) and its details. The settings of
``rules.ha`` (which servers are replicas), which two rules read, get their table too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .rules import HighAvailability, Rule, RuleSettings, registered, steps
from .settings import table

_BASE = tuple(f.name for f in dataclasses.fields(RuleSettings))  # documented once


def _in_run_order(rules: Sequence[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (r.priority, r.kind))


def rule_section(rule: Rule) -> str:
    """``### <label> (`<kind>`, priority N …)``, the description, settings and details."""
    places = " and ".join(f"`{s.name}`, priority {s.priority}" for s in rule.steps)
    parts = [f"### {rule.label} ({places})", rule.description]
    own = [f for f in dataclasses.fields(rule.settings) if f.name not in _BASE]
    parts.append(table(rule.settings, skip=_BASE).rstrip("\n") if own
                 else "No settings besides `enabled`.")
    if rule.details.strip():
        parts.append(rule.details.strip())
    return "\n\n".join(parts) + "\n"


def rules_sections(rules: Sequence[Rule] | None = None) -> str:
    """Every rule's section, in run order."""
    return "\n".join(rule_section(r) for r in _in_run_order(rules or registered()))


def precedence(rules: Sequence[Rule] | None = None) -> str:
    """The numbered list of every step in run order, with why it runs there."""
    rules = rules or registered()
    label = {s.name: r.label for r in rules for s in r.steps}
    ordered = steps(rules)
    lines = []
    for n, step in enumerate(ordered, 1):
        why = getattr(step, "precedence", "") or "–"
        end = "." if n == len(ordered) else ";"
        lines.append(f"{n}. **{label[step.name]}** (`{step.name}`, {step.priority}) — {why}{end}")
    return "\n".join(lines) + "\n"


def readme_table(rules: Sequence[Rule] | None = None) -> str:
    """``| rule | kind | what it recommends |``, in run order."""
    rows = ["| rule | kind | what it recommends |", "|---|---|---|"]
    for rule in _in_run_order(rules or registered()):
        rows.append(f"| {rule.label} | `{rule.kind}` | {rule.description} |")
    return "\n".join(rows) + "\n"


def ha_settings() -> str:
    """The table of ``rules.ha``: which servers are replicas of each other."""
    return table(HighAvailability, prefix="rules.ha.")
