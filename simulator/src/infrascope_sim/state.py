"""Shared simulator state: fleet, buckets, faults, request counters, clock."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .actions import ActionLog
from .faults import FaultSet
from .fleet import CloudServer, Fleet
from .ratelimit import TokenBucket, WindowCounter
from .workload import TICK_SECONDS

RETENTION_SECONDS = 30 * 86_400
METRICS_POINT_CAP = 500


def month_start(ts: float) -> float:
    dt = datetime.fromtimestamp(ts, UTC)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp()


@dataclass
class Settings:
    metrics_point_cap: int = METRICS_POINT_CAP
    retention_seconds: int = RETENTION_SECONDS
    refill_per_second: float | None = None  # None: limit / 3600, as Hetzner does
    robot_block_after_failures: int = 3
    robot_block_seconds: int = 600
    robot_product_limit_per_hour: int = 500
    action_seconds: float = 0.0  # how long a Cloud action runs (0: finished when answered)


@dataclass
class Simulator:
    fleet: Fleet
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], float] = time.time
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    robot_windows: dict[str, WindowCounter] = field(default_factory=dict)
    robot_failures: dict[str, list[float]] = field(default_factory=dict)
    robot_blocked_until: dict[str, float] = field(default_factory=dict)
    requests: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)
    faults: FaultSet = field(init=False)
    actions: ActionLog = field(default_factory=ActionLog)
    # Held by every change to the fleet (the API's writes), so that a change is whole
    # when anything else in the process (a test, the agents) looks at the fleet.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _traffic_cache: dict[int, tuple[float, int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.faults = FaultSet(clock=self.clock)
        for project in self.fleet.projects:
            self.buckets[project.name] = TokenBucket(
                project.rate_limit, self.settings.refill_per_second, clock=self.clock)
        robot = self.fleet.robot
        limit = robot.server_limit_per_hour if robot else 200
        for group in ("server", "server_detail"):
            self.robot_windows[group] = WindowCounter(limit, 3600, clock=self.clock)
        self.robot_windows["product"] = WindowCounter(
            self.settings.robot_product_limit_per_hour, 3600, clock=self.clock)

    # --- request accounting --------------------------------------------
    def count(self, api: str, endpoint: str, project: str, status: int) -> None:
        self.requests[(api, endpoint, project, status)] += 1

    def stats(self) -> dict[str, Any]:
        by_endpoint: dict[str, dict[str, Any]] = {}
        for (api, endpoint, project, status), n in sorted(self.requests.items()):
            entry = by_endpoint.setdefault(f"{api} {endpoint}",
                                           {"total": 0, "by_status": {}, "by_project": {}})
            entry["total"] += n
            entry["by_status"][str(status)] = entry["by_status"].get(str(status), 0) + n
            entry["by_project"][project] = entry["by_project"].get(project, 0) + n
        return {
            "total": sum(self.requests.values()),
            "endpoints": by_endpoint,
            "rows": [
                {"api": a, "endpoint": e, "project": p, "status": s, "count": n}
                for (a, e, p, s), n in sorted(self.requests.items())
            ],
        }

    def forget_server(self, server_id: int) -> None:
        """Drop what is cached for a deleted server."""
        self._traffic_cache.pop(server_id, None)

    # --- traffic ---------------------------------------------------------
    def outgoing_traffic(self, server: CloudServer, now: float) -> int:
        """Bytes sent since the start of the billing month (or creation)."""
        start = max(month_start(now), server.created)
        if now <= start:
            return 0
        # Whole ticks are cached per server so that listing a large fleet
        # repeatedly does not integrate a month of ticks every time.
        whole = math.floor(now / TICK_SECONDS) * TICK_SECONDS
        cached = self._traffic_cache.get(server.id)
        if cached and cached[0] == start and cached[1] <= whole:
            base_end, base = float(cached[1]), cached[2]
        else:
            base_end, base = start, 0.0
        if whole > base_end:
            base += server.workload.outgoing_bytes(base_end, whole)
            base_end = float(whole)
            self._traffic_cache[server.id] = (start, int(whole), base)
        return int(base + server.workload.outgoing_bytes(max(base_end, start), now))
