"""The ``rules:`` section of the configuration: the settings every rule shares
(coverage, confidence, headroom, which servers are replicas) and each registered rule's
own.

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
      headroom: {cpu: 0.6, memory: 0.8, disk: 0.8, peak: 0.9}
      same_cpu_type: true
      ha: {replica_label: ha_group, placement_group_types: [spread]}
      max_options: 3                # targets a type change lists, the chosen one first
      <kind>: {enabled: true, <setting>: <value>, ...}   # one section per rule

A bad value raises :class:`infrascope_recommender.config.ConfigError` naming the key,
e.g. ``rules.idle.cpu_avg_max: expected a ratio in (0, 1], got 5``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# The Thresholds type lives with the rules (they are its fields' types; one module, no
# import cycle); this module parses the configuration's ``rules:`` into it.
from .rules import GENERAL, ConfidenceBands, Headroom, HighAvailability, Thresholds, rule_kinds
from .settings import Check, fail, parsed

__all__ = ["GENERAL", "ConfidenceBands", "Headroom", "HighAvailability", "Thresholds",
           "parse_thresholds", "rule_kinds"]


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
