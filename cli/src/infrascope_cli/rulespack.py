"""The rules pack as the tooling sees it: where its files are, and its recording rules
in the order a backfill must evaluate them.

The committed pack is ``prometheus/rules/*.rules.yml`` (generated from
``prometheus/config.yaml`` by ``prometheus/generate.py``). An installation finds it,
in this order: an explicit ``--rules-dir``; ``$INFRASCOPE_RULES_DIR``;
``<venv>/share/infrascope/rules`` (where ``scripts/install.sh`` puts it); the
repository this package is installed from (``make venv``).

Backfill: ``promtool tsdb create-blocks-from rules`` evaluates rules against a running
Prometheus, so a rule reading series another rule records can only be evaluated once
the blocks of that other rule are loaded. :func:`split_passes` orders the recording
rules into such passes. Only the groups whose *history* is read are backfilled
(:data:`BACKFILL_GROUPS`): the hourly averages and maxima (the 30-day figures' input)
and the per-minute ratios (the charts'). The 30-day figures, tiers and cost roll-ups are
evaluated by Prometheus itself over that history once it runs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

RULES_GLOB = "*.rules.yml"
ENV_RULES_DIR = "INFRASCOPE_RULES_DIR"

# Group -> interval promtool evaluates it at over the history (None: the group's own).
# The per-minute group (what the charts show over the history) runs every 5 minutes, a
# fifth of the evaluations. The hourly group reads the raw inputs of each clock hour
# itself (not the per-minute records), so its values do not depend on either group's
# evaluation phase, which promtool derives from each rule file's path.
BACKFILL_GROUPS: dict[str, str | None] = {
    "infrascope-utilisation": "5m",
    "infrascope-utilisation-hourly": None,
}

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

RuleFile = tuple[str, Any]  # (name, parsed YAML document)


class RulesPackError(Exception):
    """The rules pack is missing or not what the tooling expects; the message says why."""


def candidate_dirs() -> list[Path]:
    """Where the rules pack is looked for, in order (see the module's docstring)."""
    out = []
    if os.environ.get(ENV_RULES_DIR):
        out.append(Path(os.environ[ENV_RULES_DIR]))
    out.append(Path(sys.prefix) / "share" / "infrascope" / "rules")
    out.append(Path(__file__).resolve().parents[3] / "prometheus" / "rules")
    return out


def find_rules_dir(explicit: Path | None = None) -> Path:
    """The folder of the rules pack's ``*.rules.yml``."""
    if explicit is not None:
        if not any(explicit.glob(RULES_GLOB)):
            raise RulesPackError(f"{explicit}: no {RULES_GLOB} (the rules pack's files)")
        return explicit
    tried = candidate_dirs()
    for path in tried:
        if any(path.glob(RULES_GLOB)):
            return path
    raise RulesPackError("the rules pack was not found (looked in "
                         + ", ".join(map(str, tried)) + "): give --rules-dir")


def load(rules_dir: Path) -> list[RuleFile]:
    """Every rule file of the pack, parsed, in name order."""
    files = sorted(rules_dir.glob(RULES_GLOB))
    if not files:
        raise RulesPackError(f"{rules_dir}: no {RULES_GLOB}")
    out = []
    for path in files:
        try:
            out.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (OSError, yaml.YAMLError) as exc:
            raise RulesPackError(f"{path}: cannot read: {exc}") from exc
    return out


def backfill_groups(documents: Sequence[RuleFile],
                    groups: Mapping[str, str | None] = BACKFILL_GROUPS) -> list[RuleFile]:
    """The ``groups`` of the rule files, recording rules only, with the backfill interval."""
    selected: list[RuleFile] = []
    found: set[str] = set()
    for name, doc in documents:
        kept = []
        for group in (doc or {}).get("groups") or []:
            if group.get("name") not in groups:
                continue
            found.add(group["name"])
            copy = {**group, "rules": [r for r in group.get("rules") or [] if "record" in r]}
            if groups[group["name"]]:
                copy["interval"] = groups[group["name"]]
            kept.append(copy)
        if kept:
            selected.append((name, {"groups": kept}))
    missing = sorted(set(groups) - found)
    if missing:
        raise RulesPackError(f"rule groups {', '.join(missing)} not found in the rule files")
    return selected


def split_passes(documents: Sequence[RuleFile]) -> list[dict[str, Any]]:
    """Recording rules of rule files, split into passes by dependency level.

    A rule reading only scraped (or backfilled) series is in pass 1; a rule reading
    series recorded by pass-N rules is in pass N+1. Alerting rules are left out
    (promtool does not backfill them). Returns one rule-file document per pass, groups
    keeping their name and settings (names made unique within a pass).
    """
    rules: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = []
    for name, doc in documents:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("groups"), list):
            raise RulesPackError(f"{name}: not a Prometheus rule file (no groups list)")
        for gi, group in enumerate(doc["groups"]):
            if not isinstance(group, Mapping) or not isinstance(group.get("rules"), list):
                raise RulesPackError(f"{name}: groups[{gi}] has no rules list")
            for rule in group["rules"]:
                if isinstance(rule, Mapping) and "record" in rule:
                    if not isinstance(rule.get("expr"), (str, int, float)):
                        raise RulesPackError(f"{name}: rule {rule['record']} has no expr")
                    rules.append((name, gi, dict(group), dict(rule)))
    recorded = {str(r["record"]) for *_, r in rules}
    reads: dict[str, set[str]] = {}  # recorded name -> recorded names its rules read
    for *_, r in rules:
        reads.setdefault(str(r["record"]), set()).update(
            t for t in _IDENT.findall(str(r["expr"])) if t in recorded)
    level: dict[str, int] = {}

    def level_of(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise RulesPackError("recording rules read each other in a cycle: "
                                 + " -> ".join((*path[path.index(name):], name)))
        if name not in level:
            level[name] = 1 + max((level_of(d, (*path, name)) for d in reads[name]),
                                  default=0)
        return level[name]

    for name in sorted(recorded):
        level_of(name, ())
    passes: list[dict[str, Any]] = []
    for n in range(1, max(level.values(), default=0) + 1):
        groups: dict[tuple[str, int], dict[str, Any]] = {}
        for file, gi, group, rule in rules:
            if level[str(rule["record"])] != n:
                continue
            if (file, gi) not in groups:
                settings = {k: v for k, v in group.items() if k != "rules"}
                taken = {g.get("name") for g in groups.values()}
                if settings.get("name") in taken:
                    settings["name"] = f"{settings.get('name')}-{Path(file).stem}-{gi}"
                groups[(file, gi)] = {**settings, "rules": []}
            groups[(file, gi)]["rules"].append(rule)
        passes.append({"groups": list(groups.values())})
    return passes


def one_rule_files(pass_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A pass as one rule file per rule: promtool evaluates a file's rules one after
    the other, so one promtool per rule lets a pass use every core."""
    out = []
    for group in pass_doc["groups"]:
        for rule in group["rules"]:
            out.append({"groups": [{**group, "rules": [rule]}]})
    return out
