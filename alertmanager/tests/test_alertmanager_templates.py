"""The notification templates, rendered by ``amtool template render`` against sample data.

Sample data is Alertmanager's notification data (the webhook payload shape):
fixtures/notification-idle-servers.json (a cost digest of two servers) and payloads
built below. Each Slack, e-mail and PagerDuty template must show the server name,
its cost and a link to the Grafana dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from alertmanager_testlib import AMTOOL, FIXTURES, PRODUCTION, render_template

pytestmark = pytest.mark.skipif(not Path(AMTOOL).exists(),
                                reason="amtool (Debian prometheus-alertmanager) is not installed")

DIGEST = FIXTURES / "notification-idle-servers.json"
GRAFANA = "http://localhost:3000"
IDLE_DASHBOARD = f"{GRAFANA}/d/infrascope-server?var-source=cloud&var-server_id=4711"
OVERRIDE_DASHBOARD = "https://grafana.example.com/d/infrascope-cost?var-server_id=2321"
RUNBOOK = "https://github.com/infrascope/infrascope/blob/main/docs/runbooks/"


def alert(alertname: str, severity: str, category: str, *, status: str = "firing",
          server: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": severity, "category": category,
              "job": "hetzner", **(server or {})}
    return {
        "status": status, "labels": labels,
        "annotations": {"summary": f"{alertname} summary.",
                        "description": f"{alertname} description.",
                        "runbook_url": f"{RUNBOOK}{alertname}.md", **annotations},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T11:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up", "fingerprint": "0123456789abcdef",
    }


def notification(receiver: str, alerts: list[dict[str, Any]],
                 group_labels: dict[str, str]) -> dict[str, Any]:
    common_labels = dict(set.intersection(*(set(a["labels"].items()) for a in alerts)))
    common_annotations = dict(set.intersection(*(set(a["annotations"].items())
                                                 for a in alerts)))
    firing = any(a["status"] == "firing" for a in alerts)
    return {"version": "4", "receiver": receiver, "status": "firing" if firing else "resolved",
            "groupKey": "{}:{}", "truncatedAlerts": 0, "groupLabels": group_labels,
            "commonLabels": common_labels, "commonAnnotations": common_annotations,
            "externalURL": "http://127.0.0.1:9093", "alerts": alerts}


WEB1 = {"source": "cloud", "server_id": "7", "server_name": "web-1", "server_type": "cx22",
        "location": "nbg1"}


@pytest.fixture
def data(tmp_path: Path):
    def write(payload: dict[str, Any]) -> Path:
        path = tmp_path / f"data-{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps(payload))
        return path
    return write


def render(name: str, data: Path, *, html: bool = False) -> str:
    return render_template(f'{{{{ template "{name}" . }}}}', data, html=html)


def test_slack_digest_shows_server_cost_and_dashboard() -> None:
    assert render("slack.infrascope.title", DIGEST) == "[FIRING:2] InfraScope cost digest"
    text = render("slack.infrascope.text", DIGEST)
    assert "*Server:* staging-web-1 (cloud server 4711, cx32 in fsn1)" in text
    assert "*Cost:* 7.05 € a month" in text
    assert f"<{IDLE_DASHBOARD}|Dashboard>" in text
    assert f"<{RUNBOOK}InfraScopeServerIdle.md|Runbook>" in text
    assert "*Server has been idle for 30 days.* `InfraScopeServerIdle` warning/cost" in text
    # The second alert: a dedicated server whose alert brings its own dashboard link.
    assert "*Server:* db-<main> (dedicated server 2321, AX41-NVMe in FSN1-DC14)" in text
    assert "*Cost:* 12.50 € a month" in text
    assert f"<{OVERRIDE_DASHBOARD}|Dashboard>" in text
    assert render("slack.infrascope.color", DIGEST) == "warning"
    # Two servers in one notification: the title links the cost dashboard, each alert
    # its own server's.
    assert render("infrascope.group_dashboard_url", DIGEST) == f"{GRAFANA}/d/infrascope-cost"


def test_email_digest_subject_and_bodies() -> None:
    assert render("email.infrascope.subject", DIGEST) == "[FIRING:2] InfraScope cost digest"
    html = render("email.infrascope.html", DIGEST, html=True)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<td>staging-web-1 (cloud server 4711, cx32 in fsn1)</td>" in html
    assert "<td>7.05 € a month</td>" in html and "<td>12.50 € a month</td>" in html
    assert f'<a href="{IDLE_DASHBOARD}">Dashboard</a>' in html
    assert f'<a href="{OVERRIDE_DASHBOARD}">Dashboard</a>' in html
    assert f'<a href="{RUNBOOK}InfraScopeServerIdle.md">Runbook</a>' in html
    # Label and annotation values are HTML-escaped.
    assert "db-&lt;main&gt;" in html and "db-<main>" not in html
    text = render("email.infrascope.text", DIGEST)
    assert "Server:    staging-web-1 (cloud server 4711, cx32 in fsn1)" in text
    assert "Cost:      7.05 € a month" in text
    assert f"Dashboard: {IDLE_DASHBOARD}" in text
    assert "Alertmanager: http://127.0.0.1:9093" in text


def test_critical_server_alert(data) -> None:
    payload = notification("pager", [alert(
        "InfraScopeServerMemorySaturated", "critical", "capacity", server=WEB1,
        monthly_cost="4.51")],
        {"alertname": "InfraScopeServerMemorySaturated", "source": "cloud", "server_id": "7"})
    path = data(payload)
    title = "[FIRING:1] InfraScopeServerMemorySaturated on web-1"
    dashboard = f"{GRAFANA}/d/infrascope-server?var-source=cloud&var-server_id=7"
    assert render("slack.infrascope.title", path) == title
    assert render("email.infrascope.subject", path) == title
    assert render("slack.infrascope.color", path) == "danger"
    text = render("slack.infrascope.text", path)
    assert text.startswith(":rotating_light: *InfraScopeServerMemorySaturated summary.*")
    assert "*Server:* web-1 (cloud server 7, cx22 in nbg1)" in text
    assert "*Cost:* 4.51 € a month" in text
    assert f"<{dashboard}|Dashboard>" in text
    assert render("pagerduty.infrascope.description", path) == (
        f"{title}: InfraScopeServerMemorySaturated summary.")
    details = render("pagerduty.infrascope.details", path)
    assert "on web-1 (cloud server 7, cx22 in nbg1), 4.51 € a month" in details
    assert f"Dashboard: {dashboard}" in details


def test_resolved_and_fleet_alerts(data) -> None:
    payload = notification("pager", [alert(
        "InfraScopeHetznerCredentialsRejected", "critical", "exporter", status="resolved")],
        {"alertname": "InfraScopeHetznerCredentialsRejected"})
    path = data(payload)
    assert render("slack.infrascope.title", path) == (
        "[RESOLVED] InfraScopeHetznerCredentialsRejected")
    assert render("slack.infrascope.color", path) == "good"
    text = render("slack.infrascope.text", path)
    assert text.startswith(":white_check_mark:")
    assert "*Server:*" not in text and "*Cost:*" not in text  # not about a server, no cost
    assert f"<{GRAFANA}/d/infrascope-fleet|Dashboard>" in text
    html = render("email.infrascope.html", path, html=True)
    assert "<td>—</td>" in html and "(resolved)" in html
    # A fleet-wide cost alert links to the cost dashboard.
    cost = data(notification("digest", [alert("InfraScopeMonthlyCostJump", "warning", "cost")],
                             {"category": "cost"}))
    assert render("infrascope.group_dashboard_url", cost) == f"{GRAFANA}/d/infrascope-cost"


def test_long_slack_messages_are_capped(data) -> None:
    alerts = [alert("InfraScopeServerIdle", "warning", "cost",
                    server={**WEB1, "server_id": str(i), "server_name": f"srv-{i}"},
                    monthly_cost=f"{i}.00") for i in range(25)]
    path = data(notification("digest", alerts, {"category": "cost"}))
    text = render("slack.infrascope.text", path)
    assert text.count("*Server:*") == 20
    assert "srv-19 " in text and "srv-20 " not in text
    assert "… 25 alerts in all: the rest are in Alertmanager (http://127.0.0.1:9093)." in text
    # E-mail has no such limit.
    assert render("email.infrascope.html", path, html=True).count("€ a month</td>") == 25


def test_every_template_used_by_the_config_renders() -> None:
    """Each `{{ template "X" . }}` in alertmanager.yml exists and renders the sample data."""
    text = PRODUCTION.read_text(encoding="utf-8")
    used = sorted(set(re.findall(r'template "([^"]+)"', text)))
    assert {"slack.infrascope.title", "slack.infrascope.text", "email.infrascope.subject",
            "email.infrascope.html", "pagerduty.infrascope.description"} <= set(used)
    config = yaml.safe_load(text)
    assert config["templates"] == ["templates/*.tmpl"]
    for name in used:
        out = render(name, DIGEST, html=name.endswith(".html"))
        assert out.strip(), name
