"""The simulated Hetzner Cloud API (``/v1``): its reads (writes: ``cloud_writes``).

Follows ``shared/reference/hetzner-api.md``: bearer-token projects,
``meta.pagination`` plus ``Link`` headers on every list, ``per_page`` at most
50, label selectors, the documented error body, and a token bucket per project
with ``RateLimit-*`` headers on every authenticated response.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import catalogue
from .catalogue import LOAD_BALANCER_TYPES, LOCATIONS, SERVER_TYPES, SERVER_TYPES_BY_ID
from .errors import ApiError, error_response, invalid_field
from .faults import Fault
from .fleet import (
    PLACEMENT_GROUP_TYPES,
    CloudProject,
    CloudServer,
    FloatingIP,
    Image,
    LoadBalancer,
    PlacementGroup,
    PrimaryIP,
    Volume,
)
from .http import apply_pre_faults, json_response, pagination_fault, post_faults
from .labelselector import LabelSelectorError, compile_selector
from .ratelimit import RateDecision
from .state import Simulator

ERROR_CODES = {
    400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    429: "rate_limit_exceeded", 500: "server_error", 502: "bad_gateway", 503: "unavailable",
    504: "timeout",
}
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 50
METRIC_TYPES = ("cpu", "disk", "network")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def parse_iso(value: str, name: str) -> float:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid_field(name, f"'{value}' is not a valid ISO 8601 date-time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# --------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------


def location_json(name: str) -> dict[str, Any]:
    return LOCATIONS[name].to_api()


def system_images() -> list[dict[str, Any]]:
    out = []
    for i, (name, flavor, version) in enumerate([
        ("ubuntu-24.04", "ubuntu", "24.04"), ("debian-12", "debian", "12"),
        ("rocky-9", "rocky", "9"),
    ]):
        for arch in ("x86", "arm"):
            out.append({
                "id": 161_547_000 + i * 2 + (arch == "arm"), "type": "system",
                "status": "available", "name": name, "description": f"{flavor.title()} {version}",
                "image_size": None, "disk_size": 5, "created": "2024-04-25T14:00:00+00:00",
                "created_from": None, "bound_to": None, "os_flavor": flavor,
                "os_version": version, "architecture": arch, "rapid_deploy": True,
                "protection": {"delete": False}, "deprecated": None, "deleted": None,
                "labels": {},
            })
    return out


SYSTEM_IMAGES = system_images()
_SYSTEM_IMAGE_BY_NAME = {(i["name"], i["architecture"]): i for i in SYSTEM_IMAGES}


def server_json(server: CloudServer, project: CloudProject, sim: Simulator,
                now: float) -> dict[str, Any]:
    stype = server.server_type
    price = stype.price_entry(server.location)
    floating = [f.id for f in project.floating_ips if f.server_id == server.id]
    image = _SYSTEM_IMAGE_BY_NAME.get((server.image, stype.architecture))
    outgoing = sim.outgoing_traffic(server, now)
    group = project.placement_group(server.placement_group)
    running = sim.actions.running_on(server.id, now)
    status = running.server_status if running and running.server_status else server.status
    return {
        "id": server.id,
        "name": server.name,
        "status": status,
        "created": iso(server.created),
        "public_net": {
            "ipv4": None if server.ipv4 is None else {
                "id": server.ipv4_primary_ip_id, "ip": server.ipv4, "blocked": False,
                "dns_ptr": f"static.{'.'.join(reversed(server.ipv4.split('.')))}"
                           ".clients.your-server.de",
            },
            "ipv6": None if server.ipv6_net is None else {
                "id": server.ipv6_primary_ip_id, "ip": server.ipv6_net, "blocked": False,
                "dns_ptr": [],
            },
            "floating_ips": floating,
            "firewalls": [],
        },
        "private_net": [
            {k: v for k, v in net.items() if k != "name"} for net in server.private_net
        ],
        "server_type": stype.to_api(),
        "location": location_json(server.location),
        "image": image,
        "iso": None,
        "rescue_enabled": False,
        "locked": running is not None,
        "backup_window": "22-02" if server.backups else None,
        "outgoing_traffic": outgoing,
        "ingoing_traffic": int(outgoing * server.workload.params.net_in_ratio),
        "included_traffic": price["included_traffic"],
        "protection": {"delete": server.protection_delete,
                       "rebuild": server.protection_rebuild},
        "labels": dict(server.labels),
        "volumes": list(server.volume_ids),
        "load_balancers": list(server.load_balancer_ids),
        "primary_disk_size": server.primary_disk_size,
        "placement_group": None if group is None else placement_group_json(group),
    }


def placement_group_json(g: PlacementGroup) -> dict[str, Any]:
    """As ``GET /placement_groups`` lists it and a server embeds it."""
    return {"id": g.id, "name": g.name, "type": g.type, "servers": list(g.server_ids),
            "labels": dict(g.labels), "created": iso(g.created)}


def volume_json(v: Volume) -> dict[str, Any]:
    return {
        "id": v.id, "name": v.name, "size": v.size_gb, "server": v.server_id,
        "location": location_json(v.location), "status": "available",
        "created": iso(v.created), "format": "ext4",
        "linux_device": f"/dev/disk/by-id/scsi-0HC_Volume_{v.id}",
        "protection": {"delete": False}, "labels": dict(v.labels),
    }


def primary_ip_json(p: PrimaryIP) -> dict[str, Any]:
    return {
        "id": p.id, "name": p.name, "type": p.type, "ip": p.ip,
        # Since 2026-08 an unassigned Primary IP says so (shared/reference/hetzner-api.md).
        "assignee_id": p.assignee_id,
        "assignee_type": "server" if p.assignee_id is not None else "unassigned",
        "auto_delete": p.auto_delete,
        "blocked": False, "created": iso(p.created), "location": location_json(p.location),
        "dns_ptr": [], "protection": {"delete": False}, "labels": dict(p.labels),
    }


def floating_ip_json(f: FloatingIP) -> dict[str, Any]:
    return {
        "id": f.id, "name": f.name, "description": None, "type": f.type, "ip": f.ip,
        "server": f.server_id, "home_location": location_json(f.home_location),
        "blocked": False, "created": iso(f.created), "dns_ptr": [],
        "protection": {"delete": False}, "labels": dict(f.labels),
    }


def load_balancer_json(lb: LoadBalancer) -> dict[str, Any]:
    lbt = LOAD_BALANCER_TYPES[lb.type_name]
    return {
        "id": lb.id, "name": lb.name, "created": iso(lb.created),
        "load_balancer_type": lbt.to_api(), "location": location_json(lb.location),
        "public_net": {"enabled": True, "ipv4": {"ip": lb.ipv4, "dns_ptr": None},
                       "ipv6": {"ip": None, "dns_ptr": None}},
        "private_net": [],
        "algorithm": {"type": "round_robin"},
        "services": [{"protocol": "http", "listen_port": 80, "destination_port": 80,
                      "proxyprotocol": False, "health_check": None, "http": None}],
        "targets": [{"type": "server", "server": {"id": sid}, "use_private_ip": False,
                     "health_status": []} for sid in lb.target_server_ids],
        "outgoing_traffic": 0, "ingoing_traffic": 0,
        "included_traffic": LOCATIONS[lb.location].included_traffic,
        "protection": {"delete": False}, "labels": dict(lb.labels),
    }


def image_json(i: Image) -> dict[str, Any]:
    return {
        "id": i.id, "type": i.type, "status": "available", "name": None,
        "description": i.description, "image_size": i.image_size_gb, "disk_size": i.disk_size_gb,
        "created": iso(i.created),
        "created_from": None if i.created_from is None else
        {"id": i.created_from[0], "name": i.created_from[1]},
        "bound_to": i.bound_to, "os_flavor": "ubuntu", "os_version": "24.04",
        "architecture": "x86", "rapid_deploy": False, "protection": {"delete": False},
        "deprecated": None, "deleted": None, "labels": dict(i.labels),
    }


# --------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, lo: int = 1) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise invalid_field(name, f"'{raw}' is not an integer") from exc
    if value < lo:
        raise invalid_field(name, f"must be at least {lo}")
    return value


def multi_param(request: Request, name: str) -> list[str]:
    out: list[str] = []
    for raw in request.query_params.getlist(name):
        out.extend(v for v in raw.split(",") if v)
    return out


def _filter_labels(request: Request, items: list[Any],
                   labels_of: Callable[[Any], dict[str, str]]) -> list[Any]:
    selector = request.query_params.get("label_selector")
    if not selector:
        return items
    try:
        match = compile_selector(selector)
    except LabelSelectorError as exc:
        raise invalid_field("label_selector", str(exc)) from exc
    return [i for i in items if match(labels_of(i))]


def sort_items(request: Request, items: list[Any],
               fields: dict[str, Callable[[Any], Any]]) -> list[Any]:
    for raw in reversed(multi_param(request, "sort")):
        field, _, direction = raw.partition(":")
        if field not in fields or direction not in ("", "asc", "desc"):
            raise invalid_field("sort", f"'{raw}' is not a valid sort value")
        items = sorted(items, key=fields[field], reverse=direction == "desc")
    return items


def paginate(request: Request, key: str, items: list[Any],
             render: Callable[[Any], dict[str, Any]]) -> Response:
    page = _int_param(request, "page", 1)
    per_page = min(_int_param(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    total = len(items)
    last_page = max(1, math.ceil(total / per_page))
    fault = pagination_fault(request)
    if fault and fault.mode == "error" and page > fault.after_page:
        return error_response(503, "unavailable", "service temporarily unavailable")
    next_page: int | None = page + 1 if page < last_page else None
    if fault and fault.mode == "truncate" and page >= fault.after_page:
        next_page = None
    chunk = items[(page - 1) * per_page: page * per_page]
    body = {
        key: [render(i) for i in chunk],
        "meta": {"pagination": {
            "page": page, "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": next_page, "last_page": last_page, "total_entries": total,
        }},
    }
    links = []

    def link(p: int, rel: str) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items()
                  if k not in ("page", "per_page")]
        params += [("page", str(p)), ("per_page", str(per_page))]
        return f'<{request.url.replace(query=urlencode(params))}>; rel="{rel}"'

    if page > 1:
        links.append(link(page - 1, "prev"))
    if next_page is not None:
        links.append(link(next_page, "next"))
    links.append(link(last_page, "last"))
    return json_response(body, headers={"Link": ", ".join(links)})


def find_item(items: Iterable[Any], raw_id: str, kind: str) -> Any:
    try:
        wanted = int(raw_id)
    except ValueError as exc:
        raise invalid_field("id", f"'{raw_id}' is not an integer") from exc
    for item in items:
        if item.id == wanted:
            return item
    raise ApiError(404, "not_found", f"{kind} with ID '{raw_id}' not found")


# --------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------


class CloudAPI:
    def __init__(self, sim: Simulator, prefix: str = "/v1") -> None:
        self.sim = sim
        self.prefix = prefix

    def table(self) -> list[tuple[str, str, Callable[..., Any]]]:
        """(path, endpoint, handler); the endpoint names the method: ``GET /servers``."""
        return [
            ("/servers", "GET /servers", self.list_servers),
            ("/servers/{id}", "GET /servers/{id}", self.get_server),
            ("/servers/{id}/metrics", "GET /servers/{id}/metrics", self.server_metrics),
            ("/server_types", "GET /server_types", self.list_server_types),
            ("/server_types/{id}", "GET /server_types/{id}", self.get_server_type),
            ("/pricing", "GET /pricing", self.pricing),
            ("/locations", "GET /locations", self.list_locations),
            ("/locations/{id}", "GET /locations/{id}", self.get_location),
            ("/volumes", "GET /volumes", self.list_volumes),
            ("/volumes/{id}", "GET /volumes/{id}", self.get_volume),
            ("/primary_ips", "GET /primary_ips", self.list_primary_ips),
            ("/primary_ips/{id}", "GET /primary_ips/{id}", self.get_primary_ip),
            ("/floating_ips", "GET /floating_ips", self.list_floating_ips),
            ("/floating_ips/{id}", "GET /floating_ips/{id}", self.get_floating_ip),
            ("/load_balancers", "GET /load_balancers", self.list_load_balancers),
            ("/load_balancers/{id}", "GET /load_balancers/{id}", self.get_load_balancer),
            ("/load_balancer_types", "GET /load_balancer_types", self.list_lb_types),
            ("/images", "GET /images", self.list_images),
            ("/images/{id}", "GET /images/{id}", self.get_image),
            ("/placement_groups", "GET /placement_groups", self.list_placement_groups),
            ("/placement_groups/{id}", "GET /placement_groups/{id}", self.get_placement_group),
        ]

    def routes(self) -> list[Route]:
        p = self.prefix
        routes = [Route(p + path, self._wrap(name, fn), methods=[name.split()[0]], name=name)
                  for path, name, fn in self.table()]
        routes.append(Route(p + "/{rest:path}", self._wrap("unknown", self.not_found),
                            methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))
        return routes

    def _wrap(self, endpoint: str, fn: Callable[[Request, CloudProject], Any]) -> Any:
        sim = self.sim

        async def handler(request: Request) -> Response:
            project: CloudProject | None = None
            response: Response
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            project = sim.fleet.project_by_token(token) if token else None
            pname = project.name if project else "-"
            faults = sim.faults.matching("cloud", request.url.path,
                                         project.name if project else None)
            request.state.faults = faults
            pre = await apply_pre_faults(
                faults,
                lambda f: error_response(f.status, ERROR_CODES[f.status],
                                         f"injected {f.status} error"),
                lambda f: self._storm(project, f),
                sim.faults.active,
            )
            if pre is not None:
                response = pre
            elif project is None:
                response = error_response(401, "unauthorized", "unable to authenticate")
            else:
                decision = sim.buckets[project.name].take()
                if not decision.allowed:
                    response = error_response(
                        429, "rate_limit_exceeded",
                        f"limit of {decision.limit} requests per hour reached",
                        headers=decision.headers())
                else:
                    try:
                        if request.method != "GET":
                            if token in project.read_only_tokens:
                                raise ApiError(401, "token_readonly",
                                               "the token is only allowed to perform GET "
                                               "requests")
                            request.state.body = await request.body()
                        response = fn(request, project)
                    except ApiError as exc:
                        response = exc.response()
                    response.headers.update(decision.headers())
                    response = post_faults(faults, response)
            sim.count("cloud", endpoint, pname, response.status_code)
            return response

        return handler

    def _storm(self, project: CloudProject | None, fault: Fault) -> Response:
        now = self.sim.clock()
        limit = project.rate_limit if project else 3600
        until = fault.created + fault.duration if fault.duration else now + 60
        decision = RateDecision(False, limit, 0, math.ceil(until))
        return error_response(429, "rate_limit_exceeded",
                              f"limit of {limit} requests per hour reached",
                              headers=decision.headers())

    # --- servers ------------------------------------------------------
    def list_servers(self, request: Request, project: CloudProject) -> Response:
        items = list(project.servers)
        name = request.query_params.get("name")
        if name:
            items = [s for s in items if s.name == name]
        statuses = multi_param(request, "status")
        bad = [s for s in statuses if s not in ("initializing", "starting", "running", "stopping",
                                                "off", "deleting", "migrating", "rebuilding",
                                                "unknown")]
        if bad:
            raise invalid_field("status", f"'{bad[0]}' is not a valid server status")
        if statuses:
            items = [s for s in items if s.status in statuses]
        items = _filter_labels(request, items, lambda s: s.labels)
        items = sort_items(request, items, {"id": lambda s: s.id, "name": lambda s: s.name,
                                       "created": lambda s: s.created})
        now = self.sim.clock()
        return paginate(request, "servers", items,
                        lambda s: server_json(s, project, self.sim, now))

    def get_server(self, request: Request, project: CloudProject) -> Response:
        server = find_item(project.servers, request.path_params["id"], "server")
        return json_response({"server": server_json(server, project, self.sim, self.sim.clock())})

    def server_metrics(self, request: Request, project: CloudProject) -> Response:
        server: CloudServer = find_item(project.servers, request.path_params["id"], "server")
        q = request.query_params
        types = multi_param(request, "type")
        if not types:
            raise invalid_field("type", "is required")
        for t in types:
            if t not in METRIC_TYPES:
                raise invalid_field("type", f"'{t}' is not one of {', '.join(METRIC_TYPES)}")
        if not q.get("start"):
            raise invalid_field("start", "is required")
        if not q.get("end"):
            raise invalid_field("end", "is required")
        start, end = parse_iso(q["start"], "start"), parse_iso(q["end"], "end")
        if end <= start:
            raise invalid_field("end", "must be after start")
        span = end - start
        cap = self.sim.settings.metrics_point_cap
        if q.get("step"):
            try:
                step = float(q["step"])
            except ValueError as exc:
                raise invalid_field("step", f"'{q['step']}' is not a number") from exc
            if step <= 0 or not math.isfinite(step):
                raise invalid_field("step", "must be a positive number of seconds")
        else:
            step = max(60.0, math.ceil(span / cap))
        if math.ceil(span / step) > cap:
            step = float(math.ceil(span / cap))
        if step == int(step):
            step = int(step)
        series = metrics_series(server, types, start, end, step, self.sim.clock(),
                                self.sim.settings.retention_seconds)
        return json_response({"metrics": {
            "start": iso(start), "end": iso(end), "step": step, "time_series": series}})

    # --- catalogue ----------------------------------------------------
    def list_server_types(self, request: Request, project: CloudProject) -> Response:
        items = list(SERVER_TYPES.values())
        name = request.query_params.get("name")
        if name:
            items = [t for t in items if t.name == name]
        return paginate(request, "server_types", items, lambda t: t.to_api())

    def get_server_type(self, request: Request, project: CloudProject) -> Response:
        stype = find_item(SERVER_TYPES_BY_ID.values(), request.path_params["id"], "server_type")
        return json_response({"server_type": stype.to_api()})

    def pricing(self, request: Request, project: CloudProject) -> Response:
        return json_response(catalogue.pricing_document())

    def list_locations(self, request: Request, project: CloudProject) -> Response:
        return paginate(request, "locations", list(LOCATIONS.values()), lambda loc: loc.to_api())

    def get_location(self, request: Request, project: CloudProject) -> Response:
        loc = find_item(LOCATIONS.values(), request.path_params["id"], "location")
        return json_response({"location": loc.to_api()})

    def list_lb_types(self, request: Request, project: CloudProject) -> Response:
        return paginate(request, "load_balancer_types", list(LOAD_BALANCER_TYPES.values()),
                        lambda t: t.to_api())

    # --- costed resources --------------------------------------------
    def list_volumes(self, request: Request, project: CloudProject) -> Response:
        items = _filter_labels(request, list(project.volumes), lambda v: v.labels)
        name = request.query_params.get("name")
        if name:
            items = [v for v in items if v.name == name]
        return paginate(request, "volumes", items, volume_json)

    def get_volume(self, request: Request, project: CloudProject) -> Response:
        volume = find_item(project.volumes, request.path_params["id"], "volume")
        return json_response({"volume": volume_json(volume)})

    def list_primary_ips(self, request: Request, project: CloudProject) -> Response:
        items = _filter_labels(request, list(project.primary_ips), lambda v: v.labels)
        for key in ("name", "ip"):
            value = request.query_params.get(key)
            if value:
                items = [i for i in items if getattr(i, key) == value]
        return paginate(request, "primary_ips", items, primary_ip_json)

    def get_primary_ip(self, request: Request, project: CloudProject) -> Response:
        ip = find_item(project.primary_ips, request.path_params["id"], "primary_ip")
        return json_response({"primary_ip": primary_ip_json(ip)})

    def list_floating_ips(self, request: Request, project: CloudProject) -> Response:
        items = _filter_labels(request, list(project.floating_ips), lambda v: v.labels)
        return paginate(request, "floating_ips", items, floating_ip_json)

    def get_floating_ip(self, request: Request, project: CloudProject) -> Response:
        ip = find_item(project.floating_ips, request.path_params["id"], "floating_ip")
        return json_response({"floating_ip": floating_ip_json(ip)})

    def list_load_balancers(self, request: Request, project: CloudProject) -> Response:
        items = _filter_labels(request, list(project.load_balancers), lambda v: v.labels)
        return paginate(request, "load_balancers", items, load_balancer_json)

    def get_load_balancer(self, request: Request, project: CloudProject) -> Response:
        lb = find_item(project.load_balancers, request.path_params["id"], "load_balancer")
        return json_response({"load_balancer": load_balancer_json(lb)})

    def list_images(self, request: Request, project: CloudProject) -> Response:
        items: list[dict[str, Any]] = SYSTEM_IMAGES + [image_json(i) for i in project.images]
        types = multi_param(request, "type")
        for t in types:
            if t not in ("system", "snapshot", "backup", "app"):
                raise invalid_field("type", f"'{t}' is not a valid image type")
        if types:
            items = [i for i in items if i["type"] in types]
        bound = request.query_params.get("bound_to")
        if bound:
            items = [i for i in items if str(i["bound_to"]) == bound]
        items = _filter_labels(request, items, lambda i: i["labels"])
        return paginate(request, "images", items, lambda i: i)

    def get_image(self, request: Request, project: CloudProject) -> Response:
        try:
            wanted = int(request.path_params["id"])
        except ValueError as exc:
            raise invalid_field("id", "is not an integer") from exc
        for item in SYSTEM_IMAGES + [image_json(i) for i in project.images]:
            if item["id"] == wanted:
                return json_response({"image": item})
        raise ApiError(404, "not_found", f"image with ID '{wanted}' not found")

    def list_placement_groups(self, request: Request, project: CloudProject) -> Response:
        items = _filter_labels(request, list(project.placement_groups), lambda g: g.labels)
        name = request.query_params.get("name")
        if name:
            items = [g for g in items if g.name == name]
        types = multi_param(request, "type")
        for t in types:
            if t not in PLACEMENT_GROUP_TYPES:
                raise invalid_field("type", f"'{t}' is not a valid placement group type")
        if types:
            items = [g for g in items if g.type in types]
        items = sort_items(request, items, {"id": lambda g: g.id, "name": lambda g: g.name,
                                       "created": lambda g: g.created})
        return paginate(request, "placement_groups", items, placement_group_json)

    def get_placement_group(self, request: Request, project: CloudProject) -> Response:
        group = find_item(project.placement_groups, request.path_params["id"], "placement_group")
        return json_response({"placement_group": placement_group_json(group)})

    def not_found(self, request: Request, project: CloudProject) -> Response:
        return error_response(404, "not_found", "not found")


def metrics_series(server: CloudServer, types: list[str], start: float, end: float,
                   step: float, now: float, retention: float) -> dict[str, Any]:
    """Buckets ``[start + k*step, +step)`` clipped to what Hetzner keeps.

    The value at timestamp ``ts`` is the mean over ``[ts, ts + step)`` (the
    last bucket ends at ``end``), clipped to the server's lifetime and the
    30-day retention; buckets with nothing left are omitted.
    """
    lo = max(start, server.created, now - retention)
    hi = min(end, now)
    k = np.arange(0, max(0, math.ceil((end - start) / step)), dtype=np.float64)
    ts = start + k * step
    b0 = np.clip(ts, lo, None)
    b1 = np.clip(np.minimum(ts + step, end), None, hi)
    keep = b1 > b0
    ts, b0, b1 = ts[keep], b0[keep], b1[keep]
    out: dict[str, Any] = {}
    if len(ts) == 0:
        names = []
        if "cpu" in types:
            names.append("cpu")
        if "disk" in types:
            names += [f"disk.0.{m}.{d}" for m in ("iops", "bandwidth") for d in ("read", "write")]
        if "network" in types:
            names += [f"network.0.{m}.{d}" for m in ("pps", "bandwidth") for d in ("in", "out")]
        return {n: {"values": []} for n in names}
    edges = np.empty(len(ts) * 2)
    edges[0::2], edges[1::2] = b0, b1
    # Integrate once over the whole range; each bucket is a difference.
    # The work (in units of the server's original size) is what traffic and disk I/O
    # follow, and CPU percent is that work on the original cores: the same before and
    # after a type change (capped by the cores of the type at each tick).
    cum = server.workload._cumulative("work", np.concatenate(([lo], edges)))[1:]
    means = (cum[1::2] - cum[0::2]) / (b1 - b0)
    w = server.workload
    p = w.params
    stamps = [int(t) if float(t).is_integer() else float(t) for t in ts]

    def values(arr: np.ndarray) -> list[list[Any]]:
        return [[t, repr(float(v))] for t, v in zip(stamps, arr, strict=True)]

    if "cpu" in types:
        out["cpu"] = {"values": values(means * 100.0 * server.original_type.cores)}
    if "disk" in types:
        iops = np.asarray(w.disk_iops(means))
        read, write = iops * p.disk_read_share, iops * (1 - p.disk_read_share)
        out["disk.0.iops.read"] = {"values": values(read)}
        out["disk.0.iops.write"] = {"values": values(write)}
        out["disk.0.bandwidth.read"] = {"values": values(read * p.disk_bytes_per_io)}
        out["disk.0.bandwidth.write"] = {"values": values(write * p.disk_bytes_per_io)}
    if "network" in types:
        bw_out = np.asarray(w.net_out_bps(means))
        bw_in = bw_out * p.net_in_ratio
        out["network.0.pps.in"] = {"values": values(bw_in / p.packet_bytes)}
        out["network.0.pps.out"] = {"values": values(bw_out / p.packet_bytes)}
        out["network.0.bandwidth.in"] = {"values": values(bw_in)}
        out["network.0.bandwidth.out"] = {"values": values(bw_out)}
    return out


__all__ = ["CloudAPI", "ApiError", "metrics_series"]
