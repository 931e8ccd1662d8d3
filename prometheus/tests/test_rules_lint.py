"""Our own lint of the rules pack, the monitoring-mixins way (what `mixtool lint` checks
for alerts, plus the recording-rule conventions of the project).

Alerts: CamelCase names sharing the first word "InfraScope"; `severity` critical |
warning | info; `category` availability | capacity | cost | exporter; a static
`summary` sentence (capital first, full stop at the end); a templated `description`;
`runbook_url` pointing at docs/runbooks/<alert>.md, which exists and says what the
alert means, its impact and what to do.

Recording rules: `level:metric:operations` names; no subqueries over more than an hour
(the hourly rules' clock-aligned ones, `[59m59s:5m]` and `[1h:1h]`: a 30-day subquery at
an hourly step re-evaluates its input hundreds of times per evaluation), except with a
step of at least a day and at most ~31 points (the recurring daily peak's `[30d:1d]`:
30 evaluations of a one-day window, about what one 30-day range reads); no `avg`
across series (ratios are summed as numerator and denominator); ranges of a day or more
only over recorded (colon-named) series; group intervals of at most 5m, except the
hourly group (once an hour: its series are read with ranges only).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from rules_testlib import (
    PROMETHEUS_DIR,
    RULE_FILES,
    RUNBOOKS_DIR,
    alerting_rules,
    load_rule_file,
    recording_rules,
)

from infrascope_core.durations import parse_duration

PREFIX = "InfraScope"
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"availability", "capacity", "cost", "exporter"}
CAMEL = re.compile(r"^(?:[A-Z][a-z0-9]+)+$")
RECORD_NAME = re.compile(r"^(?:[a-z][a-z0-9_]*)?:[a-z][a-z0-9_]*:[a-z0-9][a-z0-9_]*$")
DURATION = re.compile(r"^(?:\d+[smhdwy])+$")
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## What to do")
# Alerts whose value is a 0/1 flag or a constant: $value would say nothing there.
BOOLEAN_ALERTS = {
    "InfraScopeAgentDown",  # up == 0
    "InfraScopeExporterDown",  # up == 0 or absent()
    "InfraScopeHetznerCredentialsRejected",  # flag == 1
    "InfraScopeServerPriceUnknown",  # flag == 0
    "InfraScopeServerUtilisationDataMissing",  # inventory info series (1) without data
}
# Fleet-wide alerts: no labels to show beyond severity and category.
FLEET_ALERTS = {"InfraScopeMonthlyCostJump"}
RUNBOOK_BASE = yaml.safe_load((PROMETHEUS_DIR / "config.yaml").read_text())["runbook_base_url"]

DAY = 86400
MAX_DAILY_POINTS = 31  # a subquery with a step of a day or more: at most a month of points
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*\[([^\]]+)\]")
_SUBQUERY_OF_EXPR = re.compile(r"\)\s*\[([^\]]+:[^\]]*)\]")  # (expression)[range:step]
def seconds(duration: str) -> float:
    return parse_duration(duration, "duration", prometheus=True, allow_zero=True)


def lint_alert(rule: dict[str, Any]) -> list[str]:
    errors = []
    name = rule.get("alert", "")
    if not name.startswith(PREFIX) or not CAMEL.match(name):
        errors.append(f"name {name!r}: CamelCase starting with {PREFIX}")
    labels = rule.get("labels") or {}
    if labels.get("severity") not in SEVERITIES:
        errors.append(f"severity {labels.get('severity')!r} not in {sorted(SEVERITIES)}")
    if labels.get("category") not in CATEGORIES:
        errors.append(f"category {labels.get('category')!r} not in {sorted(CATEGORIES)}")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        errors.append(f"for {rule['for']!r} is not a duration")
    ann = rule.get("annotations") or {}
    summary = ann.get("summary", "")
    if not summary:
        errors.append("no summary")
    elif "{{" in summary or "$labels" in summary or "$value" in summary:
        errors.append("summary must be static (no templating)")
    elif not summary[0].isupper() or not summary.endswith("."):
        errors.append("summary: a sentence with a capital first and a full stop at the end")
    description = ann.get("description", "")
    if "{{" not in description:
        errors.append("description must be templated")
    if "$labels." not in description and name not in FLEET_ALERTS:
        errors.append("description must name the object with {{ $labels.* }}")
    if "$value" not in description and name not in BOOLEAN_ALERTS:
        errors.append("description must show {{ $value }}")
    url = ann.get("runbook_url", "")
    if url != f"{RUNBOOK_BASE}/{name}.md":
        errors.append(f"runbook_url {url!r} is not {RUNBOOK_BASE}/{name}.md")
    runbook = RUNBOOKS_DIR / f"{name}.md"
    if not runbook.is_file():
        errors.append(f"runbook {runbook} missing")
    else:
        text = runbook.read_text()
        if not text.startswith(f"# {name}\n"):
            errors.append(f"runbook {runbook.name} must start with '# {name}'")
        errors += [f"runbook {runbook.name} lacks section {s!r}"
                   for s in RUNBOOK_SECTIONS if s not in text]
    return errors


def lint_expr(expr: str) -> list[str]:
    errors = []
    bare = _STRING.sub('""', expr)
    ranges = [*_RANGE.findall(bare), *(("(…)", w) for w in _SUBQUERY_OF_EXPR.findall(bare))]
    for name, window in ranges:
        if ":" in window:
            span, _, step = window.partition(":")
            if seconds(span) <= 3600:
                continue
            if not step or seconds(step) < DAY:
                errors.append(f"subquery [{window}] over more than an hour at a step "
                              "under a day")
            elif seconds(span) / seconds(step) > MAX_DAILY_POINTS:
                errors.append(f"subquery [{window}]: more than {MAX_DAILY_POINTS} points")
        elif seconds(window) >= 86400 and ":" not in name:
            errors.append(f"[{window}] over raw series {name}: long windows read recorded "
                          "series")
    return errors


def lint_record(rule: dict[str, Any]) -> list[str]:
    errors = []
    name = rule.get("record", "")
    if not RECORD_NAME.match(name):
        errors.append(f"name {name!r} is not level:metric:operations")
    expr = _STRING.sub('""', rule.get("expr", ""))
    if re.search(r"\bavg\s*(?:\(|by\b|without\b)", expr):
        errors.append("avg across series: sum numerators and denominators instead")
    return errors + lint_expr(rule.get("expr", ""))


@pytest.mark.parametrize("rule", alerting_rules(),
                         ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_style(rule: dict[str, Any]) -> None:
    assert lint_alert(rule) == [] and lint_expr(rule["expr"]) == []


@pytest.mark.parametrize("rule", recording_rules(), ids=lambda r: r["record"])
def test_recording_rule_style(rule: dict[str, Any]) -> None:
    assert lint_record(rule) == []


def test_groups_and_names() -> None:
    alerts = alerting_rules()
    # one first word for the pack, several severities of one alert at most once each
    assert len({a["alert"] for a in alerts}) >= 11
    pairs = [(a["alert"], a["labels"]["severity"]) for a in alerts]
    assert len(pairs) == len(set(pairs))
    # Each record is written by one rule, except the 30-day figures: every shard's group
    # records the same names (for other servers), the same list in the same order.
    shards = [[r["record"] for r in group["rules"]] for path in RULE_FILES
              for group in load_rule_file(path)
              if re.fullmatch(r"infrascope-utilisation-30d(-\d+)?", group["name"])]
    assert shards and all(s == shards[0] for s in shards)
    assert len(shards[0]) == len(set(shards[0]))
    records = [r["record"] for r in recording_rules() if r["record"] not in shards[0]]
    assert len(records) == len(set(records)), "a series recorded twice"
    names = set()
    for path in RULE_FILES:
        for group in load_rule_file(path):
            assert group["name"] not in names, f"group {group['name']} twice"
            names.add(group["name"])
            assert group["name"].startswith("infrascope-")
            limit = 3600 if group["name"] == "infrascope-utilisation-hourly" else 300
            assert 0 < seconds(group["interval"]) <= limit, f"{group['name']}: interval"

def test_every_runbook_belongs_to_an_alert() -> None:
    alerts = {a["alert"] for a in alerting_rules()}
    runbooks = {p.stem for p in RUNBOOKS_DIR.glob("*.md") if p.name != "README.md"}
    assert runbooks == alerts


# The lint has teeth: each rule below breaks exactly what its expected error names.
GOOD_ALERT = next(a for a in alerting_rules() if a["alert"] == "InfraScopeServerCpuSaturated")


def broken(**changes: Any) -> dict[str, Any]:
    rule = yaml.safe_load(yaml.safe_dump(GOOD_ALERT))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            rule[section][field] = value
        else:
            rule[section] = value
    return rule


@pytest.mark.parametrize(("rule", "error"), [
    (broken(alert="HighCpu"), "CamelCase starting with InfraScope"),
    (broken(alert="InfraScope_cpu_high"), "CamelCase"),
    (broken(labels__severity="page"), "severity 'page'"),
    (broken(labels__category="money"), "category 'money'"),
    (broken(annotations__summary="CPU of {{ $labels.server_name }} is high."), "static"),
    (broken(annotations__summary="server CPU is saturated."), "capital first"),
    (broken(annotations__summary="Server CPU is saturated"), "full stop"),
    (broken(annotations__description="CPU is saturated."), "templated"),
    (broken(annotations__description="CPU at {{ $value }}."), "{{ $labels.* }}"),
    (broken(annotations__description="{{ $labels.server_name }} is busy."), "$value"),
    (broken(annotations__runbook_url="https://example.com/x"), "runbook_url"),
    (broken(alert="InfraScopeNoSuchAlert",
            annotations__runbook_url=f"{RUNBOOK_BASE}/InfraScopeNoSuchAlert.md"),
     "runbook"),
])
def test_lint_catches_alert_style_errors(rule: dict[str, Any], error: str) -> None:
    errors = lint_alert(rule)
    assert any(error in e for e in errors), errors


@pytest.mark.parametrize(("rule", "error"), [
    ({"record": "cpu_utilisation_avg30d", "expr": "x:y:z"}, "level:metric:operations"),
    ({"record": "a:b:c", "expr": "avg_over_time(x:y:z[30d:1h])"}, "subquery"),
    ({"record": "a:b:c", "expr": "max_over_time(rate(x[5m])[2h:5m])"}, "subquery [2h:5m]"),
    # the daily peak's form at an hourly step: 720 evaluations, not 30
    ({"record": "a:b:c", "expr": "quantile_over_time(0.5, max_over_time(x:y:z[1d])[30d:1h])"},
     "subquery [30d:1h] over more than an hour at a step under a day"),
    ({"record": "a:b:c", "expr": "quantile_over_time(0.5, max_over_time(x:y:z[1d])[30d:])"},
     "subquery [30d:]"),
    ({"record": "a:b:c", "expr": "max_over_time(max_over_time(x:y:z[1d])[400d:1d])"},
     "more than 31 points"),
    ({"record": "a:b:c", "expr": "avg_over_time(node_load1[30d])"}, "raw series node_load1"),
    ({"record": "a:b:c", "expr": 'max_over_time(up{job="x"}[2d])'}, "raw series up"),
    ({"record": "a:b:c", "expr": "avg by (location) (x:cpu_utilisation:ratio)"}, "avg across"),
])
def test_lint_catches_recording_rule_errors(rule: dict[str, Any], error: str) -> None:
    errors = lint_record(rule)
    assert any(error in e for e in errors), errors


def test_lint_passes_what_it_should() -> None:
    assert lint_record({"record": ":monthly_cost_euros:sum",
                        "expr": 'avg_over_time(x:y:z[30d]) + rate(a{b="[1d:]"}[5m])'}) == []
    assert lint_record({"record": "a:b:c", "expr": "quantile_over_time(0.5, max_over_time("
                                                   'x:y:z{shard=~"00|50"}[1d])[30d:1d])'}) == []
