"""The fault matrix: the exporter against a misbehaving simulator.

For every fault the pattern is the same: one good synchronous refresh, the
fault injected through the simulator's control API, the affected refresh run
through ``Exporter._guard`` (the code the loops use, so failures are recorded as
in production), then:

(a) every ``hetzner_server_info`` / cost / CPU series from before is still there
    with the same value (the last good data stays),
(b) ``hetzner_api_up`` is 0 and ``hetzner_api_requests_total`` counts the
    expected outcome (the fault is reported in the self-health),
(c) ``hetzner_api_last_success_timestamp_seconds`` did not move (its age tells
    how stale the data is),

and after the fault is cleared the next refresh succeeds: ``up`` is 1 again and
``last_success`` moves.

The exporter runs on a :class:`FakeClock` (wall-clock time that moves only when
a test or the exporter's own sleeps move it), so rate-limit pauses can be
stepped over instantly, "did not move" is a real check, and cost series cannot
change between two renderings because an hour boundary went by.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import (
    ANALYTICS_TOKEN,
    ROBOT_PASSWORD,
    ROBOT_USER,
    SECRETS,
    WEBSHOP_TOKEN,
    demo_config_data,
    refresh_all,
    serving,
)
from infrascope_core import logfmt
from infrascope_exporter.api import ApiError, CloudClient
from infrascope_exporter.config import CloudProject, Secret
from infrascope_exporter.exporter import Exporter
from infrascope_exporter.health import CREDENTIALS_REJECTED, UP, Health
from infrascope_sim.server import Endpoints
from infrascope_sim.state import Simulator

# Series that carry the exported data: they must survive every fault unchanged.
DATA_SERIES = (
    "hetzner_server_info",
    "hetzner_server_price_known",
    "hetzner_server_monthly_cost_euros",
    "hetzner_server_hourly_cost_euros",
    "hetzner_server_monthly_cost_breakdown_euros",
    "hetzner_server_cpu_cores_used",
    "hetzner_resource_monthly_cost_euros",
)
DEMO_SERVERS = 23  # 16 Cloud + 7 dedicated in the demo fleet
MAX_RETRIES = 2  # CloudClient's default: 5xx and timeouts are tried 1 + 2 times


class FakeClock:
    """Wall-clock time that only moves when told to, or when the exporter sleeps."""

    def __init__(self) -> None:
        now = time.time()
        # Keep clear of an hour boundary: billed hours (and so costs) change there.
        if now % 3600 > 3600 - 300:
            now -= 600
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> bool:
        """The exporter's injectable ``wait``: sleeping is instant, False = not stopping."""
        self.advance(seconds)
        return False


# ----------------------------------------------------------------------------
# Exposition and simulator helpers
# ----------------------------------------------------------------------------
Key = tuple[str, tuple[tuple[str, str], ...]]


# Only these families are parsed (the whole exposition takes the parser long).
PARSED = (*DATA_SERIES, "hetzner_api_", "hetzner_exporter_skipped_records")


@functools.lru_cache(maxsize=8)
def samples(text: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(PARSED))
    for family in text_string_to_metric_families(wanted + "\n"):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def data_series(text: str) -> dict[Key, float]:
    return {k: v for k, v in samples(text).items() if k[0] in DATA_SERIES}


def matching(text: str, name: str, **labels: str) -> list[float]:
    return [v for (n, lbl), v in samples(text).items()
            if n == name and labels.items() <= dict(lbl).items()]


