"""A real Prometheus scrapes the exporter and discovers the agents through /sd.

Prometheus (Debian's 2.42 at /usr/bin/prometheus) runs on loopback with a
configuration written to tmp_path: one job scrapes the exporter every second,
one job (``agents``) discovers the agents with ``http_sd_configs`` pointing at
the exporter's /sd. The demo fleet's addresses are public-looking
(49.12.x.x ...), and this machine must never send traffic anywhere but
loopback: the agents job therefore rewrites every ``__address__`` to a closed
loopback port (the original address is kept in ``instance``) and scrapes only
once an hour. What is checked is discovery itself: the targets and their labels
through Prometheus' HTTP API, then PromQL over the exporter's series.
"""

from __future__ import annotations

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

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_exporter.exporter import Exporter
from infrascope_sim.fleet import load_fleet

PROMETHEUS = "/usr/bin/prometheus"
AGENT_PORT = 18791  # only ever written into /sd targets, never contacted

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(),
                                reason="prometheus (Debian package) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {proc.returncode} waiting for {what}")
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def prometheus_config(exporter_port: int, closed_port: int) -> dict[str, Any]:
    exporter = f"127.0.0.1:{exporter_port}"
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "infrascope-exporter", "scrape_interval": "1s",
             "scrape_timeout": "1s", "static_configs": [{"targets": [exporter]}]},
            {"job_name": "agents", "scrape_interval": "1h", "scrape_timeout": "1s",
             "http_sd_configs": [{"url": f"http://{exporter}/sd", "refresh_interval": "1s"}],
             "relabel_configs": [
                 # Keep the meta labels we want as target labels.
                 {"source_labels": ["__meta_hetzner_hcloud_label_env"], "regex": "(.+)",
                  "target_label": "env"},
                 {"source_labels": ["__meta_hetzner_robot_label_env"], "regex": "(.+)",
                  "target_label": "env"},
                 {"source_labels": ["__meta_hetzner_role"], "target_label": "role"},
                 {"source_labels": ["__meta_hetzner_public_ipv4"], "target_label": "public_ipv4"},
                 {"source_labels": ["__meta_hetzner_hcloud_location"], "regex": "(.+)",
                  "target_label": "location"},
                 {"source_labels": ["__meta_hetzner_robot_datacenter"], "regex": "(.+)",
                  "target_label": "location"},
                 # The discovered address becomes the instance; the scrape itself goes to a
                 # closed loopback port, so nothing ever leaves this machine.
                 {"source_labels": ["__address__"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": f"127.0.0.1:{closed_port}"},
             ]},
        ],
    }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(config: dict[str, Any]) -> str:
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config_file}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}",
                 "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for("Prometheus /-/ready",
                 lambda: httpx.get(base + "/-/ready", timeout=2).status_code == 200,
                 proc=proc)
        return base

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        for log in logs:
            if log.exists():
                print(log.read_text(errors="replace")[-4000:])


