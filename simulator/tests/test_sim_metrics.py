"""GET /servers/{id}/metrics: semantics, windows, point cap, determinism."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import httpx
import pytest

from infrascope_sim.fleet import load_fleet
from infrascope_sim.workload import PROFILES, Workload

NOW = 1_795_000_000.0  # 2026-11-18T08:26:40Z, a fixed clock for exact windows


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def fleet(cpu: float = 1.0, created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"id": 1, "name": "full", "type": "cx33", "created": created,
         "workload": {"profile": "constant", "cpu_base": cpu, "cpu_peak": cpu}},
        {"id": 2, "name": "web", "type": "ccx23", "created": created,
         "workload": {"profile": "diurnal-web"}},
    ]}]}}


def get(ep, server_id: int, **params) -> httpx.Response:
    return httpx.get(f"{ep.cloud}/servers/{server_id}/metrics", params=params,
                     headers={"Authorization": "Bearer t"})


def values(body: dict, name: str) -> list[tuple[float, float]]:
    return [(t, float(v)) for t, v in body["metrics"]["time_series"][name]["values"]]


def test_full_load_on_four_vcpus_reports_400(serve_fleet) -> None:
    ep = serve_fleet(fleet(1.0), clock=lambda: NOW)
    r = get(ep, 1, type="cpu", start=iso(NOW - 3600), end=iso(NOW), step=60)
    assert r.status_code == 200
    points = r.json()["metrics"]["time_series"]["cpu"]["values"]
    assert len(points) == 60
    assert all(v == "400.0" for _, v in points), "percent of one vCPU, summed over 4 vCPUs"
    half = get(serve_fleet(fleet(0.5), clock=lambda: NOW), 1, type="cpu",
               start=iso(NOW - 600), end=iso(NOW), step=600)
    assert values(half.json(), "cpu") == [(NOW - 600, 200.0)]


def test_response_shape(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    r = get(ep, 2, type="cpu,disk,network", start=iso(NOW - 7200), end=iso(NOW), step=300)
    m = r.json()["metrics"]
    assert isinstance(m["start"], str) and isinstance(m["end"], str)
    assert datetime.fromisoformat(m["start"]).timestamp() == NOW - 7200
    assert m["step"] == 300
    assert set(m["time_series"]) == {
        "cpu", "disk.0.iops.read", "disk.0.iops.write", "disk.0.bandwidth.read",
        "disk.0.bandwidth.write", "network.0.pps.in", "network.0.pps.out",
        "network.0.bandwidth.in", "network.0.bandwidth.out"}
    stamps = [t for t, _ in m["time_series"]["cpu"]["values"]]
    assert stamps == [NOW - 7200 + 300 * k for k in range(24)]
    assert all(isinstance(v, str) for _, v in m["time_series"]["disk.0.iops.read"]["values"])
    # Repeated 'type' parameters work as well as the comma-joined form.
    r2 = httpx.get(f"{ep.cloud}/servers/2/metrics", headers={"Authorization": "Bearer t"},
                   params=[("type", "cpu"), ("type", "network"), ("start", iso(NOW - 600)),
                           ("end", iso(NOW))])
    assert set(r2.json()["metrics"]["time_series"]) == {
        "cpu", "network.0.pps.in", "network.0.pps.out", "network.0.bandwidth.in",
        "network.0.bandwidth.out"}


def test_values_are_exact_bucket_means_of_the_workload(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    server = ep.sim.fleet.find("cloud", 2)
    start = NOW - 86_400
    r = get(ep, 2, type="cpu,network", start=iso(start), end=iso(NOW), step=3600)
    cpu = values(r.json(), "cpu")
    assert len(cpu) == 24
    for ts, value in cpu:
        expected = server.workload.mean_cpu(ts, ts + 3600) * 4 * 100
        assert value == pytest.approx(expected, rel=1e-9)
    # The window average (step = window) is the average of the hourly buckets.
    whole = values(get(ep, 2, type="cpu", start=iso(start), end=iso(NOW),
                       step=86_400).json(), "cpu")
    assert whole[0][1] == pytest.approx(sum(v for _, v in cpu) / 24, rel=1e-9)
    # Network bandwidth is affine in CPU, so its means are exact too.
    bw = values(r.json(), "network.0.bandwidth.out")
    p = server.workload.params
    for (_, c), (_, b) in zip(cpu, bw, strict=True):
        assert b == pytest.approx(p.net_out_base + p.net_out_at_full * c / 400, rel=1e-9)


def test_same_window_same_numbers_across_requests_and_processes(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    args = dict(type="cpu,disk,network", start=iso(NOW - 3 * 86_400), end=iso(NOW - 86_400),
                step=1800)
    a, b = get(ep, 2, **args).json(), get(ep, 2, **args).json()
    assert a == b
    other = serve_fleet(fleet(), clock=lambda: NOW + 5000)  # later clock, same past window
    assert get(other, 2, **args).json() == a
    # A freshly loaded demo fleet has identical workloads (seeds are stable).
    w1 = load_fleet("demo").find("cloud", 41000101).workload
    w2 = load_fleet("demo").find("cloud", 41000101).workload
    assert w1.mean_cpu(NOW - 86_400, NOW) == w2.mean_cpu(NOW - 86_400, NOW)


def test_point_cap_raises_the_step(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    span = 30 * 86_400
    r = get(ep, 2, type="cpu", start=iso(NOW - span), end=iso(NOW), step=60)
    m = r.json()["metrics"]
    assert m["step"] == math.ceil(span / 500)
    assert len(m["time_series"]["cpu"]["values"]) == 500
    # Without a step the simulator picks one that fits the cap (at least 60 s).
    m = get(ep, 2, type="cpu", start=iso(NOW - 3600), end=iso(NOW)).json()["metrics"]
    assert m["step"] == 60 and len(m["time_series"]["cpu"]["values"]) == 60


def test_only_thirty_days_and_only_since_creation(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    r = get(ep, 1, type="cpu", start=iso(NOW - 40 * 86_400), end=iso(NOW), step=86_400)
    stamps = [t for t, _ in values(r.json(), "cpu")]
    # Buckets before the 30-day retention are omitted.
    assert min(stamps) == NOW - 30 * 86_400 and len(stamps) == 30
    assert all(v == 400.0 for _, v in values(r.json(), "cpu"))
    future = get(ep, 1, type="cpu", start=iso(NOW + 60), end=iso(NOW + 3600), step=60)
    assert future.json()["metrics"]["time_series"]["cpu"]["values"] == []
    young = serve_fleet(fleet(created=iso(NOW - 1800)), clock=lambda: NOW)
    r = get(young, 1, type="cpu", start=iso(NOW - 3600), end=iso(NOW), step=600)
    assert [t for t, _ in values(r.json(), "cpu")] == [NOW - 1800, NOW - 1200, NOW - 600]


@pytest.mark.parametrize("params,field", [
    ({"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}, "type"),
    ({"type": "cpu", "end": "2026-11-01T01:00:00Z"}, "start"),
    ({"type": "cpu", "start": "2026-11-01T00:00:00Z"}, "end"),
    ({"type": "memory", "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}, "type"),
    ({"type": "cpu", "start": "yesterday", "end": "2026-11-01T01:00:00Z"}, "start"),
    ({"type": "cpu", "start": "2026-11-01T02:00:00Z", "end": "2026-11-01T01:00:00Z"}, "end"),
    ({"type": "cpu", "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z",
      "step": "-5"}, "step"),
])
def test_invalid_metrics_requests(serve_fleet, params: dict, field: str) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    r = get(ep, 1, **params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_input"
    assert err["details"]["fields"][0]["name"] == field


def test_outgoing_traffic_is_the_months_integral(serve_fleet) -> None:
    ep = serve_fleet(fleet(), clock=lambda: NOW)
    server = ep.sim.fleet.find("cloud", 2)
    month_start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    body = httpx.get(f"{ep.cloud}/servers/2", headers={"Authorization": "Bearer t"}).json()
    expected = server.workload.outgoing_bytes(month_start, NOW)
    assert body["server"]["outgoing_traffic"] == pytest.approx(expected, rel=1e-9)
    assert body["server"]["ingoing_traffic"] == pytest.approx(expected * 0.35, rel=1e-6)


def test_workload_integrals_match_tick_sums() -> None:
    w = Workload(PROFILES["diurnal-web"], seed=42, profile="diurnal-web")
    start = 1_700_000_000.0
    import numpy as np

    ticks = np.arange(int(start // 60), int(start // 60) + 1440)
    direct = float(w.cpu_ticks(ticks).sum() * 60)
    assert w.integrate("cpu", start - start % 60, start - start % 60 + 86_400) == \
        pytest.approx(direct, rel=1e-12)
    # Fractional edges weight partial ticks.
    t0 = start - start % 60 + 17.5
    assert w.integrate("cpu", t0, t0 + 30) == pytest.approx(w.cpu_at(t0) * 30, rel=1e-12)
    t1 = t0 + 40  # straddles a tick boundary: 2.5 s of one tick, 27.5 s of the next
    assert w.integrate("cpu", t1, t1 + 30) == pytest.approx(
        w.cpu_at(t1) * 2.5 + w.cpu_at(t1 + 30) * 27.5, rel=1e-12)
    assert 0.0 <= w.mean_cpu(start, start + 3600) <= 1.0
    daily = [w.mean_cpu(start + h * 3600, start + (h + 1) * 3600) for h in range(24)]
    assert max(daily) > 3 * min(daily), "a diurnal profile has a day and a night"


def test_real_clock_window_is_served(served, cloud: httpx.Client) -> None:
    now = time.time()
    r = cloud.get("/servers/41000108/metrics",
                  params={"type": "cpu", "start": iso(now - 3600), "end": iso(now), "step": 3600})
    cpu = float(r.json()["metrics"]["time_series"]["cpu"]["values"][0][1])
    assert 0 < cpu < 0.05 * 8 * 100, "old-jenkins (cx42, idle) is idle"