def one(text: str, name: str, **labels: str) -> float:
    found = matching(text, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def requests_total(text: str, api: str, project: str, outcome: str) -> float:
    return sum(matching(text, "hetzner_api_requests_total", api=api, project=project,
                        outcome=outcome))


def info_series(text: str) -> set[Key]:
    return {k for k in samples(text) if k[0] == "hetzner_server_info"}


@functools.cache
def control() -> httpx.Client:
    """One client for the simulator's control API (a new one per call costs ~50 ms)."""
    return httpx.Client(timeout=10)


def inject(ep: Endpoints, **fault: Any) -> None:
    r = control().post(ep.control + "/faults", json=fault)
    assert r.status_code == 201, r.text


def clear_faults(ep: Endpoints) -> None:
    control().delete(ep.control + "/faults").raise_for_status()


def sim_requests(ep: Endpoints, api: str, status: int | None = None) -> int:
    rows = control().get(ep.control + "/stats").json()["rows"]
    return sum(r["count"] for r in rows
               if r["api"] == api and (status is None or r["status"] == status))


def render(exporter: Exporter) -> str:
    exporter.render()
    return exporter.rendered.decode()


def grow_webshop(sim: Simulator, extra: int = 45) -> int:
    """Give the webshop project more servers than one page (50) holds."""
    project = sim.fleet.projects[0]
    template = project.servers[0]
    for i in range(extra):
        project.servers.append(replace(
            template, id=template.id + 10_000 + i, name=f"{template.name}-copy-{i}",
            ipv4=None, ipv4_primary_ip_id=None, ipv6_net=None, ipv6_primary_ip_id=None,
            private_net=[], volume_ids=[], load_balancer_ids=[], backups=False))
    return len(project.servers)


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------
@dataclass
class Rig:
    exporter: Exporter
    clock: FakeClock
    served: Endpoints
    sim: Simulator

    @property
    def webshop(self) -> Any:
        return self.exporter.config.projects[0]

    def refresh(self, what: str) -> Callable[[], None]:
        ex = self.exporter
        if what == "inventory":
            return lambda: ex.refresh_inventory(self.webshop)
        if what == "pricing":
            return lambda: ex.refresh_pricing(self.webshop)
        if what == "metrics":
            server = ex.projects[self.webshop.name].servers[0]
            return lambda: ex.poll_metrics(self.webshop, server)
        if what == "robot":
            return ex.refresh_robot
        if what == "robot_products":
            return ex.refresh_robot_products
        raise AssertionError(what)

    def guard(self, api: str, what: str, fn: Callable[[], None] | None = None) -> bool:
        project = "robot" if api == "robot" else self.webshop.name
        return self.exporter._guard(api, project, what, fn or self.refresh(what))


@pytest.fixture
def rig(sim: Simulator, served: Endpoints, make_config: Callable[..., Any]
        ) -> Iterator[Callable[..., Rig]]:
    """Build an exporter on a fake clock against the simulator (0.5 s HTTP timeout)."""
    made: list[Exporter] = []

    def build(**sections: Any) -> Rig:
        clock = FakeClock()
        sections["http"] = {"timeout": "0.5s", **sections.get("http", {})}
        config = make_config(demo_config_data(served, **sections))
        exporter = Exporter(config, clock=clock, backoff_base=0.01, wait=clock.sleep)
        made.append(exporter)
        return Rig(exporter, clock, served, sim)

    yield build
    clear_faults(served)  # also releases requests still caught in a hang
    for exporter in made:
        exporter.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("infrascope_exporter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


# ----------------------------------------------------------------------------
# The common assertions
# ----------------------------------------------------------------------------
def assert_fault_reported(before: str, during: str, api: str, project: str,
                          outcome: str, counted: int | None) -> None:
    # (a) the last good data stays, value for value
    kept = data_series(before)
    assert len(info_series(before)) >= DEMO_SERVERS
    now = data_series(during)
    changed = {k: (v, now.get(k)) for k, v in kept.items() if now.get(k) != v}
    assert not changed, f"series lost or changed during the fault: {changed}"
    # (b) the fault is in the self-health
    assert one(during, "hetzner_api_up", api=api, project=project) == 0
    increase = (requests_total(during, api, project, outcome)
                - requests_total(before, api, project, outcome))
    if counted is None:
        assert increase >= 1, f"no request counted with outcome {outcome}"
    else:
        assert increase == counted, f"outcome {outcome}: {increase} counted, want {counted}"
    # (c) the freshness timestamp did not move
    last = "hetzner_api_last_success_timestamp_seconds"
    assert one(during, last, api=api, project=project) == one(before, last, api=api,
                                                              project=project) > 0


def assert_recovered(during: str, after: str, api: str, project: str) -> None:
    last = "hetzner_api_last_success_timestamp_seconds"
    assert one(after, "hetzner_api_up", api=api, project=project) == 1
    assert one(after, last, api=api, project=project) > one(during, last, api=api,
                                                            project=project)
    assert one(after, "hetzner_api_credentials_rejected", api=api, project=project) == 0
    assert len(info_series(after)) >= DEMO_SERVERS


# ----------------------------------------------------------------------------
# The matrix of simulator faults
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    api: str
    fault: dict[str, Any]
    what: str  # which refresh: inventory | pricing | metrics | robot | robot_products
    outcome: str
    counted: int  # requests counted with that outcome during the faulty refresh
    sent: int | None  # requests the simulator answered during it (None: still hanging)
    paged: bool = False  # needs a listing of more than one page
    extra: dict[str, Any] = field(default_factory=dict)


RETRIED = 1 + MAX_RETRIES
CASES = [
    *(Case(f"cloud-{status}", "cloud",
           {"kind": "error", "status": status, "path": "/v1/servers"},
           "inventory", "server_error", RETRIED, RETRIED) for status in (500, 503)),
    Case("cloud-hang", "cloud", {"kind": "hang", "path": "/v1/servers"},
         "inventory", "timeout", RETRIED, None),
    Case("cloud-malformed-json", "cloud", {"kind": "malformed_json", "path": "/v1/servers"},
         "inventory", "malformed", 1, 1),
    Case("cloud-wrong-content-type", "cloud",
         {"kind": "wrong_content_type", "path": "/v1/servers"}, "inventory", "malformed", 1, 1),
    # A later page fails: page 1 answers, page 2 is tried 1 + max_retries times.
    Case("cloud-pagination-error", "cloud",
         {"kind": "broken_pagination", "mode": "error", "after_page": 1, "path": "/v1/servers"},
         "inventory", "server_error", RETRIED, 1 + RETRIED, paged=True),
    # Page 1 claims to be the last: only total_entries shows the listing is cut short.
    Case("cloud-pagination-truncate", "cloud",
         {"kind": "broken_pagination", "mode": "truncate", "after_page": 1,
          "path": "/v1/servers"}, "inventory", "malformed", 1, 1, paged=True),
    Case("cloud-pricing-503", "cloud", {"kind": "error", "status": 503, "path": "/v1/pricing"},
         "pricing", "server_error", RETRIED, RETRIED),
    Case("cloud-server-types-malformed", "cloud",
         {"kind": "malformed_json", "path": "/v1/server_types"}, "pricing", "malformed", 1, 2),
    Case("cloud-metrics-malformed", "cloud",
         {"kind": "malformed_json", "path": "/v1/servers/*/metrics"}, "metrics", "malformed",
         1, 1),
    Case("cloud-metrics-hang", "cloud", {"kind": "hang", "path": "/v1/servers/*/metrics"},
         "metrics", "timeout", RETRIED, None),
    Case("robot-503", "robot", {"kind": "error", "status": 503, "path": "/robot/server"},
         "robot", "server_error", 1, 1),
    Case("robot-hang", "robot", {"kind": "hang", "path": "/robot/server"},
         "robot", "timeout", 1, None),
    Case("robot-malformed-json", "robot", {"kind": "malformed_json", "path": "/robot/server"},
         "robot", "malformed", 1, 1),
    Case("robot-wrong-content-type", "robot",
         {"kind": "wrong_content_type", "path": "/robot/server"}, "robot", "malformed", 1, 1),
    Case("robot-products-malformed", "robot",
         {"kind": "malformed_json", "path": "/robot/order/server/product"},
         "robot_products", "malformed", 1, 1),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_keeps_last_good_data_and_recovers(case: Case, rig: Callable[..., Rig],
                                                 sim: Simulator) -> None:
    if case.paged:
        assert grow_webshop(sim) > 50
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)
    project = "robot" if case.api == "robot" else "webshop"
    assert one(before, "hetzner_api_up", api=case.api, project=project) == 1

    fault = {"api": case.api, **case.fault}
    if case.api == "cloud":
        fault["project"] = "webshop"
    inject(r.served, **fault)
    sent_before = sim_requests(r.served, case.api)
    clock.advance(5)  # a poll needs a window; a success now would show a new timestamp
    started = time.monotonic()
    assert r.guard(case.api, case.what) is False
    elapsed = time.monotonic() - started
    during = render(ex)
    if case.sent is not None:
        assert sim_requests(r.served, case.api) - sent_before == case.sent
    if case.outcome == "timeout":  # bounded by the client timeout, not by the hang
        assert elapsed < case.counted * 0.5 + 1.5
    assert_fault_reported(before, during, case.api, project, case.outcome, case.counted)
    assert ex.health.last_error[(case.api, project)] == case.outcome

    clear_faults(r.served)
    clock.advance(5)
    assert r.guard(case.api, case.what) is True
    after = render(ex)
    assert_recovered(during, after, case.api, project)
    if case.what == "inventory":
        assert info_series(after) == info_series(before)


# ----------------------------------------------------------------------------
# Rate limits
# ----------------------------------------------------------------------------
def test_cloud_429_storm_pauses_until_reset(rig: Callable[..., Rig]) -> None:
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)

    # The storm's RateLimit-Reset is 30 s away in real time; the fake clock steps
    # over it, and the fault is cleared explicitly, so the test does not wait.
    inject(r.served, kind="rate_limit", api="cloud", path="/v1/*", project="webshop",
           duration=30)
    sent = sim_requests(r.served, "cloud")
    assert r.guard("cloud", "inventory") is False
    # A 429 is not retried: exactly one request reached the simulator.
    assert sim_requests(r.served, "cloud") == sent + 1
    during = render(ex)
    assert_fault_reported(before, during, "cloud", "webshop", "rate_limited", 1)
    reset = one(during, "hetzner_api_rate_limit_reset_timestamp_seconds", api="cloud",
                project="webshop")
    assert one(during, "hetzner_api_rate_limit_remaining", api="cloud", project="webshop") == 0
    assert reset > clock() + 20
    assert ex.clients["webshop"].paused_until == reset

    # While paused, no refresh of the project sends anything, even once the
    # server would answer again: the client waits for RateLimit-Reset.
    for step, what in enumerate(("inventory", "pricing", "metrics", "inventory")):
        if step == 2:
            clear_faults(r.served)
        clock.advance(2)  # metrics polls need a window of at least 1 s
        assert r.guard("cloud", what) is False
        assert ex.health.last_error[("cloud", "webshop")] == "rate_limited"
    assert sim_requests(r.served, "cloud") == sent + 1
    still = render(ex)
    assert_fault_reported(before, still, "cloud", "webshop", "rate_limited", 1)
    # The other project is not affected.
    assert r.exporter._guard("cloud", "analytics", "inventory",
                             lambda: ex.refresh_inventory(ex.config.projects[1]))

    clock.now = reset + 1
    assert r.guard("cloud", "inventory") is True
    after = render(ex)
    assert_recovered(during, after, "cloud", "webshop")
    assert info_series(after) == info_series(before)


def test_robot_403_rate_limit_exceeded_waits_the_interval(rig: Callable[..., Rig]) -> None:
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)

    inject(r.served, kind="rate_limit", api="robot", path="/robot/server")
    sent = sim_requests(r.served, "robot")
    assert r.guard("robot", "robot") is False
    assert sim_requests(r.served, "robot", 403) >= 1
    assert sim_requests(r.served, "robot") == sent + 1
    during = render(ex)
    assert_fault_reported(before, during, "robot", "robot", "rate_limited", 1)
    assert one(during, "hetzner_api_credentials_rejected", api="robot", project="robot") == 0

    # Within the interval Robot gave (3600 s), nothing is sent, whatever is asked.
    for what in ("robot", "robot_products", "robot"):
        clock.advance(600)
        assert r.guard("robot", what) is False
    clear_faults(r.served)
    clock.advance(600)
    assert r.guard("robot", "robot") is False
    assert sim_requests(r.served, "robot") == sent + 1
    assert_fault_reported(before, render(ex), "robot", "robot", "rate_limited", 1)

    clock.advance(3600 - 4 * 600 + 1)
    assert r.guard("robot", "robot") is True
    assert sim_requests(r.served, "robot") == sent + 2
    assert_recovered(during, render(ex), "robot", "robot")


