"""The exporter's metric families, declared per object kind (kube-state-metrics' way).

Each object kind — a Cloud server, a dedicated server, a costed resource, a
server type, a dedicated product, a project's pricing, a configured API, the
self-health figures, the rendering itself — has a list of family generators:
a family of the series contract (:mod:`infrascope_core.contract`: name, type,
help, labels) and a function from one object to its samples ``[(labels,
value)]``. Rendering (:mod:`.exposition`) is a loop over this table; backfill
reads the Cloud metrics part of it (:data:`CLOUD_METRIC_SERIES`). No name, type
or help is written here: a family is only looked up by its contract name.

The objects are derived from a :class:`~.snapshot.Snapshot` by :func:`objects`,
where every price is computed once (Decimal; a float only in the exposition).
Everything in this module is pure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from infrascope_core import contract
from infrascope_core.contract import Family

from .model import (
    CloudServer,
    DedicatedProduct,
    DedicatedServer,
    MetricsSample,
    Pricing,
    Resource,
    ServerType,
)
from .pricing import (
    PriceMissing,
    ServerCost,
    Traffic,
    cloud_server_cost,
    dedicated_monthly_price,
    month_hours,
    resource_cost,
    traffic_projection,
)
from .snapshot import HealthSnapshot, Labels, Settings, Snapshot

T = TypeVar("T")
Value = float | int | Decimal
Sample = tuple[Labels, Value]

CACHED = " Cached: refreshed in the background, see hetzner_api_last_success_timestamp_seconds."
"""The end of the help of every family rendered from data refreshed in the background."""

_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """Hetzner label key -> Prometheus label name (``label_`` + sanitised key)."""
    return "label_" + _LABEL_INVALID.sub("_", key)


def help_text(family: Family) -> str:
    """The family's help as the exporter writes it (cached families say so)."""
    return family.help + (CACHED if family.cached else "")


@dataclass(frozen=True)
class FamilyGenerator(Generic[T]):
    """One contract family and how one object of a kind becomes its samples."""

    family: Family
    samples: Callable[[T], Iterable[Sample]]
    declared_empty: bool = False
    """Written (HELP and TYPE) even without samples (the self-health counters)."""


def generator(name: str, samples: Callable[[T], Iterable[Sample]], *,
              declared_empty: bool = False) -> FamilyGenerator[T]:
    """The generator of family ``name`` (as declared in the contract)."""
    family = contract.family(name)
    if contract.EXPORTER not in family.emitted_by:
        raise ValueError(f"{name}: not an exporter family in the contract")
    return FamilyGenerator(family, samples, declared_empty)


def _one(labels: Labels, value: Value | None) -> Iterable[Sample]:
    return () if value is None else ((labels, value),)


# ---- object kinds ----------------------------------------------------------------------


@dataclass(frozen=True)
class CloudServerObject:
    """A Cloud server with its cost, traffic and last metrics sample."""

    server: CloudServer
    project: str
    ids: Labels
    price_known: int | None
    """1 priced, 0 not priceable, None while the project's pricing is not known yet."""
    cost: ServerCost | None
    traffic: Traffic | None
    metrics: MetricsSample | None


@dataclass(frozen=True)
class DedicatedServerObject:
    server: DedicatedServer
    ids: Labels
    labels: Mapping[str, str]
    """From the configuration (Robot has none)."""
    monthly: Decimal | None
    hourly: Decimal | None


@dataclass(frozen=True)
class ResourceObject:
    """A costed resource that is not part of a server's cost."""

    resource: Resource
    project: str
    monthly: Decimal


@dataclass(frozen=True)
class ProjectPricing:
    project: str
    pricing: Pricing


@dataclass(frozen=True)
class ApiObject:
    """One configured API (a Cloud project, Robot) and its state."""

    api: str
    project: str
    up: float
    last_success: float
    credentials_rejected: float


