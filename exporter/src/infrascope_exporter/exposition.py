"""Turning the exporter's state into the /metrics exposition.

Called by the renderer thread only, never by a scrape. Every per-server series
carries ``source`` (cloud | dedicated) and ``server_id``; descriptive
attributes live on ``hetzner_server_info`` and Hetzner labels on
``hetzner_server_labels`` (``label_<key>``), the kube-state-metrics way.
Money is computed in Decimal and converted to a float sample only here.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__
from .model import CloudServer, Resource
from .pricing import (
    PriceMissing,
    cloud_server_cost,
    month_hours,
    resource_cost,
    traffic_projection,
)

if TYPE_CHECKING:
    from .exporter import Exporter

CACHED = " Cached: refreshed in the background, see hetzner_api_last_success_timestamp_seconds."
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """Hetzner label key -> Prometheus label name (``label_`` + sanitised key)."""
    return "label_" + _LABEL_INVALID.sub("_", key)


class Families:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, name: str, kind: str, doc: str, labels: dict[str, str],
            value: float | Decimal) -> None:
        metric = self.metrics.get(name)
        if metric is None:
            metric = Metric(name, doc, kind)
            self.metrics[name] = metric
        sample_name = name + "_total" if kind == "counter" else name
        metric.add_sample(sample_name, labels, float(value))

    def declare(self, name: str, kind: str, doc: str) -> None:
        if name not in self.metrics:
            self.metrics[name] = Metric(name, doc, kind)


class _Static(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _ids(source: str, server_id: int) -> dict[str, str]:
    return {"source": source, "server_id": str(server_id)}


def render_exposition(exporter: Exporter) -> tuple[str, int]:
    f = Families()
    now = exporter.clock()
    with exporter.lock:
        projects = {name: state for name, state in exporter.projects.items()}
        snapshot = [(name, list(s.servers), list(s.resources), s.pricing, list(s.server_types),
                     dict(s.metrics)) for name, s in projects.items()]
        robot = exporter.robot
        dedicated = list(robot.servers) if robot else []
        products = dict(robot.products or {}) if robot else {}
    overrides = exporter.config.cloud_price_overrides
    mode = exporter.config.price_mode
    f.add("hetzner_cost_info", "gauge",
          "Price mode and currency of every *_euros series (1).",
          {"currency": "EUR", "price_mode": mode}, 1)

    catalogue_done = False
    for project, servers, resources, pricing, types, metrics in snapshot:
        primary_by_server: dict[int, list[Resource]] = {}
        for r in resources:
            if r.kind == "primary_ip" and r.server_id is not None:
                primary_by_server.setdefault(r.server_id, []).append(r)
        for s in servers:
            _cloud_server(f, s, project)
            if pricing is not None:
                try:
                    cost = cloud_server_cost(s, pricing, primary_by_server.get(s.id, []), now,
                                             overrides.get(s.id))
                    _server_cost(f, "cloud", s.id, cost.monthly, cost.hourly,
                                 cost.components())
                    price = s.server_type.prices.get(s.location)
                    if price is not None:
                        t = traffic_projection(s, price, now)
                        ids = _ids("cloud", s.id)
                        f.add("hetzner_server_traffic_included_bytes", "gauge",
                              "Traffic included in the server's price this month." + CACHED,
                              ids, t.included_bytes)
                        if s.outgoing_traffic is not None:
                            f.add("hetzner_server_traffic_outgoing_bytes", "gauge",
                                  "Outgoing traffic so far this billing month." + CACHED,
                                  ids, t.outgoing_bytes)
                        if s.ingoing_traffic is not None:
                            f.add("hetzner_server_traffic_ingoing_bytes", "gauge",
                                  "Incoming traffic so far this billing month (not billed)."
                                  + CACHED, ids, s.ingoing_traffic)
                        f.add("hetzner_server_traffic_projected_bytes", "gauge",
                              "Outgoing traffic extrapolated to the end of the month." + CACHED,
                              ids, t.projected_bytes)
                        f.add("hetzner_server_traffic_overage_projected_cost_euros", "gauge",
                              "Projected cost of outgoing traffic above the included amount "
                              "this month." + CACHED, ids, t.overage_cost)
                except PriceMissing:
                    exporter.health.skip("cloud", project, "price")
                    f.add("hetzner_server_price_known", "gauge",
                          "1 if the server's price is known (else no cost series)." + CACHED,
                          _ids("cloud", s.id), 0)
            sample = metrics.get(s.id)
            if sample is not None:
                _cloud_metrics(f, s, sample.values, sample.end - sample.start, sample.end)
        if pricing is not None:
            for r in resources:
                if r.kind == "primary_ip" and r.server_id is not None:
                    continue  # part of its server's cost
                try:
                    amount = resource_cost(r, pricing, now)
                except PriceMissing:
                    exporter.health.skip("cloud", project, "price")
                    continue
                f.add("hetzner_resource_monthly_cost_euros", "gauge",
                      "This month's projected bill of a resource that is not part of a "
                      "server's cost (volumes, floating IPs, load balancers, snapshots, "
                      "unassigned primary IPs)." + CACHED,
                      {"hcloud_project": project, "kind": r.kind, "resource_id": str(r.id),
                       "resource_name": r.name, "location": r.location,
                       "server_id": "" if r.server_id is None else str(r.server_id)},
                      amount)
        if not catalogue_done and types:
            _catalogue(f, types)
            catalogue_done = True
        if pricing is not None:
            f.add("hetzner_pricing_vat_rate_ratio", "gauge",
                  "VAT rate of the account (0.19 = 19 %)." + CACHED,
                  {"hcloud_project": project}, pricing.vat_rate / 100)
            f.add("hetzner_pricing_backup_ratio", "gauge",
                  "Backup surcharge as a share of the server price." + CACHED,
                  {"hcloud_project": project}, pricing.backup_percentage / 100)

    labels_cfg = exporter.config.dedicated_labels
    for d in dedicated:
        ids = _ids("dedicated", d.number)
        f.add("hetzner_server_info", "gauge", "Attributes of a server (1)." + CACHED,
              {**ids, "server_name": d.name, "server_type": d.product, "location": d.location,
               "datacenter": d.dc, "network_zone": "", "architecture": "x86", "cpu_type":
               "dedicated", "hcloud_project": "", "image": "", "product": d.product}, 1)
        f.add("hetzner_server_status", "gauge",
              "Current status of the server (1 for the reported status)." + CACHED,
              {**ids, "status": d.status or "unknown"}, 1)
        f.add("hetzner_server_labels", "gauge",
              "Labels of the server as label_<key> (Robot has none: from configuration).",
              {**ids, **{label_name(k): v for k, v in labels_cfg.get(d.number, {}).items()}}, 1)
        f.add("hetzner_server_cancelled", "gauge", "1 if the dedicated server is cancelled."
              + CACHED, ids, int(d.cancelled))
        if d.paid_until is not None:
            f.add("hetzner_server_paid_until_timestamp_seconds", "gauge",
                  "End of the period the dedicated server is paid for." + CACHED, ids,
                  d.paid_until)
        monthly = exporter.dedicated_monthly_price(d)
        if monthly is None:
            f.add("hetzner_server_price_known", "gauge",
                  "1 if the server's price is known (else no cost series)." + CACHED, ids, 0)
        else:  # _server_cost adds price_known 1 (adding it here too duplicated the series)
            _server_cost(f, "dedicated", d.number, monthly, monthly / month_hours(now),
                         {"server": monthly})
    for pid, product in sorted(products.items()):
        for loc, monthly in sorted(product.monthly.items()):
            f.add("hetzner_dedicated_product_monthly_price_euros", "gauge",
                  "Robot catalogue list price of a dedicated product." + CACHED,
                  {"product": pid, "location": loc}, monthly)

    _self_health(f, exporter, now)
    f.add("infrascope_exporter_build_info", "gauge",
          "Version of the exporter and the Python running it (1).", build_info_labels(), 1)
    families = list(f.metrics.values())
    live = sum(len(m.samples) for m in exporter.live_registry.collect())
    series = sum(len(m.samples) for m in families) + 1 + live
    families.append(_series_family(series))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return generate_latest(registry).decode(), series


def live_registry() -> CollectorRegistry:
    """The series read at scrape time, not from the cached rendering: the process's own
    (``process_*``, ``python_info``), cheap to collect and wrong when stale."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(registry=None))
    registry.register(PlatformCollector(registry=None))
    return registry