# ----------------------------------------------------------------------------
# Rejected credentials
# ----------------------------------------------------------------------------
def test_cloud_401_revoked_token(rig: Callable[..., Rig], sim: Simulator) -> None:
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)

    sim.fleet.projects[0].token = "token-after-rotation"  # revoked in the console
    sent = sim_requests(r.served, "cloud")
    clock.advance(1)
    assert r.guard("cloud", "inventory") is False
    assert sim_requests(r.served, "cloud") == sent + 1  # never retried
    assert sim_requests(r.served, "cloud", 401) == 1
    during = render(ex)
    assert_fault_reported(before, during, "cloud", "webshop", "unauthorized", 1)
    assert one(during, "hetzner_api_credentials_rejected", api="cloud", project="webshop") == 1
    assert one(during, "hetzner_api_credentials_rejected", api="cloud", project="analytics") == 0
    assert one(during, "hetzner_api_up", api="cloud", project="analytics") == 1

    sim.fleet.projects[0].token = WEBSHOP_TOKEN
    clock.advance(1)
    assert r.guard("cloud", "inventory") is True
    assert_recovered(during, render(ex), "cloud", "webshop")


def test_cloud_401_wrong_token_in_config(rig: Callable[..., Rig]) -> None:
    r = rig(cloud={"projects": [{"name": "webshop", "token": "wrong-webshop-token"},
                                {"name": "analytics", "token": ANALYTICS_TOKEN}]})
    ex = r.exporter
    webshop, analytics = ex.config.projects
    for what in ("pricing", "inventory"):
        sent = sim_requests(r.served, "cloud")
        assert r.guard("cloud", what) is False
        assert sim_requests(r.served, "cloud") == sent + 1  # exactly one request each
        assert ex._guard("cloud", "analytics", what, (
            (lambda: ex.refresh_pricing(analytics)) if what == "pricing"
            else (lambda: ex.refresh_inventory(analytics))))
    text = render(ex)
    assert one(text, "hetzner_api_up", api="cloud", project="webshop") == 0
    assert one(text, "hetzner_api_credentials_rejected", api="cloud", project="webshop") == 1
    assert requests_total(text, "cloud", "webshop", "unauthorized") == 2
    assert sum(matching(text, "hetzner_api_requests_total", project="webshop")) == 2
    assert one(text, "hetzner_api_last_success_timestamp_seconds", api="cloud",
               project="webshop") == 0
    assert one(text, "hetzner_api_up", api="cloud", project="analytics") == 1
    assert len(matching(text, "hetzner_server_info", hcloud_project="analytics")) == 3
    assert sim_requests(r.served, "cloud", 401) == 2


