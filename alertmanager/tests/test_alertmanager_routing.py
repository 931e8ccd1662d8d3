"""Every alert of the rules pack reaches its intended receiver.

Generated from the rule files: one case per ``alert:`` rule in prometheus/rules/*.yml
(fixtures/fallback-alerts.rules.yml only while the pack has no alert). The intent —
which receiver an alert *should* reach — comes from its severity and category through
``intended_receiver`` (alertmanager_testlib), written independently of
alertmanager.yml; ``amtool config routes test --verify.receivers`` then checks what the
configuration actually does (exit 1 on a mismatch). An alert without a valid severity
or category has no intent and fails, so a new alert cannot slip through unrouted.

Each alert is tested with its static labels plus the per-server labels the real series
carry, against both the production and the demo configuration.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alertmanager_testlib import (
    AMTOOL,
    DEMO,
    FALLBACK_RULES,
    PRODUCTION,
    REQUIRED_ANNOTATIONS,
    RULES_DIR,
    AlertRule,
    alert_rules,
    intended_receiver,
    routes_test,
    rule_files,
    using_fallback,
)

pytestmark = pytest.mark.skipif(not Path(AMTOOL).exists(),
                                reason="amtool (Debian prometheus-alertmanager) is not installed")

ALERTS = alert_rules()
CONFIGS = [PRODUCTION, DEMO]
# Target and info-series labels an alert from the real series also carries; routing
# must not depend on them, so they are passed to amtool as well.
SERIES_LABELS = {"job": "hetzner", "instance": "127.0.0.1:8790", "source": "cloud",
                 "server_id": "4711", "server_name": "web-1", "server_type": "cx22",
                 "location": "fsn1"}


def labels_of(alert: AlertRule) -> dict[str, str]:
    return {**SERIES_LABELS, **alert.labels, "alertname": alert.name}


def test_alerts_were_found() -> None:
    assert ALERTS, f"no alert rules in {rule_files()}"
    if not using_fallback():
        assert all(a.file.parent == RULES_DIR for a in ALERTS)
        assert FALLBACK_RULES not in rule_files()


@pytest.mark.parametrize("alert", ALERTS, ids=[a.id for a in ALERTS])
def test_alert_follows_label_contract(alert: AlertRule) -> None:
    intended_receiver(alert.name, alert.labels)  # raises outside the contract
    missing = [a for a in REQUIRED_ANNOTATIONS if not alert.annotations.get(a)]
    assert not missing, f"{alert.name} ({alert.file.name}) lacks annotations {missing}"


@pytest.mark.parametrize("config", CONFIGS, ids=["production", "demo"])
@pytest.mark.parametrize("alert", ALERTS, ids=[a.id for a in ALERTS])
def test_alert_reaches_intended_receiver(alert: AlertRule, config: Path) -> None:
    try:
        receiver = intended_receiver(alert.name, alert.labels)
    except ValueError as exc:
        pytest.fail(f"{alert.file.name}: no route intended: {exc}")
    proc = routes_test(config, labels_of(alert), receiver)
    assert proc.returncode == 0, (
        f"{alert.name} {alert.labels} should reach {receiver!r} but reaches "
        f"{proc.stdout.strip()!r}\n{proc.stderr}")
    assert proc.stdout.strip() == receiver


# Decisions not (yet) exercised by the pack's own alerts, pinned here.
DECISIONS = [
    # A critical cost alert pages; it does not wait for the digest.
    ({"alertname": "InfraScopeCostRunaway", "severity": "critical", "category": "cost"},
     "pager"),
    # Recommender alerts go to the digest, whatever category they carry.
    ({"alertname": "InfraScopeRecommendationRightSize", "severity": "warning",
      "category": "capacity"}, "digest"),
    ({"alertname": "InfraScopeRecommendationIdle", "severity": "warning", "category": "cost"},
     "digest"),
    # Info is never routed, not even cost info.
    ({"alertname": "InfraScopeSomethingInfo", "severity": "info", "category": "cost"}, "null"),
    ({"alertname": "InfraScopeSomethingInfo", "severity": "info", "category": "capacity"},
     "null"),
    ({"alertname": "InfraScopeSomethingWarning", "severity": "warning",
      "category": "availability"}, "chat"),
    # Outside the contract: Alertmanager's root receiver catches it (nothing is lost),
    # but the rule-file test above fails for such an alert.
    ({"alertname": "SomeoneElsesAlert"}, "chat"),
    ({"alertname": "InfraScopeNoSeverity", "category": "capacity"}, "chat"),
]


@pytest.mark.parametrize("labels,receiver", DECISIONS,
                         ids=[f"{d[0]['alertname']}-{d[1]}" for d in DECISIONS])
def test_routing_decisions(labels: dict[str, str], receiver: str) -> None:
    proc = routes_test(PRODUCTION, labels, receiver)
    assert proc.returncode == 0, f"{labels} reaches {proc.stdout.strip()!r}, not {receiver!r}"


@pytest.mark.parametrize("labels,problem", [
    ({"severity": "page", "category": "capacity"}, "severity"),
    ({"category": "capacity"}, "severity"),
    ({"severity": "warning", "category": "network"}, "category"),
    ({"severity": "warning"}, "category"),
])
def test_alert_outside_contract_has_no_intended_receiver(labels: dict[str, str],
                                                          problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        intended_receiver("InfraScopeNew", labels)
    with pytest.raises(ValueError, match="start with"):
        intended_receiver("NodeDown", {"severity": "warning", "category": "capacity"})


def test_wrong_receiver_is_detected() -> None:
    """--verify.receivers really fails on a mismatch (the test above relies on it)."""
    proc = routes_test(PRODUCTION, {"alertname": "InfraScopeX", "severity": "critical",
                                    "category": "capacity"}, "chat")
    assert proc.returncode == 1
