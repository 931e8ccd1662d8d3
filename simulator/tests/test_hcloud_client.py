"""The official ``hcloud`` Python library against the simulator.

Why this file exists: the simulator is only useful if it speaks the real
Hetzner Cloud protocol, not merely a protocol our own code happens to agree
with. Hetzner's own client library (``hcloud``) is an independent
implementation of that protocol, so every test here drives the simulator
through it -- pagination, label selectors, the domain objects it parses
servers, server types and metrics into, its retry policy for
``rate_limit_exceeded`` and its handling of a bad token -- and checks both
what the library returns and what the simulator saw (``GET /_sim/stats``).
If the library can't parse a response, or makes different requests from
the ones the real API would get, the simulator has drifted from
``shared/reference/hetzner-api.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hcloud import APIException, Client
from hcloud.metrics import Metrics

from infrascope_sim.catalogue import SERVER_TYPES
from infrascope_sim.fleet import CloudProject
from infrascope_sim.server import Endpoints
from infrascope_sim.state import Simulator

WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
PER_PAGE = 3
METRIC_SERIES = {
    "cpu",
    "disk.0.iops.read", "disk.0.iops.write", "disk.0.bandwidth.read", "disk.0.bandwidth.write",
    "network.0.pps.in", "network.0.pps.out", "network.0.bandwidth.in", "network.0.bandwidth.out",
}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def hcloud_client(endpoints: Endpoints, token: str) -> Client:
    return Client(token=token, api_endpoint=endpoints.cloud, timeout=10)


def project_named(sim: Simulator, name: str) -> CloudProject:
    return next(p for p in sim.fleet.projects if p.name == name)


def requests_seen(control: httpx.Client, endpoint: str, *, project: str | None = None,
                  status: int | None = None) -> int:
    """Cloud requests the simulator answered for ``endpoint`` (e.g. ``GET /servers``)."""
    rows = control.get("/stats").raise_for_status().json()["rows"]
    return sum(
        r["count"] for r in rows
        if r["api"] == "cloud" and r["endpoint"] == endpoint
        and (project is None or r["project"] == project)
        and (status is None or r["status"] == status)
    )


def statuses_seen(control: httpx.Client, endpoint: str) -> dict[str, int]:
    stats = control.get("/stats").raise_for_status().json()
    entry = stats["endpoints"].get(f"cloud {endpoint}", {"by_status": {}})
    return dict(entry["by_status"])


def add_fault(control: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = control.post("/faults", json=spec)
    assert response.status_code == 201, response.text
    [fault] = response.json()["faults"]
    return fault


def whole_minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


# --------------------------------------------------------------------------
# 1. Pagination
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "project_name"),
                         [(WEBSHOP_TOKEN, "webshop"), (ANALYTICS_TOKEN, "analytics")])
def test_get_all_and_get_list_page_through_each_project(
        served: Endpoints, sim: Simulator, control: httpx.Client,
        token: str, project_name: str) -> None:
    project = project_named(sim, project_name)
    assert project.token == token
    expected = [(s.id, s.name) for s in project.servers]
    n = len(expected)
    pages = math.ceil(n / PER_PAGE)

    client = hcloud_client(served, token)
    client.servers.max_per_page = PER_PAGE  # instance attribute: get_all pages by 3
    servers = client.servers.get_all()
    assert [(s.id, s.name) for s in servers] == expected
    assert requests_seen(control, "GET /servers", project=project_name) == pages

    # The same walk by hand, following meta.pagination.next_page.
    walked: list[tuple[int, str]] = []
    page_numbers: list[int] = []
    page: int | None = 1
    while page is not None:
        result = client.servers.get_list(page=page, per_page=PER_PAGE)
        pagination = result.meta.pagination
        assert pagination is not None
        assert pagination.page == page
        assert pagination.per_page == PER_PAGE
        assert pagination.total_entries == n
        assert pagination.last_page == pages
        assert pagination.previous_page == (page - 1 if page > 1 else None)
        assert 1 <= len(result.servers) <= PER_PAGE
        walked += [(s.id, s.name) for s in result.servers]
        page_numbers.append(page)
        page = pagination.next_page
    assert walked == expected
    assert page_numbers == list(range(1, pages + 1))

    assert requests_seen(control, "GET /servers", project=project_name) == 2 * pages
    assert requests_seen(control, "GET /servers", project=project_name, status=200) == 2 * pages
    assert requests_seen(control, "GET /servers") == 2 * pages  # nothing else was asked


def test_both_projects_together_are_the_demo_fleet(
        served: Endpoints, sim: Simulator, control: httpx.Client) -> None:
    seen: list[tuple[int, str]] = []
    for token in (WEBSHOP_TOKEN, ANALYTICS_TOKEN):
        client = hcloud_client(served, token)
        client.servers.max_per_page = PER_PAGE
        seen += [(s.id, s.name) for s in client.servers.get_all()]
    fleet = sorted((s.id, s.name) for s in sim.fleet.cloud_servers)
    assert len(fleet) > PER_PAGE
    assert sorted(seen) == fleet
    assert len({sid for sid, _ in seen}) == len(seen)
    expected_requests = sum(math.ceil(len(p.servers) / PER_PAGE) for p in sim.fleet.projects)
    assert requests_seen(control, "GET /servers", status=200) == expected_requests
    assert requests_seen(control, "GET /servers") == expected_requests


# --------------------------------------------------------------------------
# 2. Server fields through the library's domain objects
# --------------------------------------------------------------------------


def test_server_fields_parse_into_domain_objects(served: Endpoints, sim: Simulator) -> None:
    client = hcloud_client(served, WEBSHOP_TOKEN)
    servers = {s.name: s for s in client.servers.get_all()}
    project = project_named(sim, "webshop")
    assert set(servers) == {s.name for s in project.servers}

    for model in project.servers:
        server = servers[model.name]
        assert server.id == model.id
        assert server.status == model.status

        stype = server.server_type
        assert stype.name == model.server_type.name
        assert stype.cores == model.server_type.cores
        assert isinstance(stype.cores, int)
        assert stype.memory == model.server_type.memory_gb

        assert server.location.name == model.location
        assert server.location.network_zone == (
            "us-east" if model.location == "ash" else "eu-central")

        assert server.public_net.ipv4 is not None
        assert server.public_net.ipv4.ip == model.ipv4
        assert server.public_net.ipv6 is not None
        assert server.public_net.ipv6.ip == model.ipv6_net

        assert server.labels == model.labels

        assert isinstance(server.created, datetime)
        assert server.created.tzinfo is not None
        assert server.created.utcoffset() == timedelta(0)
        assert server.created.timestamp() == model.created

        assert server.primary_disk_size == model.primary_disk_size
        assert isinstance(server.included_traffic, int)
        assert isinstance(server.outgoing_traffic, int)
        assert isinstance(server.ingoing_traffic, int)
        assert server.outgoing_traffic >= 0
        assert server.included_traffic == (
            2**40 if model.location == "ash" else 20 * 2**40)
        assert server.backup_window == ("22-02" if model.backups else None)

        # The real API dropped `datacenter` from servers on 2026-07-01.
        assert getattr(server.data_model, "datacenter", None) is None

    # Concrete spot checks against the demo fleet file.
    db = servers["shop-db-1"]
    assert (db.server_type.name, db.server_type.cores, db.server_type.memory) == ("ccx33", 8, 32.0)
    assert db.primary_disk_size == 160  # still the ccx23's disk after the upgrade
    assert db.backup_window == "22-02"
    assert [v.id for v in db.volumes] == model_volume_ids(project, "shop-db-1")
    assert servers["shop-staging-web"].backup_window is None
    assert servers["shop-web-1"].created == datetime(2025, 4, 2, 10, 15, tzinfo=UTC)
    assert servers["shop-web-1"].private_net[0].ip == "10.0.0.2"
    assert servers["shop-web-1"].private_net[0].network.id == 7001


def model_volume_ids(project: CloudProject, name: str) -> list[int]:
    return next(s.volume_ids for s in project.servers if s.name == name)


def test_raw_server_json_has_no_datacenter(cloud: httpx.Client) -> None:
    body = cloud.get("/servers", params={"per_page": 50}).raise_for_status().json()
    assert body["servers"]
    assert all("datacenter" not in s for s in body["servers"])


def test_ipv6_only_server_parses_with_null_ipv4(
        serve_fleet: Callable[..., Endpoints]) -> None:
    endpoints = serve_fleet({"cloud": {"projects": [{
        "name": "v6", "token": "v6-token",
        "servers": [{"name": "v6-only", "type": "cx23", "ipv4": False}],
    }]}})
    [server] = hcloud_client(endpoints, "v6-token").servers.get_all()
    assert server.public_net.ipv4 is None
    assert server.public_net.primary_ipv4 is None
    assert server.public_net.ipv6 is not None
    assert server.public_net.ipv6.ip.endswith("::/64")


# --------------------------------------------------------------------------
# 3. Label selectors
# --------------------------------------------------------------------------


def test_label_selectors_through_the_library(served: Endpoints, sim: Simulator) -> None:
    client = hcloud_client(served, WEBSHOP_TOKEN)
    project = project_named(sim, "webshop")
    all_names = {s.name for s in project.servers}

    def names(selector: str) -> set[str]:
        return {s.name for s in client.servers.get_all(label_selector=selector)}

    assert names("env=staging") == {"shop-staging-web", "shop-staging-db", "shop-staging-worker"}

    in_selector = names("role in (web,db)")
    assert in_selector == {s.name for s in project.servers
                           if s.labels.get("role") in ("web", "db")}
    assert in_selector == {"shop-web-1", "shop-web-2", "shop-db-1",
                           "shop-staging-web", "shop-staging-db"}

    without_owner = names("!owner")
    assert without_owner == all_names - {"shop-dev-1"}

    assert names("env=production,role=web") == {"shop-web-1", "shop-web-2"}
    assert names("env=nonexistent") == set()


def test_bad_label_selector_is_invalid_input(served: Endpoints) -> None:
    client = hcloud_client(served, WEBSHOP_TOKEN)
    with pytest.raises(APIException) as excinfo:
        client.servers.get_all(label_selector="env in (staging")
    assert excinfo.value.code == "invalid_input"


# --------------------------------------------------------------------------
# 4. Placement groups: the list, and the object every server embeds
# --------------------------------------------------------------------------

PLACEMENT_FLEET = {"cloud": {"projects": [{
    "name": "ha", "token": "ha-token",
    "placement_groups": [
        {"name": "db-spread", "labels": {"role": "db"}, "created": "2025-03-01T08:00:00Z"},
        {"name": "web-spread", "type": "spread", "labels": {"role": "web"}},
        {"name": "empty-spread"},
    ],
    "servers": [
        {"name": "db-a", "type": "cx33", "placement_group": "db-spread"},
        {"name": "db-b", "type": "cx33", "placement_group": "db-spread"},
        {"name": "web-a", "type": "cx23", "placement_group": "web-spread"},
        {"name": "web-b", "type": "cx23", "placement_group": "web-spread"},
        {"name": "web-c", "type": "cx23", "placement_group": "web-spread"},
        {"name": "lonely", "type": "cx23"},
    ],
}]}}


def test_placement_groups_page_and_filter_through_the_library(
        serve_fleet: Callable[..., Endpoints]) -> None:
    endpoints = serve_fleet(PLACEMENT_FLEET)
    project = project_named(endpoints.sim, "ha")  # type: ignore[attr-defined]
    server_ids = {s.name: s.id for s in project.servers}
    client = hcloud_client(endpoints, "ha-token")
    client.placement_groups.max_per_page = 2  # get_all pages by 2: two pages
    groups = client.placement_groups.get_all()
    assert [(g.id, g.name, g.type) for g in groups] == [
        (g.id, g.name, "spread") for g in project.placement_groups]
    by_name = {g.name: g for g in groups}
    assert by_name["db-spread"].servers == [server_ids["db-a"], server_ids["db-b"]]
    assert by_name["web-spread"].servers == [server_ids[n] for n in ("web-a", "web-b", "web-c")]
    assert by_name["empty-spread"].servers == []
    assert by_name["db-spread"].labels == {"role": "db"}
    assert by_name["db-spread"].created == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    with httpx.Client(base_url=endpoints.control, timeout=10) as control:
        assert requests_seen(control, "GET /placement_groups", project="ha", status=200) == 2

    assert [g.name for g in client.placement_groups.get_all(label_selector="role=web")] == [
        "web-spread"]
    assert [g.name for g in client.placement_groups.get_all(name="empty-spread")] == [
        "empty-spread"]
    assert [g.name for g in client.placement_groups.get_all(sort=["name:desc"])] == [
        "web-spread", "empty-spread", "db-spread"]
    page = client.placement_groups.get_list(type="spread", page=2, per_page=2)
    assert [g.name for g in page.placement_groups] == ["empty-spread"]
    assert page.meta.pagination is not None
    assert (page.meta.pagination.total_entries, page.meta.pagination.last_page) == (3, 2)
    with pytest.raises(APIException) as bad_type:
        client.placement_groups.get_list(type="cluster")
    assert bad_type.value.code == "invalid_input"

    one = client.placement_groups.get_by_id(by_name["web-spread"].id)
    assert (one.name, one.servers) == ("web-spread", by_name["web-spread"].servers)
    with pytest.raises(APIException) as missing:
        client.placement_groups.get_by_id(1)
    assert missing.value.code == "not_found"


def test_servers_embed_their_placement_group(
        serve_fleet: Callable[..., Endpoints]) -> None:
    endpoints = serve_fleet(PLACEMENT_FLEET)
    client = hcloud_client(endpoints, "ha-token")
    servers = {s.name: s for s in client.servers.get_all()}
    db_a = servers["db-a"].placement_group
    assert db_a is not None
    # the embedded object is the whole group: nothing more to fetch
    assert (db_a.name, db_a.type, db_a.labels) == ("db-spread", "spread", {"role": "db"})
    assert db_a.servers == [servers["db-a"].id, servers["db-b"].id]
    assert db_a.complete
    assert servers["web-c"].placement_group is not None
    assert servers["web-c"].placement_group.name == "web-spread"
    assert servers["lonely"].placement_group is None
    with httpx.Client(base_url=endpoints.control, timeout=10) as control:
        assert requests_seen(control, "GET /placement_groups") == 0
        assert requests_seen(control, "GET /placement_groups/{id}") == 0


def test_the_demo_search_pair_is_the_only_placement_group(cloud: httpx.Client) -> None:
    servers = cloud.get("/servers", params={"per_page": 50}).raise_for_status().json()
    grouped = {s["name"]: s["placement_group"] for s in servers["servers"]
               if s["placement_group"] is not None}
    assert set(grouped) == {"search-1", "search-2"}
    assert grouped["search-1"] == grouped["search-2"]
    assert (grouped["search-1"]["name"], grouped["search-1"]["type"]) == ("search-spread",
                                                                          "spread")
    assert sorted(grouped["search-1"]["servers"]) == sorted(
        s["id"] for s in servers["servers"] if s["name"] in grouped)
    groups = cloud.get("/placement_groups").raise_for_status().json()
    assert [g["name"] for g in groups["placement_groups"]] == ["search-spread"]
    assert groups["meta"]["pagination"]["total_entries"] == 1


# --------------------------------------------------------------------------
# 5. Server types
# --------------------------------------------------------------------------


def test_server_types_parse_with_prices_and_locations(served: Endpoints) -> None:
    client = hcloud_client(served, WEBSHOP_TOKEN)
    types = {t.name: t for t in client.server_types.get_all()}
    assert set(types) == set(SERVER_TYPES)

    cx33 = types["cx33"]
    assert (cx33.cores, cx33.memory, cx33.disk) == (4, 8.0, 80)
    assert (cx33.cpu_type, cx33.architecture) == ("shared", "x86")
    fsn1 = next(p for p in cx33.prices if p["location"] == "fsn1")
    assert fsn1["price_monthly"]["net"] == "5.9900000000"
    assert Decimal(fsn1["price_monthly"]["net"]) == Decimal("5.9900000000")
    assert Decimal(fsn1["price_monthly"]["gross"]) == Decimal("5.99") * Decimal("1.19")
    assert fsn1["included_traffic"] == 21_990_232_555_520  # 20 TB as the real API reports it

    for stype in types.values():
        assert stype.prices, stype.name
        for price in stype.prices:
            for kind in ("price_hourly", "price_monthly", "price_per_tb_traffic"):
                for side in ("net", "gross"):
                    raw = price[kind][side]
                    assert isinstance(raw, str), (stype.name, kind, side)
                    amount = Decimal(raw)
                    assert amount.as_tuple().exponent == -10, raw
                    assert amount >= 0
            assert Decimal(price["price_hourly"]["net"]) <= Decimal(price["price_monthly"]["net"])
        assert {p["location"] for p in stype.prices} == {loc.location.name
                                                         for loc in stype.locations}
        for loc in stype.locations:
            assert isinstance(loc.available, bool)
            assert isinstance(loc.recommended, bool)
            assert loc.location.name in ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")

    for name in ("cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51"):
        legacy = types[name]
        assert legacy.locations
        for loc in legacy.locations:
            assert loc.deprecation is not None, (name, loc.location.name)
            assert loc.deprecation.announced.tzinfo is not None
            assert loc.deprecation.unavailable_after > loc.deprecation.announced
            assert loc.available is False
            assert loc.recommended is False

    for name in ("cx23", "cx33", "cpx22", "cax21", "ccx13"):
        for loc in types[name].locations:
            assert loc.deprecation is None
            assert loc.available is True


# --------------------------------------------------------------------------
# 6. Pricing (hcloud 2.27 has no pricing client: use its request path)
# --------------------------------------------------------------------------


def test_pricing_through_client_request(served: Endpoints) -> None:
    client = hcloud_client(served, WEBSHOP_TOKEN)
    pricing = client.request("GET", "/pricing")["pricing"]
    assert pricing["currency"] == "EUR"
    assert Decimal(pricing["vat_rate"]) > 0
    assert Decimal(pricing["server_backup"]["percentage"]) == Decimal("20")
    assert Decimal(pricing["volume"]["price_per_gb_month"]["net"]) > 0
    assert Decimal(pricing["image"]["price_per_gb_month"]["net"]) > 0
    assert {p["type"] for p in pricing["primary_ips"]} == {"ipv4", "ipv6"}

    types = {t.name: t for t in client.server_types.get_all()}
    priced = {t["name"]: t for t in pricing["server_types"]}
    assert set(priced) == set(types)
    for name, entry in priced.items():
        assert entry["id"] == types[name].id
        assert entry["prices"], name
        for price in entry["prices"]:
            Decimal(price["price_monthly"]["net"])
            Decimal(price["price_hourly"]["net"])
        # /pricing and /server_types agree on every price.
        assert entry["prices"] == types[name].prices


# --------------------------------------------------------------------------
# 7. Metrics
# --------------------------------------------------------------------------


def test_metrics_parse_and_report_percent_per_vcpu(
        serve_fleet: Callable[..., Endpoints]) -> None:
    now = datetime.now(UTC)
    created = whole_minute(now - timedelta(days=3))
    endpoints = serve_fleet({"cloud": {"projects": [{
        "name": "metrics", "token": "metrics-token",
        "servers": [{
            "name": "pegged", "type": "cx33", "location": "fsn1",
            "created": created.isoformat(),
            "workload": {"profile": "constant", "cpu_base": 1.0, "cpu_peak": 1.0,
                         "cpu_jitter": 0.0},
        }],
    }]}})
    client = hcloud_client(endpoints, "metrics-token")
    server = client.servers.get_by_name("pegged")
    assert server is not None
    assert server.server_type.cores == 4

    end = whole_minute(now - timedelta(minutes=10))
    start = end - timedelta(hours=1)
    assert created < start and now - start < timedelta(days=30)
    result = server.get_metrics(type=["cpu", "disk", "network"], start=start, end=end, step=60)

    metrics = result.metrics
    assert isinstance(metrics, Metrics)
    assert metrics.start == start and metrics.end == end
    assert metrics.start.tzinfo is not None
    assert metrics.step == 60
    assert set(metrics.time_series) == METRIC_SERIES

    for name, series in metrics.time_series.items():
        values = series["values"]
        assert len(values) == 60, name
        stamps = [ts for ts, _ in values]
        assert stamps == [start.timestamp() + 60 * i for i in range(60)], name
        for ts, value in values:
            assert isinstance(ts, int | float)
            assert isinstance(value, str), (name, value)
            float(value)

    cpu = metrics.time_series["cpu"]["values"]
    assert all(value == "400.0" for _, value in cpu)
    assert all(float(value) == 400.0 for _, value in cpu)
    # Derived series are affine in the CPU ratio: 2 kB/s + 2 MB/s at full load.
    assert all(float(v) == 2_002_000.0
               for _, v in metrics.time_series["network.0.bandwidth.out"]["values"])


def test_metrics_single_type_and_string_times(
        serve_fleet: Callable[..., Endpoints]) -> None:
    endpoints = serve_fleet({"cloud": {"projects": [{
        "name": "metrics", "token": "metrics-token",
        "servers": [{"name": "half", "type": "cx23",
                     "workload": {"profile": "constant"}}],
    }]}})
    client = hcloud_client(endpoints, "metrics-token")
    [server] = client.servers.get_all()
    end = whole_minute(datetime.now(UTC) - timedelta(hours=1))
    start = end - timedelta(hours=6)
    metrics = server.get_metrics(type="cpu", start=start.isoformat(),
                                 end=end.isoformat(), step=3600).metrics
    assert set(metrics.time_series) == {"cpu"}
    values = metrics.time_series["cpu"]["values"]
    assert len(values) == 6
    # The constant profile is 50 % on each of the cx23's 2 vCPUs.
    assert all(float(v) == 100.0 for _, v in values)


# --------------------------------------------------------------------------
# 8. Rate limiting: the 429 body and the library's retries
# --------------------------------------------------------------------------


def test_429_body_and_headers(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="rate_limit", api="cloud", path="/v1/servers*", count=1)
    response = cloud.get("/servers")
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["details"] == {}
    assert response.headers["RateLimit-Limit"] == "3600"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) >= int(time.time())

    # The storm was one request long; the next one is served normally.
    ok = cloud.get("/servers")
    assert ok.status_code == 200
    assert int(ok.headers["RateLimit-Remaining"]) > 0


def test_library_retries_through_a_short_429_storm(
        served: Endpoints, control: httpx.Client) -> None:
    add_fault(control, kind="rate_limit", api="cloud", path="/v1/servers*", count=2)
    client = hcloud_client(served, WEBSHOP_TOKEN)
    started = time.monotonic()
    servers = client.servers.get_all()  # real backoff: about 1 s, then 1-2 s
    elapsed = time.monotonic() - started
    assert len(servers) == 13  # the demo's webshop project
    assert statuses_seen(control, "GET /servers") == {"429": 2, "200": 1}
    assert elapsed >= 1.0  # it did back off before retrying


def test_library_recovers_when_the_bucket_refills(
        served: Endpoints, control: httpx.Client) -> None:
    """A genuinely empty bucket (not an injected fault) refills at 1/s."""
    control.put("/ratelimit/webshop", json={"remaining": 0}).raise_for_status()
    client = hcloud_client(served, WEBSHOP_TOKEN)
    servers = client.servers.get_all()
    assert len(servers) == 13  # the demo's webshop project
    seen = statuses_seen(control, "GET /servers")
    assert seen["200"] == 1
    assert 1 <= seen["429"] <= 5


def test_library_gives_up_after_five_retries(
        served: Endpoints, control: httpx.Client) -> None:
    fault = add_fault(control, kind="rate_limit", api="cloud", path="/v1/servers*", count=100)
    client = hcloud_client(served, WEBSHOP_TOKEN)
    client._client._retry_interval_func = lambda retries: 0.01  # keep the test fast
    with pytest.raises(APIException) as excinfo:
        client.servers.get_all()
    assert excinfo.value.code == "rate_limit_exceeded"
    assert excinfo.value.details == {}
    assert statuses_seen(control, "GET /servers") == {"429": 6}  # 1 attempt + 5 retries
    [live] = [f for f in control.get("/faults").json()["faults"] if f["id"] == fault["id"]]
    assert live["applied"] == 6


# --------------------------------------------------------------------------
# 9. Authentication
# --------------------------------------------------------------------------


def test_wrong_token_is_unauthorized_and_not_retried(
        served: Endpoints, control: httpx.Client) -> None:
    client = hcloud_client(served, "wrong")
    with pytest.raises(APIException) as excinfo:
        client.servers.get_all()
    assert excinfo.value.code == "unauthorized"
    assert isinstance(excinfo.value.message, str) and excinfo.value.message
    assert statuses_seen(control, "GET /servers") == {"401": 1}
    assert requests_seen(control, "GET /servers", project="-", status=401) == 1
    assert control.get("/stats").json()["total"] == 1
