"""The ``rules:`` section of the configuration: the settings every rule shares
(coverage, confidence, headroom) and each registered rule's own.

The general settings are declared here; each rule declares its own in its module (see
:mod:`infrascope_recommender.rules`), so :class:`Thresholds` holds one settings object
per registered rule kind: ``thresholds.rules["idle"]``, also ``thresholds.idle``.
Everything is frozen, so a test builds any variant with :func:`dataclasses.replace`
(``dataclasses.replace(t, idle=dataclasses.replace(t.idle, cpu_avg_max=0.02))``).
``recommender/docs/rules.md`` explains every default.

Ratios are ``0..1`` (``0.05`` = 5 %), money is :class:`~decimal.Decimal` euros per
month, percentages are percent (``10`` = 10 %).

YAML layout (every key optional; unknown keys are refused)::

    rules:
      min_coverage: 0.25            # below: the server is excluded, with the reason
      confidence: {high: 0.9, medium: 0.5}
      headroom: {cpu: 0.6, memory: 0.8, disk: 0.8}
      same_cpu_type: true
      <kind>: {enabled: true, <setting>: <value>, ...}   # one section per rule

A bad value raises :class:`infrascope_recommender.config.ConfigError` naming the key,
e.g. ``rules.idle.cpu_avg_max: expected a ratio in (0, 1], got 5``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .rules import Rule, RuleSettings, registered
from .settings import Check, boolean, fail, parsed, ratio, section, setting

_S = TypeVar("_S")


@dataclass(frozen=True)
class ConfidenceBands:
    """Share of the 30 days with data (the lower of CPU and memory coverage)."""

    high: float = setting(0.9, ratio, ">= 27 of 30 days: the figures describe the whole month")
    medium: float = setting(0.5, ratio, ">= 15 days: half a month; below (but >= "
                                        "min_coverage): low")


@dataclass(frozen=True)
class Headroom:
    """Ceilings on a target server after a change (ratios of the target's capacity)."""

    cpu: float = setting(0.6, ratio, "30-day p95 CPU demand <= 60 % of the target's cores")
    memory: float = setting(0.8, ratio, "30-day peak memory <= 80 % of the target's memory")
    disk: float = setting(0.8, ratio, "used disk <= 80 % of a new server's disk (migrations "
                                      "only)")


#: The general keys of ``rules:``; every other key is a rule kind.
GENERAL: dict[str, Check] = {
    "min_coverage": ratio,  # the rules pack's tiers.min_coverage
    "confidence": section(ConfidenceBands),
    "headroom": section(Headroom),
    "same_cpu_type": boolean,  # in-place changes keep shared/dedicated vCPUs
}


def rule_kinds(rules: Sequence[Rule] | None = None) -> Sequence[Rule]:
    """The registered rules (or ``rules``), refusing a kind that is a general key."""
    rules = registered() if rules is None else rules
    for rule in rules:
        if rule.kind in GENERAL or rule.kind == "rules":
            raise TypeError(f"rule kind {rule.kind!r} is a general key of rules: (one of "
                            f"{', '.join([*GENERAL, 'rules'])})")
    return rules


@dataclass(frozen=True, init=False)
class Thresholds:
    """The general settings and, in ``rules``, each registered rule's settings by kind.

    ``Thresholds()`` holds every default; ``Thresholds(idle=IdleSettings(...))`` (or
    :func:`dataclasses.replace` with a kind as keyword) replaces one rule's settings, and
    ``thresholds.idle`` reads them. In typed code a rule reads its own with
    :meth:`settings`.
    """

    min_coverage: float
    confidence: ConfidenceBands
    headroom: Headroom
    same_cpu_type: bool
    rules: Mapping[str, RuleSettings]

    def __init__(self, min_coverage: float = 0.25, confidence: ConfidenceBands | None = None,
                 headroom: Headroom | None = None, same_cpu_type: bool = True,
                 rules: Mapping[str, RuleSettings] | None = None,
                 **by_kind: RuleSettings) -> None:
        if rules is None:
            rules = {rule.kind: rule.settings() for rule in rule_kinds()}
        merged = dict(rules)
        for kind, value in by_kind.items():
            if kind not in merged:
                raise TypeError(f"Thresholds: no rule of kind {kind!r} "
                                f"(known: {', '.join(sorted(merged))})")
            merged[kind] = value
        set_ = object.__setattr__  # frozen: the one place the fields are set
        set_(self, "min_coverage", min_coverage)
        set_(self, "confidence", confidence if confidence is not None else ConfidenceBands())
        set_(self, "headroom", headroom if headroom is not None else Headroom())
        set_(self, "same_cpu_type", same_cpu_type)
        set_(self, "rules", merged)

    if not TYPE_CHECKING:  # typed code uses settings(): mypy would accept any attribute
        def __getattr__(self, name: str) -> Any:
            rules = self.__dict__.get("rules")
            if rules is not None and name in rules:
                return rules[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self, cls: type[_S]) -> _S:
        """The settings of the rule whose settings class is ``cls``."""
        for value in self.rules.values():
            if type(value) is cls:
                return value
        raise LookupError(f"no rule with {cls.__name__} is registered")


def parse_thresholds(data: Mapping[str, Any] | None) -> Thresholds:
    """The ``rules:`` mapping of the configuration file -> :class:`Thresholds`.

    Raises ``ConfigError("rules.<key>: ...")`` on an unknown key or a bad value: the keys
    are the general ones and one per registered rule kind, each rule's keys those its
    settings declare.
    """
    rules = rule_kinds()
    parsers: dict[str, Check] = dict(GENERAL)
    for rule in rules:
        parsers[rule.kind] = rule.parse
    top = dataclasses.replace(Thresholds(), **parsed(data or {}, "rules", parsers))
    _check(top)
    for rule in rules:
        if rule.check is not None:
            rule.check(top)
    return top


def _check(t: Thresholds) -> None:
    """Relations between the general values (each error names the key to change)."""
    if t.confidence.medium > t.confidence.high:
        fail("rules.confidence.medium",
             f"must not exceed rules.confidence.high ({t.confidence.high})")
    if t.min_coverage > t.confidence.medium:
        fail("rules.min_coverage",
             f"must not exceed rules.confidence.medium ({t.confidence.medium})")