@functools.cache
def build_info_labels() -> dict[str, str]:
    """version, revision (``INFRASCOPE_REVISION``, or the commit of the git checkout the
    package runs from; empty when unknown), python_version and python_implementation."""
    return {"version": __version__, "revision": _revision(),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation()}


def _revision() -> str:
    revision = os.environ.get("INFRASCOPE_REVISION", "").strip()
    if revision:
        return revision
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / ".git").exists():
        return ""  # an installed package: no checkout to ask
    try:
        result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) \
        else ""


def _series_family(series: int) -> Metric:
    m = Metric("hetzner_exporter_series", "Series in this exposition.", "gauge")
    m.add_sample("hetzner_exporter_series", {}, float(series))
    return m


def _cloud_server(f: Families, s: CloudServer, project: str) -> None:
    ids = _ids("cloud", s.id)
    t = s.server_type
    f.add("hetzner_server_info", "gauge", "Attributes of a server (1)." + CACHED,
          {**ids, "server_name": s.name, "server_type": t.name, "location": s.location,
           "datacenter": "", "network_zone": s.network_zone, "architecture": t.architecture,
           "cpu_type": t.cpu_type, "hcloud_project": project, "image": s.image,
           "product": ""}, 1)
    f.add("hetzner_server_status", "gauge",
          "Current status of the server (1 for the reported status)." + CACHED,
          {**ids, "status": s.status}, 1)
    f.add("hetzner_server_labels", "gauge",
          "Hetzner labels of the server as label_<key> (1)." + CACHED,
          {**ids, **{label_name(k): v for k, v in sorted(s.labels.items())}}, 1)
    f.add("hetzner_server_cpu_cores", "gauge", "vCPUs of the server." + CACHED, ids, t.cores)
    f.add("hetzner_server_memory_bytes", "gauge", "Memory of the server type." + CACHED, ids,
          t.memory_bytes)
    f.add("hetzner_server_disk_bytes", "gauge", "Primary disk size (may exceed or trail the "
          "type's disk after a rescale)." + CACHED, ids, s.primary_disk_bytes)
    f.add("hetzner_server_created_timestamp_seconds", "gauge", "When the server was created."
          + CACHED, ids, s.created)
    f.add("hetzner_server_backups_enabled", "gauge", "1 if automatic backups are on." + CACHED,
          ids, int(s.backups))


