"""The simulator's writes, driven through the official ``hcloud`` client.

Why this file exists: a recommendation is executed with Hetzner's own client library
(issue 15), so the simulator must answer its writes as the API documents them — the
action objects the client parses and polls (``wait_until_finished``), the errors it
raises (``server_not_stopped``, ``invalid_server_type``, ``protected``, ``locked``,
``uniqueness_error``, ``token_readonly``) — and the change must show everywhere the
fleet is read: the inventory, the prices of the new type, the Cloud metrics and the
simulated agent (the same work in cores, a different ratio on the new type).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server

from infrascope_core.contract import MEMORY_BYTES_PER_GB
from infrascope_sim.server import Endpoints
from infrascope_sim.state import Settings, Simulator

WEBSHOP_TOKEN = "demo-webshop-token"
T0 = 1_780_000_020.0  # a whole minute: a workload tick starts there
TOKEN = "ops-token"
READ_ONLY_TOKEN = "ops-read-token"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(endpoints: Endpoints, token: str = WEBSHOP_TOKEN) -> Client:
    return Client(token=token, api_endpoint=endpoints.cloud, timeout=10,
                  poll_interval=0.01)


def ops_fleet(**server: Any) -> dict[str, Any]:
    """One project, one cx23 doing exactly one core of work and 2 GiB of memory (half of
    its 2 cores and 4 GiB: the ``constant`` profile has no jitter)."""
    app = {"name": "app", "type": "cx23", "location": "fsn1", "id": 7001,
           "created": T0 - 30 * 86_400, "workload": {"profile": "constant"},
           "volumes": [{"name": "app-data", "size": 20}], **server}
    return {"cloud": {"projects": [{
        "name": "ops", "token": TOKEN, "read_only_tokens": [READ_ONLY_TOKEN],
        "servers": [app],
        "primary_ips": [{"name": "kept-ipv4", "type": "ipv4", "location": "fsn1"}],
    }]}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def ops(serve_fleet: Callable[..., Endpoints], clock: FakeClock) -> Endpoints:
    return serve_fleet(ops_fleet(), clock=clock)


def agent_metrics(endpoints: Endpoints, server_id: int) -> dict[str, float]:
    """The simulated agent's samples: name{labels} → value (CPU seconds summed per mode)."""
    text = httpx.get(f"{endpoints.base}/agents/cloud/{server_id}/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("node_cpu_seconds_total"):
            mode = name.split('mode="')[1].split('"')[0]
            cpus = out.get("cpus", 0.0)
            if mode == "idle":
                out["cpus"] = cpus + 1
            key = "cpu_idle" if mode == "idle" else "cpu_busy"
            out[key] = out.get(key, 0.0) + float(value)
        else:
            out[name] = float(value)
    return out


def cloud_cpu_percent(client: Client, server: Server, start: float, end: float) -> float:
    """Mean of the Cloud API's ``cpu`` series over a window (one bucket)."""
    metrics = client.servers.get_metrics(
        server, type="cpu", start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(end, UTC), step=end - start).metrics
    [[_, value]] = metrics.time_series["cpu"]["values"]
    return float(value)


def stats_count(endpoints: Endpoints, endpoint: str, status: int) -> int:
    rows = httpx.get(f"{endpoints.control}/stats").json()["rows"]
    return sum(r["count"] for r in rows
               if r["api"] == "cloud" and r["endpoint"] == endpoint and r["status"] == status)


# --------------------------------------------------------------------------
# Power and type changes
# --------------------------------------------------------------------------


def test_shutdown_change_type_and_power_on_through_the_official_client(
        ops: Endpoints, clock: FakeClock) -> None:
    client = client_for(ops, TOKEN)
    server = client.servers.get_by_name("app")
    assert server is not None and server.status == "running"
    assert server.server_type.name == "cx23" and server.primary_disk_size == 40

    shutdown = client.servers.shutdown(server)
    assert shutdown.command == "shutdown_server"
    assert shutdown.status == "success" and shutdown.progress == 100
    assert shutdown.started == datetime.fromtimestamp(T0, UTC)
    assert shutdown.finished == shutdown.started  # actions take no time by default
    assert shutdown.resources == [{"id": 7001, "type": "server"}]
    assert shutdown.error is None
    shutdown.wait_until_finished()  # polls GET /actions/{id}
    assert client.servers.get_by_id(7001).status == "off"

    # Up to cx33 keeping the disk (so that it can come back down later) ...
    keep = client.servers.change_type(server, ServerType(name="cx33"), upgrade_disk=False)
    assert keep.command == "change_server_type" and keep.status == "success"
    keep.wait_until_finished()
    moved = client.servers.get_by_id(7001)
    assert (moved.server_type.name, moved.server_type.cores) == ("cx33", 4)
    assert moved.primary_disk_size == 40
    assert moved.status == "off"  # a type change leaves the server off
    [price] = [p for p in moved.server_type.prices if p["location"] == "fsn1"]
    assert price["price_monthly"]["net"] == "5.9900000000"

    # ... down again (40 GB fit cx23's 40 GB), then up with the disk ...
    client.servers.change_type(server, ServerType(name="cx23"), upgrade_disk=False)
    assert client.servers.get_by_id(7001).server_type.name == "cx23"
    client.servers.change_type(server, ServerType(name="cx33"), upgrade_disk=True)
    grown = client.servers.get_by_id(7001)
    assert (grown.server_type.name, grown.primary_disk_size) == ("cx33", 80)

    # ... after which cx23's 40 GB disk is too small: refused, nothing changes.
    with pytest.raises(APIException) as refused:
        client.servers.change_type(server, ServerType(name="cx23"), upgrade_disk=False)
    assert refused.value.code == "invalid_server_type"
    assert "smaller than the server's disk (80 GB)" in refused.value.message
    assert client.servers.get_by_id(7001).server_type.name == "cx33"

    poweron = client.servers.power_on(server)
    assert poweron.command == "start_server"
    poweron.wait_until_finished()
    assert client.servers.get_by_id(7001).status == "running"

    actions = client.servers.get_actions(server)
    assert [a.command for a in actions] == [
        "shutdown_server", "change_server_type", "change_server_type", "change_server_type",
        "start_server"]
    assert all(a.status == "success" for a in actions)
    assert client.servers.get_actions_list(server, per_page=2).meta.pagination.total_entries == 5
    # The same action at /actions/{id}, /servers/actions/{id} and under its server.
    assert client.actions.get_by_id(poweron.id).command == "start_server"
    assert client.servers.actions.get_by_id(poweron.id).command == "start_server"
    direct = httpx.get(f"{ops.cloud}/servers/7001/actions/{poweron.id}",
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert direct.json()["action"]["command"] == "start_server"
    elsewhere = httpx.get(f"{ops.cloud}/servers/7001/actions/{shutdown.id + 1000}",
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert elsewhere.status_code == 404


def test_a_running_server_cannot_change_type_and_the_type_must_fit(ops: Endpoints) -> None:
    client = client_for(ops, TOKEN)
    server = client.servers.get_by_id(7001)
    with pytest.raises(APIException) as running:
        client.servers.change_type(server, ServerType(name="cx33"), upgrade_disk=False)
    assert running.value.code == "server_not_stopped"
    client.servers.power_off(server).wait_until_finished()
    for target, reason in [("cax21", "is arm, the server is x86"),
                           ("cx22", "is deprecated")]:
        with pytest.raises(APIException) as unfit:
            client.servers.change_type(server, ServerType(name=target), upgrade_disk=True)
        assert unfit.value.code == "invalid_server_type"
        assert reason in unfit.value.message
    with pytest.raises(APIException) as unknown:
        client.servers.change_type(server, ServerType(name="cx99"), upgrade_disk=True)
    assert unknown.value.code == "invalid_input"
    assert client.servers.get_by_id(7001).server_type.name == "cx23"


def test_after_a_type_change_the_same_work_is_a_different_ratio(
        ops: Endpoints, clock: FakeClock) -> None:
    """One core of work and 2 GiB in use: 50 % of a cx23 (2 cores, 4 GiB), 25 % of a
    cx33 (4 cores, 8 GiB) — in the agent's CPU counters and memory, while the Cloud
    API's CPU percent (summed over vCPUs) stays 100 % of one core, before and after."""
    client = client_for(ops, TOKEN)
    server = client.servers.get_by_id(7001)
    before = agent_metrics(ops, 7001)
    assert before["cpus"] == 2
    total = before["node_memory_MemTotal_bytes"]
    assert before["node_memory_MemAvailable_bytes"] == int(total * 0.5)

    client.servers.shutdown(server).wait_until_finished()
    client.servers.change_type(server, ServerType(name="cx33"), upgrade_disk=False)
    client.servers.power_on(server).wait_until_finished()
    clock.now = T0 + 3600

    after = agent_metrics(ops, 7001)
    assert after["cpus"] == 4
    assert after["node_boot_time_seconds"] == T0  # the power-on was a boot
    # An hour on 4 CPUs, each busy a quarter of the time: one core of work.
    assert after["cpu_busy"] == pytest.approx(4 * 0.25 * 3600, abs=0.1)
    assert after["cpu_idle"] == pytest.approx(4 * 0.75 * 3600, abs=0.1)
    new_total = after["node_memory_MemTotal_bytes"]
    assert new_total == pytest.approx(8 * MEMORY_BYTES_PER_GB * 0.97, rel=1e-3)
    assert new_total - after["node_memory_MemAvailable_bytes"] == pytest.approx(
        total * 0.5, rel=1e-3)  # the same bytes in use: 25 % of the new memory

    hour_before = cloud_cpu_percent(client, server, T0 - 3600, T0)
    hour_after = cloud_cpu_percent(client, server, T0, T0 + 3600)
    assert hour_before == pytest.approx(100.0) and hour_after == pytest.approx(100.0)


def test_a_running_action_locks_its_server_until_it_finishes(
        serve_fleet: Callable[..., Endpoints], clock: FakeClock) -> None:
    endpoints = serve_fleet(ops_fleet(), clock=clock, settings=Settings(action_seconds=30))
    client = client_for(endpoints, TOKEN)
    server = client.servers.get_by_id(7001)
    action = client.servers.shutdown(server)
    assert (action.status, action.progress, action.finished) == ("running", 0, None)
    busy = client.servers.get_by_id(7001)
    assert (busy.status, busy.locked) == ("stopping", True)
    with pytest.raises(APIException) as locked:
        client.servers.power_on(server)
    assert locked.value.code == "locked"

    clock.now = T0 + 15
    action.reload()
    assert (action.status, action.progress) == ("running", 50)
    clock.now = T0 + 30
    action.wait_until_finished()
    assert (action.status, action.progress) == ("success", 100)
    assert action.finished == datetime.fromtimestamp(T0, UTC) + timedelta(seconds=30)
    done = client.servers.get_by_id(7001)
    assert (done.status, done.locked) == ("off", False)


def test_reboot_is_a_boot_and_create_image_adds_a_billed_snapshot(
        ops: Endpoints, clock: FakeClock) -> None:
    client = client_for(ops, TOKEN)
    server = client.servers.get_by_id(7001)
    assert agent_metrics(ops, 7001)["node_boot_time_seconds"] == T0 - 30 * 86_400
    clock.now = T0 + 600
    reboot = client.servers.reboot(server)
    assert reboot.command == "reboot_server"
    assert agent_metrics(ops, 7001)["node_boot_time_seconds"] == T0 + 600
    client.servers.reset(server).wait_until_finished()
    assert client.servers.get_by_id(7001).status == "running"

    made = client.servers.create_image(server, description="before resize", type="snapshot",
                                       labels={"reason": "resize"})
    assert made.action.command == "create_image"
    assert made.action.resources == [{"id": 7001, "type": "server"},
                                     {"id": made.image.id, "type": "image"}]
    [snapshot] = client.images.get_all(type=["snapshot"])
    assert snapshot.id == made.image.id and snapshot.description == "before resize"
    # What the disk uses (the workload's disk_used_ratio, 0.35 of 40 GB), billed per GB.
    assert (snapshot.image_size, snapshot.disk_size) == (14.0, 40)
    assert snapshot.created_from.id == 7001 and snapshot.labels == {"reason": "resize"}
    with pytest.raises(APIException) as no_backups:
        client.servers.create_image(server, type="backup")
    assert no_backups.value.code == "unsupported_error"


# --------------------------------------------------------------------------
# Delete, protection, create
# --------------------------------------------------------------------------


def test_delete_removes_the_server_and_what_went_with_it(served: Endpoints,
                                                          sim: Simulator) -> None:
    client = client_for(served)
    db = client.servers.get_by_name("shop-db-1")
    assert db is not None
    ipv4, ipv6 = db.public_net.primary_ipv4.id, db.public_net.primary_ipv6.id
    [volume] = db.volumes
    def backups() -> list[int]:
        return [i.id for i in client.images.get_all(type=["backup"])
                if i.bound_to is not None and i.bound_to.id == db.id]

    assert len(backups()) == 7

    client.servers.change_protection(db, delete=True, rebuild=True).wait_until_finished()
    assert client.servers.get_by_id(db.id).protection == {"delete": True, "rebuild": True}
    with pytest.raises(APIException) as protected:
        client.servers.delete(db)
    assert protected.value.code == "protected"
    assert client.servers.get_by_name("shop-db-1") is not None

    client.servers.change_protection(db, delete=False, rebuild=False)
    action = client.servers.delete(db)
    assert action.command == "delete_server" and action.status == "success"
    action.wait_until_finished()  # the action outlives its server
    assert client.servers.get_by_name("shop-db-1") is None
    with pytest.raises(APIException) as gone:
        client.servers.get_by_id(db.id)
    assert gone.value.code == "not_found"
    remaining = {ip.id for ip in client.primary_ips.get_all()}
    assert ipv4 not in remaining and ipv6 not in remaining  # auto_delete
    assert client.volumes.get_by_id(volume.id).server is None
    assert backups() == []
    assert all(s.name != "shop-db-1" for s in sim.fleet.cloud_servers)
    assert httpx.get(f"{served.base}/agents/cloud/{db.id}/metrics").status_code == 404


def test_a_primary_ip_without_auto_delete_stays_unassigned(
        serve_fleet: Callable[..., Endpoints], clock: FakeClock) -> None:
    endpoints = serve_fleet(ops_fleet(), clock=clock)
    sim: Simulator = endpoints.sim  # type: ignore[attr-defined]
    [project] = sim.fleet.projects
    server = project.servers[0]
    kept = next(ip for ip in project.primary_ips if ip.id == server.ipv4_primary_ip_id)
    kept.auto_delete = False
    client = client_for(endpoints, TOKEN)
    client.servers.delete(client.servers.get_by_id(7001))
    kept_ip = client.primary_ips.get_by_id(kept.id)  # kept (and billed), unassigned
    assert (kept_ip.assignee_id, kept_ip.assignee_type) == (None, "unassigned")
    with pytest.raises(APIException) as gone:  # the IPv6 one (auto_delete) went with it
        client.primary_ips.get_by_id(server.ipv6_primary_ip_id)
    assert gone.value.code == "not_found"
    assert client.volumes.get_by_name("app-data").server is None


def test_create_a_server(served: Endpoints, sim: Simulator) -> None:
    client = client_for(served)
    created = client.servers.create(
        name="shop-web-3", server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"), location=Location(name="nbg1"),
        labels={"env": "production", "role": "web"})
    assert created.action.command == "create_server" and created.action.status == "success"
    [start] = created.next_actions
    assert start.command == "start_server"
    assert created.root_password  # no SSH keys: a root password
    server = created.server
    assert server.id > max(s.id for s in sim.fleet.cloud_servers if s.name != "shop-web-3")
    created.action.wait_until_finished()

    listed = client.servers.get_by_name("shop-web-3")
    assert listed is not None
    assert (listed.status, listed.server_type.name, listed.location.name) == (
        "running", "cx23", "nbg1")
    assert listed.labels == {"env": "production", "role": "web"}
    assert listed.primary_disk_size == 40
    ipv4 = client.primary_ips.get_by_id(listed.public_net.primary_ipv4.id)
    assert (ipv4.assignee_id, ipv4.type, ipv4.auto_delete) == (server.id, "ipv4", True)
    assert ipv4.ip == listed.public_net.ipv4.ip
    assert client.primary_ips.get_by_id(listed.public_net.primary_ipv6.id).type == "ipv6"
    # Created now, idle from now on (the simulator's default workload for new servers).
    assert abs(listed.created.timestamp() - sim.clock()) < 60
    [new] = [s for s in sim.fleet.cloud_servers if s.name == "shop-web-3"]
    assert new.workload.profile == "idle"

    with pytest.raises(APIException) as taken:
        client.servers.create(name="shop-web-3", server_type=ServerType(name="cx23"),
                              image=Image(name="ubuntu-24.04"))
    assert taken.value.code == "uniqueness_error"
    for kwargs, field in [({"server_type": ServerType(name="cx99")}, "server_type"),
                          ({"location": Location(name="mars1")}, "location"),
                          ({"image": Image(name="windows-95")}, "image")]:
        args: dict[str, Any] = {"name": "shop-web-4", "server_type": ServerType(name="cx23"),
                                "image": Image(name="ubuntu-24.04"), **kwargs}
        with pytest.raises(APIException) as bad:
            client.servers.create(**args)
        assert bad.value.code == "invalid_input"
        assert bad.value.details["fields"][0]["name"] == field
    assert client.servers.get_by_name("shop-web-4") is None


def test_create_without_starting_on_arm(served: Endpoints) -> None:
    client = client_for(served)
    created = client.servers.create(
        name="cold-spare", server_type=ServerType(name="cax11"), image=Image(name="debian-12"),
        location=Location(name="fsn1"), start_after_create=False, ssh_keys=[])
    assert created.next_actions == []
    server = client.servers.get_by_id(created.server.id)
    assert server.status == "off"
    assert server.image.architecture == "arm"


# --------------------------------------------------------------------------
# Raw HTTP: the error bodies, tokens, rate limit, faults, stats
# --------------------------------------------------------------------------


def test_error_bodies_and_status_codes(ops: Endpoints) -> None:
    with httpx.Client(base_url=ops.cloud, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        def error(response: httpx.Response) -> tuple[int, str, dict[str, Any]]:
            body = response.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message",
                                                                     "details"}
            assert body["error"]["message"]
            return response.status_code, body["error"]["code"], body["error"]["details"]

        change = "/servers/7001/actions/change_type"
        assert error(http.post(change, content=b"{not json"))[:2] == (400, "json_error")
        assert error(http.post(change, json={"server_type": "cx33", "upgrade_disk": True})
                     )[:2] == (422, "server_not_stopped")
        assert http.post("/servers/7001/actions/poweroff").status_code == 201
        status, code, details = error(http.post(change, json={"server_type": "cx33"}))
        assert (status, code) == (400, "invalid_input")
        assert details["fields"][0]["name"] == "upgrade_disk"
        assert error(http.post(change, json={"server_type": "cx99", "upgrade_disk": True})
                     )[:2] == (400, "invalid_input")
        assert error(http.post(change, json={"server_type": "cax21", "upgrade_disk": True})
                     )[:2] == (422, "invalid_server_type")
        assert error(http.post("/servers/999/actions/poweron"))[:2] == (404, "not_found")
        assert error(http.get("/actions/424242"))[:2] == (404, "not_found")
        assert http.post("/servers/7001/actions/change_protection",
                         json={"delete": True}).status_code == 201
        assert error(http.delete("/servers/7001"))[:2] == (423, "protected")
        status, code, details = error(http.post("/servers", json={
            "name": "app", "server_type": "cx23", "image": "ubuntu-24.04"}))
        assert (status, code, details) == (409, "uniqueness_error",
                                           {"fields": [{"name": "name"}]})
        assert error(http.post("/servers", json={"name": "bad_name!", "server_type": "cx23",
                                                 "image": "ubuntu-24.04"}))[:2] == (
            400, "invalid_input")

        poweron = http.post("/servers/7001/actions/poweron")
        assert poweron.status_code == 201
        assert set(poweron.json()["action"]) == {"id", "command", "status", "progress",
                                                  "started", "finished", "resources",
                                                  "error"}
        assert poweron.headers["RateLimit-Limit"] == "3600"  # writes take from the bucket
        http.post("/servers/7001/actions/change_protection", json={"delete": False})
        deleted = http.delete("/servers/7001")
        assert deleted.status_code == 200 and deleted.json()["action"]["command"] == \
            "delete_server"

    assert stats_count(ops, "POST /servers/{id}/actions/change_type", 422) == 2
    assert stats_count(ops, "DELETE /servers/{id}", 423) == 1
    assert stats_count(ops, "DELETE /servers/{id}", 200) == 1
    assert stats_count(ops, "POST /servers", 409) == 1


def test_a_read_only_token_may_read_but_not_write(ops: Endpoints) -> None:
    client = client_for(ops, READ_ONLY_TOKEN)
    server = client.servers.get_by_id(7001)
    with pytest.raises(APIException) as readonly:
        client.servers.power_off(server)
    assert readonly.value.code == "token_readonly"
    response = httpx.post(f"{ops.cloud}/servers/7001/actions/poweroff",
                          headers={"Authorization": f"Bearer {READ_ONLY_TOKEN}"})
    assert response.status_code == 401
    assert client.servers.get_by_id(7001).status == "running"


def test_writes_are_rate_limited_and_faults_apply_to_them(ops: Endpoints) -> None:
    sim: Simulator = ops.sim  # type: ignore[attr-defined]
    httpx.post(f"{ops.control}/faults", json={
        "kind": "error", "status": 503, "api": "cloud",
        "path": "/v1/servers/*/actions/poweroff", "count": 1}).raise_for_status()
    client = Client(token=TOKEN, api_endpoint=ops.cloud, timeout=10, poll_interval=0.01,
                    poll_max_retries=1)
    server = client.servers.get_by_id(7001)
    with pytest.raises(APIException) as injected:
        client.servers.power_off(server)
    assert injected.value.code == "unavailable"
    assert client.servers.get_by_id(7001).status == "running"  # nothing happened

    sim.buckets["ops"].set_remaining(0)
    response = httpx.post(f"{ops.cloud}/servers/7001/actions/poweroff",
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert stats_count(ops, "POST /servers/{id}/actions/poweroff", 503) == 1
    assert stats_count(ops, "POST /servers/{id}/actions/poweroff", 429) == 1
