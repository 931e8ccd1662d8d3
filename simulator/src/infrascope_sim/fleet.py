"""Fleet model: what the simulated Hetzner account owns.

A fleet is loaded from a YAML file (see ``demo_fleet.yaml`` for the annotated
built-in one) or generated (``generated:N``). Everything the APIs serve is
derived from these objects; nothing is random at request time.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from infrascope_core.contract import MEMORY_BYTES_PER_GB

from .catalogue import LOAD_BALANCER_TYPES, LOCATIONS, ROBOT_PRODUCTS, SERVER_TYPES, ServerType
from .workload import Workload, params_from_config

CLOUD_STATUSES = (
    "initializing", "starting", "running", "stopping", "off", "deleting", "migrating",
    "rebuilding", "unknown",
)
_LABEL_KEY = re.compile(r"^([a-z0-9A-Z]([a-z0-9A-Z\-_.]{0,61}[a-z0-9A-Z])?/)?"
                        r"[a-z0-9A-Z]([a-z0-9A-Z\-_.]{0,61}[a-z0-9A-Z])?$")
_LABEL_VALUE = re.compile(r"^([a-z0-9A-Z]([a-z0-9A-Z\-_.]{0,61}[a-z0-9A-Z])?)?$")
PLACEMENT_GROUP_TYPES = ("spread",)
"""Hetzner's placement group types: ``spread`` keeps its servers on different hosts."""


class FleetError(ValueError):
    """A fleet file is invalid; the message names the offending entry and key."""