def _server_cost(f: Families, source: str, server_id: int, monthly: Decimal, hourly: Decimal,
                 components: dict[str, Decimal]) -> None:
    ids = _ids(source, server_id)
    f.add("hetzner_server_price_known", "gauge",
          "1 if the server's price is known (else no cost series)." + CACHED, ids, 1)
    f.add("hetzner_server_monthly_cost_euros", "gauge",
          "This month's projected bill of the server: its hourly price capped at the monthly "
          "price, plus backups and its primary IPs." + CACHED, ids, monthly)
    f.add("hetzner_server_hourly_cost_euros", "gauge",
          "Hourly price of the server with backups and primary IPs." + CACHED, ids, hourly)
    for component, amount in components.items():
        f.add("hetzner_server_monthly_cost_breakdown_euros", "gauge",
              "Parts of hetzner_server_monthly_cost_euros (do not add both)." + CACHED,
              {**ids, "component": component}, amount)


def _cloud_metrics(f: Families, s: CloudServer, values: Mapping[str, float], window: float,
                   end: float) -> None:
    ids = _ids("cloud", s.id)
    if "cpu" in values:
        f.add("hetzner_server_cpu_cores_used", "gauge",
              "Average vCPUs in use over the last metrics window (Hetzner's percent of one "
              "vCPU / 100)." + CACHED, ids, values["cpu"] / 100.0)
    for direction in ("read", "write"):
        if f"disk.0.iops.{direction}" in values:
            f.add("hetzner_server_disk_iops", "gauge",
                  "Average disk operations per second over the last metrics window." + CACHED,
                  {**ids, "direction": direction}, values[f"disk.0.iops.{direction}"])
        if f"disk.0.bandwidth.{direction}" in values:
            f.add("hetzner_server_disk_bandwidth_bytes_per_second", "gauge",
                  "Average disk throughput over the last metrics window." + CACHED,
                  {**ids, "direction": direction}, values[f"disk.0.bandwidth.{direction}"])
    for direction in ("in", "out"):
        if f"network.0.bandwidth.{direction}" in values:
            f.add("hetzner_server_network_bandwidth_bytes_per_second", "gauge",
                  "Average public network throughput over the last metrics window." + CACHED,
                  {**ids, "direction": direction}, values[f"network.0.bandwidth.{direction}"])
        if f"network.0.pps.{direction}" in values:
            f.add("hetzner_server_network_packets_per_second", "gauge",
                  "Average public network packets per second over the last metrics window."
                  + CACHED, {**ids, "direction": direction}, values[f"network.0.pps.{direction}"])
    f.add("hetzner_server_metrics_window_seconds", "gauge",
          "Length of the window the Cloud metrics averages cover." + CACHED, ids, window)
    f.add("hetzner_server_metrics_end_timestamp_seconds", "gauge",
          "End of the window the Cloud metrics averages cover." + CACHED, ids, end)


