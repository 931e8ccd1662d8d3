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
``..._last_run_promql_queries``, ``..._last_run_excluded_servers``
    the last regeneration recorded in the state (by this process or another).
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

from . import __version__
from .model import KINDS, STATUSES

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

        per_rec = GaugeMetricFamily(
            "infrascope_recommendation_monthly_savings_euros",
            "Monthly euros a pending or accepted recommendation saves (negative: an upgrade "
            "costs more), per recommendation.",
            labels=["id", "kind", "action", "status", "source", "server_id", "server_names",
                    "project", "target_type"])
        for labels, value in self._per_recommendation():
            per_rec.add_metric(labels, value)
        yield per_rec

        summary = store.summary()
        totals = GaugeMetricFamily(
            "infrascope_recommendations_monthly_savings_euros",
            "Monthly euros the recommendations of a status save together.",
            labels=["status"])
        for status in STATUSES:
            totals.add_metric([status], float(summary.by_status[status].monthly_savings))
        yield totals

        counts = GaugeMetricFamily("infrascope_recommendations",
                                   "Number of recommendations by kind and status.",
                                   labels=["kind", "status"])
        for kind in KINDS:
            for status in STATUSES:
                counts.add_metric([kind, status], summary.by_kind[kind][status].count)
        yield counts

        last = summary.last_run
        if last is not None:
            yield GaugeMetricFamily(
                "infrascope_recommender_last_run_timestamp_seconds",
                "Unix time the last regeneration started.", value=last.started_at)
            yield GaugeMetricFamily(
                "infrascope_recommender_last_run_duration_seconds",
                "Wall time of the last regeneration.", value=last.duration_seconds)
            yield GaugeMetricFamily(
                "infrascope_recommender_last_run_success",
                "1 if the last regeneration succeeded, 0 if it failed (e.g. Prometheus "
                "unreachable).", value=1 if last.success else 0)
            if last.queries is not None:
                yield GaugeMetricFamily(
                    "infrascope_recommender_last_run_promql_queries",
                    "PromQL queries the last regeneration made (constant per run, whatever "
                    "the fleet size).", value=last.queries)
        good = summary.last_success
        if good is not None:
            yield GaugeMetricFamily(
                "infrascope_recommender_last_success_timestamp_seconds",
                "Unix time the last successful regeneration started.", value=good.started_at)
            yield GaugeMetricFamily(
                "infrascope_recommender_last_run_excluded_servers",
                "Servers the last successful regeneration could not judge (too little data).",
                value=len(good.exclusions))

        runs = CounterMetricFamily("infrascope_recommender_runs",
                                   "Regenerations this process ran, by outcome.",
                                   labels=["outcome"])
        for outcome, count in sorted(service.runs_total.items()):
            runs.add_metric([outcome], count)
        yield runs

        ready, _ = service.readiness()
        yield GaugeMetricFamily("infrascope_recommender_ready",
                                "1 when the last regeneration of this process succeeded.",
                                value=1 if ready else 0)
        if service.pusher is not None:
            ok = service.push_status.success
            yield GaugeMetricFamily(
                "infrascope_recommender_grafana_push_success",
                "1 if the last push of annotations to Grafana worked (0 before the first).",
                value=1 if ok else 0)
        info = GaugeMetricFamily("infrascope_recommender_build_info",
                                 "A metric with a constant '1' value labeled by the version of "
                                 "the recommender and the Python it runs on.",
                                 labels=["version", "python_version"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


def registry_for(service: RecommenderService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecommenderCollector(service))
    ProcessCollector(registry=registry)  # process_*: registers itself on ``registry``
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(registry)