def test_robot_401_rotated_password(rig: Callable[..., Rig], sim: Simulator) -> None:
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)

    assert sim.fleet.robot is not None
    sim.fleet.robot.password = "password-after-rotation"
    sent = sim_requests(r.served, "robot")
    clock.advance(1)
    assert r.guard("robot", "robot") is False
    assert sim_requests(r.served, "robot") == sent + 1
    assert sim_requests(r.served, "robot", 401) == 1
    assert sum(len(v) for v in sim.robot_failures.values()) == 1
    # Never a second login with rejected credentials: nothing is sent now.
    for what in ("robot_products", "robot"):
        clock.advance(60)
        assert r.guard("robot", what) is False
    assert sim_requests(r.served, "robot") == sent + 1
    during = render(ex)
    assert_fault_reported(before, during, "robot", "robot", "unauthorized", 1)
    assert one(during, "hetzner_api_credentials_rejected", api="robot", project="robot") == 1

    sim.fleet.robot.password = ROBOT_PASSWORD
    clock.advance(ex.robot_retry_after_auth_failure + 1)
    assert r.guard("robot", "robot") is True
    assert_recovered(during, render(ex), "robot", "robot")
    assert not sim.robot_blocked_until


def test_robot_loop_never_retries_a_401(served: Endpoints, sim: Simulator,
                                        make_config: Callable[..., Any]) -> None:
    """run_robot with a wrong password: one failed login, then silence (no IP block)."""
    data = demo_config_data(served, robot={"password": "wrong-robot-password"},
                            refresh={"pricing_interval": "0.2s"})
    # Below the 18 s the configuration accepts, to give the loop many chances to retry.
    config = dataclasses.replace(make_config(data), robot_interval=0.2)
    exporter = Exporter(config, backoff_base=0.01)
    thread = threading.Thread(target=exporter.run_robot, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
    finally:
        exporter.stop_event.set()
        thread.join(timeout=10)
        exporter.stop()
    assert not thread.is_alive()
    assert sim_requests(served, "robot", 401) == 1
    assert sim_requests(served, "robot") == 1
    assert sum(len(v) for v in sim.robot_failures.values()) == 1
    assert not sim.robot_blocked_until
    assert exporter.health.value(CREDENTIALS_REJECTED, api="robot", project="robot") == 1
    assert exporter.health.value(UP, api="robot", project="robot") == 0
    assert exporter.robot_client is not None
    assert exporter.robot_client.paused_until > time.time() + 600


# ----------------------------------------------------------------------------
# One bad record
# ----------------------------------------------------------------------------
def test_one_bad_server_record_is_skipped_and_counted(rig: Callable[..., Rig],
                                                      sim: Simulator) -> None:
    """The simulator serves one server without its (required) status: that record is
    skipped and counted, the listing and every other server are kept."""
    r = rig()
    ex, clock = r.exporter, r.clock
    refresh_all(ex)
    before = render(ex)

    bad = sim.fleet.projects[0].servers[2]
    bad.status = None  # type: ignore[assignment]  # rendered as "status": null
    clock.advance(1)
    assert r.guard("cloud", "inventory") is True
    after = render(ex)
    assert one(after, "hetzner_api_up", api="cloud", project="webshop") == 1
    assert one(after, "hetzner_exporter_skipped_records_total", api="cloud", project="webshop",
               kind="server") == 1
    assert len(info_series(after)) == DEMO_SERVERS - 1
    gone = {k: v for k, v in data_series(before).items()
            if k[0].startswith("hetzner_server_") and ("server_id", str(bad.id)) in k[1]}
    assert gone
    kept = {k: v for k, v in data_series(before).items() if k not in gone}
    now = data_series(after)
    assert {k: now.get(k) for k in kept} == kept
    assert not set(gone) & set(now)
    assert one(after, "hetzner_api_last_success_timestamp_seconds", api="cloud",
               project="webshop") == clock()


@pytest.mark.parametrize("body", [
    {"servers": [], "meta": "not an object"},
    {"servers": [], "meta": {"pagination": ["not", "an", "object"]}},
    {"servers": {"not": "a list"}},
    {"servers": [], "meta": {"pagination": {"page": 1, "next_page": 1}}},
], ids=["meta", "pagination", "list", "next-page"])
def test_a_broken_page_shape_fails_the_listing_cleanly(body: dict[str, Any]) -> None:
    """Page shapes the simulator cannot produce (so a mock transport): each one fails
    the listing as ``malformed`` and is counted, never as a stray exception that
    would end the project's worker thread."""
    health = Health()
    project = CloudProject("p", Secret("t"), "http://cloud.invalid/v1")
    client = CloudClient(project, health, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=body)))
    with pytest.raises(ApiError) as err:
        client.list_all("/servers", "servers", "/servers")
    assert err.value.kind == "malformed"
    assert health.requests()[("cloud", "p", "/servers", "malformed")] == 1
    client.close()


