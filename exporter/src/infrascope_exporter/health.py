"""Self-health bookkeeping: what the exporter says about its own API work.

The figures are client_python's own ``Counter`` and ``Gauge``, named, described
and labelled from the series contract, in a private registry (never served
directly: :meth:`Health.snapshot` hands them to the rendering as plain data).
The API clients and the refresh loops write them from their threads;
client_python makes each update thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge

from infrascope_core import contract

from .snapshot import HealthSnapshot, Labels

OUTCOMES = ("success", "rate_limited", "unauthorized", "server_error", "timeout",
            "unavailable", "malformed", "client_error")

REQUESTS = "hetzner_api_requests_total"
UP = "hetzner_api_up"
LAST_SUCCESS = "hetzner_api_last_success_timestamp_seconds"
CREDENTIALS_REJECTED = "hetzner_api_credentials_rejected"
RATE_LIMIT_LIMIT = "hetzner_api_rate_limit_limit"
RATE_LIMIT_REMAINING = "hetzner_api_rate_limit_remaining"
RATE_LIMIT_RESET = "hetzner_api_rate_limit_reset_timestamp_seconds"
REQUEST_BUDGET = "hetzner_exporter_request_budget_per_hour"
POLL_INTERVAL = "hetzner_exporter_metrics_poll_interval_seconds"
REFRESH_DURATION = "hetzner_exporter_refresh_duration_seconds"
LAST_REFRESH = "hetzner_exporter_last_refresh_timestamp_seconds"
SKIPPED = "hetzner_exporter_skipped_records_total"

_COUNTERS = (REQUESTS, SKIPPED)
_GAUGES = (UP, LAST_SUCCESS, CREDENTIALS_REJECTED, RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING,
           RATE_LIMIT_RESET, REQUEST_BUDGET, POLL_INTERVAL, REFRESH_DURATION, LAST_REFRESH)


class Health:
    """The exporter's self-health figures, updated by the API clients and the loops."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        for name in _COUNTERS:
            f = contract.family(name)
            self.counters[name] = Counter(f.name, f.help, f.labels, registry=self.registry)
        for name in _GAUGES:
            f = contract.family(name)
            self.gauges[name] = Gauge(f.name, f.help, f.labels, registry=self.registry)
        self._lock = threading.Lock()
        self.last_error: dict[tuple[str, str], str] = {}
        """The outcome of each API's last failure (until its next success)."""

    def request(self, api: str, project: str, endpoint: str, outcome: str) -> None:
        self.counters[REQUESTS].labels(api, project, endpoint, outcome).inc()

    def rate_limit(self, api: str, project: str, limit: int | None, remaining: int | None,
                   reset: float | None) -> None:
        for name, value in ((RATE_LIMIT_LIMIT, limit), (RATE_LIMIT_REMAINING, remaining),
                            (RATE_LIMIT_RESET, reset)):
            if value is not None:
                self.gauges[name].labels(api, project).set(value)

    def success(self, api: str, project: str, now: float) -> None:
        with self._lock:
            self.gauges[UP].labels(api, project).set(1)
            self.gauges[LAST_SUCCESS].labels(api, project).set(now)
            self.gauges[CREDENTIALS_REJECTED].labels(api, project).set(0)
            self.last_error.pop((api, project), None)

    def failure(self, api: str, project: str, reason: str, unauthorized: bool = False) -> None:
        with self._lock:
            self.gauges[UP].labels(api, project).set(0)
            if unauthorized:
                self.gauges[CREDENTIALS_REJECTED].labels(api, project).set(1)
            self.last_error[(api, project)] = reason

    def refreshed(self, api: str, project: str, kind: str, seconds: float, now: float) -> None:
        self.gauges[REFRESH_DURATION].labels(api, project, kind).set(seconds)
        self.gauges[LAST_REFRESH].labels(api, project, kind).set(now)

    def skip(self, api: str, project: str, kind: str, count: int = 1) -> None:
        self.counters[SKIPPED].labels(api, project, kind).inc(count)

    def planned(self, project: str, poll_interval: float, budget_per_hour: float) -> None:
        """A Cloud project's metrics poll interval and request budget, as planned."""
        self.gauges[POLL_INTERVAL].labels("cloud", project).set(poll_interval)
        self.gauges[REQUEST_BUDGET].labels("cloud", project).set(budget_per_hour)

    # -- reading ----------------------------------------------------------------------

    def _samples(self) -> Iterator[tuple[str, Labels, float]]:
        for metric in self.registry.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_created"):
                    yield sample.name, sample.labels, sample.value

    def snapshot(self) -> HealthSnapshot:
        """Every figure as plain data, for one rendering."""
        with self._lock:  # up, last success and rejection change together
            collected = list(self._samples())
        samples: dict[str, list[tuple[Labels, float]]] = {}
        for name, labels, value in collected:
            samples.setdefault(name, []).append((labels, value))
        return HealthSnapshot({name: tuple(found) for name, found in samples.items()})

    def value(self, family: str, **labels: str) -> float | None:
        """One figure (None if it was never set), e.g. ``value(UP, api=..., project=...)``."""
        return self.snapshot().value(family, **labels)

    def requests(self) -> dict[tuple[str, str, str, str], int]:
        """API requests counted so far by (api, project, endpoint, outcome)."""
        return {(s["api"], s["project"], s["endpoint"], s["outcome"]): int(value)
                for s, value in self.snapshot().of(REQUESTS)}

    def requests_made(self, api: str, project: str | None = None) -> int:
        """API requests counted so far, of one project or of every project of ``api``."""
        return sum(n for (a, p, _, _), n in self.requests().items()
                   if a == api and project in (None, p))
