"""Build a :class:`~infrascope_recommender.model.Fleet` from a fixed set of PromQL queries.

Every query is fleet-wide: the number of queries a run makes is :data:`QUERY_COUNT`
whatever the fleet size (see :func:`queries`, and ``docs/rules.md`` for the list).
Several series families come back in one request through a ``__name__`` regular
expression. All queries are evaluated at the same instant ``at``, so the fleet is one
consistent snapshot.

Sources:

- the rules pack's provider-neutral layer (``<level>:<metric>:normalised``, one rule
  group per provider, carrying ``provider``, ``source``, ``server_id``): inventory
  (``server_info``, ``_status``, ``_labels``, ``_placement_group_info``,
  ``_backups_enabled``), sizes and cost
  (``server_cpu_cores``, ``_memory_bytes``, ``_disk_bytes``, ``_monthly_cost_euros``,
  ``_monthly_cost_breakdown_euros``), the catalogue (``server_type_*``), the price mode
  and backup surcharge. The loader never reads a provider's own (exporter) series;
- the rules pack's recorded series: the 30-day CPU and memory figures and the tier,
  ``via`` from ``source_server_id:cpu_utilisation:ratio``, the cost roll-ups;
- the agents (job ``settings.agent_job``, series carrying the ``source``/``server_id``
  target labels): core count and memory of dedicated servers (a Cloud server's come from
  the exporter, or from the catalogue when the exporter has none), used disk, services
  and listening ports, and whether each agent's scrape is up now (``up``).

Values arrive as strings; money is converted with ``Decimal(text)``, never through a
float. A malformed or incomplete record is skipped with a warning naming the series;
the load never fails on one bad record. No ``source_server_id:server_info:normalised``
at all raises :class:`LoaderError`: an empty fleet would read as "nothing to do". The
provider-neutral series are recorded (every ``intervals.inventory``, 2m by default): right
after Prometheus starts they appear with the first evaluation of the provider group.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from infrascope_core import contract

from .config import PrometheusSettings
from .model import CostSummary, Fleet, PlacementGroup, Server, ServerKey, ServerType, Service
from .promql import PrometheusClient, PrometheusError, QueryCancelled, display_url

log = logging.getLogger(__name__)

#: Filesystems that hold no data of the server (the series contract's, which the rules
#: pack and the dashboards leave out too).
DISK_FSTYPE_EXCLUDE = contract.excluded_fstypes_regex()

_UTILISATION_FIELDS = {
    "source_server_id:cpu_utilisation:avg30d": "cpu_avg",
    "source_server_id:cpu_utilisation:max30d": "cpu_max",
    "source_server_id:cpu_utilisation:p95_30d": "cpu_p95",
    "source_server_id:cpu_utilisation:coverage30d": "cpu_coverage",
    "source_server_id:cpu_utilisation:daily_peak30d": "cpu_daily_peak",
    "source_server_id:memory_utilisation:avg30d": "memory_avg",
    "source_server_id:memory_utilisation:max30d": "memory_max",
    "source_server_id:memory_utilisation:p95_30d": "memory_p95",
    "source_server_id:memory_utilisation:coverage30d": "memory_coverage",
}
#: (figure, direction) of ``source_server_id:network_bytes_per_second:<figure>`` ->
#: ``Utilisation`` attribute (coverage: the lower of the two directions).
_NETWORK = "source_server_id:network_bytes_per_second:"
_NETWORK_FIELDS = {
    ("avg30d", "in"): "network_in_avg", ("avg30d", "out"): "network_out_avg",
    ("p95_30d", "in"): "network_in_p95", ("p95_30d", "out"): "network_out_p95",
    ("max30d", "in"): "network_in_max", ("max30d", "out"): "network_out_max",
    ("coverage30d", "in"): "network_coverage", ("coverage30d", "out"): "network_coverage",
}
_TIER = "source_server_id:utilisation:tier30d"

# The provider-neutral families the loader reads (``infrascope_core.contract``).
_n = contract.neutral
INFO, STATUS, LABELS, BACKUPS = (_n("server_info"), _n("server_status"), _n("server_labels"),
                                 _n("server_backups_enabled"))
PLACEMENT_GROUP = _n("server_placement_group_info")
CORES, MEMORY, DISK = _n("server_cpu_cores"), _n("server_memory_bytes"), _n("server_disk_bytes")
MONTHLY_COST, BREAKDOWN = _n("server_monthly_cost_euros"), _n("server_monthly_cost_breakdown_euros")
TYPE_INFO, TYPE_CORES, TYPE_MEMORY, TYPE_DISK = (
    _n("server_type_info"), _n("server_type_cpu_cores"), _n("server_type_memory_bytes"),
    _n("server_type_disk_bytes"))
TYPE_PRICE, TYPE_AVAILABLE, TYPE_DEPRECATED = (
    _n("server_type_monthly_price_euros"), _n("server_type_available"),
    _n("server_type_deprecated"))
TYPE_TRAFFIC, TYPE_TRAFFIC_PRICE = (_n("server_type_included_traffic_bytes"),
                                    _n("server_type_traffic_tebibyte_price_euros"))
COST_INFO, BACKUP_RATIO = _n("cost_info"), _n("pricing_backup_ratio")


def _any_of(*names: str) -> str:
    """A ``__name__`` regular expression matching exactly ``names``."""
    return "|".join(names)


#: The Hetzner label that names the project of a server outside the Cloud: Robot has no
#: projects, so a dedicated server's project is its ``project`` label, which the
#: exporter's ``robot.labels`` sets (``server_labels{label_project}``). A Cloud
#: server's project is its Cloud project (``hcloud_project``), whatever its labels say.
PROJECT_LABEL = "project"


class LoaderError(PrometheusError):
    """Prometheus answered, but not with a fleet (e.g. no exporter data at all)."""


@dataclass(frozen=True)
class Query:
    name: str
    expr: str


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(settings: PrometheusSettings) -> list[Query]:
    """The fixed list of instant queries a load runs, in order."""
    agent = _quote(settings.agent_job)
    fs = f'job="{agent}",fstype!~"{DISK_FSTYPE_EXCLUDE}"'
    catalogue = _any_of(TYPE_INFO, TYPE_CORES, TYPE_MEMORY, TYPE_DISK, TYPE_PRICE,
                        TYPE_AVAILABLE, TYPE_DEPRECATED, TYPE_TRAFFIC, TYPE_TRAFFIC_PRICE)
    info_labels = ("server_name, server_type, location, datacenter, architecture, cpu_type, "
                   "hcloud_project, image, status")
    return [
        Query("inventory",
              f"max by (__name__, provider, source, server_id, {info_labels}) ("
              f'{{__name__=~"{_any_of(INFO, STATUS, BACKUPS)}"}})'),
        # the placement group (HA peers) comes with the labels: no query of its own
        Query("labels", f'{{__name__=~"{_any_of(LABELS, PLACEMENT_GROUP)}"}}'),
        Query("sizes_and_cost",
              "max by (__name__, source, server_id, component) ("
              f'{{__name__=~"{_any_of(CORES, MEMORY, DISK, MONTHLY_COST, BREAKDOWN)}"}})'),
        Query("catalogue", f'{{__name__=~"{catalogue}"}}'),
        Query("pricing", f'{{__name__=~"{_any_of(COST_INFO, BACKUP_RATIO)}"}}'),
        Query("utilisation",
              "max by (__name__, source, server_id, tier, direction) ("
              '{__name__=~"source_server_id:((cpu|memory)_utilisation|network_bytes_per_second):'
              '(avg30d|max30d|p95_30d|coverage30d|daily_peak30d)'
              '|source_server_id:utilisation:tier30d"})'),
        Query("via", "count by (source, server_id, via) (source_server_id:cpu_utilisation:ratio)"),
        Query("costs",
              "max by (__name__, source, server_id, location, hcloud_project) ("
              '{__name__=~"(source_server_id|source|location|hcloud_project|)'
              ':monthly_cost_euros:sum"})'),
        # Sizes from the agent for dedicated servers only: Robot reports none, while a
        # Cloud server's come from the exporter (or the catalogue); at 10,000 servers the
        # Cloud agents' per-CPU series would be most of this query's cost.
        Query("agent_cores",
              f'count by (source, server_id) (node_cpu_seconds_total{{job="{agent}",'
              'mode="idle",source="dedicated"})'),
        Query("agent_memory",
              f'max by (source, server_id) (node_memory_MemTotal_bytes{{job="{agent}",'
              'source="dedicated"})'),
        Query("agent_disk_used",
              "sum by (source, server_id) (max by (source, server_id, device) ("
              f"node_filesystem_size_bytes{{{fs}}} - node_filesystem_avail_bytes{{{fs}}}))"),
        Query("services",
              f'infrascope_service_info{{job="{agent}",kind="docker"}} or '
              f'(infrascope_service_info{{job="{agent}",kind="systemd"}} '
              f'and on (source, server_id, service) infrascope_listen_port_info{{job="{agent}"}})'),
        Query("ports", f'infrascope_listen_port_info{{job="{agent}"}}'),
        # Whether each server's agent is scraped now (1) or failing (0); absent: no agent
        # target. Says what an exclusion really lacks: history, a working agent, an agent.
        Query("agents", f'max by (source, server_id) (up{{job="{agent}"}})'),
    ]


#: Queries per load (constant: no per-server query); plus one for :func:`cost_history`.
QUERY_COUNT = len(queries(PrometheusSettings()))


class _Skips:
    """Warn about skipped records, at most a few lines per series."""

    LIMIT = 5

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)

    def __call__(self, series: str, why: str, metric: dict[str, Any]) -> None:
        self.counts[series] += 1
        if self.counts[series] <= self.LIMIT:
            ids = {k: metric[k] for k in ("source", "server_id", "server_type", "location")
                   if k in metric}
            log.warning("skipping a %s record %s: %s", series, ids, why)

    def summary(self) -> None:
        for series, count in sorted(self.counts.items()):
            if count > self.LIMIT:
                log.warning("skipped %d %s records in all", count, series)


def _text(sample: dict[str, Any]) -> str | None:
    value = sample.get("value")
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
        return value[1]
    return None


def _float(sample: dict[str, Any]) -> float | None:
    text = _text(sample)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _whole(sample: dict[str, Any]) -> int | None:
    number = _float(sample)
    return None if number is None else int(number)


def _money(sample: dict[str, Any]) -> Decimal | None:
    text = _text(sample)
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _metric(sample: dict[str, Any]) -> dict[str, str]:
    metric = sample.get("metric")
    return metric if isinstance(metric, dict) else {}


def _key(metric: dict[str, str]) -> ServerKey | None:
    source, server_id = metric.get("source"), metric.get("server_id")
    if source not in contract.SOURCES or not server_id:
        return None
    return ServerKey(source, server_id)  # type: ignore[arg-type]


Index = dict[tuple[str, str], Server]  # (source, server_id) -> server, for fast lookups


def _id(metric: dict[str, str]) -> tuple[str, str]:
    return metric.get("source", ""), metric.get("server_id", "")


def _by_name(result: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in result:
        out[_metric(sample).get("__name__", "")].append(sample)
    return out


PARALLEL_QUERIES = 4  # concurrent queries per run: modest, Prometheus serves dashboards too

#: The queries whose answers are largest at scale (most series), sent first so that the
#: long ones start at once; the others fill the gaps.
_LARGEST_FIRST = ("utilisation", "sizes_and_cost", "inventory", "agent_cores")


def load(client: PrometheusClient, settings: PrometheusSettings,
         at: float | None = None) -> Fleet:
    """Query Prometheus (:data:`QUERY_COUNT` requests) and build the fleet."""
    at = time.time() if at is None else at
    before = client.queries
    skip = _Skips()
    plan = queries(settings)
    # The queries are independent: run them side by side, the largest first (Prometheus
    # evaluates them in parallel, up to --query.max-concurrency), and build the fleet
    # from each answer as soon as it and the ones it builds on are in, while the rest
    # are still being evaluated and decoded. A failure surfaces as the first failing
    # query in plan order; the inventory is checked before anything else is built.
    # When one query fails for good (Prometheus down), the others give up with it instead
    # of each retrying on its own: one failure, reported once, in the time of one query's
    # retries.
    rank = {name: i for i, name in enumerate(_LARGEST_FIRST)}
    order = sorted(plan, key=lambda q: rank.get(q.name, len(rank)))  # stable: plan order
    failed = threading.Event()

    def run(query: Query) -> list[dict[str, Any]]:
        try:
            return client.query(query.expr, at, cancel=failed)
        except BaseException:
            failed.set()
            raise

    with _gc_paused(), ThreadPoolExecutor(max_workers=PARALLEL_QUERIES,
                                          thread_name_prefix="promql") as pool:
        futures = {q.name: pool.submit(run, q) for q in order}
        try:
            return _build(futures, settings, skip, at, client, before)
        except BaseException:
            failed.set()
            for future in futures.values():
                future.cancel()
            raise


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the answers are decoded and the fleet is built.

    A 10,000-server load creates a few million objects that all stay alive, none of them
    in a reference cycle; the collector's passes over them found nothing and cost about
    a third of this process' CPU time, on a machine where Prometheus needs the cores.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(futures: dict[str, Future[list[dict[str, Any]]]], settings: PrometheusSettings,
           skip: _Skips, at: float, client: PrometheusClient, before: int) -> Fleet:
    def result(name: str) -> list[dict[str, Any]]:
        try:
            return futures[name].result()
        except QueryCancelled:
            raise _first_failure(futures) from None

    inventory = result("inventory")
    if not any(_metric(s).get("__name__") == INFO for s in inventory):
        raise LoaderError(
            f"no {INFO} series at {display_url(settings.url)} — is the exporter scraped "
            f"with job=\"{settings.exporter_job}\", and is the InfraScope rules pack loaded "
            "(its provider groups record the inventory: the first evaluation comes up to a "
            "minute after Prometheus starts)?",
            url=display_url(settings.url))
    servers = _inventory(inventory + result("labels"), skip)
    _sizes_and_cost(servers, result("sizes_and_cost"), skip)
    types = _catalogue(result("catalogue"), skip)
    _sizes_from_catalogue(servers, types)
    if not types:
        log.warning("no server type catalogue (%s and the other server_type:* series) at %s: "
                    "no type change can be recommended", TYPE_INFO, display_url(settings.url))
    price_mode, backup_ratio = _pricing(result("pricing"), skip)
    if not _utilisation(servers, result("utilisation"), skip):
        log.warning("no 30-day utilisation series (source_server_id:*_utilisation:*30d) at %s: "
                    "are the InfraScope recording rules loaded? Every server will be excluded "
                    "for lack of data", display_url(settings.url))
    _via(servers, result("via"))
    costs = _costs(servers, result("costs"), skip, settings)
    _agent(servers, result("agent_cores"), result("agent_memory"),
           result("agent_disk_used"), skip)
    _services(servers, result("services"), result("ports"))
    _agents_up(servers, result("agents"))
    skip.summary()
    return Fleet(servers={s.key: s for s in servers.values()}, types=types,
                 backup_ratio=backup_ratio, price_mode=price_mode, costs=costs, loaded_at=at,
                 queries=client.queries - before)


def _first_failure(futures: dict[str, Future[list[dict[str, Any]]]]) -> BaseException:
    """The error of a query that failed for real, once all are done (the queries it made
    give up raised :class:`QueryCancelled`)."""
    wait_for_futures(futures.values())
    for future in futures.values():
        if future.cancelled():
            continue
        exc = future.exception()
        if exc is not None and not isinstance(exc, QueryCancelled):
            return exc
    return PrometheusError("every query was abandoned")  # not reached: one failed first


# ------------------------------------------------------------------------- inventory

def _inventory(result: list[dict[str, Any]], skip: _Skips) -> Index:
    families = _by_name(result)
    servers: Index = {}
    info = sorted(families.get(INFO, []),
                  key=lambda s: sorted(_metric(s).items()))
    for sample in info:
        m = _metric(sample)
        key = _key(m)
        if key is None:
            skip(INFO, "no valid source/server_id", m)
            continue
        if _id(m) in servers:
            skip(INFO, f"a second series for {key} (kept the first)", m)
            continue
        if not m.get("server_name"):
            skip(INFO, "no server_name", m)
            continue
        if m.get("provider") not in contract.PROVIDERS:
            skip(INFO, f"unknown provider {m.get('provider')!r}", m)
            continue
        servers[_id(m)] = Server(
            key=key, name=m["server_name"], server_type=m.get("server_type", ""),
            location=m.get("location", ""), project=m.get("hcloud_project", ""),
            datacenter=m.get("datacenter", ""), architecture=m.get("architecture", ""),
            cpu_type=m.get("cpu_type", ""), image=m.get("image", ""), provider=m["provider"])
    for sample in families.get(STATUS, []):
        m = _metric(sample)
        server = servers.get(_id(m))
        if server is not None and _float(sample) == 1 and m.get("status"):
            server.status = m["status"]
    for sample in families.get(LABELS, []):
        m = _metric(sample)
        server = servers.get(_id(m))
        if server is not None:
            server.labels = {k[len("label_"):]: v for k, v in sorted(m.items())
                             if k.startswith("label_") and v != ""}
    for sample in families.get(BACKUPS, []):
        server = servers.get(_id(_metric(sample)))
        if server is not None:
            server.backups = _float(sample) == 1
    for sample in sorted(families.get(PLACEMENT_GROUP, []),
                         key=lambda s: sorted(_metric(s).items())):
        m = _metric(sample)
        server = servers.get(_id(m))
        if server is None or _float(sample) != 1:
            continue
        if not m.get("placement_group_id") or not m.get("placement_group"):
            skip(PLACEMENT_GROUP, "no placement_group_id or placement_group", m)
            continue
        if server.placement_group is not None:
            skip(PLACEMENT_GROUP, f"a second placement group for {server.key} (kept the "
                                  "first)", m)
            continue
        server.placement_group = PlacementGroup(m["placement_group_id"], m["placement_group"],
                                                m.get("placement_group_type", ""))
    for server in servers.values():
        if server.source == "dedicated" and not server.project:
            server.project = server.labels.get(PROJECT_LABEL, "")
    return servers


_SIZES = {CORES: "cores", MEMORY: "memory_bytes", DISK: "disk_bytes"}


def _sizes_and_cost(servers: Index, result: list[dict[str, Any]],
                    skip: _Skips) -> None:
    for name, samples in _by_name(result).items():
        size = _SIZES.get(name)
        for sample in samples:
            m = _metric(sample)
            server = servers.get(_id(m))
            if server is None:
                continue  # a server without inventory: nothing to attach it to
            if size is not None:
                value = _float(sample)
                if value is None or value < 0:
                    skip(name, f"bad value {_text(sample)!r}", m)
                    continue
                setattr(server, size, int(value))
                continue
            amount = _money(sample)
            if amount is None or amount < 0:
                skip(name, f"bad amount {_text(sample)!r}", m)
                continue
            if name == MONTHLY_COST:
                server.monthly_cost = amount
            elif name == BREAKDOWN:
                if not m.get("component"):
                    skip(name, "no component label", m)
                    continue
                server.cost_breakdown[m["component"]] = amount


def _sizes_from_catalogue(servers: Index, types: dict[str, ServerType]) -> None:
    """A Cloud server the exporter gave no core count or memory size (a malformed API
    record) gets its type's from the catalogue. Not the disk: a server's primary disk may
    be larger than its type's (an upgrade kept when the type was changed)."""
    for server in servers.values():
        if server.source != "cloud" or (server.cores is not None
                                        and server.memory_bytes is not None):
            continue
        t = types.get(server.server_type)
        if t is None:
            continue
        if server.cores is None:
            server.cores = t.cores
        if server.memory_bytes is None:
            server.memory_bytes = t.memory_bytes