# ----------------------------------------------------------------------------
# The real loops: /metrics never empties during a storm
# ----------------------------------------------------------------------------
def test_loops_never_empty_metrics_during_a_503_storm(served: Endpoints,
                                                      make_config: Callable[..., Any]) -> None:
    data = demo_config_data(served, http={"timeout": "0.5s"}, refresh={
        "inventory_interval": "1s", "metrics_interval": "1s", "render_interval": "0.1s"})
    config = dataclasses.replace(make_config(data), robot_interval=1.0)  # below the 18 s floor
    exporter = Exporter(config, backoff_base=0.01)
    apis = [("cloud", "webshop"), ("cloud", "analytics"), ("robot", "robot")]

    def scrape(base: str) -> str:
        r = control().get(base + "/metrics")
        assert r.status_code == 200
        return r.text

    with serving(exporter, start_loops=True) as base:
        deadline = time.monotonic() + 10
        while True:
            text = scrape(base)
            if len(info_series(text)) == DEMO_SERVERS and all(
                    matching(text, "hetzner_api_up", api=a, project=p) == [1] for a, p in apis):
                break
            assert time.monotonic() < deadline, "no complete exposition within 10 s"
            time.sleep(0.1)
        good = info_series(text)

        inject(served, kind="error", api="*", path="*", status=503, duration=2)
        storm_end = time.monotonic() + 2.5
        scrapes, down = 0, set()
        while time.monotonic() < storm_end:
            text = scrape(base)
            scrapes += 1
            assert info_series(text) == good
            down |= {(a, p) for a, p in apis
                     if matching(text, "hetzner_api_up", api=a, project=p) == [0]}
            time.sleep(0.1)
        assert scrapes >= 15
        # Robot is read every second, so the storm always shows there; a Cloud
        # project shows it when one of its polls (every ~2.5 s here) fell into it.
        assert ("robot", "robot") in down
        assert sim_requests(served, "robot", 503) > 0

        # After the storm a Cloud project that went down comes back within a bounded
        # time: its next metrics poll, at worst its next inventory (15 s here).
        # Robot waits at least 60 s after a failure to spare its 200-an-hour
        # budget, so only its data (not its up) is checked here.
        deadline = time.monotonic() + 20
        while True:
            text = scrape(base)
            assert info_series(text) == good
            if all(matching(text, "hetzner_api_up", api="cloud", project=p) == [1]
                   for p in ("webshop", "analytics")):
                break
            assert time.monotonic() < deadline, f"Cloud did not recover within 20 s: {down}"
            time.sleep(0.1)
        assert one(text, "hetzner_api_up", api="robot", project="robot") == 0