@dataclass(frozen=True)
class RenderingObject:
    """The rendering itself."""

    now: float
    previous_seconds: float


@dataclass(frozen=True)
class Objects:
    """Every object of every kind in one snapshot, and the records that could not be
    priced (counted as skipped by the caller, and in this rendering already)."""

    settings: Settings
    cloud_servers: tuple[CloudServerObject, ...]
    resources: tuple[ResourceObject, ...]
    server_types: tuple[ServerType, ...]
    pricings: tuple[ProjectPricing, ...]
    dedicated_servers: tuple[DedicatedServerObject, ...]
    dedicated_products: tuple[DedicatedProduct, ...]
    apis: tuple[ApiObject, ...]
    health: HealthSnapshot
    rendering: RenderingObject
    unpriced: Mapping[tuple[str, str, str], int]


def _ids(source: str, server_id: int) -> dict[str, str]:
    return {"source": source, "server_id": str(server_id)}


def objects(snapshot: Snapshot) -> Objects:
    """The snapshot as objects of each kind, prices computed."""
    settings, now = snapshot.settings, snapshot.now
    unpriced: Counter[tuple[str, str, str]] = Counter()
    cloud: list[CloudServerObject] = []
    resources: list[ResourceObject] = []
    pricings: list[ProjectPricing] = []
    server_types: tuple[ServerType, ...] = ()
    for p in snapshot.projects:
        pricing = p.pricing
        primary_by_server: dict[int, list[Resource]] = {}
        for r in p.resources:
            if r.kind == "primary_ip" and r.server_id is not None:
                primary_by_server.setdefault(r.server_id, []).append(r)
        for s in p.servers:
            price_known: int | None = None
            cost = traffic = None
            if pricing is not None:
                try:
                    cost = cloud_server_cost(s, pricing, primary_by_server.get(s.id, []), now,
                                             settings.cloud_price_overrides.get(s.id))
                    price_known = 1
                    price = s.server_type.prices.get(s.location)
                    if price is not None:
                        traffic = traffic_projection(s, price, now)
                except PriceMissing:
                    unpriced["cloud", p.name, "price"] += 1
                    price_known = 0
            cloud.append(CloudServerObject(s, p.name, _ids("cloud", s.id), price_known, cost,
                                           traffic, p.metrics.get(s.id)))
        if pricing is not None:
            for r in p.resources:
                if r.kind == "primary_ip" and r.server_id is not None:
                    continue  # part of its server's cost
                try:
                    resources.append(ResourceObject(r, p.name, resource_cost(r, pricing, now)))
                except PriceMissing:
                    unpriced["cloud", p.name, "price"] += 1
            pricings.append(ProjectPricing(p.name, pricing))
        if not server_types:  # one catalogue: the first project's that has one
            server_types = p.server_types

    dedicated: list[DedicatedServerObject] = []
    products: Mapping[str, DedicatedProduct] = {}
    if snapshot.robot is not None:
        products = snapshot.robot.products
        vat = settings.vat_rate_percent
        if vat is None:
            vat = next((p.pricing.vat_rate for p in snapshot.projects if p.pricing is not None),
                       Decimal(0))
        catalogue = products if settings.dedicated_from_catalogue and products else None
        for d in snapshot.robot.servers:
            monthly = dedicated_monthly_price(
                d, by_server=settings.dedicated_by_server,
                by_product=settings.dedicated_by_product, catalogue=catalogue,
                price_mode=settings.price_mode, vat_rate_percent=vat)
            dedicated.append(DedicatedServerObject(
                d, _ids("dedicated", d.number), settings.dedicated_labels.get(d.number, {}),
                monthly, None if monthly is None else monthly / month_hours(now)))

    health = _with_skipped(snapshot.health, unpriced)
    apis = tuple(ApiObject(api, project,
                           health.value(UP_FAMILY, api=api, project=project) or 0,
                           health.value(LAST_SUCCESS_FAMILY, api=api, project=project) or 0,
                           health.value(REJECTED_FAMILY, api=api, project=project) or 0)
                 for api, project in settings.apis)
    return Objects(settings, tuple(cloud), tuple(resources), server_types, tuple(pricings),
                   tuple(dedicated), tuple(products[k] for k in sorted(products)), apis,
                   health, RenderingObject(now, snapshot.render_seconds), unpriced)