def _catalogue(result: list[dict[str, Any]], skip: _Skips) -> dict[str, ServerType]:
    families = _by_name(result)
    sizes: dict[str, dict[str, float]] = defaultdict(dict)
    for family, attr in [(TYPE_CORES, "cores"), (TYPE_MEMORY, "memory"), (TYPE_DISK, "disk")]:
        for sample in families.get(family, []):
            m = _metric(sample)
            value = _float(sample)
            if not m.get("server_type") or value is None or value <= 0:
                skip(family, f"bad value {_text(sample)!r}", m)
                continue
            sizes[m["server_type"]][attr] = value
    types: dict[str, ServerType] = {}
    for sample in families.get(TYPE_INFO, []):
        m = _metric(sample)
        name = m.get("server_type", "")
        size = sizes.get(name, {})
        if not name or not {"cores", "memory", "disk"} <= set(size):
            skip(TYPE_INFO, "no cores, memory or disk for the type", m)
            continue
        types[name] = ServerType(
            name=name, cores=int(size["cores"]), memory_bytes=int(size["memory"]),
            disk_bytes=int(size["disk"]), architecture=m.get("architecture", ""),
            cpu_type=m.get("cpu_type", ""), category=m.get("category", ""),
            provider=m.get("provider", ""))
    # per type and location: the monthly price, the price of a TB of traffic above the
    # included amount (euros), and the included traffic (bytes)
    per_location: list[tuple[str, Callable[[dict[str, Any]], Decimal | int | None],
                             Callable[[ServerType], dict[str, Any]]]] = [
        (TYPE_PRICE, _money, lambda t: t.prices),
        (TYPE_TRAFFIC_PRICE, _money, lambda t: t.traffic_price_per_tb),
        (TYPE_TRAFFIC, _whole, lambda t: t.included_traffic),
    ]
    for family, parse, store in per_location:
        for sample in families.get(family, []):
            m = _metric(sample)
            t = types.get(m.get("server_type", ""))
            parsed = parse(sample)
            if t is None or not m.get("location"):
                continue
            if parsed is None or parsed < 0:
                skip(family, f"bad value {_text(sample)!r}", m)
                continue
            store(t)[m["location"]] = parsed
    for family in (TYPE_AVAILABLE, TYPE_DEPRECATED):
        for sample in families.get(family, []):
            m = _metric(sample)
            t = types.get(m.get("server_type", ""))
            if t is None or not m.get("location") or _float(sample) != 1:
                continue
            (t.available if family == TYPE_AVAILABLE else t.deprecated).add(m["location"])
    return types