def _catalogue(f: Families, types: list[Any]) -> None:
    for t in types:
        tl = {"server_type": t.name}
        f.add("hetzner_server_type_info", "gauge", "A Cloud server type (1)." + CACHED,
              {**tl, "cpu_type": t.cpu_type, "architecture": t.architecture,
               "category": t.category}, 1)
        f.add("hetzner_server_type_cpu_cores", "gauge", "vCPUs of a server type." + CACHED, tl,
              t.cores)
        f.add("hetzner_server_type_memory_bytes", "gauge", "Memory of a server type." + CACHED,
              tl, t.memory_bytes)
        f.add("hetzner_server_type_disk_bytes", "gauge", "Disk of a server type." + CACHED, tl,
              t.disk_bytes)
        for loc, price in sorted(t.prices.items()):
            ll = {**tl, "location": loc}
            f.add("hetzner_server_type_monthly_price_euros", "gauge",
                  "Monthly price of a server type in a location (new orders)." + CACHED, ll,
                  price.monthly)
            f.add("hetzner_server_type_hourly_price_euros", "gauge",
                  "Hourly price of a server type in a location (new orders)." + CACHED, ll,
                  price.hourly)
            f.add("hetzner_server_type_included_traffic_bytes", "gauge",
                  "Traffic included with a server type in a location." + CACHED, ll,
                  price.included_traffic)
        for loc, avail in sorted(t.locations.items()):
            ll = {**tl, "location": loc}
            f.add("hetzner_server_type_available", "gauge",
                  "1 if the type can be ordered in the location." + CACHED, ll,
                  int(avail.available))
            f.add("hetzner_server_type_deprecated", "gauge",
                  "1 if the type is deprecated in the location." + CACHED, ll,
                  int(avail.deprecated))


