"""The rules evaluate on a real Prometheus against real inputs: the exporter serving the
demo fleet (Hetzner API simulator) and Debian's node_exporter standing in for one
dedicated server's agent (the agent exposes the same series), and a second agent
target that does not answer.

The rule files are generated from config.yaml with every group interval set to 2s (the
expressions are those of the committed files; only how often they run differs), so a
few seconds show every rule evaluated: all healthy, every server with a CPU figure
from the right source, cost roll-ups that add up to the exporter's bill, and alerts
that carry `severity` and `category`. Everything listens on loopback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rules_testlib import PROMETHEUS_DIR, generator

from infrascope_core import contract
from infrascope_core.node_exporter import NodeExporter
from infrascope_core.prometheus import Prometheus, PrometheusError
from infrascope_core.service import wait_until

WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
ROBOT_USER = "#ws+DemoShop"
ROBOT_PASSWORD = "demo-robot-password"


@pytest.fixture
def exporter_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("infrascope_sim")
    pytest.importorskip("infrascope_exporter")
    from infrascope_exporter.config import load_config
    from infrascope_exporter.exporter import Exporter
    from infrascope_exporter.server import ExporterHTTPServer
    from infrascope_sim.fleet import load_fleet
    from infrascope_sim.server import running
    from infrascope_sim.state import Simulator

    fleet = load_fleet("demo")
    assert fleet.robot is not None
    with running(Simulator(fleet)) as ep:
        config = tmp_path / "exporter.yaml"
        config.write_text(yaml.safe_dump({
            "cloud": {"endpoint": ep.cloud, "projects": [
                {"name": "webshop", "token": WEBSHOP_TOKEN},
                {"name": "analytics", "token": ANALYTICS_TOKEN}]},
            "robot": {"endpoint": ep.robot, "user": ROBOT_USER, "password": ROBOT_PASSWORD,
                      "labels": {d.number: dict(d.labels) for d in fleet.robot.servers}},
            "prices": {"dedicated_servers": {d.number: str(d.monthly_price_net)
                                             for d in fleet.robot.servers}},
            "web": {"listen_address": "127.0.0.1:0"}}))
        exporter = Exporter(load_config(["--config.file", str(config)], environ={}))
        for project in exporter.config.projects:  # one synchronous refresh of everything
            exporter.refresh_pricing(project)
            exporter.refresh_inventory(project)
            for server in exporter.projects[project.name].servers:
                exporter.poll_metrics(project, server)
        exporter.refresh_robot_products()
        exporter.refresh_robot()
        exporter.render()
        http = ExporterHTTPServer(exporter, "127.0.0.1", 0)
        http.start()
        try:
            yield f"127.0.0.1:{http.port}"
        finally:
            http.stop()
            exporter.stop()


def test_rules_on_real_prometheus(tmp_path: Path, exporter_url: str,
                                  prometheus: Callable[..., Prometheus],
                                  node_exporter: Callable[..., NodeExporter],
                                  closed_port: int) -> None:
    cfg = yaml.safe_load((PROMETHEUS_DIR / "config.yaml").read_text())
    cfg["intervals"] = {name: "2s" for name in cfg["intervals"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert generator().main(["--config", str(tmp_path / "config.yaml"),
                             "--output-dir", str(tmp_path / "rules")]) == 0

    fleet = httpx.get(f"http://{exporter_url}/sd", timeout=5).json()
    dedicated = [t["labels"] for t in fleet if t["labels"]["source"] == "dedicated"]
    agent_of, agent_down = dedicated[:2]
    node = node_exporter("--collector.disable-defaults", "--collector.cpu",
                         "--collector.meminfo", "--collector.filesystem")
    prom = prometheus({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "2s"},
        "rule_files": [str(tmp_path / "rules" / "*.rules.yml")],
        "scrape_configs": [
            {"job_name": cfg["jobs"]["exporter"],
             "static_configs": [{"targets": [exporter_url]}]},
            {"job_name": cfg["jobs"]["agent"], "static_configs": [
                {"targets": [node.address],
                 "labels": {k: agent_of[k] for k in ("source", "server_id", "server_name")}},
                # a second server whose agent does not answer
                {"targets": [f"127.0.0.1:{closed_port}"],
                 "labels": {k: agent_down[k] for k in ("source", "server_id", "server_name")}},
            ]},
        ]}, flags=["--log.level=warn"])

    expected_groups = sum(len(yaml.safe_load(p.read_text())["groups"])
                          for p in (tmp_path / "rules").glob("*.rules.yml"))
    providers = len(cfg.get("providers") or {"hetzner": None})
    # 5 + 3 alert groups + the shards + one provider-neutral group per provider
    assert expected_groups == 8 + cfg["window_shards"] + providers

    def evaluated_twice() -> list[dict[str, Any]] | None:
        groups = prom.rule_groups()
        rules = [r for g in groups for r in g["rules"]]
        ready = (len(groups) == expected_groups and all(r["lastEvaluation"] > "2000" for r in rules)
                 and prom.query('source_server_id:cpu_utilisation:ratio{via="agent"}'))
        return rules if ready else None

    wait_until(evaluated_twice, 60, "every rule evaluated, the agent's CPU ratio recorded",
               0.3, alive=[node, prom], ignore=(PrometheusError, OSError, KeyError, ValueError))
    time.sleep(4)  # two more evaluations: the chained rules saw their inputs
    rules = evaluated_twice()
    assert rules
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert unhealthy == []

    servers = prom.scalar("count(hetzner_server_info)")
    assert servers == 23
    # CPU: the node_exporter's server through the agent, every Cloud server through the
    # Cloud API, with the inventory attributes; memory for the agent's server only
    via = {r["metric"]["via"]: float(r["value"][1])
           for r in prom.query("count by (via) (source_server_id:cpu_utilisation:ratio)")}
    clouds = prom.scalar('count(hetzner_server_info{source="cloud"})')
    assert via == {"agent": 1, "cloud": clouds}
    agent_cpu = prom.query('source_server_id:cpu_utilisation:ratio{via="agent"}')[0]["metric"]
    assert (agent_cpu["source"], agent_cpu["server_id"], agent_cpu["server_name"]) == (
        agent_of["source"], agent_of["server_id"], agent_of["server_name"])
    assert {"server_type", "location"} <= set(agent_cpu)
    memory = prom.query("source_server_id:memory_utilisation:ratio")
    assert len(memory) == 1 and 0 < float(memory[0]["value"][1]) < 1
    assert prom.query("source_server_id:cpu_utilisation:ratio > 1.0001 or "
                       "source_server_id:cpu_utilisation:ratio < 0") == []

    # cost: the bill as the exporter's README defines it, and roll-ups that add up to it
    bill = prom.scalar("sum(hetzner_server_monthly_cost_euros) "
                        "+ sum(hetzner_resource_monthly_cost_euros) "
                        "+ sum(hetzner_server_traffic_overage_projected_cost_euros)")
    assert prom.scalar(":monthly_cost_euros:sum") == pytest.approx(bill, rel=1e-12)
    for level in ("source", "location", "hcloud_project", "label_project", "label_env",
                  "tier"):
        total = prom.scalar(f"sum({level}:monthly_cost_euros:sum)")
        assert math.isclose(total, bill, rel_tol=1e-9), level
    assert prom.scalar("count(source_server_id:monthly_cost_euros:sum)") == prom.scalar(
        "count(hetzner_server_monthly_cost_euros)")
    # the provider-neutral layer: every native series of the exporter once, renamed, with
    # provider and without the scrape labels (the demo's servers are in no placement
    # group: that pair is 0 and 0)
    for neutral, native in contract.PROVIDER_SERIES["hetzner"].items():
        count = prom.scalar(f"count({native}) or vector(0)")
        assert prom.scalar(f'count({neutral}{{provider="hetzner",job="",instance=""}})'
                           " or vector(0)") == count, neutral
        assert count > 0 or contract.family(native).when, native
    # no 30 days of history here: every server is in tier "unknown"
    tiers = prom.query("count by (tier) (source_server_id:utilisation:tier30d)")
    assert [(r["metric"]["tier"], float(r["value"][1])) for r in tiers] == [
        ("unknown", servers)]

    alerts = prom.query("ALERTS")
    down = [a["metric"] for a in alerts if a["metric"]["alertname"] == "InfraScopeAgentDown"]
    assert len(down) == 1 and down[0]["alertstate"] == "pending"
    assert (down[0]["server_id"], down[0]["server_name"]) == (
        agent_down["server_id"], agent_down["server_name"])
    for alert in alerts:
        labels = alert["metric"]
        assert labels["severity"] in {"critical", "warning", "info"}, labels
        assert labels["category"] in {"availability", "capacity", "cost", "exporter"}, labels
        if "server_id" in labels:
            assert {"source", "server_name"} <= set(labels), labels