def _pricing(result: list[dict[str, Any]], skip: _Skips) -> tuple[str, dict[str, Decimal]]:
    families = _by_name(result)
    mode = "net"
    for sample in families.get(COST_INFO, []):
        mode = _metric(sample).get("price_mode") or mode
    ratios: dict[str, Decimal] = {}
    for sample in families.get(BACKUP_RATIO, []):
        m = _metric(sample)
        amount = _money(sample)
        if amount is None or not 0 <= amount <= 1:
            skip(BACKUP_RATIO, f"bad ratio {_text(sample)!r}", m)
            continue
        ratios[m.get("hcloud_project", "")] = amount
    return mode, ratios


# ----------------------------------------------------------------------- recorded series

def _utilisation(servers: Index, result: list[dict[str, Any]],
                 skip: _Skips) -> bool:
    found = False  # any 30-day figure at all, for any server
    for sample in result:
        m = _metric(sample)
        name = m.get("__name__", "")
        attr = _UTILISATION_FIELDS.get(name)
        if name.startswith(_NETWORK):
            attr = _NETWORK_FIELDS.get((name[len(_NETWORK):], m.get("direction", "")))
        found = found or attr is not None
        server = servers.get(_id(m))
        if server is None:
            continue
        if name == _TIER:
            server.utilisation.tier = m.get("tier") or server.utilisation.tier
            continue
        if attr is None:
            continue
        value = _float(sample)
        if value is None or value < 0:
            skip(name, f"bad value {_text(sample)!r}", m)
            continue
        if attr == "network_coverage" and server.utilisation.network_coverage is not None:
            value = min(value, server.utilisation.network_coverage)
        setattr(server.utilisation, attr, value)
    return found


