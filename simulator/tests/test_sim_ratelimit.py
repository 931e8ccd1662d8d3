"""Cloud rate limiting: token bucket, headers, 429 body, refill, 401."""

from __future__ import annotations

import time

import httpx

from infrascope_sim.ratelimit import TokenBucket, WindowCounter
from infrascope_sim.state import Settings

FLEET = {"cloud": {"projects": [
    {"name": "small", "token": "t-small", "rate_limit": 5,
     "servers": [{"name": "a", "type": "cx23"}]},
    {"name": "big", "token": "t-big", "rate_limit": 7200,
     "servers": [{"name": "b", "type": "cx23"}]},
]}}


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_headers_count_down_and_429_when_empty(serve_fleet) -> None:
    clock = FakeClock()
    ep = serve_fleet(FLEET, clock=clock)
    h = {"Authorization": "Bearer t-small"}
    remaining = []
    for _ in range(5):
        r = httpx.get(ep.cloud + "/servers", headers=h)
        assert r.status_code == 200
        assert r.headers["RateLimit-Limit"] == "5"
        remaining.append(int(r.headers["RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    # With limit 5 the refill is 5/3600 per second: empty means full again in 3600 s.
    assert int(r.headers["RateLimit-Reset"]) == int(clock.t) + 3600
    r = httpx.get(ep.cloud + "/servers", headers=h)
    assert r.status_code == 429
    assert r.json() == {"error": {"code": "rate_limit_exceeded",
                                  "message": "limit of 5 requests per hour reached",
                                  "details": {}}}
    assert r.headers["RateLimit-Remaining"] == "0"
    # Another project has its own bucket.
    r = httpx.get(ep.cloud + "/servers", headers={"Authorization": "Bearer t-big"})
    assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "7200"
    assert r.headers["RateLimit-Remaining"] == "7199"


def test_bucket_refills_over_time(serve_fleet) -> None:
    clock = FakeClock()
    ep = serve_fleet(FLEET, clock=clock)
    h = {"Authorization": "Bearer t-small"}
    for _ in range(5):
        httpx.get(ep.cloud + "/servers", headers=h)
    assert httpx.get(ep.cloud + "/servers", headers=h).status_code == 429
    clock.t += 720  # 5 per hour: one token every 720 s
    r = httpx.get(ep.cloud + "/servers", headers=h)
    assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "0"
    clock.t += 3600 * 10  # never more than the bucket holds
    r = httpx.get(ep.cloud + "/servers", headers=h)
    assert r.headers["RateLimit-Remaining"] == "4"


def test_default_bucket_refills_one_per_second_in_real_time(serve_fleet) -> None:
    data = {"cloud": {"projects": [{"name": "p", "token": "t", "servers": []}]}}
    ep = serve_fleet(data)
    h = {"Authorization": "Bearer t"}
    first = httpx.get(ep.cloud + "/servers", headers=h)
    assert first.headers["RateLimit-Limit"] == "3600"
    assert first.headers["RateLimit-Remaining"] == "3599"
    reset = int(first.headers["RateLimit-Reset"])
    assert time.time() <= reset <= time.time() + 2
    time.sleep(1.2)
    again = httpx.get(ep.cloud + "/servers", headers=h)
    assert again.headers["RateLimit-Remaining"] == "3599"  # refilled the one it spent


def test_configurable_refill_rate(serve_fleet) -> None:
    clock = FakeClock()
    ep = serve_fleet(FLEET, settings=Settings(refill_per_second=1.0), clock=clock)
    h = {"Authorization": "Bearer t-small"}
    for _ in range(5):
        httpx.get(ep.cloud + "/servers", headers=h)
    clock.t += 2
    assert httpx.get(ep.cloud + "/servers", headers=h).headers["RateLimit-Remaining"] == "1"


def test_wrong_or_missing_token_is_401_and_costs_nothing(serve_fleet) -> None:
    clock = FakeClock()
    ep = serve_fleet(FLEET, clock=clock)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = httpx.get(ep.cloud + "/servers", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert "t-small" not in r.text
    r = httpx.get(ep.cloud + "/servers", headers={"Authorization": "Bearer t-small"})
    assert r.headers["RateLimit-Remaining"] == "4"


def test_control_api_sets_remaining(serve_fleet) -> None:
    ep = serve_fleet(FLEET)
    r = httpx.put(ep.control + "/ratelimit/big", json={"remaining": 3})
    assert r.json()["remaining"] == 3
    r = httpx.get(ep.cloud + "/servers", headers={"Authorization": "Bearer t-big"})
    assert r.headers["RateLimit-Remaining"] == "2"
    assert httpx.put(ep.control + "/ratelimit/nope", json={"remaining": 1}).status_code == 404
    assert httpx.put(ep.control + "/ratelimit/big", json={}).status_code == 400


def test_token_bucket_unit() -> None:
    clock = FakeClock(100.0)
    bucket = TokenBucket(3600, clock=clock)
    for i in range(3600):
        assert bucket.take().allowed, i
    d = bucket.take()
    assert not d.allowed and d.remaining == 0 and d.reset == 100 + 3600
    clock.t += 1.0
    d = bucket.take()
    assert d.allowed and d.remaining == 0
    clock.t += 10
    assert bucket.peek().remaining == 10 and bucket.peek().reset == int(clock.t) + 3590


def test_window_counter_unit() -> None:
    clock = FakeClock(0.0)
    window = WindowCounter(3, 3600, clock=clock)
    assert [window.take() for _ in range(4)] == [True, True, True, False]
    clock.t = 3599
    assert not window.take()
    clock.t = 3600.5
    assert window.take()
