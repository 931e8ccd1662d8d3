"""Simulated agents: one node_exporter-format endpoint per fleet server.

Served at ``/agents/{source}/{server_id}/metrics``. Counters are exact
integrals of the server's workload since its last (deterministic) boot, so
``rate(node_cpu_seconds_total{mode!="idle"}[5m])`` summed over modes gives back
the workload's CPU ratio, and ``1 - MemAvailable/MemTotal`` its memory ratio.
``/agents/sd`` lists every simulated agent as a Prometheus HTTP-SD target.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from infrascope_core.contract import DISK_BYTES_PER_GB
from infrascope_core.exposition import TEXT_CONTENT_TYPE, TextExposition

from .fleet import CloudServer, DedicatedServer
from .http import json_response
from .state import Simulator

REBOOT_PERIOD_SECONDS = 40 * 86_400
CPU_MODE_SHARES = {  # share of busy time per mode; idle is the rest
    "user": 0.72, "nice": 0.01, "system": 0.17, "iowait": 0.04, "irq": 0.01, "softirq": 0.03,
    "steal": 0.02,
}

EXT4_OVERHEAD = 0.02
"""Share of a disk that ext4 keeps for itself (inode tables, journal): ``/`` of an N GB
disk is ``N × DISK_BYTES_PER_GB × (1 - EXT4_OVERHEAD)`` bytes, in whole 4 KiB blocks."""

Server = CloudServer | DedicatedServer


def boot_time(server: Server, now: float) -> float:
    """Servers reboot every 40 days after creation (kernel updates), so counters reset;
    a Cloud server also boots when it is powered on through the API."""
    if now <= server.created:
        return server.created
    cycles = math.floor((now - server.created) / REBOOT_PERIOD_SECONDS)
    periodic = server.created + cycles * REBOOT_PERIOD_SECONDS
    # A power-on through the API (after a shutdown or a type change) is a boot too.
    booted = server.booted if isinstance(server, CloudServer) else None
    return booted if booted is not None and periodic < booted <= now else periodic


def nic_name(server: Server) -> str:
    """The server's network interface, as its agent names it."""
    return "eth0" if isinstance(server, CloudServer) else "enp41s0"