def _via(servers: Index, result: list[dict[str, Any]]) -> None:
    for sample in sorted(result, key=lambda s: _metric(s).get("via", "")):
        m = _metric(sample)
        server = servers.get(_id(m))
        if server is not None and m.get("via"):
            server.utilisation.via = m["via"]


def _costs(servers: Index, result: list[dict[str, Any]], skip: _Skips,
           settings: PrometheusSettings) -> CostSummary:
    summary = CostSummary()
    total: Decimal | None = None
    for sample in result:
        m = _metric(sample)
        name = m.get("__name__", "")
        amount = _money(sample)
        if amount is None:
            skip(name, f"bad amount {_text(sample)!r}", m)
            continue
        if name == "source_server_id:monthly_cost_euros:sum":
            server = servers.get(_id(m))
            if server is not None:
                server.total_monthly_cost = amount
        elif name == ":monthly_cost_euros:sum":
            total = amount
        elif name == "source:monthly_cost_euros:sum":
            summary.by_source[m.get("source", "")] = amount
        elif name == "location:monthly_cost_euros:sum":
            summary.by_location[m.get("location", "")] = amount
        elif name == "hcloud_project:monthly_cost_euros:sum":
            summary.by_project[m.get("hcloud_project", "")] = amount
    summary.by_project = _by_project(servers, summary.by_project)
    if total is None:
        log.warning("no :monthly_cost_euros:sum at %s (recording rules not loaded?): the "
                    "total is the sum of the servers' own monthly costs",
                    display_url(settings.url))
        total = sum((s.monthly_cost for s in servers.values() if s.monthly_cost is not None),
                    Decimal(0))
    summary.total = total
    return summary