def _with_skipped(health: HealthSnapshot,
                  unpriced: Mapping[tuple[str, str, str], int]) -> HealthSnapshot:
    """The self-health figures with this rendering's unpriced records counted as skipped
    (the caller adds them to the counter afterwards, for the next renderings)."""
    if not unpriced:
        return health
    counts = {(s["api"], s["project"], s["kind"]): v for s, v in health.of(SKIPPED_FAMILY)}
    for key, n in unpriced.items():
        counts[key] = counts.get(key, 0.0) + n
    samples = dict(health.samples)
    samples[SKIPPED_FAMILY] = tuple(({"api": a, "project": p, "kind": k}, value)
                                    for (a, p, k), value in counts.items())
    return HealthSnapshot(samples)


UP_FAMILY = "hetzner_api_up"
LAST_SUCCESS_FAMILY = "hetzner_api_last_success_timestamp_seconds"
REJECTED_FAMILY = "hetzner_api_credentials_rejected"
SKIPPED_FAMILY = "hetzner_exporter_skipped_records_total"


# ---- the Cloud metrics: Hetzner's series -> the exposition's -------------------------


@dataclass(frozen=True)
class CloudMetricSeries:
    """Where one of Hetzner's Cloud metrics series goes: family, labels besides the
    server's identity, and scale (``value = raw / divisor``; None: as is)."""

    hetzner: str
    family: str
    labels: tuple[tuple[str, str], ...] = ()
    divisor: float | None = None

    def value(self, raw: float) -> float:
        return raw / self.divisor if self.divisor is not None else raw


CLOUD_METRIC_SERIES: tuple[CloudMetricSeries, ...] = (
    # Hetzner's percent of one vCPU / 100 = vCPUs in use
    CloudMetricSeries("cpu", "hetzner_server_cpu_cores_used", divisor=100.0),
    *(CloudMetricSeries(f"disk.0.{what}.{d}", family, (("direction", d),))
      for what, family in (("iops", "hetzner_server_disk_iops"),
                           ("bandwidth", "hetzner_server_disk_bandwidth_bytes_per_second"))
      for d in ("read", "write")),
    *(CloudMetricSeries(f"network.0.{what}.{d}", family, (("direction", d),))
      for what, family in (("bandwidth", "hetzner_server_network_bandwidth_bytes_per_second"),
                           ("pps", "hetzner_server_network_packets_per_second"))
      for d in ("in", "out")),
)
"""Every Cloud metrics series the exporter polls (``model.METRIC_SERIES``), in
exposition order within each family."""


def _cloud_metric(series: Sequence[CloudMetricSeries]) -> Callable[[CloudServerObject],
                                                                   Iterable[Sample]]:
    def samples(o: CloudServerObject) -> Iterable[Sample]:
        if o.metrics is None:
            return
        values = o.metrics.values
        for s in series:
            if s.hetzner in values:
                yield ({**o.ids, **dict(s.labels)}, s.value(values[s.hetzner]))
    return samples


def _cloud_metric_generators() -> list[FamilyGenerator[CloudServerObject]]:
    by_family: dict[str, list[CloudMetricSeries]] = {}
    for s in CLOUD_METRIC_SERIES:
        by_family.setdefault(s.family, []).append(s)
    return [generator(name, _cloud_metric(series)) for name, series in by_family.items()]


# ---- the generators, per object kind -----------------------------------------------------

g = generator

