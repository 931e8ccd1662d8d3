#!/usr/bin/env python3
"""Simulator: list a 10,000-server generated fleet completely through pagination.

Target (issue 2): well under a minute. The reference measured in the same run
is a 100-server fleet, so the per-server ratio shows whether listing scales
linearly. Run: `make bench` (or `.venv/bin/python bench/simulator_listing_bench.py`).
"""

from __future__ import annotations

import statistics
import time

import httpx

from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import running
from infrascope_sim.state import Simulator

TARGET_SECONDS = 60.0


def list_all(count: int) -> tuple[float, int, list[float]]:
    fleet = load_fleet(f"generated:{count}")
    with running(Simulator(fleet)) as ep, httpx.Client(
            base_url=ep.cloud, timeout=60,
            headers={"Authorization": "Bearer generated-token-0"}) as client:
        start = time.perf_counter()
        page, seen, latencies = 1, 0, []
        while page:
            t0 = time.perf_counter()
            body = client.get("/servers", params={"page": page, "per_page": 50}).json()
            latencies.append(time.perf_counter() - t0)
            seen += len(body["servers"])
            page = body["meta"]["pagination"]["next_page"]
        elapsed = time.perf_counter() - start
    assert seen == len(fleet.cloud_servers), (seen, len(fleet.cloud_servers))
    return elapsed, seen, latencies


def main() -> int:
    ref_time, ref_n, ref_lat = list_all(100)
    big_time, big_n, big_lat = list_all(10_000)
    print(f"reference: {ref_n} Cloud servers listed in {ref_time:.3f} s "
          f"({ref_time / ref_n * 1000:.3f} ms/server, median page "
          f"{statistics.median(ref_lat) * 1000:.1f} ms)")
    print(f"10k fleet: {big_n} Cloud servers listed in {big_time:.2f} s "
          f"({big_time / big_n * 1000:.3f} ms/server, median page "
          f"{statistics.median(big_lat) * 1000:.1f} ms, {len(big_lat)} pages)")
    print(f"ratio per server 10k/reference: {(big_time / big_n) / (ref_time / ref_n):.2f}")
    print(f"ratio to target ({TARGET_SECONDS:.0f} s): {big_time / TARGET_SECONDS:.2f} "
          f"-> {'OK' if big_time < TARGET_SECONDS / 2 else 'MISSED (not well under a minute)'}")
    return 0 if big_time < TARGET_SECONDS / 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