def query(base: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(base + "/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_exporter_and_discovers_agents(
        served, make_config, prometheus, closed_port: int) -> None:
    config = make_config(demo_config_data(
        served, sd={"address": "public_ipv4", "agent_port": AGENT_PORT}))
    assert (config.sd_address, config.agent_port) == ("public_ipv4", AGENT_PORT)
    exporter = Exporter(config)
    refresh_all(exporter, metrics=True)
    fleet = load_fleet("demo")
    assert fleet.robot is not None
    expected: dict[tuple[str, str], dict[str, str]] = {}
    for project in fleet.projects:
        for s in project.servers:
            assert s.ipv4 is not None
            expected[("cloud", str(s.id))] = {"server_name": s.name, "env": s.labels["env"],
                                              "address": f"{s.ipv4}:{AGENT_PORT}",
                                              "location": s.location}
    for d in fleet.robot.servers:
        expected[("dedicated", str(d.number))] = {"server_name": d.name,
                                                  "env": d.labels["env"],
                                                  "address": f"{d.ip}:{AGENT_PORT}",
                                                  "location": d.dc.lower()}
    assert len(expected) == 19

    with serving(exporter) as exporter_url:
        port = int(exporter_url.rsplit(":", 1)[1])
        prom = prometheus(prometheus_config(port, closed_port))

        def agent_targets() -> list[dict[str, Any]] | None:
            data = httpx.get(prom + "/api/v1/targets", timeout=5).json()["data"]
            agents = [t for t in data["activeTargets"] if t["scrapePool"] == "agents"]
            return agents if len(agents) == 19 else None

        agents = wait_for("19 agent targets", agent_targets, timeout=30)
        data = httpx.get(prom + "/api/v1/targets", timeout=5).json()["data"]
        assert [t for t in data["droppedTargets"] if t.get("scrapePool") == "agents"] == []
        seen = set()
        for t in agents:
            labels, discovered = t["labels"], t["discoveredLabels"]
            key = (labels["source"], labels["server_id"])
            want = expected[key]
            seen.add(key)
            assert labels["server_name"] == want["server_name"], key
            assert labels["env"] == want["env"], key
            assert labels["job"] == "agents"
            assert labels["instance"] == want["address"], key
            assert labels["role"] == ("hcloud" if key[0] == "cloud" else "robot")
            # Meta labels arrived (copied by relabeling). discoveredLabels are not checked
            # value by value: Prometheus 2.42 overwrites parts of them with the relabeled set.
            assert labels["public_ipv4"] == want["address"].split(":")[0], key
            assert labels["location"] == want["location"], key
            assert "__meta_hetzner_server_id" in discovered
            # The only address Prometheus may contact is the closed loopback port.
            assert t["scrapeUrl"] == f"http://127.0.0.1:{closed_port}/metrics", key
            assert "__meta_hetzner_public_ipv4" not in labels
        assert seen == set(expected)

        exporter_target = wait_for(
            "the exporter target up",
            lambda: [t for t in httpx.get(prom + "/api/v1/targets", timeout=5).json()["data"][
                "activeTargets"] if t["scrapePool"] == "infrascope-exporter"
                and t["health"] == "up"], timeout=30)
        assert exporter_target[0]["labels"]["instance"] == f"127.0.0.1:{port}"
        assert exporter_target[0]["lastError"] == ""

        wait_for("hetzner_server_info in Prometheus",
                 lambda: query(prom, "count(hetzner_server_info)"), timeout=30)
        info = query(prom, "hetzner_server_info")
        assert len(info) == 19
        assert {(r["metric"]["source"], r["metric"]["server_id"]) for r in info} == set(expected)
        assert query(prom, 'up{job="infrascope-exporter"}')[0]["value"][1] == "1"
        cores_used = query(prom, "count(hetzner_server_cpu_cores_used)")
        assert cores_used[0]["value"][1] == "12"
        joined = query(prom, "hetzner_server_monthly_cost_euros * on(source, server_id) "
                             "group_left(server_name) hetzner_server_info")
        assert len(joined) == 19
        names = {(r["metric"]["source"], r["metric"]["server_id"]): r["metric"]["server_name"]
                 for r in joined}
        assert names == {k: v["server_name"] for k, v in expected.items()}
        by_name = {r["metric"]["server_name"]: float(r["value"][1]) for r in joined}
        assert by_name["auction-box"] == pytest.approx(36.0)
        assert by_name["shop-web-1"] == pytest.approx(7.788)  # 5.99 + 20 % backup + 0.60 IPv4
        total = query(prom, "sum(hetzner_server_monthly_cost_euros)")
        # Cloud servers 196.494 + dedicated 558.00 (see test_exporter_cost.py for the bill).
        assert float(total[0]["value"][1]) == pytest.approx(196.494 + 558.0, abs=0.01)