def parse_time(value: Any, where: str) -> float:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)):
        return float(value)
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise FleetError(f"{where}: not an RFC 3339 time: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def stable_seed(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


def check_labels(labels: dict[str, Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in labels.items():
        key, value = str(key), "" if value is None else str(value)
        if not _LABEL_KEY.match(key) or key.startswith("hetzner.cloud/"):
            raise FleetError(f"{where}: invalid label key {key!r}")
        if not _LABEL_VALUE.match(value):
            raise FleetError(f"{where}: invalid value {value!r} for label {key!r}")
        out[key] = value
    return out


@dataclass
class Volume:
    id: int
    name: str
    size_gb: int
    location: str
    server_id: int | None
    created: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PrimaryIP:
    id: int
    name: str
    type: str  # ipv4 | ipv6
    ip: str
    location: str
    assignee_id: int | None
    created: float
    auto_delete: bool = True
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FloatingIP:
    id: int
    name: str
    type: str
    ip: str
    home_location: str
    server_id: int | None
    created: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadBalancer:
    id: int
    name: str
    type_name: str
    location: str
    target_server_ids: list[int]
    ipv4: str
    created: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Image:
    id: int
    type: str  # snapshot | backup
    description: str
    image_size_gb: float
    disk_size_gb: int
    created: float
    created_from: tuple[int, str] | None
    bound_to: int | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PlacementGroup:
    """A Cloud placement group (a server names it in its ``placement_group``)."""

    id: int
    name: str
    type: str
    created: float
    labels: dict[str, str] = field(default_factory=dict)
    server_ids: list[int] = field(default_factory=list)  # its servers, in the project's order


@dataclass
class CloudServer:
    id: int
    name: str
    server_type: ServerType
    location: str
    created: float
    labels: dict[str, str]
    workload: Workload
    status: str = "running"
    backups: bool = False
    primary_disk_size: int = 0
    image: str = "ubuntu-24.04"
    ipv4: str | None = None
    ipv4_primary_ip_id: int | None = None
    ipv6_net: str | None = None
    ipv6_primary_ip_id: int | None = None
    private_net: list[dict[str, Any]] = field(default_factory=list)
    volume_ids: list[int] = field(default_factory=list)
    load_balancer_ids: list[int] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    placement_group: int | None = None  # the id of its PlacementGroup
    protection_delete: bool = False
    protection_rebuild: bool = False
    booted: float | None = None  # last power-on through the API (None: never)
    created_type: ServerType | None = None  # before the first change_type (None: none yet)

    @property
    def cores(self) -> int:
        return self.server_type.cores

    @property
    def original_type(self) -> ServerType:
        """The type the server was created with, which its workload is defined for."""
        return self.created_type or self.server_type

    def change_type(self, new: ServerType, at: float) -> None:
        """Move to ``new`` at ``at``: the same work (cores busy, bytes in use) from the
        next workload tick on, as a ratio of the new size."""
        if self.created_type is None:
            self.created_type = self.server_type
        original = self.original_type
        self.workload = self.workload.resized(at, new.cores / original.cores,
                                              new.memory_gb / original.memory_gb)
        self.server_type = new

    @property
    def memory_bytes(self) -> int:
        return int(self.server_type.memory_gb * MEMORY_BYTES_PER_GB)

    @property
    def disk_gb(self) -> int:
        return self.primary_disk_size


@dataclass
class CloudProject:
    name: str
    token: str
    rate_limit: int = 3600
    # Tokens created with "Read" permission: GETs only (writes answer token_readonly).
    read_only_tokens: list[str] = field(default_factory=list)
    servers: list[CloudServer] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    primary_ips: list[PrimaryIP] = field(default_factory=list)
    floating_ips: list[FloatingIP] = field(default_factory=list)
    load_balancers: list[LoadBalancer] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    placement_groups: list[PlacementGroup] = field(default_factory=list)

    def placement_group(self, group_id: int | None) -> PlacementGroup | None:
        return next((g for g in self.placement_groups if g.id == group_id), None)


@dataclass
class DedicatedServer:
    number: int
    name: str
    product: str
    dc: str
    ip: str
    ipv6_net: str
    cores: int
    memory_gb: int
    disk_gb: int
    created: float
    workload: Workload
    traffic: str = "unlimited"
    status: str = "ready"
    cancelled: bool = False
    paid_until: str = "2026-12-31"
    # Not served by Robot (which has neither labels nor prices of owned
    # servers): the exporter gets these from its own configuration.
    labels: dict[str, str] = field(default_factory=dict)
    monthly_price_net: Decimal | None = None
    services: list[dict[str, Any]] = field(default_factory=list)

    @property
    def location(self) -> str:
        return self.dc.split("-")[0].lower()

    @property
    def memory_bytes(self) -> int:
        return self.memory_gb * MEMORY_BYTES_PER_GB


@dataclass
class RobotAccount:
    user: str
    password: str
    servers: list[DedicatedServer] = field(default_factory=list)
    server_limit_per_hour: int = 200


@dataclass
class Fleet:
    name: str
    projects: list[CloudProject]
    robot: RobotAccount | None

    @property
    def cloud_servers(self) -> list[CloudServer]:
        return [s for p in self.projects for s in p.servers]

    def project_by_token(self, token: str) -> CloudProject | None:
        for project in self.projects:
            if project.token == token or token in project.read_only_tokens:
                return project
        return None

    def find(self, source: str, server_id: int) -> CloudServer | DedicatedServer | None:
        if source == "cloud":
            for s in self.cloud_servers:
                if s.id == server_id:
                    return s
        elif source == "dedicated" and self.robot:
            for d in self.robot.servers:
                if d.number == server_id:
                    return d
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "projects": [
                {"name": p.name, "servers": len(p.servers), "rate_limit": p.rate_limit}
                for p in self.projects
            ],
            "cloud_servers": len(self.cloud_servers),
            "dedicated_servers": len(self.robot.servers) if self.robot else 0,
        }


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


class _Ids:
    """Deterministic id allocation for entries that do not name their id."""

    def __init__(self) -> None:
        self.next = {"server": 40_000_001, "volume": 100_001, "primary_ip": 50_000_001,
                     "floating_ip": 900_001, "load_balancer": 300_001, "image": 200_000_001,
                     "dedicated": 2_100_001, "placement_group": 1_000_001}

    def take(self, kind: str, explicit: Any = None) -> int:
        if explicit is not None:
            return int(explicit)
        value = self.next[kind]
        self.next[kind] += 1
        return value


def _ipv4_for(seq: int, base: str = "49.12.0.0") -> str:
    return str(ipaddress.IPv4Address(base) + 10 + seq)


def _ipv6_for(seq: int) -> str:
    return f"2a01:4f8:c0c:{seq:x}::/64"


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise FleetError(f"{where}: missing required key {key!r}")
    return entry[key]


def _services(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    services = entry.get("services") or []
    if not isinstance(services, list):
        raise FleetError(f"{where}.services: must be a list")
    out = []
    for i, svc in enumerate(services):
        if not isinstance(svc, dict) or "name" not in svc:
            raise FleetError(f"{where}.services[{i}]: needs at least a name")
        out.append({"kind": svc.get("kind", "systemd"), **svc})
    return out


def _placement_groups(pdata: dict[str, Any], pwhere: str, ids: _Ids,
                      default_created: float) -> dict[str, PlacementGroup]:
    """A project's ``placement_groups: [{name, type, labels, id, created}]`` by name."""
    entries = pdata.get("placement_groups") or []
    if not isinstance(entries, list):
        raise FleetError(f"{pwhere}.placement_groups: must be a list")
    out: dict[str, PlacementGroup] = {}
    for gi, gdata in enumerate(entries):
        gwhere = f"{pwhere}.placement_groups[{gi}]"
        if not isinstance(gdata, dict):
            raise FleetError(f"{gwhere}: must be a mapping with at least a name")
        gname = str(_require(gdata, "name", gwhere))
        if gname in out:
            raise FleetError(f"{gwhere}.name: duplicate placement group name {gname!r}")
        gtype = str(gdata.get("type", "spread"))
        if gtype not in PLACEMENT_GROUP_TYPES:
            raise FleetError(f"{gwhere}.type: {gtype!r} is not a placement group type "
                             f"({', '.join(PLACEMENT_GROUP_TYPES)})")
        out[gname] = PlacementGroup(
            ids.take("placement_group", gdata.get("id")), gname, gtype,
            parse_time(gdata.get("created", default_created), f"{gwhere}.created"),
            check_labels(gdata.get("labels") or {}, f"{gwhere}.labels"))
    return out


def load_fleet_data(data: dict[str, Any], name: str = "fleet") -> Fleet:
    if not isinstance(data, dict):
        raise FleetError(f"{name}: a fleet file must be a mapping")
    ids = _Ids()
    default_created = parse_time(data.get("default_created", "2025-06-01T00:00:00Z"), name)
    projects: list[CloudProject] = []
    ip_seq = 0
    cloud = data.get("cloud") or {}
    for pi, pdata in enumerate(cloud.get("projects") or []):
        pwhere = f"cloud.projects[{pi}]"
        project = CloudProject(
            name=str(_require(pdata, "name", pwhere)),
            token=str(_require(pdata, "token", pwhere)),
            rate_limit=int(pdata.get("rate_limit", 3600)),
            read_only_tokens=[str(t) for t in pdata.get("read_only_tokens") or []],
        )
        groups = _placement_groups(pdata, pwhere, ids, default_created)
        project.placement_groups = list(groups.values())
        by_name: dict[str, CloudServer] = {}
        for si, sdata in enumerate(pdata.get("servers") or []):
            where = f"{pwhere}.servers[{si}]"
            type_name = str(_require(sdata, "type", where))
            if type_name not in SERVER_TYPES:
                raise FleetError(f"{where}.type: unknown server type {type_name!r}")
            stype = SERVER_TYPES[type_name]
            location = str(sdata.get("location", "fsn1"))
            if location not in LOCATIONS:
                raise FleetError(f"{where}.location: unknown location {location!r}")
            if location not in stype.locations:
                raise FleetError(f"{where}: {type_name} is not offered in {location}")
            status = str(sdata.get("status", "running"))
            if status not in CLOUD_STATUSES:
                raise FleetError(f"{where}.status: {status!r} is not a Cloud server status")
            sid = ids.take("server", sdata.get("id"))
            sname = str(_require(sdata, "name", where))
            try:
                profile, params = params_from_config(sdata.get("workload"), f"{where}.workload")
            except ValueError as exc:
                raise FleetError(str(exc)) from exc
            ip_seq += 1
            server = CloudServer(
                id=sid,
                name=sname,
                server_type=stype,
                location=location,
                created=parse_time(sdata.get("created", default_created), f"{where}.created"),
                labels=check_labels(sdata.get("labels") or {}, f"{where}.labels"),
                workload=Workload(params, int(sdata.get("seed", stable_seed("cloud", sid))),
                                  profile),
                status=status,
                backups=bool(sdata.get("backups", False)),
                primary_disk_size=int(sdata.get("primary_disk_size", stype.disk_gb)),
                image=str(sdata.get("image", "ubuntu-24.04")),
                services=_services(sdata, where),
                protection_delete=bool((sdata.get("protection") or {}).get("delete", False)),
                protection_rebuild=bool((sdata.get("protection") or {}).get("rebuild", False)),
            )
            group = sdata.get("placement_group")
            if group is not None:
                if str(group) not in groups:
                    raise FleetError(f"{where}.placement_group: no placement group named "
                                     f"{group!r} in project {project.name}")
                server.placement_group = groups[str(group)].id
                groups[str(group)].server_ids.append(sid)
            if sdata.get("ipv4", True) is not False:
                ip = sdata.get("ipv4")
                server.ipv4 = str(ip) if isinstance(ip, str) else _ipv4_for(ip_seq)
                server.ipv4_primary_ip_id = ids.take("primary_ip")
                project.primary_ips.append(PrimaryIP(
                    server.ipv4_primary_ip_id, f"primary_ip-{server.ipv4_primary_ip_id}", "ipv4",
                    server.ipv4, location, sid, server.created))
            if sdata.get("ipv6", True) is not False:
                server.ipv6_net = _ipv6_for(ip_seq)
                server.ipv6_primary_ip_id = ids.take("primary_ip")
                project.primary_ips.append(PrimaryIP(
                    server.ipv6_primary_ip_id, f"primary_ip-{server.ipv6_primary_ip_id}", "ipv6",
                    server.ipv6_net, location, sid, server.created))
            for ni, net in enumerate(sdata.get("private_networks") or []):
                server.private_net.append({
                    "network": int(net.get("network", 1000 + ni)),
                    "name": str(net.get("name", f"net{ni}")),
                    "ip": str(_require(net, "ip", f"{where}.private_networks[{ni}]")),
                    "alias_ips": [],
                    "mac_address": f"86:00:00:{sid % 256:02x}:{ni:02x}:01",
                })
            for vi, vdata in enumerate(sdata.get("volumes") or []):
                vwhere = f"{where}.volumes[{vi}]"
                vol = Volume(ids.take("volume", vdata.get("id")),
                             str(vdata.get("name", f"{sname}-vol{vi}")),
                             int(_require(vdata, "size", vwhere)), location, sid, server.created,
                             check_labels(vdata.get("labels") or {}, vwhere))
                project.volumes.append(vol)
                server.volume_ids.append(vol.id)
            if sname in by_name:
                raise FleetError(f"{where}.name: duplicate server name {sname!r}")
            by_name[sname] = server
            project.servers.append(server)

        def server_ref(ref: Any, where: str, by_name: dict[str, CloudServer] = by_name,
                       project: CloudProject = project) -> CloudServer | None:
            if ref is None:
                return None
            if str(ref) not in by_name:
                raise FleetError(f"{where}: no server named {ref!r} in project {project.name}")
            return by_name[str(ref)]

        for vi, vdata in enumerate(pdata.get("volumes") or []):
            vwhere = f"{pwhere}.volumes[{vi}]"
            srv = server_ref(vdata.get("server"), f"{vwhere}.server")
            vol = Volume(ids.take("volume", vdata.get("id")), str(_require(vdata, "name", vwhere)),
                         int(_require(vdata, "size", vwhere)),
                         srv.location if srv else str(vdata.get("location", "fsn1")),
                         srv.id if srv else None,
                         parse_time(vdata.get("created", default_created), vwhere),
                         check_labels(vdata.get("labels") or {}, vwhere))
            project.volumes.append(vol)
            if srv:
                srv.volume_ids.append(vol.id)
        for ii, idata in enumerate(pdata.get("primary_ips") or []):
            iwhere = f"{pwhere}.primary_ips[{ii}]"
            ip_seq += 1
            kind = str(idata.get("type", "ipv4"))
            ip = _ipv4_for(ip_seq, "5.75.0.0") if kind == "ipv4" else _ipv6_for(ip_seq)
            project.primary_ips.append(PrimaryIP(
                ids.take("primary_ip", idata.get("id")), str(_require(idata, "name", iwhere)),
                kind, str(idata.get("ip", ip)), str(idata.get("location", "fsn1")), None,
                parse_time(idata.get("created", default_created), iwhere), False,
                check_labels(idata.get("labels") or {}, iwhere)))
        for fi, fdata in enumerate(pdata.get("floating_ips") or []):
            fwhere = f"{pwhere}.floating_ips[{fi}]"
            srv = server_ref(fdata.get("server"), f"{fwhere}.server")
            ip_seq += 1
            kind = str(fdata.get("type", "ipv4"))
            ip = _ipv4_for(ip_seq, "78.46.0.0") if kind == "ipv4" else _ipv6_for(ip_seq)
            project.floating_ips.append(FloatingIP(
                ids.take("floating_ip", fdata.get("id")), str(_require(fdata, "name", fwhere)),
                kind, str(fdata.get("ip", ip)),
                srv.location if srv else str(fdata.get("location", "fsn1")),
                srv.id if srv else None, parse_time(fdata.get("created", default_created), fwhere),
                check_labels(fdata.get("labels") or {}, fwhere)))
        for li, ldata in enumerate(pdata.get("load_balancers") or []):
            lwhere = f"{pwhere}.load_balancers[{li}]"
            type_name = str(ldata.get("type", "lb11"))
            if type_name not in LOAD_BALANCER_TYPES:
                raise FleetError(f"{lwhere}.type: unknown load balancer type {type_name!r}")
            targets = [server_ref(t, f"{lwhere}.targets") for t in ldata.get("targets") or []]
            ip_seq += 1
            lb = LoadBalancer(ids.take("load_balancer", ldata.get("id")),
                              str(_require(ldata, "name", lwhere)), type_name,
                              str(ldata.get("location", "fsn1")),
                              [t.id for t in targets if t], _ipv4_for(ip_seq, "168.119.0.0"),
                              parse_time(ldata.get("created", default_created), lwhere),
                              check_labels(ldata.get("labels") or {}, lwhere))
            project.load_balancers.append(lb)
            for t in targets:
                if t:
                    t.load_balancer_ids.append(lb.id)
        for ii, idata in enumerate(pdata.get("snapshots") or []):
            iwhere = f"{pwhere}.snapshots[{ii}]"
            src = idata.get("from")
            srv = by_name.get(str(src)) if src is not None else None
            project.images.append(Image(
                ids.take("image", idata.get("id")), "snapshot",
                str(idata.get("description", f"snapshot {ii}")),
                float(_require(idata, "size_gb", iwhere)), int(idata.get("disk_size", 40)),
                parse_time(idata.get("created", default_created), iwhere),
                (srv.id, srv.name) if srv else (int(idata.get("from_id", 1)), str(src or "gone")),
                None, check_labels(idata.get("labels") or {}, iwhere)))
        # Backups are images too (bound to their server), priced by the
        # server's backup surcharge rather than per GB.
        for server in project.servers:
            if server.backups:
                for day in range(7):
                    project.images.append(Image(
                        ids.take("image"), "backup", f"Backup {server.name} day {day}",
                        round(server.primary_disk_size * 0.08, 2), server.primary_disk_size,
                        server.created + day * 86_400, (server.id, server.name), server.id))
        projects.append(project)

    robot_data = data.get("robot")
    robot = None
    if robot_data:
        robot = RobotAccount(
            user=str(_require(robot_data, "user", "robot")),
            password=str(_require(robot_data, "password", "robot")),
            server_limit_per_hour=int(robot_data.get("server_limit_per_hour", 200)),
        )
        for di, ddata in enumerate(robot_data.get("servers") or []):
            where = f"robot.servers[{di}]"
            product = str(_require(ddata, "product", where))
            catalogue = ROBOT_PRODUCTS.get(product)
            number = ids.take("dedicated", ddata.get("number"))
            if catalogue is None and not all(k in ddata for k in ("cores", "memory_gb", "disk_gb")):
                raise FleetError(f"{where}: product {product!r} is not in the catalogue; "
                                 "give cores, memory_gb and disk_gb")
            try:
                profile, params = params_from_config(ddata.get("workload"), f"{where}.workload")
            except ValueError as exc:
                raise FleetError(str(exc)) from exc
            ip_seq += 1
            price = ddata.get("monthly_price_net")
            robot.servers.append(DedicatedServer(
                number=number,
                name=str(_require(ddata, "name", where)),
                product=product,
                dc=str(ddata.get("dc", "FSN1-DC14")),
                ip=str(ddata.get("ip", _ipv4_for(ip_seq, "88.198.0.0"))),
                ipv6_net=str(ddata.get("ipv6_net", f"2a01:4f8:10a:{ip_seq:x}::/64")),
                cores=int(ddata.get("cores", catalogue.cores if catalogue else 0)),
                memory_gb=int(ddata.get("memory_gb", catalogue.memory_gb if catalogue else 0)),
                disk_gb=int(ddata.get("disk_gb", catalogue.disk_gb if catalogue else 0)),
                created=parse_time(ddata.get("created", default_created), f"{where}.created"),
                workload=Workload(params, int(ddata.get("seed", stable_seed("dedicated", number))),
                                  profile),
                traffic=str(ddata.get("traffic", "unlimited")),
                status=str(ddata.get("status", "ready")),
                cancelled=bool(ddata.get("cancelled", False)),
                paid_until=str(ddata.get("paid_until", "2026-12-31")),
                labels=check_labels(ddata.get("labels") or {}, f"{where}.labels"),
                monthly_price_net=Decimal(str(price)) if price is not None else None,
                services=_services(ddata, where),
            ))
    return Fleet(name=name, projects=projects, robot=robot)


def generated_fleet(count: int, projects: int = 1) -> Fleet:
    """A large deterministic fleet for benchmarks: 90 % Cloud, 10 % dedicated."""
    if count < 1:
        raise FleetError("generated fleet needs at least one server")
    dedicated = count // 10
    cloud = count - dedicated
    types = ["cx23", "cx33", "cx43", "cpx22", "cpx32", "cax21", "ccx13", "ccx23", "cx22", "cpx31"]
    locations = ["fsn1", "nbg1", "hel1"]
    profiles = ["idle", "steady-low", "diurnal-web", "batch", "bursty", "cpu-bound",
                "memory-heavy", "database"]
    envs = ["production", "staging", "dev"]
    data: dict[str, Any] = {"cloud": {"projects": []}}
    per_project = -(-cloud // projects)
    for p in range(projects):
        servers = []
        for i in range(p * per_project, min(cloud, (p + 1) * per_project)):
            servers.append({
                "name": f"gen-{i:05d}",
                "type": types[i % len(types)],
                "location": locations[(i // 3) % len(locations)],
                "labels": {"env": envs[i % len(envs)], "project": f"team{i % 17}"},
                "backups": i % 4 == 0,
                "workload": {"profile": profiles[(i * 7) % len(profiles)]},
            })
        data["cloud"]["projects"].append(
            {"name": f"generated-{p}", "token": f"generated-token-{p}", "servers": servers})
    products = list(ROBOT_PRODUCTS)
    data["robot"] = {
        "user": "#ws+generated", "password": "generated-robot-password",
        "servers": [
            {"name": f"gen-dedi-{i:05d}", "product": products[i % len(products)],
             "dc": f"{['FSN1', 'NBG1', 'HEL1'][i % 3]}-DC{1 + i % 20}",
             "monthly_price_net": str(ROBOT_PRODUCTS[products[i % len(products)]].monthly_net),
             "workload": {"profile": profiles[(i * 5) % len(profiles)]}}
            for i in range(dedicated)
        ],
    }
    return load_fleet_data(data, name=f"generated:{count}")


def load_fleet(spec: str) -> Fleet:
    """``demo``, ``generated:N[:P]`` (N servers over P projects) or a YAML file path."""
    if spec == "demo":
        text = resources.files("infrascope_sim").joinpath("demo_fleet.yaml").read_text()
        return load_fleet_data(yaml.safe_load(text), name="demo")
    if spec.startswith("generated:"):
        parts = spec.split(":")
        try:
            count = int(parts[1])
            nproj = int(parts[2]) if len(parts) > 2 else 1
        except (IndexError, ValueError) as exc:
            raise FleetError(f"bad fleet spec {spec!r}: use generated:N or generated:N:P") from exc
        return generated_fleet(count, nproj)
    path = Path(spec)
    if not path.is_file():
        raise FleetError(f"fleet file {spec!r} does not exist (or use 'demo', 'generated:N')")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FleetError(f"fleet file {spec!r} is not valid YAML: {exc}") from exc
    return load_fleet_data(data, name=path.stem)
