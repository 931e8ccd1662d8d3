"""Self-health bookkeeping: what the exporter says about its own API work."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("success", "rate_limited", "unauthorized", "server_error", "timeout",
            "unavailable", "malformed", "client_error")


@dataclass
class RateLimitState:
    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


@dataclass
class Health:
    """Thread-safe counters and gauges; read as a snapshot by the renderer."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    requests: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    up: dict[tuple[str, str], int] = field(default_factory=dict)
    last_success: dict[tuple[str, str], float] = field(default_factory=dict)
    last_error: dict[tuple[str, str], str] = field(default_factory=dict)
    rate_limits: dict[tuple[str, str], RateLimitState] = field(default_factory=dict)
    refresh_duration: dict[tuple[str, str, str], float] = field(default_factory=dict)
    refresh_last: dict[tuple[str, str, str], float] = field(default_factory=dict)
    skipped: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    credentials_rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    poll_interval: dict[str, float] = field(default_factory=dict)
    budget_per_hour: dict[str, float] = field(default_factory=dict)

    def request(self, api: str, project: str, endpoint: str, outcome: str) -> None:
        with self.lock:
            self.requests[(api, project, endpoint, outcome)] += 1

    def rate_limit(self, api: str, project: str, limit: int | None, remaining: int | None,
                   reset: float | None) -> None:
        with self.lock:
            state = self.rate_limits.setdefault((api, project), RateLimitState())
            if limit is not None:
                state.limit = limit
            if remaining is not None:
                state.remaining = remaining
            if reset is not None:
                state.reset = reset

    def success(self, api: str, project: str, now: float) -> None:
        with self.lock:
            self.up[(api, project)] = 1
            self.last_success[(api, project)] = now
            self.last_error.pop((api, project), None)
            self.credentials_rejected[(api, project)] = 0

    def failure(self, api: str, project: str, reason: str, unauthorized: bool = False) -> None:
        with self.lock:
            self.up[(api, project)] = 0
            self.last_error[(api, project)] = reason
            if unauthorized:
                self.credentials_rejected[(api, project)] = 1

    def refreshed(self, api: str, project: str, kind: str, seconds: float, now: float) -> None:
        with self.lock:
            self.refresh_duration[(api, project, kind)] = seconds
            self.refresh_last[(api, project, kind)] = now

    def skip(self, api: str, project: str, kind: str, count: int = 1) -> None:
        with self.lock:
            self.skipped[(api, project, kind)] += count
