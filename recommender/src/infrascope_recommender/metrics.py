"""The recommender's own ``/metrics``: savings, counts and run health for Grafana and alerts.

Built fresh on every scrape by a custom collector on a private registry (no global
metric objects mutated), from the state file and the service's last attempt. The state
is the source of truth, so a ``recommender run`` from cron shows up here too.

Series (money in euros per month, as the exporter's ``*_monthly_cost_euros``):

``infrascope_recommendation_monthly_savings_euros{id, kind, action, status, source,
server_id, server_names, project, target_type}``
    one per pending or accepted recommendation; negative for upgrades. ``source`` and
    ``server_id`` are the exporter's identity labels (comma-joined when a recommendation
    names several servers), so ``on(source, server_id)`` joins work for single-server ones.
``infrascope_recommendations_monthly_savings_euros{status}``
    sum per status (pending, accepted, dismissed).
``infrascope_recommendations{kind, status}``
    how many recommendations, every kind and status (zeros included, so rates work).
``infrascope_recommender_last_run_timestamp_seconds``, ``..._last_run_duration_seconds``,
``..._last_run_success``, ``..._last_success_timestamp_seconds``,
``..._last_run_promql_queries``, ``..._last_run_excluded_servers{cause}``
    the last regeneration recorded in the state (by this process or another); the
    excluded servers by cause (``model.EXCLUSION_CAUSES``), every cause present.
``infrascope_recommender_runs_total{outcome}``
    regenerations by this process: success, prometheus_error, error.
``infrascope_recommender_ready``
    1 when ``/readyz`` answers 200.
``infrascope_recommender_grafana_push_success``
    only with Grafana push configured: 1 when the last push worked.
``infrascope_recommender_build_info{version, python_version}``
    1, labelled with the recommender's version and the Python it runs on.
``process_*``
    the recommender process itself (CPU seconds, resident memory, open files, start time),
    as every Prometheus client library exports them.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from infrascope_core import contract

from . import __version__
from .model import EXCLUSION_CAUSES, STATUSES
from .rules import kinds

if TYPE_CHECKING:
    from .service import RecommenderService

PER_RECOMMENDATION_STATUSES = ("pending", "accepted")


def _join(values: list[str]) -> str:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return ",".join(seen)


class RecommenderCollector(Collector):
    def __init__(self, service: RecommenderService) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], list[tuple[list[str], float]]] | None = None

    def _per_recommendation(self) -> list[tuple[list[str], float]]:
        """Label values and savings per recommendation, rebuilt only when the state moved
        (decoding thousands of recommendations on every scrape would be wasted work)."""
        store = self.service.store
        with self._lock:
            version = store.version()
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
            rows = []
            for status in PER_RECOMMENDATION_STATUSES:
                for item in store.list(status=status):
                    rec = item.recommendation
                    rows.append(([rec.id, rec.kind, rec.action, item.status,
                                  _join([s.source for s in rec.servers]),
                                  _join([s.server_id for s in rec.servers]),
                                  _join([s.name for s in rec.servers]),
                                  _join([s.project for s in rec.servers if s.project]),
                                  rec.target_type or ""], float(rec.savings)))
            self._cached = (version, rows)
            return rows

    def collect(self) -> Iterator[Metric]:
        service = self.service
        store = service.store

        per_rec = _family("infrascope_recommendation_monthly_savings_euros")
        for labels, value in self._per_recommendation():
            per_rec.add_metric(labels, value)
        yield per_rec

        summary = store.summary()
        totals = _family("infrascope_recommendations_monthly_savings_euros")
        for status in STATUSES:
            totals.add_metric([status], float(summary.by_status[status].monthly_savings))
        yield totals

        counts = _family("infrascope_recommendations")
        for kind in kinds():
            for status in STATUSES:
                counts.add_metric([kind, status], summary.by_kind[kind][status].count)
        yield counts

        last = summary.last_run
        if last is not None:
            yield _family("infrascope_recommender_last_run_timestamp_seconds", last.started_at)
            yield _family("infrascope_recommender_last_run_duration_seconds",
                          last.duration_seconds)
            yield _family("infrascope_recommender_last_run_success", 1 if last.success else 0)
            if last.queries is not None:
                yield _family("infrascope_recommender_last_run_promql_queries", last.queries)
        good = summary.last_success
        if good is not None:
            yield _family("infrascope_recommender_last_success_timestamp_seconds",
                          good.started_at)
            excluded = _family("infrascope_recommender_last_run_excluded_servers")
            for cause in EXCLUSION_CAUSES:
                excluded.add_metric([cause], sum(e.cause == cause for e in good.exclusions))
            yield excluded

        runs = _family("infrascope_recommender_runs_total")
        for outcome, count in sorted(service.runs_total.items()):
            runs.add_metric([outcome], count)
        yield runs

        ready, _ = service.readiness()
        yield _family("infrascope_recommender_ready", 1 if ready else 0)
        if service.pusher is not None:
            yield _family("infrascope_recommender_grafana_push_success",
                          1 if service.push_status.success else 0)
        info = _family("infrascope_recommender_build_info")
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


def _family(name: str, value: float | None = None) -> GaugeMetricFamily | CounterMetricFamily:
    """An empty family as the series contract declares it (name, type, help, labels), or
    one with the single unlabelled ``value``."""
    declared = contract.family(name)
    cls = CounterMetricFamily if declared.type == "counter" else GaugeMetricFamily
    if value is not None:
        return cls(declared.metric, declared.help, value=value)
    return cls(declared.metric, declared.help, labels=list(declared.labels))


def registry_for(service: RecommenderService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecommenderCollector(service))
    ProcessCollector(registry=registry)  # process_*: registers itself on ``registry``
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(registry)
