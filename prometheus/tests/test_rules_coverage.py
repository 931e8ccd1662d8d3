"""Every rule is unit-tested: a new rule without a promtool test fails here.

- every `record:` appears in a `promql_expr_test` with at least one expected sample;
- every alert, per severity, fires in an `alert_rule_test` with its `summary`,
  `description` and `runbook_url` given, and is checked silent in the same test case
  before its `for` has elapsed (for alerts without `for`: at an earlier time);
- every rule file is loaded by some test file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from rules_testlib import PROMTOOL_TESTS, RULE_FILES, alerting_rules, recording_rules

from infrascope_core.durations import parse_duration


def seconds(duration: str | int | None) -> float:
    """A rule's ``for`` or a test's ``eval_time``; none given: 0."""
    if duration in (None, "", 0):
        return 0
    return parse_duration(duration, "duration", prometheus=True, allow_zero=True)


def promtool_test_files() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, yaml.safe_load(p.read_text())) for p in PROMTOOL_TESTS]


def expr_tests() -> list[str]:
    return [t["expr"] for _, doc in promtool_test_files() for case in doc["tests"]
            for t in case.get("promql_expr_test") or [] if t.get("exp_samples")]


def alert_checks() -> list[tuple[str, list[dict[str, Any]]]]:
    """(test case id, its alert_rule_test entries)."""
    return [(f"{path.name}: {case.get('name', i)}", case.get("alert_rule_test") or [])
            for path, doc in promtool_test_files() for i, case in enumerate(doc["tests"])]


def mentions(expr: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_:]){re.escape(name)}(?![A-Za-z0-9_:])", expr) is not None


def test_there_are_promtool_tests() -> None:
    assert len(PROMTOOL_TESTS) >= 4


@pytest.mark.parametrize("record", sorted({r["record"] for r in recording_rules()}))
def test_recording_rule_has_an_expected_value(record: str) -> None:
    assert any(mentions(expr, record) for expr in expr_tests()), (
        f"{record}: no promql_expr_test with exp_samples mentions it")


@pytest.mark.parametrize("rule", alerting_rules(),
                         ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_fires_and_stays_silent_before_for(rule: dict[str, Any]) -> None:
    name, severity = rule["alert"], rule["labels"]["severity"]
    hold = seconds(rule.get("for"))

    def listed(check: dict[str, Any]) -> list[dict[str, Any]]:
        return [a for a in check.get("exp_alerts") or []
                if (a.get("exp_labels") or {}).get("severity") == severity]

    fires = silent_before = False
    for _case, checks in alert_checks():
        mine = [c for c in checks if c["alertname"] == name]
        firing = [c for c in mine if listed(c)]
        for c in firing:
            for a in listed(c):
                ann = a.get("exp_annotations") or {}
                assert {"summary", "description", "runbook_url"} <= set(ann), (
                    f"{name} ({severity}) at {c['eval_time']}: give every annotation")
                assert ann["summary"] == rule["annotations"]["summary"]
                assert ann["runbook_url"] == rule["annotations"]["runbook_url"]
            fires = True
            t_fire = seconds(c["eval_time"])
            for quiet in mine:
                t = seconds(quiet["eval_time"])
                if not listed(quiet) and t < t_fire and (hold == 0 or t_fire - t < hold):
                    silent_before = True
    assert fires, f"{name} ({severity}): no alert_rule_test expects it to fire"
    assert silent_before, (
        f"{name} ({severity}): no check that it is silent before its for ({rule.get('for')}) "
        "has elapsed, in the test case where it fires")


@pytest.mark.parametrize("name", sorted({a["alert"] for a in alerting_rules()}))
def test_alert_has_a_silent_case(name: str) -> None:
    """Below the threshold (or without the condition) the alert stays silent."""
    silent = [c for _, checks in alert_checks() for c in checks
              if c["alertname"] == name and not c.get("exp_alerts")]
    assert silent, f"{name}: no alert_rule_test with exp_alerts: []"


def test_every_rule_file_is_tested() -> None:
    loaded = {match.resolve() for path, doc in promtool_test_files()
              for f in doc["rule_files"]  # promtool expands globs in rule_files
              for match in path.parent.glob(f)}
    assert {p.resolve() for p in RULE_FILES} <= loaded