#: Below half a cent, what is left of the rules pack's no-Cloud-project sum after the
#: servers' own sums are taken out is float noise of Prometheus' addition.
_NOISE = Decimal("0.005")


def _by_project(servers: Index, by_hcloud_project: dict[str, Decimal]) -> dict[str, Decimal]:
    """The cost by project in the sense of :attr:`Server.project`.

    The rules pack sums by Cloud project (``hcloud_project:monthly_cost_euros:sum``), so
    every dedicated server lands in the ``""`` bucket. Each server without a Cloud project
    is moved from that bucket to its own project (its ``project`` label) with its own
    ``source_server_id:monthly_cost_euros:sum``, read at the same instant; what the bucket
    holds beyond those (nothing, in a fleet the exporter describes) stays under ``""``.
    """
    bucket = by_hcloud_project.get("")
    if bucket is None:
        return by_hcloud_project
    out = {k: v for k, v in by_hcloud_project.items() if k != ""}
    rest = bucket
    for server in sorted(servers.values(), key=lambda s: s.key):
        if server.source != "dedicated" or server.total_monthly_cost is None:
            continue
        out[server.project] = out.get(server.project, Decimal(0)) + server.total_monthly_cost
        rest -= server.total_monthly_cost
    if abs(rest) >= _NOISE:
        out[""] = out.get("", Decimal(0)) + rest
    return out