SETTINGS: Sequence[FamilyGenerator[Settings]] = (
    g("hetzner_cost_info", lambda s: [({"currency": "EUR", "price_mode": s.price_mode}, 1)]),
)


def _cloud_info(o: CloudServerObject) -> Iterable[Sample]:
    s, t = o.server, o.server.server_type
    return [({**o.ids, "server_name": s.name, "server_type": t.name, "location": s.location,
              "datacenter": "", "network_zone": s.network_zone, "architecture": t.architecture,
              "cpu_type": t.cpu_type, "hcloud_project": o.project, "image": s.image,
              "product": ""}, 1)]


def _placement_group(o: CloudServerObject) -> Iterable[Sample]:
    group = o.server.placement_group
    if group is None:
        return ()
    return [({**o.ids, "placement_group_id": str(group.id), "placement_group": group.name,
              "placement_group_type": group.type}, 1)]


def _cost(o: CloudServerObject, part: Callable[[ServerCost], Value]) -> Iterable[Sample]:
    return () if o.cost is None else ((o.ids, part(o.cost)),)


def _traffic(o: CloudServerObject, part: Callable[[Traffic], Value | None]) -> Iterable[Sample]:
    return () if o.traffic is None else _one(o.ids, part(o.traffic))


CLOUD_SERVER: Sequence[FamilyGenerator[CloudServerObject]] = (
    g("hetzner_server_info", _cloud_info),
    g("hetzner_server_status", lambda o: [({**o.ids, "status": o.server.status}, 1)]),
    g("hetzner_server_labels", lambda o: [(
        {**o.ids, **{label_name(k): v for k, v in sorted(o.server.labels.items())}}, 1)]),
    g("hetzner_server_placement_group_info", _placement_group),
    g("hetzner_server_cpu_cores", lambda o: [(o.ids, o.server.server_type.cores)]),
    g("hetzner_server_memory_bytes", lambda o: [(o.ids, o.server.server_type.memory_bytes)]),
    g("hetzner_server_disk_bytes", lambda o: [(o.ids, o.server.primary_disk_bytes)]),
    g("hetzner_server_created_timestamp_seconds", lambda o: [(o.ids, o.server.created)]),
    g("hetzner_server_backups_enabled", lambda o: [(o.ids, int(o.server.backups))]),
    g("hetzner_server_price_known", lambda o: _one(o.ids, o.price_known)),
    g("hetzner_server_monthly_cost_euros", lambda o: _cost(o, lambda c: c.monthly)),
    g("hetzner_server_hourly_cost_euros", lambda o: _cost(o, lambda c: c.hourly)),
    g("hetzner_server_monthly_cost_breakdown_euros", lambda o: () if o.cost is None else [
        ({**o.ids, "component": part}, amount)
        for part, amount in o.cost.components().items()]),
    g("hetzner_server_traffic_included_bytes", lambda o: _traffic(o, lambda t: t.included_bytes)),
    g("hetzner_server_traffic_outgoing_bytes", lambda o: _traffic(
        o, lambda t: None if o.server.outgoing_traffic is None else t.outgoing_bytes)),
    g("hetzner_server_traffic_ingoing_bytes", lambda o: _traffic(
        o, lambda t: o.server.ingoing_traffic)),
    g("hetzner_server_traffic_projected_bytes", lambda o: _traffic(
        o, lambda t: t.projected_bytes)),
    g("hetzner_server_traffic_overage_projected_cost_euros", lambda o: _traffic(
        o, lambda t: t.overage_cost)),
    *_cloud_metric_generators(),
    g("hetzner_server_metrics_window_seconds", lambda o: () if o.metrics is None else [
        (o.ids, o.metrics.end - o.metrics.start)]),
    g("hetzner_server_metrics_end_timestamp_seconds", lambda o: () if o.metrics is None else [
        (o.ids, o.metrics.end)]),
)