def _self_health(f: Families, exporter: Exporter, now: float) -> None:
    h = exporter.health
    with h.lock:
        requests = dict(h.requests)
        up = dict(h.up)
        last = dict(h.last_success)
        limits = {k: (v.limit, v.remaining, v.reset) for k, v in h.rate_limits.items()}
        durations = dict(h.refresh_duration)
        refreshed = dict(h.refresh_last)
        skipped = dict(h.skipped)
        rejected = dict(h.credentials_rejected)
        intervals = dict(h.poll_interval)
        budgets = dict(h.budget_per_hour)
    apis = [("cloud", p.name) for p in exporter.config.projects]
    if exporter.config.robot:
        apis.append(("robot", "robot"))
    for api, project in apis:
        key = {"api": api, "project": project}
        f.add("hetzner_api_up", "gauge",
              "1 if the last call to this API succeeded, 0 if it failed (data is kept).",
              key, up.get((api, project), 0))
        f.add("hetzner_api_last_success_timestamp_seconds", "gauge",
              "When a call to this API last succeeded (0: never).", key,
              last.get((api, project), 0))
        f.add("hetzner_api_credentials_rejected", "gauge",
              "1 if the API rejected the configured token or password.", key,
              rejected.get((api, project), 0))
    f.declare("hetzner_api_requests", "counter", "API requests by endpoint and outcome.")
    for (api, project, endpoint, outcome), n in sorted(requests.items()):
        f.add("hetzner_api_requests", "counter", "API requests by endpoint and outcome.",
              {"api": api, "project": project, "endpoint": endpoint, "outcome": outcome}, n)
    for (api, project), (limit, remaining, reset) in sorted(limits.items()):
        key = {"api": api, "project": project}
        if limit is not None:
            f.add("hetzner_api_rate_limit_limit", "gauge",
                  "RateLimit-Limit: requests per hour allowed.", key, limit)
        if remaining is not None:
            f.add("hetzner_api_rate_limit_remaining", "gauge",
                  "RateLimit-Remaining at the last response.", key, remaining)
        if reset is not None:
            f.add("hetzner_api_rate_limit_reset_timestamp_seconds", "gauge",
                  "RateLimit-Reset: when the bucket is full again.", key, reset)
    for project, per_hour in sorted(budgets.items()):
        f.add("hetzner_exporter_request_budget_per_hour", "gauge",
              "Requests per hour the exporter allows itself (share of the limit).",
              {"api": "cloud", "project": project}, per_hour)
    for project, interval in sorted(intervals.items()):
        f.add("hetzner_exporter_metrics_poll_interval_seconds", "gauge",
              "Per-server Cloud metrics interval, stretched to fit the budget.",
              {"api": "cloud", "project": project}, interval)
    for (api, project, kind), seconds in sorted(durations.items()):
        key = {"api": api, "project": project, "kind": kind}
        f.add("hetzner_exporter_refresh_duration_seconds", "gauge",
              "Duration of the last completed refresh.", key, seconds)
        f.add("hetzner_exporter_last_refresh_timestamp_seconds", "gauge",
              "When the last refresh of this kind completed.", key, refreshed[(api, project,
                                                                               kind)])
    f.declare("hetzner_exporter_skipped_records", "counter",
              "API records skipped because they could not be parsed or priced.")
    for (api, project, kind), n in sorted(skipped.items()):
        f.add("hetzner_exporter_skipped_records", "counter",
              "API records skipped because they could not be parsed or priced.",
              {"api": api, "project": project, "kind": kind}, n)
    f.add("hetzner_exporter_render_duration_seconds", "gauge",
          "Duration of the previous rendering of this exposition.", {},
          exporter.render_seconds)
    f.add("hetzner_exporter_render_timestamp_seconds", "gauge",
          "When this exposition was rendered.", {}, now)
