"""What the exporter knows about an account, parsed from API responses.

Parsing is strict about what matters (ids, types, money as decimal strings)
and tolerant about the rest: a record that cannot be parsed raises
:class:`RecordError`, which callers count and skip, so one bad server never
empties the exposition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB


class RecordError(ValueError):
    """One API record is unusable (missing or mistyped field)."""


def _req(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise RecordError(f"{what}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RecordError(f"{what}: field {key!r} has the wrong type")
    return value


def money(value: Any, what: str) -> Decimal:
    """Hetzner sends amounts as decimal strings; floats would lose cents."""
    if not isinstance(value, str):
        raise RecordError(f"{what}: amount {value!r} is not a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise RecordError(f"{what}: amount {value!r} is not a decimal") from exc
    if not amount.is_finite():
        raise RecordError(f"{what}: amount {value!r} is not finite")
    return amount


def timestamp(value: Any, what: str) -> float:
    if not isinstance(value, str):
        raise RecordError(f"{what}: time {value!r} is not a string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"{what}: time {value!r} is not ISO 8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def pick(prices: Mapping[str, Any], mode: str, what: str) -> Decimal:
    """The net or gross amount of a ``{"net": ..., "gross": ...}`` object."""
    if not isinstance(prices, Mapping):
        raise RecordError(f"{what}: price is not an object")
    return money(prices.get(mode), f"{what}.{mode}")


@dataclass(frozen=True)
class TypePrice:
    location: str
    hourly: Decimal
    monthly: Decimal
    included_traffic: int
    per_tb_traffic: Decimal


@dataclass(frozen=True)
class TypeLocation:
    available: bool
    recommended: bool
    deprecated: bool


@dataclass(frozen=True)
class ServerType:
    id: int
    name: str
    category: str
    cores: int
    memory_bytes: int
    disk_bytes: int
    cpu_type: str
    architecture: str
    prices: Mapping[str, TypePrice]
    locations: Mapping[str, TypeLocation]


def parse_type_prices(raw: Any, mode: str, what: str) -> dict[str, TypePrice]:
    if not isinstance(raw, list):
        raise RecordError(f"{what}: prices is not a list")
    out: dict[str, TypePrice] = {}
    for entry in raw:
        loc = _req(entry, "location", str, what)
        try:
            per_tb = pick(entry.get("price_per_tb_traffic") or {}, mode, f"{what}[{loc}]")
        except RecordError:
            per_tb = Decimal(0)
        included = entry.get("included_traffic")
        out[loc] = TypePrice(
            location=loc,
            hourly=pick(_req(entry, "price_hourly", Mapping, what), mode, f"{what}[{loc}].hourly"),
            monthly=pick(_req(entry, "price_monthly", Mapping, what), mode,
                         f"{what}[{loc}].monthly"),
            included_traffic=int(included) if isinstance(included, int) else 0,
            per_tb_traffic=per_tb,
        )
    return out


def parse_server_type(raw: Any, mode: str) -> ServerType:
    what = f"server_type {raw.get('name', '?') if isinstance(raw, Mapping) else '?'}"
    locations: dict[str, TypeLocation] = {}
    for entry in raw.get("locations") or [] if isinstance(raw, Mapping) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            locations[entry["name"]] = TypeLocation(
                available=bool(entry.get("available", True)),
                recommended=bool(entry.get("recommended", False)),
                deprecated=entry.get("deprecation") is not None,
            )
    prices = parse_type_prices(_req(raw, "prices", list, what), mode, what)
    if not locations:  # older responses: availability from the price list
        deprecated = raw.get("deprecation") is not None or bool(raw.get("deprecated"))
        locations = {loc: TypeLocation(not deprecated, False, deprecated) for loc in prices}
    memory = _req(raw, "memory", (int, float), what)
    return ServerType(
        id=_req(raw, "id", int, what),
        name=_req(raw, "name", str, what),
        category=str(raw.get("category") or ""),
        cores=_req(raw, "cores", int, what),
        memory_bytes=int(round(float(memory) * MEMORY_BYTES_PER_GB)),
        disk_bytes=int(_req(raw, "disk", int, what)) * DISK_BYTES_PER_GB,
        cpu_type=str(raw.get("cpu_type") or ""),
        architecture=str(raw.get("architecture") or ""),
        prices=prices,
        locations=locations,
    )


@dataclass(frozen=True)
class PlacementGroup:
    """The placement group a Cloud server is in, as the server embeds it (``spread``: its
    servers run on different physical hosts, the customer's HA intent)."""

    id: int
    name: str
    type: str


def parse_placement_group(raw: Any) -> PlacementGroup | None:
    """A server's embedded ``placement_group`` (null when none; an unusable one is left
    out rather than failing the server)."""
    if not isinstance(raw, Mapping):
        return None
    gid, name = raw.get("id"), raw.get("name")
    if not isinstance(gid, int) or isinstance(gid, bool) or not isinstance(name, str):
        return None
    return PlacementGroup(gid, name, str(raw.get("type") or ""))


@dataclass(frozen=True)
class CloudServer:
    project: str
    id: int
    name: str
    status: str
    created: float
    server_type: ServerType
    location: str
    network_zone: str
    labels: Mapping[str, str]
    backups: bool
    ipv4: str | None
    ipv4_id: int | None
    ipv6_net: str | None
    ipv6_id: int | None
    private_nets: tuple[tuple[int, str], ...]
    primary_disk_bytes: int
    included_traffic: int
    outgoing_traffic: int | None
    ingoing_traffic: int | None
    image: str
    placement_group: PlacementGroup | None = None


def parse_cloud_server(raw: Any, project: str, mode: str) -> CloudServer:
    sid = _req(raw, "id", int, "server")
    what = f"server {sid}"
    public = raw.get("public_net") or {}
    ipv4 = public.get("ipv4") if isinstance(public, Mapping) else None
    ipv6 = public.get("ipv6") if isinstance(public, Mapping) else None
    location = _req(raw, "location", Mapping, what)
    private = []
    for net in raw.get("private_net") or []:
        if isinstance(net, Mapping) and isinstance(net.get("network"), int):
            private.append((net["network"], str(net.get("ip") or "")))
    stype = parse_server_type(_req(raw, "server_type", Mapping, what), mode)
    labels = raw.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise RecordError(f"{what}: labels is not an object")
    image = raw.get("image")
    disk = raw.get("primary_disk_size")

    def opt_int(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return CloudServer(
        project=project,
        id=sid,
        name=_req(raw, "name", str, what),
        status=_req(raw, "status", str, what),
        created=timestamp(_req(raw, "created", str, what), what),
        server_type=stype,
        location=_req(location, "name", str, what + " location"),
        network_zone=str(location.get("network_zone") or ""),
        labels={str(k): str(v) for k, v in labels.items()},
        backups=raw.get("backup_window") is not None,
        ipv4=ipv4.get("ip") if isinstance(ipv4, Mapping) else None,
        ipv4_id=ipv4.get("id") if isinstance(ipv4, Mapping) else None,
        ipv6_net=ipv6.get("ip") if isinstance(ipv6, Mapping) else None,
        ipv6_id=ipv6.get("id") if isinstance(ipv6, Mapping) else None,
        private_nets=tuple(private),
        primary_disk_bytes=(disk if isinstance(disk, int)
                            else stype.disk_bytes // DISK_BYTES_PER_GB) * DISK_BYTES_PER_GB,
        included_traffic=opt_int("included_traffic") or 0,
        outgoing_traffic=opt_int("outgoing_traffic"),
        ingoing_traffic=opt_int("ingoing_traffic"),
        image=str(image.get("name") or image.get("description") or "")
        if isinstance(image, Mapping) else "",
        placement_group=parse_placement_group(raw.get("placement_group")),
    )


@dataclass(frozen=True)
class Resource:
    """A costed Cloud resource other than a server."""

    project: str
    kind: str  # volume | floating_ip | primary_ip | load_balancer | snapshot
    id: int
    name: str
    location: str
    created: float
    server_id: int | None = None
    size_gb: Decimal = Decimal(0)
    ip_type: str = ""
    lb_type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def _location_name(raw: Any) -> str:
    return str(raw.get("name") or "") if isinstance(raw, Mapping) else ""


def parse_volume(raw: Any, project: str) -> Resource:
    vid = _req(raw, "id", int, "volume")
    what = f"volume {vid}"
    server = raw.get("server")
    return Resource(project, "volume", vid, _req(raw, "name", str, what),
                    _location_name(raw.get("location")),
                    timestamp(_req(raw, "created", str, what), what),
                    server if isinstance(server, int) else None,
                    Decimal(_req(raw, "size", int, what)), labels=raw.get("labels") or {})


def parse_primary_ip(raw: Any, project: str) -> Resource:
    pid = _req(raw, "id", int, "primary_ip")
    what = f"primary_ip {pid}"
    location = raw.get("location") or (raw.get("datacenter") or {}).get("location")
    assignee = raw.get("assignee_id")
    return Resource(project, "primary_ip", pid, str(raw.get("name") or pid),
                    _location_name(location), timestamp(_req(raw, "created", str, what), what),
                    assignee if isinstance(assignee, int) else None,
                    ip_type=_req(raw, "type", str, what), labels=raw.get("labels") or {})


def parse_floating_ip(raw: Any, project: str) -> Resource:
    fid = _req(raw, "id", int, "floating_ip")
    what = f"floating_ip {fid}"
    server = raw.get("server")
    return Resource(project, "floating_ip", fid, str(raw.get("name") or fid),
                    _location_name(raw.get("home_location")),
                    timestamp(_req(raw, "created", str, what), what),
                    server if isinstance(server, int) else None,
                    ip_type=_req(raw, "type", str, what), labels=raw.get("labels") or {})


def parse_load_balancer(raw: Any, project: str) -> Resource:
    lid = _req(raw, "id", int, "load_balancer")
    what = f"load_balancer {lid}"
    lbt = _req(raw, "load_balancer_type", Mapping, what)
    return Resource(project, "load_balancer", lid, _req(raw, "name", str, what),
                    _location_name(raw.get("location")),
                    timestamp(_req(raw, "created", str, what), what),
                    lb_type=_req(lbt, "name", str, what), labels=raw.get("labels") or {})


def parse_snapshot(raw: Any, project: str) -> Resource | None:
    """Snapshots cost per GB; backups are covered by the server's surcharge."""
    iid = _req(raw, "id", int, "image")
    what = f"image {iid}"
    kind = _req(raw, "type", str, what)
    if kind != "snapshot":
        return None
    size = raw.get("image_size")
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        raise RecordError(f"{what}: image_size is not a number")
    origin = raw.get("created_from")
    name = str(raw.get("description") or raw.get("name") or iid)
    return Resource(project, "snapshot", iid, name, "",
                    timestamp(_req(raw, "created", str, what), what),
                    None, Decimal(str(size)),
                    labels={**(raw.get("labels") or {}),
                            **({"created_from": str(origin.get("name"))}
                               if isinstance(origin, Mapping) and origin.get("name") else {})})


@dataclass(frozen=True)
class Pricing:
    """The parts of ``GET /pricing`` that cost money, in one price mode."""

    currency: str
    vat_rate: Decimal
    backup_percentage: Decimal
    volume_per_gb_month: Decimal
    image_per_gb_month: Decimal
    primary_ips: Mapping[tuple[str, str], tuple[Decimal, Decimal]]  # (type, loc) -> (h, m)
    floating_ips: Mapping[tuple[str, str], Decimal]  # (type, loc) -> monthly
    load_balancer_types: Mapping[str, Mapping[str, TypePrice]]
    server_types: Mapping[str, Mapping[str, TypePrice]]


def parse_pricing(body: Any, mode: str) -> Pricing:
    p = _req(body, "pricing", Mapping, "pricing")
    what = "pricing"
    primary: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for entry in p.get("primary_ips") or []:
        for price in entry.get("prices") or []:
            loc = str(price.get("location"))
            hourly = price.get("price_hourly")
            monthly = pick(price.get("price_monthly") or {}, mode, f"{what}.primary_ips")
            primary[(str(entry.get("type")), loc)] = (
                pick(hourly, mode, f"{what}.primary_ips") if hourly else monthly, monthly)
    floating: dict[tuple[str, str], Decimal] = {}
    for entry in p.get("floating_ips") or []:
        for price in entry.get("prices") or []:
            floating[(str(entry.get("type")), str(price.get("location")))] = pick(
                price.get("price_monthly") or {}, mode, f"{what}.floating_ips")
    return Pricing(
        currency=str(p.get("currency") or "EUR"),
        vat_rate=money(_req(p, "vat_rate", str, what), f"{what}.vat_rate"),
        backup_percentage=money(
            str(_req(_req(p, "server_backup", Mapping, what), "percentage", str, what)),
            f"{what}.server_backup.percentage"),
        volume_per_gb_month=pick(
            _req(_req(p, "volume", Mapping, what), "price_per_gb_month", Mapping, what), mode,
            f"{what}.volume"),
        image_per_gb_month=pick(
            _req(_req(p, "image", Mapping, what), "price_per_gb_month", Mapping, what), mode,
            f"{what}.image"),
        primary_ips=primary,
        floating_ips=floating,
        load_balancer_types={
            str(t.get("name")): parse_type_prices(t.get("prices"), mode, f"lb_type {t.get('name')}")
            for t in p.get("load_balancer_types") or []
        },
        server_types={
            str(t.get("name")): parse_type_prices(t.get("prices"), mode,
                                                  f"server_type {t.get('name')}")
            for t in p.get("server_types") or []
        },
    )


@dataclass(frozen=True)
class DedicatedServer:
    number: int
    name: str
    product: str
    dc: str
    ip: str | None
    ipv6_net: str | None
    traffic: str
    status: str
    cancelled: bool
    paid_until: float | None

    @property
    def location(self) -> str:
        return self.dc.split("-")[0].lower() if self.dc else ""


def parse_dedicated_server(raw: Any) -> DedicatedServer:
    s = _req(raw, "server", Mapping, "robot server")
    number = _req(s, "server_number", int, "robot server")
    what = f"robot server {number}"
    paid = s.get("paid_until")
    paid_ts = None
    if isinstance(paid, str) and paid:
        try:
            paid_ts = datetime.strptime(paid, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        except ValueError as exc:
            raise RecordError(f"{what}: paid_until {paid!r} is not YYYY-MM-DD") from exc
    return DedicatedServer(
        number=number,
        name=str(s.get("server_name") or number),
        product=_req(s, "product", str, what),
        dc=str(s.get("dc") or ""),
        ip=s.get("server_ip") if isinstance(s.get("server_ip"), str) else None,
        ipv6_net=s.get("server_ipv6_net") if isinstance(s.get("server_ipv6_net"), str) else None,
        traffic=str(s.get("traffic") or ""),
        status=str(s.get("status") or ""),
        cancelled=bool(s.get("cancelled", False)),
        paid_until=paid_ts,
    )


@dataclass(frozen=True)
class DedicatedProduct:
    id: str
    monthly: Mapping[str, Decimal]  # location (lower-case, e.g. fsn1) -> monthly price


def parse_products(body: Any, mode: str) -> dict[str, DedicatedProduct]:
    if not isinstance(body, list):
        raise RecordError("robot products: not a list")
    out: dict[str, DedicatedProduct] = {}
    for entry in body:
        p = _req(entry, "product", Mapping, "robot product")
        pid = _req(p, "id", str, "robot product")
        monthly: dict[str, Decimal] = {}
        for price in p.get("prices") or []:
            loc = str(price.get("location") or "").lower()
            monthly[loc] = money(str((price.get("price") or {}).get(mode)),
                                 f"robot product {pid}")
        out[pid] = DedicatedProduct(pid, monthly)
    return out


# ---- Cloud metrics -----------------------------------------------------------------
@dataclass(frozen=True)
class MetricsSample:
    """Averages over [start, end] from one /metrics call."""

    start: float
    end: float
    values: Mapping[str, float]


METRIC_SERIES = (
    "cpu", "disk.0.iops.read", "disk.0.iops.write", "disk.0.bandwidth.read",
    "disk.0.bandwidth.write", "network.0.pps.in", "network.0.pps.out",
    "network.0.bandwidth.in", "network.0.bandwidth.out",
)


def parse_metrics(body: Any, server_id: int) -> MetricsSample | None:
    """Average each series over the points returned (one point when step = window)."""
    what = f"metrics of server {server_id}"
    m = body.get("metrics") if isinstance(body, Mapping) else None
    if not isinstance(m, Mapping) or not isinstance(m.get("time_series"), Mapping):
        raise RecordError(f"{what}: no metrics.time_series")
    try:
        start = datetime.fromisoformat(str(m["start"]).replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(str(m["end"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError) as exc:
        raise RecordError(f"{what}: start/end are not ISO 8601") from exc
    values: dict[str, float] = {}
    for name, series in m["time_series"].items():
        points = series.get("values") if isinstance(series, Mapping) else None
        if not isinstance(points, list):
            raise RecordError(f"{what}: series {name} has no values list")
        nums = []
        for point in points:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise RecordError(f"{what}: series {name} has a malformed point")
            try:
                nums.append(float(point[1]))
            except (TypeError, ValueError) as exc:
                raise RecordError(f"{what}: series {name} has a non-numeric value") from exc
        if nums:
            values[name] = sum(nums) / len(nums)
    if not values:
        return None
    return MetricsSample(start, end, values)