RESOURCE: Sequence[FamilyGenerator[ResourceObject]] = (
    g("hetzner_resource_monthly_cost_euros", lambda o: [(
        {"hcloud_project": o.project, "kind": o.resource.kind,
         "resource_id": str(o.resource.id), "resource_name": o.resource.name,
         "location": o.resource.location,
         "server_id": "" if o.resource.server_id is None else str(o.resource.server_id)},
        o.monthly)]),
)


def _type_prices(t: ServerType, part: Callable[[Any], Value]) -> Iterable[Sample]:
    return [({"server_type": t.name, "location": loc}, part(price))
            for loc, price in sorted(t.prices.items())]


def _type_locations(t: ServerType, part: Callable[[Any], Value]) -> Iterable[Sample]:
    return [({"server_type": t.name, "location": loc}, part(avail))
            for loc, avail in sorted(t.locations.items())]


SERVER_TYPE: Sequence[FamilyGenerator[ServerType]] = (
    g("hetzner_server_type_info", lambda t: [({
        "server_type": t.name, "cpu_type": t.cpu_type, "architecture": t.architecture,
        "category": t.category}, 1)]),
    g("hetzner_server_type_cpu_cores", lambda t: [({"server_type": t.name}, t.cores)]),
    g("hetzner_server_type_memory_bytes", lambda t: [({"server_type": t.name},
                                                      t.memory_bytes)]),
    g("hetzner_server_type_disk_bytes", lambda t: [({"server_type": t.name}, t.disk_bytes)]),
    g("hetzner_server_type_monthly_price_euros", lambda t: _type_prices(t, lambda p: p.monthly)),
    g("hetzner_server_type_hourly_price_euros", lambda t: _type_prices(t, lambda p: p.hourly)),
    g("hetzner_server_type_included_traffic_bytes", lambda t: _type_prices(
        t, lambda p: p.included_traffic)),
    g("hetzner_server_type_traffic_tebibyte_price_euros", lambda t: _type_prices(
        t, lambda p: p.per_tb_traffic)),
    g("hetzner_server_type_available", lambda t: _type_locations(
        t, lambda a: int(a.available))),
    g("hetzner_server_type_deprecated", lambda t: _type_locations(
        t, lambda a: int(a.deprecated))),
)

PROJECT_PRICING: Sequence[FamilyGenerator[ProjectPricing]] = (
    g("hetzner_pricing_vat_rate_ratio", lambda p: [({"hcloud_project": p.project},
                                                     p.pricing.vat_rate / 100)]),
    g("hetzner_pricing_backup_ratio", lambda p: [({"hcloud_project": p.project},
                                                   p.pricing.backup_percentage / 100)]),
)


def _dedicated_info(o: DedicatedServerObject) -> Iterable[Sample]:
    d = o.server
    return [({**o.ids, "server_name": d.name, "server_type": d.product, "location": d.location,
              "datacenter": d.dc, "network_zone": "", "architecture": "x86",
              "cpu_type": "dedicated", "hcloud_project": "", "image": "", "product": d.product},
             1)]


DEDICATED_SERVER: Sequence[FamilyGenerator[DedicatedServerObject]] = (
    g("hetzner_server_info", _dedicated_info),
    g("hetzner_server_status", lambda o: [({**o.ids, "status": o.server.status or "unknown"},
                                           1)]),
    g("hetzner_server_labels", lambda o: [(
        {**o.ids, **{label_name(k): v for k, v in o.labels.items()}}, 1)]),
    g("hetzner_server_cancelled", lambda o: [(o.ids, int(o.server.cancelled))]),
    g("hetzner_server_paid_until_timestamp_seconds", lambda o: _one(o.ids,
                                                                    o.server.paid_until)),
    g("hetzner_server_price_known", lambda o: [(o.ids, int(o.monthly is not None))]),
    g("hetzner_server_monthly_cost_euros", lambda o: _one(o.ids, o.monthly)),
    g("hetzner_server_hourly_cost_euros", lambda o: _one(o.ids, o.hourly)),
    g("hetzner_server_monthly_cost_breakdown_euros", lambda o: () if o.monthly is None else [
        ({**o.ids, "component": "server"}, o.monthly)]),
)

