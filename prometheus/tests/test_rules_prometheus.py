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
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rules_testlib import PROMETHEUS_DIR, generator

PROMETHEUS = "/usr/bin/prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
ROBOT_USER = "#ws+DemoShop"
ROBOT_PASSWORD = "demo-robot-password"

pytestmark = pytest.mark.skipif(
    not (Path(PROMETHEUS).exists() and Path(NODE_EXPORTER).exists()),
    reason="prometheus / prometheus-node-exporter (Debian packages) not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], procs: list[subprocess.Popen[bytes]],
             timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args[0]} exited with {proc.returncode}"
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, ValueError, AssertionError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{Path(argv[0]).name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=tmp_path)
        started.append((proc, log))
        return proc

    try:
        yield start
    finally:
        for proc, log in started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            print(log.read_text(errors="replace")[-3000:])


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


def query(base: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(base: str, promql: str) -> float:
    result = query(base, promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_rules_on_real_prometheus(tmp_path: Path, exporter_url: str, processes,
                                  closed_port: int) -> None:
    cfg = yaml.safe_load((PROMETHEUS_DIR / "config.yaml").read_text())
    cfg["intervals"] = {name: "2s" for name in cfg["intervals"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert generator().main(["--config", str(tmp_path / "config.yaml"),
                             "--output-dir", str(tmp_path / "rules")]) == 0

    fleet = httpx.get(f"http://{exporter_url}/sd", timeout=5).json()
    dedicated = [t["labels"] for t in fleet if t["labels"]["source"] == "dedicated"]
    agent_of, agent_down = dedicated[:2]
    node_port = free_port()
    node = processes(NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}",
                     "--collector.disable-defaults", "--collector.cpu",
                     "--collector.meminfo", "--collector.filesystem")
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "2s"},
        "rule_files": [str(tmp_path / "rules" / "*.rules.yml")],
        "scrape_configs": [
            {"job_name": cfg["jobs"]["exporter"],
             "static_configs": [{"targets": [exporter_url]}]},
            {"job_name": cfg["jobs"]["agent"], "static_configs": [
                {"targets": [f"127.0.0.1:{node_port}"],
                 "labels": {k: agent_of[k] for k in ("source", "server_id", "server_name")}},
                # a second server whose agent does not answer
                {"targets": [f"127.0.0.1:{closed_port}"],
                 "labels": {k: agent_down[k] for k in ("source", "server_id", "server_name")}},
            ]},
        ]}))
    prom = processes(PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'data'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn")
    base = f"http://127.0.0.1:{prom_port}"
    procs = [node, prom]

    expected_groups = sum(len(yaml.safe_load(p.read_text())["groups"])
                          for p in (tmp_path / "rules").glob("*.rules.yml"))
    assert expected_groups == 8 + cfg["window_shards"]  # 5 + 3 alert groups + the shards

    def evaluated_twice() -> list[dict[str, Any]] | None:
        groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        ready = (len(groups) == expected_groups and all(r["lastEvaluation"] > "2000" for r in rules)
                 and query(base, 'source_server_id:cpu_utilisation:ratio{via="agent"}'))
        return rules if ready else None

    wait_for("every rule evaluated, the agent's CPU ratio recorded", evaluated_twice, procs)
    time.sleep(4)  # two more evaluations: the chained rules saw their inputs
    rules = evaluated_twice()
    assert rules
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert unhealthy == []

    servers = scalar(base, "count(hetzner_server_info)")
    assert servers == 19
    # CPU: the node_exporter's server through the agent, every Cloud server through the
    # Cloud API, with the inventory attributes; memory for the agent's server only
    via = {r["metric"]["via"]: float(r["value"][1])
           for r in query(base, "count by (via) (source_server_id:cpu_utilisation:ratio)")}
    clouds = scalar(base, 'count(hetzner_server_info{source="cloud"})')
    assert via == {"agent": 1, "cloud": clouds}
    agent_cpu = query(base, 'source_server_id:cpu_utilisation:ratio{via="agent"}')[0]["metric"]
    assert (agent_cpu["source"], agent_cpu["server_id"], agent_cpu["server_name"]) == (
        agent_of["source"], agent_of["server_id"], agent_of["server_name"])
    assert {"server_type", "location"} <= set(agent_cpu)
    memory = query(base, "source_server_id:memory_utilisation:ratio")
    assert len(memory) == 1 and 0 < float(memory[0]["value"][1]) < 1
    assert query(base, "source_server_id:cpu_utilisation:ratio > 1.0001 or "
                       "source_server_id:cpu_utilisation:ratio < 0") == []

    # cost: the bill as the exporter's README defines it, and roll-ups that add up to it
    bill = scalar(base, "sum(hetzner_server_monthly_cost_euros) "
                        "+ sum(hetzner_resource_monthly_cost_euros) "
                        "+ sum(hetzner_server_traffic_overage_projected_cost_euros)")
    assert scalar(base, ":monthly_cost_euros:sum") == pytest.approx(bill, rel=1e-12)
    for level in ("source", "location", "hcloud_project", "label_project", "label_env",
                  "tier"):
        total = scalar(base, f"sum({level}:monthly_cost_euros:sum)")
        assert math.isclose(total, bill, rel_tol=1e-9), level
    assert scalar(base, "count(source_server_id:monthly_cost_euros:sum)") == scalar(
        base, "count(hetzner_server_monthly_cost_euros)")
    # no 30 days of history here: every server is in tier "unknown"
    tiers = query(base, "count by (tier) (source_server_id:utilisation:tier30d)")
    assert [(r["metric"]["tier"], float(r["value"][1])) for r in tiers] == [
        ("unknown", servers)]

    alerts = query(base, "ALERTS")
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
