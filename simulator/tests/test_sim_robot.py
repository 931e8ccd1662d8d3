"""The simulated Robot web service, checked against shared/reference/hetzner-api.md."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from infrascope_sim.state import Settings

ROBOT_USER = "#ws+DemoShop"
ROBOT_PASSWORD = "demo-robot-password"
ROBOT_AUTH = (ROBOT_USER, ROBOT_PASSWORD)

DEMO_NUMBERS = [2391001, 2391002, 2391003, 2391004, 2391005, 2391006, 2391007]
LIST_FIELDS = {
    "server_ip", "server_ipv6_net", "server_number", "server_name", "product", "dc",
    "traffic", "status", "cancelled", "paid_until", "ip", "subnet",
}
DETAIL_BOOLEANS = ("reset", "rescue", "vnc", "windows", "plesk", "cpanel", "wol", "hot_swap")

CUSTOM_PASSWORD = "s3cret-Robot-pw"


def robot_fleet(limit: int | None = None, servers: int = 1) -> dict[str, Any]:
    robot: dict[str, Any] = {
        "user": "u", "password": CUSTOM_PASSWORD,
        "servers": [{"number": 100 + i, "name": f"box-{i}", "product": "AX42"}
                    for i in range(servers)],
    }
    if limit is not None:
        robot["server_limit_per_hour"] = limit
    return {"robot": robot}


def robot_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["status"] == status
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    return err


def no_key_contains(obj: Any, needle: str, where: str = "$") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert needle not in k.lower(), f"{where}.{k}"
            no_key_contains(v, needle, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            no_key_contains(v, needle, f"{where}[{i}]")


@pytest.fixture
def anon(served: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.robot, timeout=10) as client:
        yield client


# --------------------------------------------------------------------------
# GET /server, GET /server/{n}
# --------------------------------------------------------------------------


def check_server_fields(s: dict[str, Any]) -> None:
    assert isinstance(s["server_number"], int) and not isinstance(s["server_number"], bool)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", s["server_ip"])
    assert isinstance(s["server_ipv6_net"], str) and ":" in s["server_ipv6_net"]
    assert "/" not in s["server_ipv6_net"]
    assert isinstance(s["server_name"], str)
    assert isinstance(s["product"], str) and s["product"]
    assert re.fullmatch(r"[A-Z]+\d+-DC\d+", s["dc"]), s["dc"]
    assert s["traffic"] == "unlimited" or re.fullmatch(r"\d+ TB", s["traffic"])
    assert s["status"] in ("ready", "in process")
    assert isinstance(s["cancelled"], bool)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", s["paid_until"])
    assert isinstance(s["ip"], list) and s["server_ip"] in s["ip"]
    assert s["subnet"] is None or all(set(n) == {"ip", "mask"} for n in s["subnet"])


def test_list_servers(robot: httpx.Client) -> None:
    r = robot.get("/server")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, list) and len(body) == 7
    for entry in body:
        assert set(entry) == {"server"}
        assert set(entry["server"]) >= LIST_FIELDS
        check_server_fields(entry["server"])
    servers = [e["server"] for e in body]
    assert [s["server_number"] for s in servers] == DEMO_NUMBERS
    by_name = {s["server_name"]: s for s in servers}
    assert by_name["db-primary"]["product"] == "AX102"
    assert by_name["db-primary"]["dc"] == "FSN1-DC14"
    assert by_name["db-primary"]["paid_until"] == "2026-12-06"
    assert by_name["auction-box"]["product"] == "Server Auction"
    assert by_name["ci-runner"]["subnet"][0]["mask"] == "64"
    # The list has no detail booleans.
    assert not set(DETAIL_BOOLEANS) & set(servers[0])


def test_get_server_detail(robot: httpx.Client) -> None:
    listed = {e["server"]["server_number"]: e["server"] for e in robot.get("/server").json()}
    for number in DEMO_NUMBERS:
        r = robot.get(f"/server/{number}")
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"server"}
        s = body["server"]
        check_server_fields(s)
        for flag in DETAIL_BOOLEANS:
            assert isinstance(s[flag], bool), flag
        # The detail is the list entry plus the extra fields.
        assert {k: s[k] for k in listed[number]} == listed[number]


def test_get_unknown_server(robot: httpx.Client) -> None:
    robot_error(robot.get("/server/999999"), 404, "SERVER_NOT_FOUND")


def test_get_server_bad_number(robot: httpx.Client) -> None:
    err = robot_error(robot.get("/server/not-a-number"), 400, "INVALID_INPUT")
    assert "invalid" in err and "missing" in err


def test_unknown_path(robot: httpx.Client) -> None:
    robot_error(robot.get("/no/such/thing"), 404, "NOT_FOUND")


def test_no_price_of_owned_servers(robot: httpx.Client) -> None:
    responses = [robot.get("/server").json()]
    responses += [robot.get(f"/server/{n}").json() for n in DEMO_NUMBERS]
    for body in responses:
        no_key_contains(body, "price")
    # The fleet's configured prices (e.g. 109.00 for db-primary) are not served.
    assert "109.00" not in robot.get("/server/2391001").text


def test_product_catalogue(robot: httpx.Client) -> None:
    r = robot.get("/order/server/product")
    assert r.status_code == 200
    products = r.json()
    assert isinstance(products, list) and products
    ids = set()
    for entry in products:
        assert set(entry) == {"product"}
        p = entry["product"]
        ids.add(p["id"])
        assert p["prices"]
        for price in p["prices"]:
            assert isinstance(price["location"], str)
            assert set(price["price"]) >= {"net", "gross", "hourly_net", "hourly_gross"}
            for key in ("net", "gross", "hourly_net", "hourly_gross"):
                assert isinstance(price["price"][key], str)  # decimal strings
                assert re.fullmatch(r"\d+\.\d+", price["price"][key])
            assert float(price["price"]["gross"]) >= float(price["price"]["net"])
            assert set(price["price_setup"]) >= {"net", "gross"}
    assert {"AX42", "AX102", "EX44"} <= ids
    # Auction servers cannot be priced.
    assert "Server Auction" not in ids


def test_empty_fleet_is_404(serve_fleet: Callable[..., Any]) -> None:
    ep = serve_fleet({"robot": {"user": "u", "password": "p", "servers": []}})
    with httpx.Client(base_url=ep.robot, auth=("u", "p"), timeout=10) as client:
        robot_error(client.get("/server"), 404, "SERVER_NOT_FOUND")
        robot_error(client.get("/server/1"), 404, "SERVER_NOT_FOUND")
        assert client.get("/order/server/product").status_code == 200


def test_no_robot_account(serve_fleet: Callable[..., Any]) -> None:
    ep = serve_fleet({})
    with httpx.Client(base_url=ep.robot, auth=("u", "p"), timeout=10) as client:
        robot_error(client.get("/server"), 401, "UNAUTHORIZED")


# --------------------------------------------------------------------------
# authentication and IP blocking
# --------------------------------------------------------------------------


def test_wrong_password(served: Any) -> None:
    with httpx.Client(base_url=served.robot, auth=(ROBOT_USER, "wrong"), timeout=10) as c:
        r = c.get("/server")
    robot_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].lower().startswith("basic")


def test_wrong_user(served: Any) -> None:
    with httpx.Client(base_url=served.robot, auth=("#ws+Other", ROBOT_PASSWORD),
                      timeout=10) as c:
        robot_error(c.get("/server"), 401, "UNAUTHORIZED")


def test_missing_auth(anon: httpx.Client) -> None:
    r = anon.get("/server")
    robot_error(r, 401, "UNAUTHORIZED")
    assert "WWW-Authenticate" in r.headers


def test_garbage_auth(anon: httpx.Client) -> None:
    for header in ("Basic !!!not-base64!!!", "Bearer demo-webshop-token", "Basic"):
        robot_error(anon.get("/server", headers={"Authorization": header}), 401,
                    "UNAUTHORIZED")


def test_block_after_three_failures(served: Any, robot: httpx.Client, anon: httpx.Client,
                                    control: httpx.Client) -> None:
    assert robot.get("/server").status_code == 200
    with httpx.Client(base_url=served.robot, auth=(ROBOT_USER, "wrong"), timeout=10) as bad:
        robot_error(bad.get("/server"), 401, "UNAUTHORIZED")
        robot_error(bad.get("/server/2391001"), 401, "UNAUTHORIZED")
        assert robot.get("/server").status_code == 200  # two failures: not yet blocked
        robot_error(anon.get("/server"), 401, "UNAUTHORIZED")  # the third
        # Blocked: even the right credentials are refused, on every endpoint.
        robot_error(robot.get("/server"), 403, "BLOCKED")
        robot_error(robot.get("/server/2391001"), 403, "BLOCKED")
        robot_error(robot.get("/order/server/product"), 403, "BLOCKED")
        robot_error(bad.get("/server"), 403, "BLOCKED")

    r = control.post("/robot/unblock")
    assert r.status_code == 200
    assert robot.get("/server").status_code == 200


def test_unblock_also_forgets_failures(served: Any, robot: httpx.Client, anon: httpx.Client,
                                       control: httpx.Client) -> None:
    robot_error(anon.get("/server"), 401, "UNAUTHORIZED")
    robot_error(anon.get("/server"), 401, "UNAUTHORIZED")
    control.post("/robot/unblock")
    robot_error(anon.get("/server"), 401, "UNAUTHORIZED")
    robot_error(anon.get("/server"), 401, "UNAUTHORIZED")
    assert robot.get("/server").status_code == 200


def test_block_expires_after_ten_minutes(serve_fleet: Callable[..., Any]) -> None:
    t = [1_780_000_000.0]
    ep = serve_fleet(robot_fleet(), clock=lambda: t[0])
    with httpx.Client(base_url=ep.robot, timeout=10) as c:
        for _ in range(3):
            robot_error(c.get("/server", auth=("u", "nope")), 401, "UNAUTHORIZED")
        robot_error(c.get("/server", auth=("u", CUSTOM_PASSWORD)), 403, "BLOCKED")
        t[0] += 599
        robot_error(c.get("/server", auth=("u", CUSTOM_PASSWORD)), 403, "BLOCKED")
        t[0] += 2
        assert c.get("/server", auth=("u", CUSTOM_PASSWORD)).status_code == 200


def test_no_blocking_when_disabled(serve_fleet: Callable[..., Any]) -> None:
    ep = serve_fleet(robot_fleet(), settings=Settings(robot_block_after_failures=0))
    with httpx.Client(base_url=ep.robot, timeout=10) as c:
        for _ in range(6):
            robot_error(c.get("/server", auth=("u", "nope")), 401, "UNAUTHORIZED")
        assert c.get("/server", auth=("u", CUSTOM_PASSWORD)).status_code == 200


# --------------------------------------------------------------------------
# rate limit
# --------------------------------------------------------------------------


def test_rate_limit_403(serve_fleet: Callable[..., Any]) -> None:
    ep = serve_fleet(robot_fleet(limit=5))
    with httpx.Client(base_url=ep.robot, auth=("u", CUSTOM_PASSWORD), timeout=10) as c:
        for _ in range(5):
            assert c.get("/server").status_code == 200
        r = c.get("/server")
        err = robot_error(r, 403, "RATE_LIMIT_EXCEEDED")
        assert err["max_request"] == 5
        assert err["interval"] == 3600
        robot_error(c.get("/server"), 403, "RATE_LIMIT_EXCEEDED")
        # The product catalogue has its own budget.
        assert c.get("/order/server/product").status_code == 200


def test_rate_limit_window_slides(serve_fleet: Callable[..., Any]) -> None:
    t = [1_780_000_000.0]
    ep = serve_fleet(robot_fleet(limit=5), clock=lambda: t[0])
    with httpx.Client(base_url=ep.robot, auth=("u", CUSTOM_PASSWORD), timeout=10) as c:
        for _ in range(3):
            assert c.get("/server").status_code == 200
        t[0] += 1800
        for _ in range(2):
            assert c.get("/server").status_code == 200
        robot_error(c.get("/server"), 403, "RATE_LIMIT_EXCEEDED")
        t[0] += 1801  # the first three left the window, the last two did not
        for _ in range(3):
            assert c.get("/server").status_code == 200
        robot_error(c.get("/server"), 403, "RATE_LIMIT_EXCEEDED")
        t[0] += 3601  # everything left the window
        for _ in range(5):
            assert c.get("/server").status_code == 200
        robot_error(c.get("/server"), 403, "RATE_LIMIT_EXCEEDED")


def test_rate_limit_applies_after_auth(serve_fleet: Callable[..., Any]) -> None:
    ep = serve_fleet(robot_fleet(limit=5), settings=Settings(robot_block_after_failures=0))
    with httpx.Client(base_url=ep.robot, timeout=10) as c:
        # Failed logins do not spend the budget...
        for _ in range(8):
            robot_error(c.get("/server", auth=("u", "nope")), 401, "UNAUTHORIZED")
        for _ in range(5):
            assert c.get("/server", auth=("u", CUSTOM_PASSWORD)).status_code == 200
        robot_error(c.get("/server", auth=("u", CUSTOM_PASSWORD)), 403, "RATE_LIMIT_EXCEEDED")
        # ...and past the limit a bad login is still a 401, not a 403.
        robot_error(c.get("/server", auth=("u", "nope")), 401, "UNAUTHORIZED")


# --------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------


def test_errors_never_echo_the_password(serve_fleet: Callable[..., Any]) -> None:
    t = [1_780_000_000.0]
    ep = serve_fleet(robot_fleet(limit=2), clock=lambda: t[0])
    good = ("u", CUSTOM_PASSWORD)
    near_miss = ("u", CUSTOM_PASSWORD + "x")
    errors: list[httpx.Response] = []
    with httpx.Client(base_url=ep.robot, timeout=10) as c:
        errors.append(c.get("/server/12345", auth=good))            # 404
        errors.append(c.get("/server/abc", auth=good))              # 400
        errors.append(c.get("/nothing-here", auth=good))            # 404
        c.get("/server", auth=good)
        c.get("/server", auth=good)
        errors.append(c.get("/server", auth=good))                  # 403 rate limit
        errors.append(c.get("/server", auth=near_miss))             # 401
        errors.append(c.get("/server", auth=("u", "")))             # 401
        errors.append(c.get("/server", auth=(CUSTOM_PASSWORD, "x")))  # 401 -> blocked
        errors.append(c.get("/server", auth=good))                  # 403 blocked
        with httpx.Client(base_url=ep.control, timeout=10) as control:
            assert control.post("/robot/unblock").status_code == 200
            for status in (500, 502, 503, 504):
                control.post("/faults", json={"kind": "error", "api": "robot",
                                              "status": status, "count": 1})
                errors.append(c.get("/server", auth=good))
            control.post("/faults", json={"kind": "rate_limit", "api": "robot", "count": 1})
            errors.append(c.get("/server", auth=good))
    statuses = sorted({r.status_code for r in errors})
    assert statuses == [400, 401, 403, 404, 500, 502, 503, 504], statuses
    for r in errors:
        assert r.status_code >= 400
        text = r.text + " " + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        assert CUSTOM_PASSWORD not in text, text


def test_demo_password_not_in_errors(served: Any, anon: httpx.Client) -> None:
    bodies = [anon.get("/server").text]
    with httpx.Client(base_url=served.robot, auth=(ROBOT_USER, ROBOT_PASSWORD + "!"),
                      timeout=10) as c:
        bodies.append(c.get("/server").text)
        bodies.append(c.get("/server").text)
        bodies.append(c.get("/server").text)  # now blocked
    with httpx.Client(base_url=served.robot, auth=ROBOT_AUTH, timeout=10) as c:
        bodies.append(c.get("/server").text)
    assert "BLOCKED" in bodies[-1]
    for text in bodies:
        assert ROBOT_PASSWORD not in text


def test_requests_are_counted(robot: httpx.Client, control: httpx.Client) -> None:
    robot.get("/server")
    robot.get("/server/999")
    stats = control.get("/stats").json()["endpoints"]
    assert stats["robot GET /server"]["by_status"] == {"200": 1}
    assert stats["robot GET /server/{number}"]["by_status"] == {"404": 1}

