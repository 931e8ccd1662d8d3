"""The Cloud API's writes: create and delete servers, power and type changes, protection,
snapshots — each answered with an action (``actions.py``), as Hetzner documents them.

What a change does to the fleet is applied when it is requested, under the simulator's
lock, by replacing lists rather than editing them in place (a reader iterating the
fleet in another thread sees the old list or the new one, never half of it). Errors
are the documented ones: ``invalid_input`` (400), ``json_error`` (400),
``token_readonly`` (401, in the request wrapper), ``not_found`` (404),
``uniqueness_error`` (409), ``invalid_server_type`` and ``server_not_stopped`` (422),
``locked`` and ``protected`` (423).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .actions import Action
from .catalogue import LOCATIONS, SERVER_TYPES, SERVER_TYPES_BY_ID, ServerType
from .cloud_api import (
    SYSTEM_IMAGES,
    CloudAPI,
    find_item,
    image_json,
    multi_param,
    paginate,
    server_json,
    sort_items,
)
from .errors import ApiError, invalid_field
from .fleet import (
    CloudProject,
    CloudServer,
    FleetError,
    Image,
    PrimaryIP,
    check_labels,
    stable_seed,
)
from .http import json_response
from .state import Simulator
from .workload import PROFILES, Workload

POWER_COMMANDS = {  # path → (command, status afterwards or None: unchanged, while running)
    "poweron": ("start_server", "running", "starting"),
    "poweroff": ("stop_server", "off", "stopping"),
    "shutdown": ("shutdown_server", "off", "stopping"),
    "reboot": ("reboot_server", None, "starting"),
    "reset": ("reset_server", None, "starting"),
}
NEW_SERVER_PROFILE = "idle"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_NEW_IPV4_BASE = ipaddress.IPv4Address("49.13.0.0")


# --------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------


def json_body(request: Request) -> dict[str, Any]:
    raw = getattr(request.state, "body", b"") or b"{}"
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "json_error", f"invalid JSON in the request body: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "json_error", "the request body must be a JSON object")
    return body


def _bool_field(body: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid_field(name, "is required" if value is None else "must be a boolean")
    return value


def _server_type(ref: Any) -> ServerType:
    """A server type by name or id (what ``id_or_name`` sends)."""
    stype = None
    if isinstance(ref, str) and not ref.isdigit():
        stype = SERVER_TYPES.get(ref)
    elif isinstance(ref, (int, str)) and not isinstance(ref, bool):
        stype = SERVER_TYPES_BY_ID.get(int(ref))
    if stype is None:
        raise invalid_field("server_type", f"server type {ref!r} not found")
    return stype


def _location(body: dict[str, Any], stype: ServerType) -> str:
    """``location`` (name or id) or ``datacenter`` (``fsn1-dc14``: its location); without
    either, the first location where the type is available, as Hetzner picks one."""
    if body.get("location") is not None:
        ref, field = body["location"], "location"
    elif body.get("datacenter") is not None:
        ref, field = str(body["datacenter"]).split("-")[0], "datacenter"
    else:
        return stype.locations[0]
    for loc in LOCATIONS.values():
        if str(ref) in (loc.name, str(loc.id)):
            return loc.name
    raise invalid_field(field, f"{field} {ref!r} not found")


def _type_unfit(server_type: ServerType, location: str) -> str | None:
    """Why a type cannot be ordered in a location, or None."""
    if location not in server_type.locations:
        return f"server type {server_type.name} is not available in {location}"
    if server_type.legacy:
        return f"server type {server_type.name} is deprecated"
    return None


# --------------------------------------------------------------------------
# The endpoints
# --------------------------------------------------------------------------


class CloudWriteAPI(CloudAPI):
    """The Cloud API with its writes and actions (the reads are ``CloudAPI``'s)."""

    def __init__(self, sim: Simulator, prefix: str = "/v1") -> None:
        super().__init__(sim, prefix)
        self._next_ids: dict[str, int] = {}

    def table(self) -> list[tuple[str, str, Callable[..., Any]]]:
        power: list[tuple[str, str, Callable[..., Any]]] = [
            (f"/servers/{{id}}/actions/{name}", f"POST /servers/{{id}}/actions/{name}",
             self._power(name)) for name in POWER_COMMANDS
        ]
        return [
            ("/servers", "POST /servers", self.create_server),
            ("/servers/{id}", "DELETE /servers/{id}", self.delete_server),
            ("/servers/{id}/actions", "GET /servers/{id}/actions", self.list_server_actions),
            ("/servers/{id}/actions/{action_id}", "GET /servers/{id}/actions/{action_id}",
             self.get_server_action),
            *power,
            ("/servers/{id}/actions/change_type", "POST /servers/{id}/actions/change_type",
             self.change_type),
            ("/servers/{id}/actions/change_protection",
             "POST /servers/{id}/actions/change_protection", self.change_protection),
            ("/servers/{id}/actions/create_image", "POST /servers/{id}/actions/create_image",
             self.create_image),
            ("/actions/{id}", "GET /actions/{id}", self.get_action),
            ("/servers/actions/{id}", "GET /servers/actions/{id}", self.get_any_server_action),
            *super().table(),
        ]

    # --- helpers ------------------------------------------------------
    def _new_id(self, kind: str) -> int:
        """The next id of a kind: above every id the fleet already has (ids are never
        reused within one simulator)."""
        if kind not in self._next_ids:
            projects = self.sim.fleet.projects
            existing = {
                "server": [s.id for p in projects for s in p.servers],
                "primary_ip": [i.id for p in projects for i in p.primary_ips],
                "image": [i.id for p in projects for i in p.images] + [
                    int(i["id"]) for i in SYSTEM_IMAGES],
            }[kind]
            self._next_ids[kind] = max(existing, default=0) + 1
        value = self._next_ids[kind]
        self._next_ids[kind] += 1
        return value

    def _action(self, project: CloudProject, command: str, server: CloudServer | None,
                server_status: str | None = None, after: Action | None = None,
                resources: list[tuple[int, str]] | None = None) -> Action:
        now = self.sim.clock()
        return self.sim.actions.record(
            project.name, command, after.ends if after else now,
            self.sim.settings.action_seconds,
            resources if resources is not None else [(server.id, "server")] if server else [],
            server_status)

    def _action_response(self, action: Action, status: int = 201) -> Response:
        return json_response({"action": action.to_api(self.sim.clock())}, status)

    def _unlocked_server(self, request: Request, project: CloudProject) -> CloudServer:
        server: CloudServer = find_item(project.servers, request.path_params["id"], "server")
        if self.sim.actions.running_on(server.id, self.sim.clock()) is not None:
            raise ApiError(423, "locked",
                           f"server {server.id} is locked: an action is still running")
        return server

    # --- actions ------------------------------------------------------
    def get_action(self, request: Request, project: CloudProject) -> Response:
        return self._action_response(self._find_action(project, request.path_params["id"]),
                                     200)

    def get_any_server_action(self, request: Request, project: CloudProject) -> Response:
        action = self._find_action(project, request.path_params["id"])
        if not any(rtype == "server" for _, rtype in action.resources):
            raise ApiError(404, "not_found", f"action with ID '{action.id}' not found")
        return self._action_response(action, 200)

    def _find_action(self, project: CloudProject, raw_id: str,
                     server: CloudServer | None = None) -> Action:
        try:
            action_id = int(raw_id)
        except ValueError as exc:
            raise invalid_field("id", f"'{raw_id}' is not an integer") from exc
        action = self.sim.actions.get(project.name, action_id)
        if action is None or (server and (server.id, "server") not in action.resources):
            raise ApiError(404, "not_found", f"action with ID '{raw_id}' not found")
        return action

    def list_server_actions(self, request: Request, project: CloudProject) -> Response:
        server = find_item(project.servers, request.path_params["id"], "server")
        now = self.sim.clock()
        items = self.sim.actions.of_server(server.id)
        statuses = multi_param(request, "status")
        for status in statuses:
            if status not in ("running", "success", "error"):
                raise invalid_field("status", f"'{status}' is not a valid action status")
        if statuses:
            items = [a for a in items if a.status(now) in statuses]
        items = sort_items(request, items, {
            "id": lambda a: a.id, "command": lambda a: a.command,
            "status": lambda a: a.status(now), "started": lambda a: a.started,
            "finished": lambda a: a.ends})
        return paginate(request, "actions", items, lambda a: a.to_api(now))

    def get_server_action(self, request: Request, project: CloudProject) -> Response:
        server = find_item(project.servers, request.path_params["id"], "server")
        return self._action_response(
            self._find_action(project, request.path_params["action_id"], server), 200)

    # --- power --------------------------------------------------------
    def _power(self, name: str) -> Callable[[Request, CloudProject], Response]:
        command, after, while_running = POWER_COMMANDS[name]

        def handler(request: Request, project: CloudProject) -> Response:
            with self.sim.lock:
                server = self._unlocked_server(request, project)
                action = self._action(project, command, server, while_running)
                was_running = server.status == "running"
                # A boot (power on from off, reboot, reset) restarts the agent's counters.
                if (after == "running" and not was_running) or (after is None and was_running):
                    server.booted = action.ends
                if after is not None:
                    server.status = after
            return self._action_response(action)

        return handler

    # --- change_type --------------------------------------------------
    def change_type(self, request: Request, project: CloudProject) -> Response:
        body = json_body(request)
        if body.get("server_type") is None:
            raise invalid_field("server_type", "is required")
        stype = _server_type(body["server_type"])
        upgrade_disk = _bool_field(body, "upgrade_disk")
        with self.sim.lock:
            server = self._unlocked_server(request, project)
            if server.status != "off":
                raise ApiError(422, "server_not_stopped",
                               f"server {server.id} is {server.status}: the server must be "
                               "powered off to change its type")
            unfit = _type_unfit(stype, server.location)
            if unfit is None and stype.architecture != server.server_type.architecture:
                unfit = (f"server type {stype.name} is {stype.architecture}, the server is "
                         f"{server.server_type.architecture}")
            if unfit is None and stype.disk_gb < server.primary_disk_size:
                unfit = (f"the disk of {stype.name} ({stype.disk_gb} GB) is smaller than the "
                         f"server's disk ({server.primary_disk_size} GB): disks cannot shrink")
            if unfit is not None:
                raise ApiError(422, "invalid_server_type", unfit,
                               {"fields": [{"name": "server_type", "messages": [unfit]}]})
            action = self._action(project, "change_server_type", server, "migrating")
            server.change_type(stype, self.sim.clock())
            if upgrade_disk:
                server.primary_disk_size = stype.disk_gb
        return self._action_response(action)

    # --- protection ---------------------------------------------------
    def change_protection(self, request: Request, project: CloudProject) -> Response:
        body = json_body(request)
        delete = body.get("delete")
        rebuild = body.get("rebuild")
        for name, value in (("delete", delete), ("rebuild", rebuild)):
            if value is not None and not isinstance(value, bool):
                raise invalid_field(name, "must be a boolean")
        with self.sim.lock:
            server = self._unlocked_server(request, project)
            action = self._action(project, "change_protection", server)
            if delete is not None:
                server.protection_delete = delete
            if rebuild is not None:
                server.protection_rebuild = rebuild
        return self._action_response(action)

    # --- delete -------------------------------------------------------
    def delete_server(self, request: Request, project: CloudProject) -> Response:
        with self.sim.lock:
            server = self._unlocked_server(request, project)
            if server.protection_delete:
                raise ApiError(423, "protected",
                               f"server {server.id} is protected against deletion "
                               "(change_protection delete=false first)")
            action = self._action(project, "delete_server", server)
            remove_server(project, server)
            self.sim.forget_server(server.id)
        return self._action_response(action, 200)

    # --- create_image -------------------------------------------------
    def create_image(self, request: Request, project: CloudProject) -> Response:
        body = json_body(request)
        kind = body.get("type", "snapshot")
        if kind not in ("snapshot", "backup"):
            raise invalid_field("type", f"'{kind}' is not snapshot or backup")
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid_field("description", "must be a string")
        try:
            labels = check_labels(body.get("labels") or {}, "labels")
        except FleetError as exc:
            raise invalid_field("labels", str(exc)) from exc
        with self.sim.lock:
            server = self._unlocked_server(request, project)
            if kind == "backup" and not server.backups:
                raise ApiError(422, "unsupported_error",
                               f"server {server.id} has no backups enabled")
            now = self.sim.clock()
            # The image holds what the disk uses (billed per GB of image size).
            size = round(server.primary_disk_size * server.workload.params.disk_used_ratio, 2)
            image = Image(self._new_id("image"), kind,
                          description or f"{server.name}-{int(now)}", size,
                          server.primary_disk_size, now, (server.id, server.name),
                          server.id if kind == "backup" else None, labels)
            action = self._action(project, "create_image", server,
                                  resources=[(server.id, "server"), (image.id, "image")])
            project.images = [*project.images, image]
        return json_response({"image": image_json(image),
                              "action": action.to_api(self.sim.clock())}, 201)

    # --- create -------------------------------------------------------
    def create_server(self, request: Request, project: CloudProject) -> Response:
        body = json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not _HOSTNAME.match(name):
            raise invalid_field("name", "must be a valid hostname (RFC 1123)")
        if body.get("server_type") is None:
            raise invalid_field("server_type", "is required")
        stype = _server_type(body["server_type"])
        location = _location(body, stype)
        unfit = _type_unfit(stype, location)
        if unfit is not None:
            raise invalid_field("server_type", unfit)
        image = self._image_name(project, body.get("image"), stype)
        try:
            labels = check_labels(body.get("labels") or {}, "labels")
        except FleetError as exc:
            raise invalid_field("labels", str(exc)) from exc
        start = _bool_field(body, "start_after_create", True)
        public_net = body.get("public_net") or {}
        if not isinstance(public_net, dict):
            raise invalid_field("public_net", "must be an object")
        ssh_keys = body.get("ssh_keys") or []
        with self.sim.lock:
            if any(s.name == name for s in project.servers):
                raise ApiError(409, "uniqueness_error", "server name is already used",
                               {"fields": [{"name": "name"}]})
            group = None
            if body.get("placement_group") is not None:
                group = find_item(project.placement_groups, str(body["placement_group"]),
                                  "placement_group")
            volumes = [find_item(project.volumes, str(v), "volume")
                       for v in body.get("volumes") or []]
            for volume in volumes:
                if volume.server_id is not None or volume.location != location:
                    raise invalid_field("volumes", f"volume {volume.id} is attached or not "
                                                   f"in {location}")
            now = self.sim.clock()
            sid = self._new_id("server")
            server = CloudServer(
                id=sid, name=name, server_type=stype, location=location, created=now,
                labels=labels,
                workload=Workload(PROFILES[NEW_SERVER_PROFILE], stable_seed("cloud", sid),
                                  NEW_SERVER_PROFILE),
                status="running" if start else "off", primary_disk_size=stype.disk_gb,
                image=image, booted=None, placement_group=group.id if group else None)
            self._public_net(project, server, public_net, now)
            for volume in volumes:
                volume.server_id = sid
                server.volume_ids.append(volume.id)
            if group is not None:
                group.server_ids = [*group.server_ids, sid]
            project.servers = [*project.servers, server]
            create = self._action(project, "create_server", server, "initializing")
            next_actions = []
            if start:
                started = self._action(project, "start_server", server, "starting", create)
                server.booted = started.ends
                next_actions.append(started)
        now = self.sim.clock()
        return json_response({
            "server": server_json(server, project, self.sim, now),
            "action": create.to_api(now),
            "next_actions": [a.to_api(now) for a in next_actions],
            "root_password": None if ssh_keys else _root_password(sid),
        }, 201)

    def _image_name(self, project: CloudProject, ref: Any, stype: ServerType) -> str:
        """The system image a server is created from (name or id; a snapshot of the
        project by id counts as its source's image, ``ubuntu-24.04`` in the fleet)."""
        if ref is None or ref == "":
            raise invalid_field("image", "is required")
        for image in SYSTEM_IMAGES:
            if str(ref) in (image["name"], str(image["id"])):
                if image["architecture"] != stype.architecture and str(ref).isdigit():
                    raise invalid_field("image", f"image {ref} is not for "
                                                 f"{stype.architecture}")
                return str(image["name"])
        if any(str(i.id) == str(ref) for i in project.images):
            return "ubuntu-24.04"
        raise invalid_field("image", f"image {ref!r} not found")

    def _public_net(self, project: CloudProject, server: CloudServer,
                    public_net: dict[str, Any], now: float) -> None:
        """Primary IPs: the ones named (unassigned, same location, right family) or new
        ones (auto_delete, billed like every Primary IP)."""
        for family in ("ipv4", "ipv6"):
            if not _bool_field(public_net, f"enable_{family}", True):
                continue
            wanted = public_net.get(family)
            if wanted is not None:
                ip = find_item(project.primary_ips, str(wanted), "primary_ip")
                if ip.assignee_id is not None or ip.type != family or \
                        ip.location != server.location:
                    raise invalid_field(f"public_net.{family}",
                                        f"primary IP {ip.id} is assigned, not {family} or "
                                        f"not in {server.location}")
                ip.assignee_id = server.id
            else:
                pid = self._new_id("primary_ip")
                seq = pid % 65_536
                address = str(_NEW_IPV4_BASE + seq) if family == "ipv4" else \
                    f"2a01:4f8:c0d:{seq:x}::/64"
                ip = PrimaryIP(pid, f"primary_ip-{pid}", family, address, server.location,
                               server.id, now)
                project.primary_ips = [*project.primary_ips, ip]
            if family == "ipv4":
                server.ipv4, server.ipv4_primary_ip_id = ip.ip, ip.id
            else:
                server.ipv6_net, server.ipv6_primary_ip_id = ip.ip, ip.id


def _root_password(server_id: int) -> str:
    """Deterministic (a simulator is reproducible), never a real secret."""
    return "sim-" + hashlib.sha256(f"root:{server_id}".encode()).hexdigest()[:16]


def remove_server(project: CloudProject, server: CloudServer) -> None:
    """What deleting a server does to the rest of the project: its Primary IPs go with it
    when ``auto_delete`` is set and are left unassigned (still billed) otherwise; its
    volumes and Floating IPs are detached, it leaves its load balancers and placement
    group, and its backups are deleted (snapshots stay)."""
    sid = server.id
    project.servers = [s for s in project.servers if s.id != sid]
    ips = []
    for ip in project.primary_ips:
        if ip.assignee_id == sid:
            if ip.auto_delete:
                continue
            ip.assignee_id = None
        ips.append(ip)
    project.primary_ips = ips
    for volume in project.volumes:
        if volume.server_id == sid:
            volume.server_id = None
    for floating in project.floating_ips:
        if floating.server_id == sid:
            floating.server_id = None
    for lb in project.load_balancers:
        if sid in lb.target_server_ids:
            lb.target_server_ids = [t for t in lb.target_server_ids if t != sid]
    for group in project.placement_groups:
        if sid in group.server_ids:
            group.server_ids = [t for t in group.server_ids if t != sid]
    project.images = [i for i in project.images if not (i.type == "backup" and i.bound_to == sid)]


__all__ = ["CloudWriteAPI", "remove_server"]
