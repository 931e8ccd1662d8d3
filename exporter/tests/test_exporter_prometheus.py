"""A real Prometheus scrapes the exporter and discovers the agents through /sd.

Prometheus (Debian's 2.42, from the test kit's ``prometheus`` fixture) runs on loopback with a
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

from collections.abc import Callable
from typing import Any

import pytest

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_core.prometheus import Prometheus, PrometheusError
from infrascope_core.service import wait_until
from infrascope_exporter.exporter import Exporter
from infrascope_sim.fleet import load_fleet

AGENT_PORT = 18791  # only ever written into /sd targets, never contacted
IGNORED = (PrometheusError, OSError, KeyError, ValueError)  # not there yet: ask again


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


def test_prometheus_scrapes_exporter_and_discovers_agents(
        served, make_config, prometheus: Callable[..., Prometheus], closed_port: int) -> None:
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
    assert len(expected) == 23

    with serving(exporter) as exporter_url:
        port = int(exporter_url.rsplit(":", 1)[1])
        prom = prometheus(prometheus_config(port, closed_port), retention="1d",
                          flags=["--log.level=warn"])

        def agent_targets() -> list[dict[str, Any]] | None:
            data = prom.targets()
            agents = [t for t in data["activeTargets"] if t["scrapePool"] == "agents"]
            return agents if len(agents) == 23 else None

        agents = wait_until(agent_targets, 30, "19 agent targets", alive=[prom], ignore=IGNORED)
        data = prom.targets()
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

        exporter_target = wait_until(
            lambda: [t for t in prom.targets()["activeTargets"]
                     if t["scrapePool"] == "infrascope-exporter" and t["health"] == "up"],
            30, "the exporter target up", alive=[prom], ignore=IGNORED)
        assert exporter_target[0]["labels"]["instance"] == f"127.0.0.1:{port}"
        assert exporter_target[0]["lastError"] == ""

        wait_until(lambda: prom.query("count(hetzner_server_info)"), 30,
                   "hetzner_server_info in Prometheus", alive=[prom], ignore=IGNORED)
        info = prom.query("hetzner_server_info")
        assert len(info) == 23
        assert {(r["metric"]["source"], r["metric"]["server_id"]) for r in info} == set(expected)
        assert prom.query('up{job="infrascope-exporter"}')[0]["value"][1] == "1"
        cores_used = prom.query("count(hetzner_server_cpu_cores_used)")
        assert cores_used[0]["value"][1] == "16"  # the Cloud servers
        joined = prom.query("hetzner_server_monthly_cost_euros * on(source, server_id) "
                             "group_left(server_name) hetzner_server_info")
        assert len(joined) == 23
        names = {(r["metric"]["source"], r["metric"]["server_id"]): r["metric"]["server_name"]
                 for r in joined}
        assert names == {k: v["server_name"] for k, v in expected.items()}
        by_name = {r["metric"]["server_name"]: float(r["value"][1]) for r in joined}
        assert by_name["auction-box"] == pytest.approx(36.0)
        assert by_name["shop-web-1"] == pytest.approx(7.788)  # 5.99 + 20 % backup + 0.60 IPv4
        total = prom.query("sum(hetzner_server_monthly_cost_euros)")
        # Cloud servers 237.354 + dedicated 558.00 (see test_exporter_cost.py for the bill).
        assert float(total[0]["value"][1]) == pytest.approx(237.354 + 558.0, abs=0.01)