# ---------------------------------------------------------------------------- agents

def _agent(servers: Index, cores: list[dict[str, Any]],
           memory: list[dict[str, Any]], disk: list[dict[str, Any]], skip: _Skips) -> None:
    for sample in cores:
        m = _metric(sample)
        server = servers.get(_id(m))
        value = _float(sample)
        if server is None or server.source != "dedicated" or value is None or value < 1:
            continue
        server.cores = int(value)
    for sample in memory:
        m = _metric(sample)
        server = servers.get(_id(m))
        value = _float(sample)
        if server is None or server.source != "dedicated":
            continue
        if value is None or value <= 0:
            skip("node_memory_MemTotal_bytes", f"bad value {_text(sample)!r}", m)
            continue
        server.memory_bytes = int(value)
    for sample in disk:
        m = _metric(sample)
        server = servers.get(_id(m))
        value = _float(sample)
        if server is None:
            continue
        if value is None or value < 0:
            skip("node_filesystem_size_bytes - node_filesystem_avail_bytes",
                 f"bad value {_text(sample)!r}", m)
            continue
        server.disk_used_bytes = int(value)


def _agents_up(servers: Index, result: list[dict[str, Any]]) -> None:
    for sample in result:
        server = servers.get(_id(_metric(sample)))
        value = _float(sample)
        if server is not None and value is not None:
            server.agent_up = value >= 1