def render_agent(server: Server, now: float) -> str:
    """The node_exporter-compatible exposition of one simulated host at ``now``."""
    w = server.workload
    cloud = isinstance(server, CloudServer)
    cores = server.cores
    boot = boot_time(server, now)
    uptime = now - boot
    busy = w.integrate("cpu", boot, now)  # seconds of busy time per CPU
    out = TextExposition()

    shares = dict(CPU_MODE_SHARES)
    if not cloud:  # no hypervisor, no steal
        shares["user"] += shares.pop("steal")
    cpu_samples: list[tuple[dict[str, str], float]] = []
    for cpu in range(cores):
        cpu_samples.append(({"cpu": str(cpu), "mode": "idle"}, round(uptime - busy, 2)))
        for mode, share in shares.items():
            cpu_samples.append(({"cpu": str(cpu), "mode": mode}, round(busy * share, 2)))
    out.family("node_cpu_seconds_total", "counter",
               "Seconds the CPUs spent in each mode.", cpu_samples)

    total = (int(server.memory_bytes * 0.97) // 4096) * 4096
    available = int(total * (1.0 - w.mem_at(now)))
    memory = {
        "MemTotal": total, "MemAvailable": available, "MemFree": int(available * 0.35),
        "Buffers": int(available * 0.05), "Cached": int(available * 0.55),
        "SwapTotal": 0, "SwapFree": 0,
    }
    for field, value in memory.items():
        out.family(f"node_memory_{field}_bytes", "gauge",
                   f"Memory information field {field}_bytes.", [({}, value)])

    disk_bytes = (int(server.disk_gb * DISK_BYTES_PER_GB * (1 - EXT4_OVERHEAD)) // 4096) * 4096
    device = "/dev/sda1" if cloud else "/dev/md2"
    fs = {"device": device, "fstype": "ext4", "mountpoint": "/"}
    used = min(0.99, w.params.disk_used_ratio)
    avail = int(disk_bytes * (1 - used))
    files = disk_bytes // 16384
    for name, help_text, value in [
        ("size_bytes", "Filesystem size in bytes.", disk_bytes),
        ("free_bytes", "Filesystem free space in bytes.", min(disk_bytes, int(avail * 1.05))),
        ("avail_bytes", "Filesystem space available to non-root users in bytes.", avail),
        ("files", "Filesystem total file nodes.", files),
        ("files_free", "Filesystem total free file nodes.", int(files * (1 - used / 2))),
        ("readonly", "Filesystem read-only status.", 0),
    ]:
        out.family(f"node_filesystem_{name}", "gauge", help_text, [(fs, value)])

    nic = nic_name(server)
    sent = w.outgoing_bytes(boot, now)
    received = w.ingoing_bytes(boot, now)
    p = w.params
    for direction, nbytes in (("receive", received), ("transmit", sent)):
        out.family(f"node_network_{direction}_bytes_total", "counter",
                   f"Network device statistic {direction}_bytes.",
                   [({"device": nic}, int(nbytes)), ({"device": "lo"}, int(uptime * 1200))])
        out.family(f"node_network_{direction}_packets_total", "counter",
                   f"Network device statistic {direction}_packets.",
                   [({"device": nic}, int(nbytes / p.packet_bytes)),
                    ({"device": "lo"}, int(uptime * 6))])

    io_seconds = p.disk_iops_base * uptime + p.disk_iops_at_full * w.integrate("work", boot, now)
    disk_dev = "sda" if cloud else "nvme0n1"
    reads = io_seconds * p.disk_read_share
    writes = io_seconds - reads
    for name, help_text, count in [
        ("reads_completed_total", "The total number of reads completed successfully.", reads),
        ("writes_completed_total", "The total number of writes completed successfully.", writes),
        ("read_bytes_total", "The total number of bytes read successfully.",
         reads * p.disk_bytes_per_io),
        ("written_bytes_total", "The total number of bytes written successfully.",
         writes * p.disk_bytes_per_io),
    ]:
        out.family(f"node_disk_{name}", "counter", help_text, [({"device": disk_dev}, int(count))])

    for minutes in (1, 5, 15):
        load = cores * w.mean_cpu(now - 60 * minutes, now)
        out.family(f"node_load{minutes}", "gauge", f"{minutes}m load average.",
                   [({}, round(load, 2))])
    out.family("node_boot_time_seconds", "gauge", "Node boot time, in unixtime.",
               [({}, int(boot))])
    out.family("node_time_seconds", "gauge", "System time in seconds since epoch (1970).",
               [({}, round(now, 3))])
    arm = isinstance(server, CloudServer) and server.server_type.architecture == "arm"
    out.family("node_uname_info", "gauge",
               "Labeled system information as provided by the uname system call.",
               [({"domainname": "(none)", "machine": "aarch64" if arm else "x86_64",
                  "nodename": server.name, "release": "6.8.0-48-generic", "sysname": "Linux",
                  "version": "#48-Ubuntu SMP PREEMPT_DYNAMIC"}, 1)])

    services, ports = [], []
    for svc in server.services:
        labels = {"kind": str(svc.get("kind", "systemd")), "service": str(svc["name"])}
        if svc.get("image"):
            labels["image"] = str(svc["image"])
        if svc.get("compose_project"):
            labels["compose_project"] = str(svc["compose_project"])
        # As the real agent reports them: docker state is the container's, systemd state
        # the unit's active state with the sub state beside it.
        if labels["kind"] == "systemd":
            labels["state"], labels["sub_state"] = "active", "running"
        else:
            labels["state"] = "running"
        services.append((labels, 1.0))
        process = str(svc["name"]).split("@")[0].removesuffix(".service")
        for port in svc.get("ports") or []:
            ports.append(({"port": str(port), "protocol": "tcp", "address": "0.0.0.0",
                           "kind": labels["kind"], "service": str(svc["name"]),
                           "process": process}, 1.0))
    out.family("infrascope_service_info", "gauge",
               "A service found on the host (systemd unit or container).", services)
    out.family("infrascope_listen_port_info", "gauge",
               "A listening socket and the service that owns it.", ports)
    return out.render()


class AgentsAPI:
    def __init__(self, sim: Simulator, prefix: str = "/agents") -> None:
        self.sim = sim
        self.prefix = prefix

    def routes(self) -> list[Route]:
        return [
            Route(self.prefix + "/sd", self.sd, methods=["GET"]),
            Route(self.prefix + "/{source}/{server_id}/metrics", self.metrics, methods=["GET"]),
        ]

    async def metrics(self, request: Request) -> Response:
        source = request.path_params["source"]
        try:
            server_id = int(request.path_params["server_id"])
        except ValueError:
            server_id = -1
        server = self.sim.fleet.find(source, server_id)
        if server is None:
            response: Response = PlainTextResponse("no such simulated server\n", 404)
        else:
            response = Response(render_agent(server, self.sim.clock()),
                                media_type=TEXT_CONTENT_TYPE)
        self.sim.count("agents", "GET /agents/{source}/{server_id}/metrics", source,
                       response.status_code)
        return response

    async def sd(self, request: Request) -> Response:
        host = request.headers.get("host", "127.0.0.1")
        groups: list[dict[str, Any]] = []
        for s in self.sim.fleet.cloud_servers:
            groups.append(self._group(host, "cloud", s.id, s.name))
        if self.sim.fleet.robot:
            for d in self.sim.fleet.robot.servers:
                groups.append(self._group(host, "dedicated", d.number, d.name))
        return json_response(groups)

    def _group(self, host: str, source: str, server_id: int, name: str) -> dict[str, Any]:
        return {"targets": [host], "labels": {
            "__metrics_path__": f"{self.prefix}/{source}/{server_id}/metrics",
            "instance": f"{source}/{server_id}",
            "source": source, "server_id": str(server_id), "server_name": name,
        }}


def loopback_agents(sim: Simulator) -> tuple[dict[str, Server], int]:
    """The servers whose IPv4 address is a loopback one (``127.0.0.0/8``), by address,
    and how many servers have another address. A fleet file can give servers such
    addresses so that their agents are reachable where a real agent would listen —
    on the server's own address — without leaving this machine."""
    by_ip: dict[str, Server] = {}
    others = 0
    servers: list[Server] = list(sim.fleet.cloud_servers)
    if sim.fleet.robot:
        servers += sim.fleet.robot.servers
    for server in servers:
        ip = server.ipv4 if isinstance(server, CloudServer) else server.ip
        if ip and ipaddress.ip_address(ip).is_loopback:
            by_ip[ip] = server
        else:
            others += 1
    return by_ip, others


def create_host_agents_app(sim: Simulator, by_ip: dict[str, Server]) -> Starlette:
    """``/metrics`` of the agent of the server whose address the request came in on
    (one socket per server address, all served by this one application)."""

    async def metrics(request: Request) -> Response:
        local = request.scope.get("server") or ("", 0)
        server = by_ip.get(str(local[0]))
        if server is None:
            return PlainTextResponse("no simulated server has this address\n", 404)
        source = "cloud" if isinstance(server, CloudServer) else "dedicated"
        server_id = server.id if isinstance(server, CloudServer) else server.number
        response = Response(render_agent(server, sim.clock()),
                            media_type=TEXT_CONTENT_TYPE)
        sim.count("agents", "GET /metrics (server address)", f"{source}/{server_id}",
                  response.status_code)
        return response

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


__all__ = ["AgentsAPI", "create_host_agents_app", "loopback_agents", "render_agent",
           "boot_time"]