# ----------------------------------------------------------------------------
# No secret anywhere
# ----------------------------------------------------------------------------
SECRET_FAULTS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("cloud", {"kind": "error", "status": 503, "path": "/v1/*"}, ("inventory", "metrics")),
    ("cloud", {"kind": "hang", "path": "/v1/servers"}, ("inventory",)),
    ("cloud", {"kind": "malformed_json", "path": "/v1/*"}, ("pricing", "inventory")),
    ("cloud", {"kind": "wrong_content_type", "path": "/v1/*"}, ("inventory",)),
    ("cloud", {"kind": "broken_pagination", "mode": "truncate", "path": "/v1/servers"},
     ("inventory",)),
    ("cloud", {"kind": "rate_limit", "path": "/v1/*", "duration": 1}, ("inventory",)),
    ("robot", {"kind": "error", "status": 500, "path": "/robot/*"}, ("robot",)),
    ("robot", {"kind": "malformed_json", "path": "/robot/*"}, ("robot", "robot_products")),
    ("robot", {"kind": "hang", "path": "/robot/server"}, ("robot",)),
    ("robot", {"kind": "rate_limit", "path": "/robot/*"}, ("robot",)),
]


def forbidden_strings(*extra: str) -> list[str]:
    basic = base64.b64encode(f"{ROBOT_USER}:{ROBOT_PASSWORD}".encode()).decode()
    return [*SECRETS, basic, *extra]


