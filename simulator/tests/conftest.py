"""Fixtures: a real simulator HTTP server on loopback, one per test by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from infrascope_sim.fleet import Fleet, load_fleet, load_fleet_data
from infrascope_sim.server import Endpoints, running
from infrascope_sim.state import Settings, Simulator

WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
ROBOT_AUTH = ("#ws+DemoShop", "demo-robot-password")


@pytest.fixture(scope="session")
def demo_fleet() -> Fleet:
    return load_fleet("demo")


@pytest.fixture
def sim(demo_fleet: Fleet) -> Simulator:
    return Simulator(load_fleet("demo"))


@pytest.fixture
def served(sim: Simulator) -> Iterator[Endpoints]:
    with running(sim) as endpoints:
        yield endpoints


@pytest.fixture
def cloud(served: Endpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.cloud, timeout=10,
                      headers={"Authorization": f"Bearer {WEBSHOP_TOKEN}"}) as client:
        yield client


@pytest.fixture
def robot(served: Endpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.robot, timeout=10, auth=ROBOT_AUTH) as client:
        yield client


@pytest.fixture
def control(served: Endpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.control, timeout=10) as client:
        yield client


@pytest.fixture
def serve_fleet() -> Iterator[Callable[..., Endpoints]]:
    """Serve a custom fleet (dict in fleet-file form) with custom settings."""
    stack = []

    def start(data: dict | None = None, *, fleet: Fleet | None = None,
              settings: Settings | None = None, clock: Callable[[], float] | None = None
              ) -> Endpoints:
        f = fleet or load_fleet_data(data or {}, "test")
        kwargs = {"clock": clock} if clock else {}
        s = Simulator(f, settings or Settings(), **kwargs)
        cm = running(s)
        endpoints = cm.__enter__()
        endpoints.sim = s  # type: ignore[attr-defined]
        stack.append(cm)
        return endpoints

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