def _services(servers: Index, services: list[dict[str, Any]],
              ports: list[dict[str, Any]]) -> None:
    found: dict[tuple[tuple[str, str], str, str], Service] = {}
    for sample in sorted(services, key=lambda s: sorted(_metric(s).items())):
        m = _metric(sample)
        key = _id(m)
        if key not in servers or not m.get("service"):
            continue
        ident = (key, m.get("kind", ""), m["service"])
        if ident in found:
            continue
        found[ident] = Service(kind=m.get("kind", ""), name=m["service"],
                                    state=m.get("state", ""), image=m.get("image", ""),
                                    compose_project=m.get("compose_project", ""))
    for sample in sorted(ports, key=lambda s: sorted(_metric(s).items())):
        m = _metric(sample)
        key = _id(m)
        if key not in servers or not m.get("port"):
            continue
        owner = m.get("service") or m.get("process") or "unknown"
        ident = (key, m.get("kind", ""), owner)
        service = found.get(ident)
        if service is None:
            service = found[ident] = Service(kind=m.get("kind", "") or "process",
                                                  name=owner, state="listening")
        port = f"{m.get('protocol', 'tcp')}/{m['port']}"
        if port not in service.ports:
            service.ports.append(port)
    for (key, _, _), service in sorted(found.items(), key=lambda item: (
            item[0][0], item[0][1], item[0][2])):
        service.ports.sort(key=lambda p: (p.split("/")[0], int(p.split("/")[1])
                                          if p.split("/")[1].isdigit() else 0))
        servers[key].services.append(service)