def test_no_secret_in_logs_errors_or_exposition(rig: Callable[..., Rig], sim: Simulator,
                                                caplog: pytest.LogCaptureFixture,
                                                restore_logging: None) -> None:
    """With scrubbing off: the secrets never get into a message in the first place."""
    stream = io.StringIO()
    logfmt.setup("infrascope_exporter", "debug", secrets=(), stream=stream)
    caplog.set_level(logging.DEBUG)  # httpx/httpcore chatter, if any, is checked too
    grow_webshop(sim)  # two pages of servers, so that a pagination can break
    r = rig()
    ex, clock = r.exporter, r.clock
    errors: list[BaseException] = []

    def capture(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except ApiError as exc:
                errors.append(exc)
                raise
        return run

    refresh_all(ex)
    assert r.guard("cloud", "inventory") is True
    for api, fault, whats in SECRET_FAULTS:
        inject(r.served, api=api, **fault)
        for what in whats:
            clock.advance(5)
            assert r.guard(api, what, capture(r.refresh(what))) is False
        clear_faults(r.served)
        clock.advance(3600)  # past any pause
    # Rejected credentials: the token and the password were rotated on the server.
    analytics = ex.config.projects[1]
    sim.fleet.projects[1].token = "token-after-rotation"
    assert not ex._guard("cloud", "analytics", "inventory",
                         capture(lambda: ex.refresh_inventory(analytics)))
    sim.fleet.projects[1].token = ANALYTICS_TOKEN
    assert sim.fleet.robot is not None
    sim.fleet.robot.password = "password-after-rotation"
    assert r.guard("robot", "robot", capture(ex.refresh_robot)) is False
    sim.fleet.robot.password = ROBOT_PASSWORD

    kinds = {e.kind for e in errors if isinstance(e, ApiError)}
    assert kinds >= {"server_error", "timeout", "malformed", "rate_limited", "unauthorized"}
    messages = []
    for exc in errors:
        chain: BaseException | None = exc
        while chain is not None:
            messages += [str(chain), repr(chain), repr(chain.args)]
            chain = chain.__cause__ or chain.__context__
    exposition = render(ex)
    log_text = stream.getvalue()
    assert "refresh_failed" in log_text and "api_retry" in log_text
    haystacks = {"logs": log_text, "captured": caplog.text, "errors": "\n".join(messages),
                 "exposition": exposition, "sd": ex.rendered_sd.decode(),
                 "config": repr(ex.config)}
    for where, text in haystacks.items():
        for secret in forbidden_strings():
            assert secret not in text, f"a secret in the {where}"


def test_log_scrubbing_is_a_last_line_of_defence(restore_logging: None) -> None:
    stream = io.StringIO()
    logfmt.setup("infrascope_exporter", "debug", secrets=SECRETS, stream=stream)
    log = logging.getLogger("infrascope_exporter.test")
    log.warning("oops %s", SECRETS[0], extra={"reason": f"Bearer {SECRETS[1]}"})
    try:
        raise ValueError(f"password {ROBOT_PASSWORD}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert text.count("***") == 3
    for secret in SECRETS:
        assert secret not in text
