"""Test helpers of the recommender core: fleets built by hand, and a fake Prometheus.

``catalogue()`` is a small Hetzner-like catalogue (names, sizes and prices shaped like
the real ones, prices made up but fixed, so savings can be asserted to the cent).
``cloud()``/``dedicated()`` build servers with their cost and 30-day figures;
``fleet()`` puts them together. ``FakePrometheus`` is a real HTTP server on 127.0.0.1
whose answers a test scripts (a function of the request, or canned vectors per
expression).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infrascope_recommender.model import (
    Fleet,
    PlacementGroup,
    Server,
    ServerKey,
    ServerType,
    Service,
    Utilisation,
)

GiB = 1024 ** 3
GB = 1000 ** 3
EU = ("fsn1", "nbg1", "hel1")

# name, cores, memory GiB, disk GB, cpu_type, architecture, monthly price (every location)
_TYPES = [
    ("cx23", 2, 4, 40, "shared", "x86", "3.49"),
    ("cx33", 4, 8, 80, "shared", "x86", "5.99"),
    ("cx43", 8, 16, 160, "shared", "x86", "10.99"),
    ("cx53", 16, 32, 320, "shared", "x86", "20.49"),
    ("cpx22", 2, 4, 80, "shared", "x86", "9.49"),
    ("cax11", 2, 4, 40, "shared", "arm", "4.49"),
    ("cax21", 4, 8, 80, "shared", "arm", "7.99"),
    ("cax31", 8, 16, 160, "shared", "arm", "15.49"),
    ("ccx13", 2, 8, 80, "dedicated", "x86", "14.49"),
    ("ccx23", 4, 16, 160, "dedicated", "x86", "28.99"),
    ("ccx33", 8, 32, 240, "dedicated", "x86", "57.49"),
    ("ccx43", 16, 64, 360, "dedicated", "x86", "114.49"),
]
# legacy: still priced, not orderable (available nowhere), deprecated in the EU
_LEGACY = [
    ("cx22", 2, 4, 40, "shared", "x86", "4.59"),
    ("cx42", 8, 16, 160, "shared", "x86", "18.59"),
]


def catalogue(locations: Iterable[str] = EU) -> dict[str, ServerType]:
    locs = tuple(locations)
    out: dict[str, ServerType] = {}
    for name, cores, mem, disk, cpu_type, arch, price in _TYPES:
        out[name] = ServerType(name, cores, mem * GiB, disk * GB, arch, cpu_type,
                               prices={loc: Decimal(price) for loc in locs},
                               available=set(locs), deprecated=set())
    for name, cores, mem, disk, cpu_type, arch, price in _LEGACY:
        out[name] = ServerType(name, cores, mem * GiB, disk * GB, arch, cpu_type,
                               prices={loc: Decimal(price) for loc in locs},
                               available=set(), deprecated=set(locs))
    return out


TYPES = catalogue()


def util(cpu_avg: float | None = None, cpu_p95: float | None = None,
         cpu_max: float | None = None, cpu_coverage: float | None = None,
         mem_avg: float | None = None, mem_p95: float | None = None,
         mem_max: float | None = None, mem_coverage: float | None = None,
         via: str | None = None, tier: str | None = None,
         net_in: float | None = 1500.0, net_out: float | None = 2500.0,
         cpu_daily_peak: float | None = None) -> Utilisation:
    """30-day figures. Missing CPU (memory) figures default from the given ones
    (avg = p95, max = p95), coverage to 1.0; memory figures imply ``via="agent"``.
    Traffic (bytes/s; with CPU figures only): a quiet server's by default, ``None``
    for not measured; p95 and max = the average."""
    if cpu_avg is not None or cpu_p95 is not None:
        cpu_p95 = cpu_avg if cpu_p95 is None else cpu_p95
        cpu_avg = cpu_p95 if cpu_avg is None else cpu_avg
        cpu_max = cpu_p95 if cpu_max is None else cpu_max
        cpu_coverage = 1.0 if cpu_coverage is None else cpu_coverage
    if mem_avg is not None or mem_p95 is not None:
        mem_p95 = mem_avg if mem_p95 is None else mem_p95
        mem_avg = mem_p95 if mem_avg is None else mem_avg
        mem_max = mem_p95 if mem_max is None else mem_max
        mem_coverage = 1.0 if mem_coverage is None else mem_coverage
        via = via or "agent"
    if cpu_p95 is None or net_in is None or net_out is None:
        net_in = net_out = None
    return Utilisation(cpu_avg=cpu_avg, cpu_max=cpu_max, cpu_p95=cpu_p95,
                       cpu_coverage=cpu_coverage, memory_avg=mem_avg, memory_max=mem_max,
                       memory_p95=mem_p95, memory_coverage=mem_coverage,
                       network_in_avg=net_in, network_out_avg=net_out,
                       network_in_p95=net_in, network_out_p95=net_out,
                       network_in_max=net_in, network_out_max=net_out,
                       network_coverage=None if net_in is None else cpu_coverage,
                       via=via or ("cloud" if cpu_p95 is not None else None), tier=tier,
                       cpu_daily_peak=cpu_daily_peak)


def cloud(server_id: int | str, name: str, server_type: str = "cx33", *,
          location: str = "fsn1", project: str = "webshop",
          utilisation: Utilisation | None = None, backups: bool = False,
          ipv4: str | None = "0.50", cost: str | None = None, disk_gb: int | None = None,
          labels: dict[str, str] | None = None, status: str = "running",
          disk_used_gb: float | None = None, services: list[Service] | None = None,
          types: dict[str, ServerType] | None = None, backup_ratio: str = "0.2",
          image: str = "", placement_group: PlacementGroup | None = None) -> Server:
    """A Cloud server priced like the exporter does: type price (+ backups) + IPv4.

    ``cost`` overrides the server component (an older price the server kept).
    """
    t = (types or TYPES)[server_type]
    server_part = Decimal(cost) if cost is not None else t.prices[location]
    breakdown = {"server": server_part}
    if backups:
        breakdown["backup"] = server_part * Decimal(backup_ratio)
    if ipv4 is not None:
        breakdown["primary_ipv4"] = Decimal(ipv4)
    monthly = sum(breakdown.values(), Decimal(0))
    return Server(
        image=image,
        key=ServerKey("cloud", str(server_id)), name=name, server_type=server_type,
        location=location, project=project, architecture=t.architecture,
        cpu_type=t.cpu_type, status=status, labels=dict(labels or {}), cores=t.cores,
        memory_bytes=t.memory_bytes,
        disk_bytes=(disk_gb * GB) if disk_gb is not None else t.disk_bytes,
        disk_used_bytes=int(disk_used_gb * GB) if disk_used_gb is not None else None,
        backups=backups, monthly_cost=monthly, cost_breakdown=breakdown,
        total_monthly_cost=monthly, utilisation=utilisation or Utilisation(),
        services=list(services or []), placement_group=placement_group)


def dedicated(number: int | str, name: str, product: str = "EX44", *,
              price: str | None = "49.00", datacenter: str = "FSN1-DC14", cores: int | None = 8,
              memory_gib: int | None = 64, disk_used_gb: float | None = 100,
              utilisation: Utilisation | None = None, labels: dict[str, str] | None = None,
              services: list[Service] | None = None) -> Server:
    monthly = Decimal(price) if price is not None else None
    return Server(
        key=ServerKey("dedicated", str(number)), name=name, server_type=product,
        location=datacenter.split("-")[0].lower(), datacenter=datacenter,
        architecture="x86", cpu_type="dedicated", status="ready", labels=dict(labels or {}),
        cores=cores, memory_bytes=memory_gib * GiB if memory_gib is not None else None,
        disk_used_bytes=int(disk_used_gb * GB) if disk_used_gb is not None else None,
        monthly_cost=monthly, cost_breakdown={"server": monthly} if monthly is not None else {},
        total_monthly_cost=monthly, utilisation=utilisation or Utilisation(),
        services=list(services or []))


def fleet(*servers: Server, types: dict[str, ServerType] | None = None,
          backup_ratio: dict[str, Decimal] | None = None) -> Fleet:
    ratio = backup_ratio if backup_ratio is not None else {
        s.project: Decimal("0.2") for s in servers if s.project}
    return Fleet(servers={s.key: s for s in servers},
                 types=types if types is not None else catalogue(),
                 backup_ratio=ratio, loaded_at=1_760_000_000.0)


# --------------------------------------------------------------------- fake Prometheus

@dataclass
class Request:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]


def ok(result: list[dict[str, Any]], result_type: str = "vector") -> Reply:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def error(status: int, error_type: str, message: str) -> Reply:
    body = {"status": "error", "errorType": error_type, "error": message}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@dataclass
class FakePrometheus:
    """A real HTTP server on 127.0.0.1 answering ``/api/v1/*`` with ``handler``."""

    handler: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[FakePrometheus]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parsed = urllib.parse.urlsplit(self.path)
                query = parsed.query if self.command == "GET" else body
                form = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
                request = Request(self.command, parsed.path, form, dict(self.headers.items()))
                fake.requests.append(request)
                status, headers, payload = fake.handler(request)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def canned(responses: dict[str, list[dict[str, Any]]]) -> Callable[[Request], Reply]:
    """Answer each known expression with its vector; anything else is a bad query."""
    def handler(request: Request) -> Reply:
        expr = request.form.get("query", "")
        if expr in responses:
            return ok(responses[expr])
        return error(400, "bad_data", f"unexpected query {expr!r}")
    return handler


def sample(name: str | None, value: str, **labels: str) -> dict[str, Any]:
    """One instant-vector element as Prometheus serialises it."""
    metric = dict(labels)
    if name is not None:
        metric["__name__"] = name
    return {"metric": metric, "value": [1_760_000_000, value]}
