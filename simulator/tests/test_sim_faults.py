"""Fault injection: every kind, at run time (control API) and at start-up (the CLI).

Every test talks to a real simulator over loopback HTTP. Network loops are
bounded and every subprocess started here is stopped by its own handle.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

WEBSHOP_TOKEN = "demo-webshop-token"
ANALYTICS_TOKEN = "demo-analytics-token"
ROBOT_AUTH = ("#ws+DemoShop", "demo-robot-password")

CLOUD_ERROR_CODES = {500: "server_error", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}


def add_fault(control: httpx.Client, **spec: Any) -> dict[str, Any]:
    r = control.post("/faults", json=spec)
    assert r.status_code == 201, r.text
    faults = r.json()["faults"]
    assert len(faults) == 1
    return faults[0]


def assert_cloud_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def assert_robot_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"status", "code", "message"} <= set(err)
    assert err["status"] == status
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    return err


# --------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------


def test_latency_delays_matching_paths_only(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="latency", api="cloud", path="/v1/servers*", ms=300)

    for path in ("/servers", "/servers/41000101"):
        t0 = time.monotonic()
        r = cloud.get(path)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert elapsed >= 0.3, (path, elapsed)

    # A latency fault delays, it does not change the answer.
    assert len(cloud.get("/servers").json()["servers"]) == 13

    for path in ("/locations", "/server_types", "/pricing"):
        t0 = time.monotonic()
        r = cloud.get(path)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert elapsed < 0.25, (path, elapsed)


def test_latency_on_robot(robot: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="latency", api="robot", path="/robot/server", ms=300)
    t0 = time.monotonic()
    r = robot.get("/server")
    assert r.status_code == 200
    assert time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    assert robot.get("/order/server/product").status_code == 200
    assert time.monotonic() - t0 < 0.25


# --------------------------------------------------------------------------
# error
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_cloud_documented_body(cloud: httpx.Client, control: httpx.Client,
                                     status: int) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/servers", status=status)
    r = cloud.get("/servers")
    assert_cloud_error(r, status, CLOUD_ERROR_CODES[status])
    # Only the matching path fails.
    assert cloud.get("/servers/41000101").status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_robot_body_shape(robot: httpx.Client, control: httpx.Client, status: int) -> None:
    add_fault(control, kind="error", api="robot", status=status)
    r = robot.get("/server")
    err = assert_robot_error(r, status, r.json()["error"]["code"])
    assert "details" not in err  # Robot's shape, not the Cloud one
    assert re.fullmatch(r"[A-Z_]+", err["code"])
    if status == 503:
        assert err["code"] == "MAINTENANCE"


def test_error_applies_before_auth(served: Any, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", status=502)
    r = httpx.get(served.cloud + "/servers", timeout=10)
    assert_cloud_error(r, 502, "bad_gateway")


def test_error_status_default_is_503(cloud: httpx.Client, control: httpx.Client) -> None:
    fault = add_fault(control, kind="error", api="cloud")
    assert fault["status"] == 503
    assert_cloud_error(cloud.get("/servers"), 503, "unavailable")


# --------------------------------------------------------------------------
# probability, count, duration
# --------------------------------------------------------------------------


def test_probability_half_fails_about_half(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/locations", status=500,
              probability=0.5)
    statuses = [cloud.get("/locations").status_code for _ in range(200)]
    failed = statuses.count(500)
    assert set(statuses) <= {200, 500}
    assert 50 <= failed <= 150, failed
    faults = control.get("/faults").json()["faults"]
    assert faults[0]["applied"] == failed


def test_probability_zero_and_one(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/locations", probability=0.0)
    add_fault(control, kind="error", api="cloud", path="/v1/pricing", probability=1.0)
    for _ in range(20):
        assert cloud.get("/locations").status_code == 200
        assert cloud.get("/pricing").status_code == 503


@pytest.mark.parametrize("count", [1, 3])
def test_count_affects_exactly_n_requests(cloud: httpx.Client, control: httpx.Client,
                                          count: int) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/servers", status=500, count=count)
    statuses = [cloud.get("/servers").status_code for _ in range(count + 5)]
    assert statuses == [500] * count + [200] * 5
    # The spent fault is gone from the list.
    assert control.get("/faults").json()["faults"] == []


def test_count_only_counts_matching_requests(cloud: httpx.Client,
                                             control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/servers", count=2)
    for _ in range(5):  # other paths do not use up the fault
        assert cloud.get("/locations").status_code == 200
    assert [cloud.get("/servers").status_code for _ in range(4)] == [503, 503, 200, 200]


def test_duration_expires(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/servers", status=502, duration=0.5)
    assert cloud.get("/servers").status_code == 502
    assert cloud.get("/servers").status_code == 502
    time.sleep(0.6)
    assert cloud.get("/servers").status_code == 200
    assert control.get("/faults").json()["faults"] == []


# --------------------------------------------------------------------------
# rate_limit (a storm regardless of the bucket)
# --------------------------------------------------------------------------


def test_rate_limit_storm_cloud(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="rate_limit", api="cloud", duration=60)
    for _ in range(3):
        r = cloud.get("/servers")
        err = assert_cloud_error(r, 429, "rate_limit_exceeded")
        assert err["message"] == "limit of 3600 requests per hour reached"
        assert err["details"] == {}
        assert r.headers["RateLimit-Remaining"] == "0"
        assert r.headers["RateLimit-Limit"] == "3600"
        assert int(r.headers["RateLimit-Reset"]) >= int(time.time())
    control.delete("/faults")
    r = cloud.get("/servers")
    assert r.status_code == 200
    # The storm did not spend real tokens.
    assert int(r.headers["RateLimit-Remaining"]) >= 3590


def test_rate_limit_storm_robot(robot: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="rate_limit", api="robot", path="/robot/server*")
    r = robot.get("/server")
    err = assert_robot_error(r, 403, "RATE_LIMIT_EXCEEDED")
    assert err["max_request"] == 200
    assert err["interval"] == 3600
    assert_robot_error(robot.get("/server/2391001"), 403, "RATE_LIMIT_EXCEEDED")
    assert robot.get("/order/server/product").status_code == 200


# --------------------------------------------------------------------------
# hang
# --------------------------------------------------------------------------


def test_hang_times_out_client_then_recovers(served: Any, control: httpx.Client) -> None:
    add_fault(control, kind="hang", api="cloud", path="/v1/servers", seconds=30)
    headers = {"Authorization": f"Bearer {WEBSHOP_TOKEN}"}
    with httpx.Client(base_url=served.cloud, headers=headers, timeout=0.5) as short:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            short.get("/servers")
        assert time.monotonic() - t0 < 5
    assert control.delete("/faults").json() == {"faults": []}
    with httpx.Client(base_url=served.cloud, headers=headers, timeout=5) as fresh:
        r = fresh.get("/servers")
        assert r.status_code == 200
        assert len(r.json()["servers"]) == 13


def test_hang_does_not_block_other_requests(served: Any, cloud: httpx.Client,
                                            control: httpx.Client) -> None:
    add_fault(control, kind="hang", api="cloud", path="/v1/servers", seconds=30)
    outcome: list[BaseException | httpx.Response] = []

    def hanging() -> None:
        with httpx.Client(base_url=served.cloud, timeout=2.5,
                          headers={"Authorization": f"Bearer {WEBSHOP_TOKEN}"}) as client:
            try:
                outcome.append(client.get("/servers"))
            except BaseException as exc:  # noqa: BLE001 - recorded and checked below
                outcome.append(exc)

    thread = threading.Thread(target=hanging, daemon=True)
    thread.start()
    try:
        # Wait (bounded) until the server has picked up the hanging request.
        deadline = time.monotonic() + 2.0
        while control.get("/faults").json()["faults"][0]["applied"] < 1:
            assert time.monotonic() < deadline, "hanging request never reached the server"
            time.sleep(0.02)
        t0 = time.monotonic()
        assert cloud.get("/locations").status_code == 200
        assert cloud.get("/servers/41000101").status_code == 200
        assert time.monotonic() - t0 < 1.0
        assert thread.is_alive(), "the hanging request should still be pending"
    finally:
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.ReadTimeout), outcome


def test_hang_on_robot(served: Any, control: httpx.Client) -> None:
    add_fault(control, kind="hang", api="robot", seconds=30)
    with httpx.Client(base_url=served.robot, auth=ROBOT_AUTH, timeout=0.5) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.get("/server")
    control.delete("/faults")
    with httpx.Client(base_url=served.robot, auth=ROBOT_AUTH, timeout=5) as fresh:
        assert fresh.get("/server").status_code == 200


# --------------------------------------------------------------------------
# malformed_json, wrong_content_type
# --------------------------------------------------------------------------


def test_malformed_json_cloud(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="malformed_json", api="cloud", path="/v1/servers")
    r = cloud.get("/servers")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    # Other paths are intact.
    json.loads(cloud.get("/locations").content)


def test_malformed_json_robot(robot: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="malformed_json", api="robot", path="/robot/server")
    r = robot.get("/server")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_malformed_json_leaves_errors_alone(served: Any, control: httpx.Client) -> None:
    add_fault(control, kind="malformed_json", api="cloud")
    r = httpx.get(served.cloud + "/servers", timeout=10)  # no token: a 401
    assert_cloud_error(r, 401, "unauthorized")


def test_wrong_content_type(cloud: httpx.Client, robot: httpx.Client,
                            control: httpx.Client) -> None:
    add_fault(control, kind="wrong_content_type", path="/v1/servers")
    add_fault(control, kind="wrong_content_type", path="/robot/server")
    for r in (cloud.get("/servers"), robot.get("/server")):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "<html" in r.text.lower()
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)
    assert cloud.get("/locations").headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------
# broken_pagination
# --------------------------------------------------------------------------


def test_broken_pagination_error_mode(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="broken_pagination", api="cloud", path="/v1/servers",
              mode="error", after_page=1)
    r1 = cloud.get("/servers", params={"per_page": 3})
    assert r1.status_code == 200
    meta = r1.json()["meta"]["pagination"]
    assert meta["page"] == 1 and meta["next_page"] == 2
    assert len(r1.json()["servers"]) == 3
    r2 = cloud.get("/servers", params={"per_page": 3, "page": 2})
    assert_cloud_error(r2, 503, "unavailable")
    assert cloud.get("/servers", params={"per_page": 3, "page": 3}).status_code == 503


def test_broken_pagination_truncate_mode(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="broken_pagination", api="cloud", path="/v1/servers",
              mode="truncate", after_page=2)
    r1 = cloud.get("/servers", params={"per_page": 2})
    assert r1.json()["meta"]["pagination"]["next_page"] == 2
    r2 = cloud.get("/servers", params={"per_page": 2, "page": 2})
    assert r2.status_code == 200
    body = r2.json()
    meta = body["meta"]["pagination"]
    assert len(body["servers"]) == 2
    assert meta["page"] == 2
    assert meta["next_page"] is None
    assert meta["total_entries"] == 13
    assert meta["total_entries"] > meta["page"] * meta["per_page"]
    assert 'rel="next"' not in r2.headers["Link"]
    # Without the fault the same page continues.
    control.delete("/faults")
    r2 = cloud.get("/servers", params={"per_page": 2, "page": 2})
    assert r2.json()["meta"]["pagination"]["next_page"] == 3
    assert 'rel="next"' in r2.headers["Link"]


# --------------------------------------------------------------------------
# scoping
# --------------------------------------------------------------------------


def test_scope_api_robot_does_not_touch_cloud(cloud: httpx.Client, robot: httpx.Client,
                                              control: httpx.Client) -> None:
    add_fault(control, kind="error", api="robot", status=500)
    assert robot.get("/server").status_code == 500
    assert cloud.get("/servers").status_code == 200


def test_scope_api_cloud_does_not_touch_robot(cloud: httpx.Client, robot: httpx.Client,
                                              control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", status=500)
    assert cloud.get("/servers").status_code == 500
    assert robot.get("/server").status_code == 200


def test_scope_api_star_touches_both(cloud: httpx.Client, robot: httpx.Client,
                                     control: httpx.Client) -> None:
    add_fault(control, kind="error", status=502)
    assert cloud.get("/servers").status_code == 502
    assert robot.get("/server").status_code == 502


def test_scope_project(served: Any, cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", project="analytics", status=500)
    assert cloud.get("/servers").status_code == 200  # webshop token
    with httpx.Client(base_url=served.cloud, timeout=10,
                      headers={"Authorization": f"Bearer {ANALYTICS_TOKEN}"}) as analytics:
        assert_cloud_error(analytics.get("/servers"), 500, "server_error")
    # A project-scoped fault does not apply to unauthenticated requests either.
    assert httpx.get(served.cloud + "/servers", timeout=10).status_code == 401


def test_revoked_token_is_a_401_for_that_project_only(served: Any, cloud: httpx.Client,
                                                     control: httpx.Client) -> None:
    fault = add_fault(control, kind="revoked_token", api="cloud", project="analytics")
    with httpx.Client(base_url=served.cloud, timeout=10,
                      headers={"Authorization": f"Bearer {ANALYTICS_TOKEN}"}) as analytics:
        assert_cloud_error(analytics.get("/servers"), 401, "unauthorized")
        assert_cloud_error(analytics.get("/pricing"), 401, "unauthorized")
        assert cloud.get("/servers").status_code == 200  # the other project's token works
        # Given back (the fault removed), the token works again.
        assert control.delete(f"/faults/{fault['id']}").status_code == 200
        assert analytics.get("/servers").status_code == 200


def test_forbidden_is_a_403_on_reads(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="forbidden", api="cloud", path="/v1/servers")
    assert_cloud_error(cloud.get("/servers"), 403, "forbidden")
    assert cloud.get("/pricing").status_code == 200


def test_revoked_and_forbidden_on_robot(robot: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="revoked_token", api="robot", path="/robot/server", count=1)
    r = robot.get("/server")
    assert_robot_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Basic")
    add_fault(control, kind="forbidden", api="robot", path="/robot/server", count=1)
    assert_robot_error(robot.get("/server"), 403, "FORBIDDEN")
    assert robot.get("/server").status_code == 200


def test_scope_path_glob(cloud: httpx.Client, control: httpx.Client) -> None:
    add_fault(control, kind="error", api="cloud", path="/v1/servers/*", status=500)
    assert cloud.get("/servers").status_code == 200
    assert cloud.get("/servers/41000101").status_code == 500
    assert cloud.get("/servers/41000101/metrics").status_code == 500
    assert cloud.get("/server_types").status_code == 200
    control.delete("/faults")
    add_fault(control, kind="error", api="cloud", path="/v1/server?types", status=500)
    assert cloud.get("/server_types").status_code == 500
    assert cloud.get("/servers").status_code == 200


# --------------------------------------------------------------------------
# the control API
# --------------------------------------------------------------------------


def test_control_list_add_delete(cloud: httpx.Client, control: httpx.Client) -> None:
    assert control.get("/faults").json() == {"faults": []}
    a = add_fault(control, kind="latency", api="cloud", ms=10)
    b = add_fault(control, kind="error", api="cloud", path="/v1/servers", status=500)
    assert a["id"] != b["id"]
    listed = control.get("/faults").json()["faults"]
    assert [f["id"] for f in listed] == [a["id"], b["id"]]
    assert listed[1]["kind"] == "error" and listed[1]["status"] == 500
    assert cloud.get("/servers").status_code == 500

    r = control.delete(f"/faults/{b['id']}")
    assert r.status_code == 200
    assert [f["id"] for f in control.get("/faults").json()["faults"]] == [a["id"]]
    assert cloud.get("/servers").status_code == 200
    assert control.delete(f"/faults/{b['id']}").status_code == 404

    r = control.delete("/faults")
    assert r.status_code == 200 and r.json() == {"faults": []}
    assert control.get("/faults").json() == {"faults": []}


def test_control_accepts_a_list(control: httpx.Client) -> None:
    r = control.post("/faults", json=[{"kind": "latency", "ms": 5},
                                      {"kind": "error", "api": "robot"}])
    assert r.status_code == 201
    assert [f["kind"] for f in r.json()["faults"]] == ["latency", "error"]
    assert len(control.get("/faults").json()["faults"]) == 2


@pytest.mark.parametrize(("spec", "needle"), [
    ({"kind": "explode"}, "unknown fault kind"),
    ({"api": "cloud"}, "kind"),
    ({"kind": "error", "status": 418}, "status"),
    ({"kind": "error", "api": "mars"}, "unknown api"),
    ({"kind": "latency", "probability": 1.5}, "probability"),
    ({"kind": "error", "count": 0}, "count"),
    ({"kind": "latency", "ms": -1}, "negative"),
    ({"kind": "broken_pagination", "mode": "sideways"}, "mode"),
    ({"kind": "broken_pagination", "after_page": 0}, "after_page"),
    ({"kind": "error", "colour": "red"}, "unknown fault fields"),
    ({"kind": "latency", "ms": "soon"}, "bad fault field value"),
])
def test_control_validation(control: httpx.Client, spec: dict[str, Any], needle: str) -> None:
    r = control.post("/faults", json=spec)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert needle in message, message
    assert control.get("/faults").json() == {"faults": []}


def test_control_validation_batch_is_all_or_nothing(control: httpx.Client) -> None:
    r = control.post("/faults", json=[{"kind": "latency"}, {"kind": "nope"}])
    assert r.status_code == 400
    assert "nope" in r.json()["error"]["message"]
    assert control.get("/faults").json() == {"faults": []}


def test_control_rejects_non_json(control: httpx.Client) -> None:
    r = control.post("/faults", content=b"kind=error",
                     headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


# --------------------------------------------------------------------------
# start-up faults: the real CLI in a subprocess
# --------------------------------------------------------------------------


@dataclass
class CliSim:
    proc: subprocess.Popen[str]
    cloud: str
    robot: str
    control: str


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("infrascope-sim")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "infrascope_sim"]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _start_cli(args: list[str], timeout: float = 20.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``infrascope-sim serve`` and return it with its HCLOUD_ENDPOINT."""
    proc = subprocess.Popen(
        [*_cli(), "serve", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no HCLOUD_ENDPOINT line within {timeout}s: {seen}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"infrascope-sim exited early ({proc.wait(5)}): {seen}")
            seen.append(line)
            m = re.search(r"HCLOUD_ENDPOINT=(http://\S+)", line)
            if m:
                return proc, m.group(1)
    except BaseException:
        _stop(proc)
        raise


@pytest.fixture
def cli_sim() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> CliSim:
        proc, cloud_url = _start_cli(list(args))
        procs.append(proc)
        assert cloud_url.endswith("/v1")
        base = cloud_url[: -len("/v1")]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), base
        assert not base.endswith(":0")
        return CliSim(proc, cloud_url, base + "/robot", base + "/_sim")

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