# ------------------------------------------------------------------------ cost trend

def cost_history(client: PrometheusClient, settings: PrometheusSettings, months: int = 12,
                 at: float | None = None) -> list[tuple[str, Decimal]]:
    """Monthly totals of the last ``months`` months, oldest first: ``("YYYY-MM", euros)``.

    One range query of ``:monthly_cost_euros:avg1d`` (the projected monthly bill averaged
    over a day) with a 1-day step ending at ``at``; a month's figure is its last daily
    value — at the end of a month, that month's bill. Months without data are left out.
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    end = time.time() if at is None else at
    now = datetime.fromtimestamp(end, UTC)
    year, month = now.year, now.month - (months - 1)
    while month < 1:
        month += 12
        year -= 1
    first = datetime(year, month, 1, tzinfo=UTC).timestamp()
    steps = math.ceil((end - first) / 86400)
    result = client.query_range("max(:monthly_cost_euros:avg1d)", end - steps * 86400, end,
                                86400)
    wanted_from = f"{year:04d}-{month:02d}"
    last: dict[str, tuple[float, Decimal]] = {}
    for series in result[:1]:
        for point in series.get("values") or []:
            try:
                ts, text = float(point[0]), str(point[1])
                amount = Decimal(text)
            except (TypeError, ValueError, IndexError, InvalidOperation):
                log.warning("skipping a malformed :monthly_cost_euros:avg1d point %r", point)
                continue
            if not amount.is_finite():
                continue
            label = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")
            if label < wanted_from:
                continue
            if label not in last or ts >= last[label][0]:
                last[label] = (ts, amount)
    return [(label, amount) for label, (_, amount) in sorted(last.items())]
