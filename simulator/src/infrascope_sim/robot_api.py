"""The simulated Hetzner Robot web service (dedicated servers), read-only.

HTTP Basic auth with the web-service user; 401 on bad credentials, and after
``robot_block_after_failures`` failed logins from one client IP within the
block period that IP is refused for ``robot_block_seconds`` (Robot blocks for
10 minutes after three failures; the exact error code of a blocked IP is not
documented, the simulator answers 403 ``BLOCKED``). ``GET /server`` and
``GET /server/{number}`` are limited to 200 requests per hour and answer 403
``RATE_LIMIT_EXCEEDED`` with ``max_request`` and ``interval`` past it. Robot
answers an empty server list with 404 ``SERVER_NOT_FOUND``, as the real one does.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .catalogue import ROBOT_PRODUCTS
from .faults import Fault
from .fleet import DedicatedServer
from .http import apply_pre_faults, client_ip, json_response, post_faults
from .state import Simulator

_STATUS_CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 500: "INTERNAL_ERROR",
                 502: "BAD_GATEWAY", 503: "MAINTENANCE", 504: "GATEWAY_TIMEOUT"}


def robot_error(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="Webservice"'} if status == 401 else None
    return json_response({"error": {"status": status, "code": code, "message": message, **extra}},
                         status, headers)


def server_json(s: DedicatedServer, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "server_ip": s.ip,
        "server_ipv6_net": s.ipv6_net.split("/")[0],
        "server_number": s.number,
        "server_name": s.name,
        "product": s.product,
        "dc": s.dc,
        "traffic": s.traffic,
        "status": s.status,
        "cancelled": s.cancelled,
        "paid_until": s.paid_until,
        "ip": [s.ip],
        "subnet": [{"ip": s.ipv6_net.split("/")[0], "mask": s.ipv6_net.split("/")[1]}],
    }
    if detail:
        body.update({"reset": True, "rescue": True, "vnc": True, "windows": False,
                     "plesk": False, "cpanel": False, "wol": True, "hot_swap": False,
                     "linked_storagebox": None})
    return {"server": body}


class RobotAPI:
    def __init__(self, sim: Simulator, prefix: str = "/robot") -> None:
        self.sim = sim
        self.prefix = prefix

    def routes(self) -> list[Route]:
        p = self.prefix
        return [
            Route(p + "/server", self._wrap("GET /server", "server", self.list_servers),
                  methods=["GET"]),
            Route(p + "/server/{number}",
                  self._wrap("GET /server/{number}", "server_detail", self.get_server),
                  methods=["GET"]),
            Route(p + "/order/server/product",
                  self._wrap("GET /order/server/product", "product", self.products),
                  methods=["GET"]),
            Route(p + "/{rest:path}", self._wrap("unknown", None, self.not_found),
                  methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    def _authenticate(self, request: Request) -> bool:
        robot = self.sim.fleet.robot
        header = request.headers.get("authorization", "")
        if robot is None or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), robot.user.encode()) and \
            hmac.compare_digest(password.encode(), robot.password.encode())

    def _blocked(self, ip: str) -> bool:
        return self.sim.robot_blocked_until.get(ip, 0.0) > self.sim.clock()

    def _record_failure(self, ip: str) -> None:
        settings = self.sim.settings
        if settings.robot_block_after_failures <= 0:
            return
        now = self.sim.clock()
        recent = [t for t in self.sim.robot_failures.get(ip, [])
                  if t > now - settings.robot_block_seconds] + [now]
        self.sim.robot_failures[ip] = recent
        if len(recent) >= settings.robot_block_after_failures:
            self.sim.robot_blocked_until[ip] = now + settings.robot_block_seconds
            self.sim.robot_failures[ip] = []

    def _wrap(self, endpoint: str, window: str | None,
              fn: Callable[[Request], Response]) -> Any:
        sim = self.sim

        async def handler(request: Request) -> Response:
            faults = sim.faults.matching("robot", request.url.path, None)
            request.state.faults = faults
            ip = client_ip(request)
            pre = await apply_pre_faults(
                faults,
                lambda f: robot_error(f.status, _STATUS_CODES[f.status],
                                      f"injected {f.status} error"),
                self._rate_limited,
                sim.faults.active,
            )
            response: Response
            if pre is not None:
                response = pre
            elif self._blocked(ip):
                response = robot_error(403, "BLOCKED",
                                       "client IP blocked after repeated failed logins")
            elif not self._authenticate(request):
                self._record_failure(ip)
                response = robot_error(401, "UNAUTHORIZED", "Unauthorized")
            elif window is not None and not sim.robot_windows[window].take():
                response = self._rate_limited(None)
            else:
                response = post_faults(faults, fn(request))
            sim.count("robot", endpoint, "robot", response.status_code)
            return response

        return handler

    def _rate_limited(self, fault: Fault | None) -> Response:
        robot = self.sim.fleet.robot
        limit = robot.server_limit_per_hour if robot else 200
        return robot_error(403, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded",
                           max_request=limit, interval=3600)

    def list_servers(self, request: Request) -> Response:
        robot = self.sim.fleet.robot
        servers = robot.servers if robot else []
        if not servers:
            return robot_error(404, "SERVER_NOT_FOUND", "No server found")
        return json_response([server_json(s) for s in servers])

    def get_server(self, request: Request) -> Response:
        robot = self.sim.fleet.robot
        raw = request.path_params["number"]
        for s in robot.servers if robot else []:
            if str(s.number) == raw:
                return json_response(server_json(s, detail=True))
        if not raw.isdigit():
            return robot_error(400, "INVALID_INPUT", "invalid input", invalid=["server-number"],
                               missing=None)
        return robot_error(404, "SERVER_NOT_FOUND", f"server with number {raw} not found")

    def products(self, request: Request) -> Response:
        return json_response([{"product": p.to_api()} for p in ROBOT_PRODUCTS.values()])

    def not_found(self, request: Request) -> Response:
        return robot_error(404, "NOT_FOUND", "Not found")
