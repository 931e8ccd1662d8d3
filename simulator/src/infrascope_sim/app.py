"""The simulator's ASGI application: Cloud, Robot, agents and the control API."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from infrascope_core.exposition import TEXT_CONTENT_TYPE, TextExposition

from .agents import AgentsAPI
from .cloud_api import parse_iso
from .cloud_writes import CloudWriteAPI
from .faults import FaultError, fault_from_dict
from .fleet import CloudServer
from .http import json_response
from .robot_api import RobotAPI
from .state import Simulator

CLOUD_PREFIX = "/v1"
ROBOT_PREFIX = "/robot"
AGENTS_PREFIX = "/agents"


def _control_error(message: str, status: int = 400) -> Response:
    return json_response({"error": {"code": "invalid_input", "message": message}}, status)


class ControlAPI:
    """``/_sim``: inspect and steer the simulator (not part of Hetzner's APIs)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[Route]:
        return [
            Route("/_sim/stats", self.stats, methods=["GET"]),
            Route("/_sim/stats/reset", self.reset_stats, methods=["POST"]),
            Route("/_sim/metrics", self.metrics, methods=["GET"]),
            Route("/_sim/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/faults/{id:int}", self.delete_fault, methods=["DELETE"]),
            Route("/_sim/ratelimit", self.ratelimits, methods=["GET"]),
            Route("/_sim/ratelimit/{project}", self.set_ratelimit, methods=["PUT"]),
            Route("/_sim/robot/unblock", self.robot_unblock, methods=["POST"]),
            Route("/_sim/fleet", self.fleet, methods=["GET"]),
            Route("/_sim/expected/{source}/{server_id:int}", self.expected, methods=["GET"]),
        ]

    async def stats(self, request: Request) -> Response:
        return json_response(self.sim.stats())

    async def reset_stats(self, request: Request) -> Response:
        self.sim.requests.clear()
        return json_response({"ok": True})

    async def metrics(self, request: Request) -> Response:
        out = TextExposition()
        out.family("infrascope_sim_requests_total", "counter",
                   "Requests the simulator answered.",
                   [({"api": api, "endpoint": endpoint, "project": project,
                      "code": str(status)}, n)
                    for (api, endpoint, project, status), n in sorted(self.sim.requests.items())])
        return PlainTextResponse(out.render(), media_type=TEXT_CONTENT_TYPE)

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.sim.faults.clear()
            return json_response({"faults": []})
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
            except json.JSONDecodeError as exc:
                return _control_error(f"body is not JSON: {exc}")
            specs = body if isinstance(body, list) else [body]
            try:
                faults = [fault_from_dict(spec) for spec in specs]
            except FaultError as exc:
                return _control_error(str(exc))
            added = [self.sim.faults.add(f).to_dict() for f in faults]
            return json_response({"faults": added}, 201)
        return json_response({"faults": [f.to_dict() for f in self.sim.faults.faults]})

    async def delete_fault(self, request: Request) -> Response:
        if self.sim.faults.remove(request.path_params["id"]):
            return json_response({"ok": True})
        return _control_error("no such fault", 404)

    async def ratelimits(self, request: Request) -> Response:
        out = {}
        for name, bucket in self.sim.buckets.items():
            d = bucket.peek()
            out[name] = {"limit": d.limit, "remaining": d.remaining, "reset": d.reset}
        return json_response(out)

    async def set_ratelimit(self, request: Request) -> Response:
        bucket = self.sim.buckets.get(request.path_params["project"])
        if bucket is None:
            return _control_error("no such project", 404)
        try:
            body = json.loads(await request.body())
            bucket.set_remaining(float(body["remaining"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return _control_error('body must be {"remaining": <number>}')
        d = bucket.peek()
        return json_response({"limit": d.limit, "remaining": d.remaining, "reset": d.reset})

    async def robot_unblock(self, request: Request) -> Response:
        self.sim.robot_blocked_until.clear()
        self.sim.robot_failures.clear()
        return json_response({"ok": True})

    async def fleet(self, request: Request) -> Response:
        return json_response(self.sim.fleet.summary())

    async def expected(self, request: Request) -> Response:
        """What the workload model says for a window: the oracle tests compare against."""
        server = self.sim.fleet.find(request.path_params["source"],
                                     request.path_params["server_id"])
        if server is None:
            return _control_error("no such server", 404)
        q = request.query_params
        try:
            start = parse_iso(q["start"], "start")
            end = parse_iso(q["end"], "end")
        except Exception:  # noqa: BLE001 - any bad input is the caller's
            return _control_error("start and end (ISO 8601) are required")
        if end <= start:
            return _control_error("end must be after start")
        cpu = server.workload.mean_cpu(start, end)
        body: dict[str, Any] = {
            "cores": server.cores, "cpu_ratio_mean": cpu, "cpu_cores_used_mean": cpu * server.cores,
            "memory_ratio_mean": server.workload.mean_mem(start, end),
            "memory_bytes": server.memory_bytes,
            "outgoing_bytes": server.workload.outgoing_bytes(start, end),
        }
        if isinstance(server, CloudServer):
            # As the Cloud API computes it: the work on the original cores (the same
            # as cpu × cores until a type change).
            work = server.workload.integrate("work", start, end) / (end - start)
            body["cloud_cpu_percent_mean"] = work * server.original_type.cores * 100
        return json_response(body)


def landing_page(sim: Simulator) -> str:
    projects = "".join(f"<li>{p.name}: {len(p.servers)} servers</li>" for p in sim.fleet.projects)
    dedicated = len(sim.fleet.robot.servers) if sim.fleet.robot else 0
    return f"""<!doctype html><html><head><title>InfraScope Hetzner API simulator</title></head>
<body><h1>InfraScope Hetzner API simulator</h1>
<p>Fleet <b>{sim.fleet.name}</b>.</p>
<ul>
<li>Cloud API: <a href="{CLOUD_PREFIX}/servers">{CLOUD_PREFIX}</a> (bearer token of a project)
<ul>{projects}</ul></li>
<li>Robot API: <a href="{ROBOT_PREFIX}/server">{ROBOT_PREFIX}</a> ({dedicated} servers,
basic auth)</li>
<li>Simulated agents: <a href="{AGENTS_PREFIX}/sd">{AGENTS_PREFIX}/sd</a></li>
<li>Control: <a href="/_sim/stats">/_sim/stats</a>, <a href="/_sim/faults">/_sim/faults</a>,
<a href="/_sim/metrics">/_sim/metrics</a></li>
</ul></body></html>
"""


def create_app(sim: Simulator) -> Starlette:
    async def landing(request: Request) -> Response:
        return HTMLResponse(landing_page(sim))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    routes: list[Any] = [Route("/", landing), Route("/healthz", healthz)]
    routes += ControlAPI(sim).routes()
    routes += AgentsAPI(sim, AGENTS_PREFIX).routes()
    routes += RobotAPI(sim, ROBOT_PREFIX).routes()
    routes += CloudWriteAPI(sim, CLOUD_PREFIX).routes()
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app