def test_cli_startup_faults_every_kind(cli_sim: Any) -> None:
    s: CliSim = cli_sim(
        "--fault", "kind=latency,api=cloud,path=/v1/locations*,ms=300",
        "--fault", "kind=error,api=cloud,path=/v1/servers,status=502",
        "--fault", "kind=rate_limit,api=robot,path=/robot/server",
        "--fault", "kind=hang,api=cloud,path=/v1/volumes,seconds=30",
        "--fault", "kind=malformed_json,api=cloud,path=/v1/server_types",
        "--fault", "kind=broken_pagination,api=cloud,path=/v1/images,mode=error,after_page=1",
        "--fault", "kind=wrong_content_type,api=cloud,path=/v1/pricing",
        "--fault", "kind=error,api=robot,path=/robot/order/*,status=503,count=2",
    )
    headers = {"Authorization": f"Bearer {WEBSHOP_TOKEN}"}
    with httpx.Client(base_url=s.control, timeout=10) as control:
        faults = control.get("/faults").json()["faults"]
    assert [f["kind"] for f in faults] == [
        "latency", "error", "rate_limit", "hang", "malformed_json", "broken_pagination",
        "wrong_content_type", "error"]

    with httpx.Client(base_url=s.cloud, headers=headers, timeout=10) as cloud:
        t0 = time.monotonic()
        assert cloud.get("/locations").status_code == 200
        assert time.monotonic() - t0 >= 0.3

        assert_cloud_error(cloud.get("/servers"), 502, "bad_gateway")
        assert cloud.get("/servers/41000101").status_code == 200

        r = cloud.get("/server_types")
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)

        assert cloud.get("/images", params={"per_page": 2}).status_code == 200
        assert_cloud_error(cloud.get("/images", params={"per_page": 2, "page": 2}),
                           503, "unavailable")

        r = cloud.get("/pricing")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")

    with httpx.Client(base_url=s.cloud, headers=headers, timeout=0.5) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.get("/volumes")

    with httpx.Client(base_url=s.robot, auth=ROBOT_AUTH, timeout=10) as robot:
        err = assert_robot_error(robot.get("/server"), 403, "RATE_LIMIT_EXCEEDED")
        assert err["max_request"] == 200 and err["interval"] == 3600
        assert robot.get("/server/2391001").status_code == 200
        codes = [robot.get("/order/server/product").status_code for _ in range(4)]
        assert codes == [503, 503, 200, 200]

    # Start-up faults are ordinary faults: the control API removes them.
    with httpx.Client(base_url=s.control, timeout=10) as control:
        assert control.delete("/faults").status_code == 200
    with httpx.Client(base_url=s.cloud, headers=headers, timeout=5) as cloud:
        assert cloud.get("/servers").status_code == 200
        assert cloud.get("/volumes").status_code == 200
        assert cloud.get("/pricing").headers["content-type"].startswith("application/json")

    s.proc.terminate()
    assert s.proc.wait(timeout=10) is not None


