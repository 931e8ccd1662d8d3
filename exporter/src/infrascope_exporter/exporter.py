"""The exporter's engine: background refreshes that keep the last good data.

API work happens only here, in one worker thread per Cloud project and one for
Robot, never in a scrape. Each refresh replaces its slice of the state only
when it completed; a failure leaves the previous data in place, flips ``up``
to 0 and counts the outcome, so the exposition never empties. A renderer
thread turns the state into the /metrics bytes (and their gzip) at most every
``render_interval`` seconds, which is all a scrape ever reads — but for the
process's own series (``process_*``, ``python_info``), collected per scrape and
appended to the cached bytes (into the same gzip stream: see :meth:`Exporter.exposition`).
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.exposition import generate_latest

from . import budget
from .api import ApiError, CloudClient, RobotClient, Stopped
from .build import build_info_labels, live_registry
from .config import CloudProject, Config
from .exposition import render
from .health import CREDENTIALS_REJECTED, Health
from .model import (
    CloudServer,
    DedicatedProduct,
    DedicatedServer,
    MetricsSample,
    Pricing,
    RecordError,
    Resource,
    ServerType,
    parse_cloud_server,
    parse_dedicated_server,
    parse_floating_ip,
    parse_load_balancer,
    parse_metrics,
    parse_pricing,
    parse_primary_ip,
    parse_products,
    parse_server_type,
    parse_snapshot,
    parse_volume,
)
from .sd import sd_groups
from .snapshot import ProjectSnapshot, RobotSnapshot, Settings, Snapshot, frozen_map

log = logging.getLogger("infrascope_exporter")


def _open_gzip(body: bytes) -> tuple[bytes, Any]:
    """gzip of ``body`` without its end: (bytes so far, the compressor to finish it)."""
    state = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return state.compress(body) + state.flush(zlib.Z_SYNC_FLUSH), state

RESOURCE_LISTS: list[tuple[str, str, str, Callable[[Any, str], Resource | None],
                           dict[str, str]]] = [
    ("/volumes", "volumes", "volume", parse_volume, {}),
    ("/primary_ips", "primary_ips", "primary_ip", parse_primary_ip, {}),
    ("/floating_ips", "floating_ips", "floating_ip", parse_floating_ip, {}),
    ("/load_balancers", "load_balancers", "load_balancer", parse_load_balancer, {}),
    ("/images", "images", "image", parse_snapshot, {"type": "snapshot"}),
]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class ProjectState:
    servers: list[CloudServer] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    server_types: list[ServerType] = field(default_factory=list)
    pricing: Pricing | None = None
    inventory_at: float | None = None
    pricing_at: float | None = None
    inventory_pages: int = 0
    pricing_pages: int = 0
    metrics: dict[int, MetricsSample] = field(default_factory=dict)
    next_poll: dict[int, float] = field(default_factory=dict)
    metrics_interval: float = 300.0
    inventory_interval: float = 300.0


@dataclass
class RobotState:
    servers: list[DedicatedServer] = field(default_factory=list)
    products: dict[str, DedicatedProduct] | None = None
    servers_at: float | None = None
    products_at: float | None = None


class Exporter:
    """Holds configuration, clients, the last good data and the rendered exposition."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time,
                 backoff_base: float = 1.0,
                 wait: Callable[[float], bool] | None = None) -> None:
        """``clock`` and ``wait`` (sleep up to N seconds, True when stopping) are
        injectable so that a benchmark can run an hour of refreshes in virtual time."""
        self.config = config
        self.clock = clock
        self.health = Health()
        self.stop_event = threading.Event()
        self.wait = wait or self.stop_event.wait
        self.lock = threading.RLock()
        self.projects: dict[str, ProjectState] = {p.name: ProjectState() for p in config.projects}
        self.clients: dict[str, CloudClient] = {
            p.name: CloudClient(p, self.health, timeout=config.http_timeout,
                                budget_share=config.request_budget, clock=clock,
                                stop=self.stop_event, backoff_base=backoff_base,
                                wait=self.wait)
            for p in config.projects
        }
        self.robot = RobotState() if config.robot else None
        self.robot_client = RobotClient(config.robot, self.health, timeout=config.http_timeout,
                                        clock=clock) if config.robot else None
        self.robot_retry_after_auth_failure = 3600.0
        self.rendered = b""
        self.rendered_gzip = gzip.compress(b"")
        self.live_registry = live_registry()
        # The rendering's gzip stream left open (sync-flushed): a scrape copies the
        # compressor and adds the live series, so gzip stays one member, compressed once.
        self._gzip_head = b""
        self._gzip_state = _open_gzip(b"")[1]
        self.rendered_sd = b"[]"
        self.rendered_sd_groups: tuple[dict[str, Any], ...] = ()
        self.settings = settings_from_config(config)
        self.rendered_at: float | None = None
        self.dirty = threading.Event()
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------------
    # Cloud
    # ------------------------------------------------------------------
    def refresh_inventory(self, project: CloudProject) -> None:
        """List servers and costed resources; replace them only if all lists completed."""
        client = self.clients[project.name]
        state = self.projects[project.name]
        started = time.monotonic()
        pages_before = self.health.requests_made("cloud", project.name)
        raw_servers = client.list_all("/servers", "servers", "/servers")
        raw_resources = [(kind, parse, client.list_all(path, key, path, params))
                         for path, key, kind, parse, params in RESOURCE_LISTS]
        servers: list[CloudServer] = []
        for raw in raw_servers:
            try:
                servers.append(parse_cloud_server(raw, project.name, self.config.price_mode))
            except RecordError as exc:
                self.health.skip("cloud", project.name, "server")
                log.warning("skipped record", extra={"event": "record_skipped", "api": "cloud",
                                                     "project": project.name, "reason": str(exc)})
        resources: list[Resource] = []
        for kind, parse, raws in raw_resources:
            for raw in raws:
                try:
                    parsed = parse(raw, project.name)
                except RecordError as exc:
                    self.health.skip("cloud", project.name, kind)
                    log.warning("skipped record", extra={
                        "event": "record_skipped", "api": "cloud", "project": project.name,
                        "reason": str(exc)})
                    continue
                if parsed is not None:
                    resources.append(parsed)
        now = self.clock()
        with self.lock:
            state.servers = servers
            state.resources = resources
            state.inventory_at = now
            state.inventory_pages = self.health.requests_made("cloud", project.name) - \
                pages_before
            known = {s.id for s in servers}
            state.metrics = {k: v for k, v in state.metrics.items() if k in known}
            self._plan(project.name)
        self.health.success("cloud", project.name, now)
        self.health.refreshed("cloud", project.name, "inventory", time.monotonic() - started, now)
        self.dirty.set()

    def refresh_pricing(self, project: CloudProject) -> None:
        client = self.clients[project.name]
        state = self.projects[project.name]
        started = time.monotonic()
        before = self.health.requests_made("cloud", project.name)
        pricing = client.get("/pricing", "/pricing",
                             parse=lambda body: parse_pricing(body, self.config.price_mode))
        types: list[ServerType] = []
        for raw in client.list_all("/server_types", "server_types", "/server_types"):
            try:
                types.append(parse_server_type(raw, self.config.price_mode))
            except RecordError:
                self.health.skip("cloud", project.name, "server_type")
        now = self.clock()
        with self.lock:
            state.pricing = pricing
            state.server_types = types
            state.pricing_at = now
            state.pricing_pages = self.health.requests_made("cloud", project.name) - before
            self._plan(project.name)
        self.health.success("cloud", project.name, now)
        self.health.refreshed("cloud", project.name, "pricing", time.monotonic() - started, now)
        self.dirty.set()

    def _plan(self, project: str) -> None:
        """Recompute intervals from the budget; schedule new servers evenly."""
        state = self.projects[project]
        client = self.clients[project]
        per_hour = client.sustainable_per_hour
        state.inventory_interval = budget.inventory_interval(
            state.inventory_pages, per_hour, self.config.inventory_interval)
        inventory_per_hour = state.inventory_pages * 3600.0 / state.inventory_interval
        pricing_per_hour = state.pricing_pages * 3600.0 / self.config.pricing_interval
        n = len(state.servers) if self.config.cloud_metrics else 0
        state.metrics_interval = budget.metrics_interval(
            n, per_hour, inventory_per_hour, pricing_per_hour, self.config.metrics_interval)
        self.health.planned(project, state.metrics_interval, client.budget_per_hour)
        now = self.clock()
        known = {s.id for s in state.servers}
        state.next_poll = {k: v for k, v in state.next_poll.items() if k in known}
        new = [s.id for s in state.servers if s.id not in state.next_poll]
        for i, sid in enumerate(new):  # spread first polls over one interval
            state.next_poll[sid] = now + state.metrics_interval * i / max(1, len(new))

    def poll_metrics(self, project: CloudProject, server: CloudServer) -> None:
        """One /metrics call: the average over the window since the last poll."""
        state = self.projects[project.name]
        client = self.clients[project.name]
        now = self.clock()
        previous = state.metrics.get(server.id)
        interval = state.metrics_interval
        start = previous.end if previous else now - interval
        start = max(start, now - budget.MAX_METRICS_WINDOW + 60)
        if now - start < 1:
            return
        sample = client.get(f"/servers/{server.id}/metrics", "/servers/{id}/metrics", {
            "type": "cpu,disk,network", "start": iso(start), "end": iso(now),
            "step": budget.window_step(now - start)},
            parse=lambda body: parse_metrics(body, server.id))
        with self.lock:
            if sample is not None:
                state.metrics[server.id] = sample
            state.next_poll[server.id] = now + interval
        self.health.success("cloud", project.name, now)
        self.dirty.set()

    def due_servers(self, project: str, now: float) -> list[CloudServer]:
        state = self.projects[project]
        with self.lock:
            by_id = {s.id: s for s in state.servers}
            due = sorted((t, sid) for sid, t in state.next_poll.items() if t <= now)
            return [by_id[sid] for _, sid in due if sid in by_id]

    # ------------------------------------------------------------------
    # Robot
    # ------------------------------------------------------------------
    def refresh_robot(self) -> None:
        assert self.robot is not None and self.robot_client is not None
        started = time.monotonic()
        def expect_list(body: Any) -> list[Any]:
            if not isinstance(body, list):
                raise RecordError("expected a list of servers")
            return body

        try:
            body = self.robot_client.get("/server", "/server", parse=expect_list)
        except ApiError as exc:
            if exc.kind == "client_error" and exc.code == "SERVER_NOT_FOUND":
                body = []  # Robot answers an empty list with 404 SERVER_NOT_FOUND
            else:
                raise
        servers = []
        for raw in body:
            try:
                servers.append(parse_dedicated_server(raw))
            except RecordError as exc:
                self.health.skip("robot", "robot", "server")
                log.warning("skipped record", extra={"event": "record_skipped", "api": "robot",
                                                     "reason": str(exc)})
        now = self.clock()
        with self.lock:
            self.robot.servers = servers
            self.robot.servers_at = now
        self.health.success("robot", "robot", now)
        self.health.refreshed("robot", "robot", "inventory", time.monotonic() - started, now)
        self.dirty.set()

    def refresh_robot_products(self) -> None:
        assert self.robot is not None and self.robot_client is not None
        products = self.robot_client.get(
            "/order/server/product", "/order/server/product",
            parse=lambda body: parse_products(body, self.config.price_mode))
        now = self.clock()
        with self.lock:
            self.robot.products = products
            self.robot.products_at = now
        self.health.success("robot", "robot", now)
        self.dirty.set()

    # ------------------------------------------------------------------
    # Loops
    # ------------------------------------------------------------------
    def _guard(self, api: str, project: str, what: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except ApiError as exc:
            self.health.failure(api, project, exc.kind, unauthorized=exc.kind == "unauthorized")
            log.warning("refresh failed", extra={"event": "refresh_failed", "api": api,
                                                 "project": project, "what": what,
                                                 "outcome": exc.kind, "reason": str(exc)})
            self.dirty.set()
            return False

    def run_project(self, project: CloudProject) -> None:
        state = self.projects[project.name]
        client = self.clients[project.name]
        next_inventory = next_pricing = self.clock()
        while not self.stop_event.is_set():
            try:
                now = self.clock()
                if now >= next_pricing:
                    ok = self._guard("cloud", project.name, "pricing",
                                     lambda: self.refresh_pricing(project))
                    next_pricing = now + (self.config.pricing_interval if ok else
                                          max(60.0, client.paused_until - now))
                now = self.clock()
                if now >= next_inventory:
                    ok = self._guard("cloud", project.name, "inventory",
                                     lambda: self.refresh_inventory(project))
                    next_inventory = now + (state.inventory_interval if ok else
                                            max(30.0, client.paused_until - now))
                if self.config.cloud_metrics:
                    for server in self.due_servers(project.name, self.clock()):
                        if self.stop_event.is_set() or self.clock() >= next_inventory:
                            break
                        if not self._guard("cloud", project.name, "metrics",
                                           functools.partial(self.poll_metrics, project, server)):
                            with self.lock:
                                state.next_poll[server.id] = max(
                                    self.clock() + 30.0, client.paused_until)
                            if client.paused_until > self.clock():
                                break
                wake = min(next_inventory, next_pricing, *(
                    state.next_poll.values() if self.config.cloud_metrics else [next_inventory]))
                if self.wait(max(0.05, min(5.0, wake - self.clock()))):
                    return
            except Stopped:
                return

    def run_robot(self) -> None:
        next_servers = next_products = self.clock()
        while not self.stop_event.is_set():
            now = self.clock()
            if now >= next_products and self.config.dedicated_prices.default_from_catalogue:
                ok = self._guard("robot", "robot", "products", self.refresh_robot_products)
                next_products = now + (self.config.pricing_interval if ok else 600.0)
            if now >= next_servers:
                ok = self._guard("robot", "robot", "servers", self.refresh_robot)
                if ok:
                    next_servers = now + self.config.robot_interval
                elif self.health.value(CREDENTIALS_REJECTED, api="robot", project="robot"):
                    # Never retry a rejected login soon: Robot blocks the IP after three.
                    next_servers = now + max(self.robot_retry_after_auth_failure,
                                             self.config.robot_interval)
                    assert self.robot_client is not None
                    self.robot_client.paused_until = next_servers - 1
                else:
                    assert self.robot_client is not None
                    next_servers = now + max(60.0, self.robot_client.paused_until - now)
            if self.wait(max(0.05, min(5.0, min(next_servers, next_products) - now))):
                return

    def run_renderer(self) -> None:
        while not self.stop_event.is_set():
            if self.dirty.wait(timeout=1.0):
                self.dirty.clear()
                self.render()
                self.stop_event.wait(self.config.render_interval)

    def snapshot(self) -> Snapshot:
        """Everything a rendering reads, copied under the lock into one frozen value."""
        now = self.clock()
        with self.lock:
            projects = tuple(ProjectSnapshot(
                name, tuple(s.servers), tuple(s.resources), tuple(s.server_types), s.pricing,
                frozen_map(s.metrics)) for name, s in self.projects.items())
            robot = RobotSnapshot(tuple(self.robot.servers),
                                  frozen_map(self.robot.products or {})) if self.robot else None
            render_seconds = self.render_seconds
        live = sum(len(m.samples) for m in self.live_registry.collect())
        return Snapshot(now, self.settings, projects, robot, self.health.snapshot(),
                        render_seconds, live)

    def render(self) -> None:
        """Render /metrics and /sd from a snapshot (the renderer thread, never a scrape)."""
        started = time.monotonic()
        snapshot = self.snapshot()
        rendering = render(snapshot)
        for (api, project, kind), n in rendering.unpriced.items():
            self.health.skip(api, project, kind, n)
        groups = sd_groups(snapshot)
        sd = json.dumps(groups, separators=(",", ":")).encode()
        body = rendering.text.encode()
        head, state = _open_gzip(body)
        compressed = head + state.copy().flush()
        with self.lock:
            self.rendered, self.rendered_gzip, self.rendered_sd = body, compressed, sd
            self.rendered_sd_groups = tuple(groups)
            self._gzip_head, self._gzip_state = head, state
            self.rendered_at = self.clock()
            self.render_seconds = time.monotonic() - started
            self.series_count = rendering.series

    render_seconds: float = 0.0
    series_count: int = 0

    def exposition(self, gzipped: bool = False) -> bytes:
        """The /metrics body: the last rendering plus the live series, collected now."""
        live = generate_latest(self.live_registry)
        with self.lock:
            body, head, state = self.rendered, self._gzip_head, self._gzip_state
        if not gzipped:
            return body + live
        tail = state.copy()
        return head + tail.compress(live) + tail.flush()

    def start(self) -> None:
        self.render()
        for project in self.config.projects:
            self.threads.append(threading.Thread(target=self.run_project, args=(project,),
                                                 name=f"cloud-{project.name}", daemon=True))
        if self.robot is not None:
            self.threads.append(threading.Thread(target=self.run_robot, name="robot",
                                                 daemon=True))
        self.threads.append(threading.Thread(target=self.run_renderer, name="render",
                                             daemon=True))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)
        for client in self.clients.values():
            client.close()
        if self.robot_client:
            self.robot_client.close()

    def sd_of(self, source: str) -> bytes:
        """The last rendering's /sd target groups of one source (``cloud``, ``dedicated``),
        serialised on request: they are asked for rarely, /sd itself is pre-serialised."""
        with self.lock:
            groups = self.rendered_sd_groups
        return json.dumps([g for g in groups if g["labels"]["source"] == source]).encode()

    def ready(self) -> bool:
        """Whether a first refresh completed (of any project, or Robot)."""
        with self.lock:
            return any(p.inventory_at for p in self.projects.values()) or bool(
                self.robot and self.robot.servers_at)


def settings_from_config(config: Config) -> Settings:
    """The configuration bits that shape the series, as a frozen value."""
    prices = config.dedicated_prices
    apis = [("cloud", p.name) for p in config.projects]
    if config.robot:
        apis.append(("robot", "robot"))
    return Settings(
        price_mode=config.price_mode, vat_rate_percent=config.vat_rate_percent,
        dedicated_by_server=frozen_map(prices.by_server),
        dedicated_by_product=frozen_map(prices.by_product),
        dedicated_from_catalogue=prices.default_from_catalogue,
        cloud_price_overrides=frozen_map(config.cloud_price_overrides),
        dedicated_labels=frozen_map({k: frozen_map(v)
                                     for k, v in config.dedicated_labels.items()}),
        apis=tuple(apis), sd_address=config.sd_address, agent_port=config.agent_port,
        build_labels=frozen_map(build_info_labels()))