DEDICATED_PRODUCT: Sequence[FamilyGenerator[DedicatedProduct]] = (
    g("hetzner_dedicated_product_monthly_price_euros", lambda p: [
        ({"product": p.id, "location": loc}, monthly)
        for loc, monthly in sorted(p.monthly.items())]),
)

API: Sequence[FamilyGenerator[ApiObject]] = (
    g(UP_FAMILY, lambda a: [({"api": a.api, "project": a.project}, a.up)]),
    g(LAST_SUCCESS_FAMILY, lambda a: [({"api": a.api, "project": a.project}, a.last_success)]),
    g(REJECTED_FAMILY, lambda a: [({"api": a.api, "project": a.project},
                                   a.credentials_rejected)]),
)


def _figures(name: str) -> Callable[[HealthSnapshot], Iterable[Sample]]:
    """A self-health family's samples, ordered by their label values."""
    labels = contract.family(name).labels

    def samples(h: HealthSnapshot) -> Iterable[Sample]:
        return sorted(h.of(name), key=lambda s: tuple(s[0][k] for k in labels))
    return samples


def _h(name: str, declared_empty: bool = False) -> FamilyGenerator[HealthSnapshot]:
    return g(name, _figures(name), declared_empty=declared_empty)


HEALTH: Sequence[FamilyGenerator[HealthSnapshot]] = (
    _h("hetzner_api_requests_total", declared_empty=True),
    _h("hetzner_api_rate_limit_limit"),
    _h("hetzner_api_rate_limit_remaining"),
    _h("hetzner_api_rate_limit_reset_timestamp_seconds"),
    _h("hetzner_exporter_request_budget_per_hour"),
    _h("hetzner_exporter_metrics_poll_interval_seconds"),
    _h("hetzner_exporter_refresh_duration_seconds"),
    _h("hetzner_exporter_last_refresh_timestamp_seconds"),
    _h(SKIPPED_FAMILY, declared_empty=True),
)

RENDERING: Sequence[FamilyGenerator[RenderingObject]] = (
    g("hetzner_exporter_render_duration_seconds", lambda r: [({}, r.previous_seconds)]),
    g("hetzner_exporter_render_timestamp_seconds", lambda r: [({}, r.now)]),
)

BUILD: Sequence[FamilyGenerator[Settings]] = (
    g("infrascope_exporter_build_info", lambda s: [(s.build_labels, 1)]),
)

SERIES_FAMILY = "hetzner_exporter_series"
"""Series in the exposition: counted once everything else is rendered."""


def table(o: Objects) -> list[tuple[Sequence[Any], Sequence[FamilyGenerator[Any]]]]:
    """(objects, their generators) per kind, in the exposition's order."""
    return [
        ((o.settings,), SETTINGS),
        (o.cloud_servers, CLOUD_SERVER),
        (o.resources, RESOURCE),
        (o.server_types, SERVER_TYPE),
        (o.pricings, PROJECT_PRICING),
        (o.dedicated_servers, DEDICATED_SERVER),
        (o.dedicated_products, DEDICATED_PRODUCT),
        (o.apis, API),
        ((o.health,), HEALTH),
        ((o.rendering,), RENDERING),
        ((o.settings,), BUILD),
    ]


def all_generators() -> list[FamilyGenerator[Any]]:
    """Every generator of every kind (a family may be generated by several kinds)."""
    return [*SETTINGS, *CLOUD_SERVER, *RESOURCE, *SERVER_TYPE, *PROJECT_PRICING,
            *DEDICATED_SERVER, *DEDICATED_PRODUCT, *API, *HEALTH, *RENDERING, *BUILD]
