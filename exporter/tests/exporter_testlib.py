"""Helpers shared by the exporter tests (imported by name: conftest modules clash)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infrascope_exporter.exporter import Exporter
from infrascope_exporter.server import ExporterHTTPServer
from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import Endpoints

WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
ROBOT_USER = "#ws+DemoShop"
ROBOT_PASSWORD = "demo-robot-password"
SECRETS = (WEBSHOP_TOKEN, ANALYTICS_TOKEN, ROBOT_PASSWORD)


def demo_config_data(ep: Endpoints, **sections: Any) -> dict[str, Any]:
    """Exporter YAML for the demo fleet: both Cloud projects, Robot, dedicated prices."""
    fleet = load_fleet("demo")
    assert fleet.robot is not None
    data: dict[str, Any] = {
        "cloud": {"endpoint": ep.cloud, "projects": [
            {"name": "webshop", "token": WEBSHOP_TOKEN},
            {"name": "analytics", "token": ANALYTICS_TOKEN}]},
        "robot": {"endpoint": ep.robot, "user": ROBOT_USER, "password": ROBOT_PASSWORD,
                  "labels": {d.number: dict(d.labels) for d in fleet.robot.servers}},
        "prices": {"dedicated_servers": {d.number: str(d.monthly_price_net)
                                         for d in fleet.robot.servers}},
        "web": {"listen_address": "127.0.0.1:0"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def refresh_all(exporter: Exporter, metrics: bool = True) -> None:
    """One synchronous round of every refresh, as the loops would do it."""
    for project in exporter.config.projects:
        exporter.refresh_pricing(project)
        exporter.refresh_inventory(project)
        if metrics:
            for server in exporter.projects[project.name].servers:
                exporter.poll_metrics(project, server)
    if exporter.robot is not None:
        exporter.refresh_robot_products()
        exporter.refresh_robot()
    exporter.render()


@contextmanager
def serving(exporter: Exporter, start_loops: bool = False) -> Iterator[str]:
    """Serve the exporter over real HTTP on loopback; yields its base URL."""
    http = ExporterHTTPServer(exporter, "127.0.0.1", 0)
    if start_loops:
        exporter.start()
    http.start()
    try:
        yield f"http://127.0.0.1:{http.port}"
    finally:
        http.stop()
        exporter.stop()

