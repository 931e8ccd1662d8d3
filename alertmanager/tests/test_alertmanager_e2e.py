"""End to end: real series -> real Prometheus with the rules pack -> real Alertmanager
-> the test's own webhook sink.

Everything runs on loopback, each process is stopped by pid:

- an exposition server of the test's own serves series as the exporter would
  (``job="hetzner"``): the Robot API rejects the credentials and fails, and server
  4711 has a projected traffic overage and no known price;
- Prometheus (Debian's 2.42) scrapes it every second and loads the rule files of the
  pack (prometheus/rules/*.yml; the fallback fixture only while the pack has no
  alerts). Two changes, for the test's time budget only: every group is evaluated
  every second, and the alerts the test fires get ``for: 0s`` (all other alerts keep
  their ``for`` and so cannot fire within the test). Expressions, labels and
  annotations are the pack's own;
- Alertmanager (Debian's 0.25) runs the demo configuration rendered from
  alertmanager.yml by render_demo.py with ``--fast`` (group_wait 1 s): the production
  routing tree and inhibitions, every receiver a webhook to the sink.

Expected, each checked through the sink or Alertmanager's API:
  InfraScopeHetznerCredentialsRejected  critical -> pager
  InfraScopeTrafficOverageProjected     warning/cost -> digest, with the server's labels
  InfraScopeHetznerApiFailing           warning -> chat, but inhibited by the rejection
  InfraScopeServerPriceUnknown          info -> null: never sent

And grouping (``test_an_outage_is_one_notification_per_alert_name_and_receiver``):
alerts of one name firing for many servers at once, posted to Alertmanager's API as
Prometheus posts them, reach each receiver as one notification listing every server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from alertmanager_testlib import (
    ALERTMANAGER,
    AMTOOL,
    PRODUCTION,
    PROMETHEUS,
    REQUIRED_ANNOTATIONS,
    alert_rules,
    load_render_demo,
    render_template,
    rule_files,
)

from infrascope_core.alertmanager import Alertmanager
from infrascope_core.prometheus import Prometheus
from infrascope_core.service import wait_until

pytestmark = pytest.mark.skipif(
    not (Path(PROMETHEUS).exists() and Path(ALERTMANAGER).exists()),
    reason="prometheus and prometheus-alertmanager (Debian packages) are needed")

DEADLINE = 60.0  # seconds for an alert to travel from the series to the sink

SERVER = {"source": "cloud", "server_id": "4711", "server_name": "web-1",
          "server_type": "cx22", "location": "fsn1", "hcloud_project": "shop"}


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in d.items())


EXPOSITION = f"""\
# HELP hetzner_api_up 1 if the last call to this API succeeded, 0 if it failed.
# TYPE hetzner_api_up gauge
hetzner_api_up{{api="robot",project="robot"}} 0
hetzner_api_up{{api="cloud",project="shop"}} 1
# HELP hetzner_api_last_success_timestamp_seconds When a call to this API last succeeded.
# TYPE hetzner_api_last_success_timestamp_seconds gauge
hetzner_api_last_success_timestamp_seconds{{api="robot",project="robot"}} 0
hetzner_api_last_success_timestamp_seconds{{api="cloud",project="shop"}} {time.time():.0f}
# HELP hetzner_api_credentials_rejected 1 if the API rejected the token or password.
# TYPE hetzner_api_credentials_rejected gauge
hetzner_api_credentials_rejected{{api="robot",project="robot"}} 1
hetzner_api_credentials_rejected{{api="cloud",project="shop"}} 0
# HELP hetzner_server_info Attributes of a server (1).
# TYPE hetzner_server_info gauge
hetzner_server_info{{{_labels(SERVER)}}} 1
# HELP hetzner_server_price_known 1 if the server's price is known.
# TYPE hetzner_server_price_known gauge
hetzner_server_price_known{{source="cloud",server_id="4711"}} 0
# HELP hetzner_server_traffic_overage_projected_cost_euros Projected traffic overage cost.
# TYPE hetzner_server_traffic_overage_projected_cost_euros gauge
hetzner_server_traffic_overage_projected_cost_euros{{source="cloud",server_id="4711"}} 12.5
"""

PAGED = "InfraScopeHetznerCredentialsRejected"
DIGESTED = "InfraScopeTrafficOverageProjected"
INHIBITED = "InfraScopeHetznerApiFailing"
UNROUTED = "InfraScopeServerPriceUnknown"
FIRED = (PAGED, DIGESTED, INHIBITED, UNROUTED)

IGNORED = (OSError, KeyError, ValueError)  # answers not there yet: ask again


class Sink:
    """A webhook receiver recording every POST (path, JSON body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.lock:
                    sink.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def alerts(self, alertname: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(path, payload, alert) for every received alert with this name."""
        with self.lock:
            return [(path, payload, a) for path, payload in self.received
                    for a in payload.get("alerts", []) if a["labels"]["alertname"] == alertname]


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def exposition_server() -> ThreadingHTTPServer:
    body = EXPOSITION.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def test_rule_files_for_the_test(tmp_path: Path) -> None:
    """What the e2e test changes in the pack's rules: intervals and `for`, nothing else."""
    written = render_rules(tmp_path)
    original = {a.name for a in alert_rules()}
    assert set(FIRED) <= original, (
        f"the e2e scenario fires {sorted(set(FIRED) - original)}, which the rules no longer "
        "define: update EXPOSITION and FIRED in this test")
    for path, source in zip(written, rule_files(), strict=True):
        before = yaml.safe_load(source.read_text())
        after = yaml.safe_load(path.read_text())
        for g0, g1 in zip(before["groups"], after["groups"], strict=True):
            assert g1["interval"] == "1s"
            for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
                if r0.get("alert") in FIRED:
                    assert "for" not in r1
                    r1 = {**r1, "for": r0.get("for")} if "for" in r0 else r1
                assert r1 == r0


def render_rules(tmp_path: Path) -> list[Path]:
    out = []
    for i, source in enumerate(rule_files()):
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in data["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if rule.get("alert") in FIRED:
                    rule.pop("for", None)
        path = tmp_path / f"{i:02d}-{source.name}"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        out.append(path)
    return out


def test_alert_from_real_series_reaches_the_sink(
        tmp_path: Path, prometheus: Callable[..., Prometheus],
        alertmanager: Callable[..., Alertmanager]) -> None:
    rules = {a.name: a for a in alert_rules() if a.name in FIRED}
    assert set(rules) == set(FIRED), f"rules missing: {set(FIRED) - set(rules)}"
    sink, exporter = Sink(), exposition_server()
    threads = [serve(sink.server), serve(exporter)]
    try:
        # Alertmanager: the production tree with webhook receivers pointing at the sink.
        render_demo = load_render_demo()
        am = alertmanager(render_demo.dump(render_demo.render(
            yaml.safe_load(PRODUCTION.read_text()), f"http://127.0.0.1:{sink.port}/alerts",
            fast=True, template_dir=PRODUCTION.parent)), flags=["--log.level=warn"])
        am_url = am.url

        # Prometheus: scrapes the exposition as job "hetzner", evaluates the rules every second.
        prom_config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in render_rules(tmp_path)],
            "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [
                {"targets": [am.address]}]}]},
            "scrape_configs": [{"job_name": "hetzner", "static_configs": [
                {"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}],
        }
        prom = prometheus(prom_config, retention="1d", flags=["--log.level=warn"])
        procs = (am, prom)
        groups = prom.rule_groups()
        assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups

        # 1. The critical alert pages: the "pager" receiver's webhook gets it.
        path, payload, alert = wait_until(lambda: sink.alerts(PAGED), DEADLINE,
                                          f"{PAGED} at the sink", alive=procs,
                                          ignore=IGNORED)[0]
        assert path == "/alerts/pager"
        assert payload["version"] == "4"
        assert payload["status"] == "firing" and alert["status"] == "firing"
        assert payload["receiver"] == "pager"
        assert payload["groupLabels"] == {"alertname": PAGED}  # source/server_id: none
        assert payload["externalURL"] == am_url
        labels = alert["labels"]
        assert labels["alertname"] == PAGED
        assert labels["severity"] == "critical" == rules[PAGED].labels["severity"]
        assert labels["category"] == rules[PAGED].labels["category"]
        assert (labels["job"], labels["api"], labels["project"]) == ("hetzner", "robot", "robot")
        check_annotations(alert, rules[PAGED].annotations)
        assert "robot" in alert["annotations"]["description"]  # templated from the series
        assert alert["generatorURL"].startswith(f"{prom.url}/")
        assert alert["fingerprint"] and alert["startsAt"]

        # 2. The cost alert goes to the digest, grouped by category, with the server's labels.
        path, payload, alert = wait_until(lambda: sink.alerts(DIGESTED), DEADLINE,
                                          f"{DIGESTED} at the sink", alive=procs,
                                          ignore=IGNORED)[0]
        assert path == "/alerts/digest" and payload["receiver"] == "digest"
        assert payload["groupLabels"] == {"category": "cost"}
        labels = alert["labels"]
        assert labels["severity"] == "warning" and labels["category"] == "cost"
        for key in ("source", "server_id", "server_name", "server_type", "location"):
            assert labels[key] == SERVER[key], key
        check_annotations(alert, rules[DIGESTED].annotations)
        assert "web-1" in alert["annotations"]["description"]
        assert "12.50" in alert["annotations"]["description"]

        # 3. The failing-API warning reached Alertmanager and is inhibited by the rejection.
        def inhibited() -> list[dict[str, Any]]:
            return [a for a in am.alerts(f'alertname="{INHIBITED}"')
                    if a["status"]["inhibitedBy"]]
        suppressed = wait_until(inhibited, DEADLINE, f"{INHIBITED} inhibited in Alertmanager",
                                alive=procs, ignore=IGNORED)[0]
        assert suppressed["status"]["state"] == "suppressed"
        assert [r["name"] for r in suppressed["receivers"]] == ["chat"]
        assert suppressed["labels"]["api"] == "robot"

        # 4. The info alert reached Alertmanager, routed to the "null" receiver.
        def unrouted() -> list[dict[str, Any]]:
            return am.alerts(f'alertname="{UNROUTED}"')
        info = wait_until(unrouted, DEADLINE, f"{UNROUTED} in Alertmanager", alive=procs,
                          ignore=IGNORED)[0]
        assert [r["name"] for r in info["receivers"]] == ["null"]

        # Several group_wait/group_interval rounds later: neither was ever sent.
        time.sleep(4)
        assert sink.alerts(INHIBITED) == []
        assert sink.alerts(UNROUTED) == []
        with sink.lock:
            paths = {path for path, _ in sink.received}
        assert paths <= {"/alerts/pager", "/alerts/digest", "/alerts/chat"}, paths
    finally:
        for server in (sink.server, exporter):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


def check_annotations(alert: dict[str, Any], expected: dict[str, str]) -> None:
    annotations = alert["annotations"]
    for key in REQUIRED_ANNOTATIONS:
        assert annotations.get(key), f"{alert['labels']['alertname']}: no {key}"
    assert annotations["summary"] == expected["summary"]  # static in the rules
    assert annotations["runbook_url"] == expected["runbook_url"]
    assert "{{" not in annotations["description"]  # templated by Prometheus


OUTAGE_SERVERS = 19  # the simulator outage that sent 19 notifications in 2 s


def outage_alerts(rule: Any, count: int) -> list[dict[str, Any]]:
    """``count`` firing alerts of ``rule``, one per server, as Prometheus sends them."""
    out = []
    for i in range(count):
        server = {"source": "cloud", "server_id": str(5000 + i), "server_name": f"node-{i:02d}"}
        out.append({"labels": {"alertname": rule.name, **rule.labels, **server,
                               "job": "infrascope-agent"},
                    "annotations": {"summary": rule.annotations["summary"],
                                    "description": f"{server['server_name']} is unreachable.",
                                    "runbook_url": rule.annotations["runbook_url"]},
                    "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up"})
    return out


@pytest.mark.skipif(not Path(AMTOOL).exists(), reason="amtool is needed to render templates")
def test_an_outage_is_one_notification_per_alert_name_and_receiver(
        tmp_path: Path, alertmanager: Callable[..., Alertmanager]) -> None:
    by_name = {a.name: a for a in alert_rules()}
    # One alert name per receiver that notifies: a warning (chat), a critical (pager) and
    # a cost warning (digest), each firing for many servers in the same second.
    outages = {"chat": by_name["InfraScopeAgentDown"],
               "pager": next(a for a in alert_rules() if a.name == "InfraScopeServerMemorySaturated"
                             and a.labels["severity"] == "critical"),
               "digest": by_name["InfraScopeServerIdle"]}
    assert outages["chat"].labels["severity"] == "warning"
    assert outages["digest"].labels["category"] == "cost"
    sink = Sink()
    threads = [serve(sink.server)]
    try:
        render_demo = load_render_demo()
        am = alertmanager(render_demo.dump(render_demo.render(
            yaml.safe_load(PRODUCTION.read_text()), f"http://127.0.0.1:{sink.port}/alerts",
            fast=True, template_dir=PRODUCTION.parent)), flags=["--log.level=warn"])
        # As in the outage: the alerts arrive over a second or two, in several posts.
        for rule in outages.values():
            alerts = outage_alerts(rule, OUTAGE_SERVERS)
            am.post_alerts(alerts[:7])
            time.sleep(0.2)
            am.post_alerts(alerts[7:])
        for receiver, rule in outages.items():
            wait_until(lambda r=rule: sink.alerts(r.name), DEADLINE,
                       f"{rule.name} at /alerts/{receiver}", alive=(am,), ignore=IGNORED)
        time.sleep(4)  # several group_wait/group_interval (1 s) rounds: nothing more comes
        with sink.lock:
            received = list(sink.received)
        assert len(received) == len(outages), [(p, len(b["alerts"])) for p, b in received]
        for receiver, rule in outages.items():
            [(path, payload)] = [(p, b) for p, b in received if b["receiver"] == receiver]
            assert path == f"/alerts/{receiver}"
            names = sorted(a["labels"]["server_name"] for a in payload["alerts"])
            assert names == [f"node-{i:02d}" for i in range(OUTAGE_SERVERS)], receiver
            assert {a["labels"]["alertname"] for a in payload["alerts"]} == {rule.name}
            expected_group = {"category": "cost"} if receiver == "digest" \
                else {"alertname": rule.name}
            assert payload["groupLabels"] == expected_group
            # The templates list every server of the one notification.
            data = tmp_path / f"{receiver}.json"
            data.write_text(json.dumps(payload))
            for template in ("slack.infrascope.text", "email.infrascope.text"):
                text = render_template(f'{{{{ template "{template}" . }}}}', data)
                for name in names:
                    assert f"{name} (cloud server" in text, (template, name)
            title = render_template('{{ template "slack.infrascope.title" . }}', data)
            assert title.startswith(f"[FIRING:{OUTAGE_SERVERS}] ")
            link = render_template('{{ template "infrascope.group_dashboard_url" . }}', data)
            assert link.endswith("/d/infrascope-cost" if receiver == "digest"
                                 else "/d/infrascope-fleet")
    finally:
        sink.server.shutdown()
        sink.server.server_close()
        for thread in threads:
            thread.join(timeout=5)