def test_cli_startup_probability_is_deterministic(cli_sim: Any) -> None:
    spec = "kind=error,api=cloud,path=/v1/locations,status=500,probability=0.5"
    headers = {"Authorization": f"Bearer {WEBSHOP_TOKEN}"}
    runs = []
    for _ in range(2):
        s: CliSim = cli_sim("--fault", spec)
        with httpx.Client(base_url=s.cloud, headers=headers, timeout=10) as cloud:
            runs.append([cloud.get("/locations").status_code for _ in range(200)])
        _stop(s.proc)
    assert runs[0] == runs[1]
    assert 50 <= runs[0].count(500) <= 150


def test_cli_faults_file(cli_sim: Any) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write("- {kind: error, api: cloud, path: /v1/servers, status: 504}\n"
                 "- {kind: wrong_content_type, api: robot}\n")
        path = fh.name
    try:
        s: CliSim = cli_sim("--faults-file", path)
        with httpx.Client(base_url=s.cloud, timeout=10,
                          headers={"Authorization": f"Bearer {WEBSHOP_TOKEN}"}) as cloud:
            assert_cloud_error(cloud.get("/servers"), 504, "timeout")
        with httpx.Client(base_url=s.robot, auth=ROBOT_AUTH, timeout=10) as robot:
            assert robot.get("/server").headers["content-type"].startswith("text/html")
    finally:
        os.unlink(path)


@pytest.mark.parametrize("spec", ["kind=explode", "kind=error,status=418", "nonsense"])
def test_cli_rejects_bad_fault_spec(spec: str) -> None:
    proc = subprocess.run([*_cli(), "serve", "--listen", "127.0.0.1:0", "--fault", spec],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith("infrascope-sim:")
    assert "HCLOUD_ENDPOINT" not in proc.stdout
