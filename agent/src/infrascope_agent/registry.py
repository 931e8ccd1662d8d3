"""Collectors and the registry that runs them, node_exporter's way.

Each collector lives in its own module under ``collectors/``, registers itself
under a name with :func:`register`, is switched on or off by
``--collector.<name>`` / ``--no-collector.<name>``, declares its own flags
(:class:`Option`: ``--collector.<name>.<option>``, node_exporter's spelling, and its
older spellings as aliases) which the CLI collects, and reports its own
``node_scrape_collector_success`` and ``node_scrape_collector_duration_seconds``.
A collector that raises is reported as failed and the rest of the scrape is
served; a collector that takes longer than its timeout is abandoned for this
scrape (its thread finishes in the background) so one hung mount or socket
never blocks Prometheus.

A failure is logged when it starts or its reason changes, and its end once —
never on every scrape. A collector whose source is absent on this host (no
Docker socket, no systemd) says so once at start (:meth:`Registry.check_sources`,
from :meth:`Collector.absent`) and then reports success 0 quietly until the
source appears.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("infrascope_agent")


@dataclass(frozen=True)
class Settings:
    """Paths and options shared by collectors (flags of the CLI)."""

    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"
    cgroupfs: str = "/sys/fs/cgroup"
    docker_socket: str = "/var/run/docker.sock"
    systemctl: str = "systemctl"
    collector_timeout: float = 5.0
    filesystem_timeout: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """A flag of one collector: ``--<flag>`` (and ``--<alias>`` for each of ``aliases``,
    node_exporter's older spellings). Its value goes to the :class:`Settings` field
    ``setting`` when given, else to ``Settings.extra[flag]``; ``regex`` values are
    compiled at start (a bad one is exit code 2 naming the flag)."""

    flag: str
    help: str
    aliases: tuple[str, ...] = ()
    setting: str | None = None
    default: Any = None
    type: Callable[[str], Any] = str
    metavar: str | None = None
    regex: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination: the Settings field, or the flag as an identifier."""
        return self.setting or self.flag.replace(".", "_").replace("-", "_")


class Collector:
    """Base class: subclasses set ``name``, ``default_enabled``, ``help`` and their
    ``options``, and implement collect()."""

    name: str = ""
    default_enabled: bool = True
    help: str = ""
    options: tuple[Option, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError

    def absent(self) -> str | None:
        """Why this collector's source does not exist on this host, or None.

        Cheap (a path test, no process or connection): run at start and by collect().
        """
        return None


class SourceAbsent(Exception):
    """The collector's source does not exist here (no Docker socket, no systemd)."""


COLLECTORS: dict[str, type[Collector]] = {}


def register(cls: type[Collector]) -> type[Collector]:
    if not cls.name or cls.name in COLLECTORS:
        raise ValueError(f"collector name {cls.name!r} is empty or taken")
    taken = {flag for other in COLLECTORS.values() for o in other.options
             for flag in (o.flag, *o.aliases)}
    for option in cls.options:
        for flag in (option.flag, *option.aliases):
            if flag in taken:
                raise ValueError(f"collector {cls.name}: flag --{flag} is taken")
            taken.add(flag)
    COLLECTORS[cls.name] = cls
    return cls


def options() -> list[Option]:
    """Every registered collector's options, by collector name then declaration order
    (importing :mod:`infrascope_agent.collectors` registers the agent's own)."""
    return [o for _, cls in sorted(COLLECTORS.items()) for o in cls.options]


def family(name: str, kind: str, doc: str) -> Metric:
    return Metric(name, doc, kind)


def add(metric: Metric, labels: dict[str, str], value: float, suffix: str = "") -> None:
    metric.add_sample(metric.name + suffix, labels, float(value))


class Registry(PromCollector):
    """Runs every enabled collector once per scrape, concurrently, each with a timeout."""

    def __init__(self, collectors: Iterable[Collector], timeout: float = 5.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.collectors = list(collectors)
        self.timeout = timeout
        self.clock = clock
        self._failing: dict[str, str] = {}  # collector -> reason last logged
        self._lock = threading.Lock()

    def check_sources(self) -> dict[str, str]:
        """Log, once, each enabled collector whose source is absent; returns them."""
        found = {}
        for c in self.collectors:
            reason = c.absent()
            if reason is not None:
                found[c.name] = reason
                self._report(c.name, reason, "collector_source_absent")
        return found

    def _report(self, name: str, reason: str, event: str) -> None:
        """Log a collector's failure when it starts or its reason changes."""
        with self._lock:
            if self._failing.get(name) == reason:
                return
            self._failing[name] = reason
        if event == "collector_source_absent":
            log.warning("collector %s disabled until its source appears: %s", name, reason,
                        extra={"event": event, "collector": name})
        else:
            log.warning("collector %s failed: %s", name, reason,
                        extra={"event": event, "collector": name})

    def _recovered(self, name: str) -> None:
        with self._lock:
            if self._failing.pop(name, None) is None:
                return
        log.info("collector %s works again", name,
                 extra={"event": "collector_recovered", "collector": name})

    def _run(self, collector: Collector, result: dict[str, Any]) -> None:
        start = self.clock()
        try:
            result["metrics"] = list(collector.collect())
        except BaseException as exc:  # noqa: BLE001 - reported as this collector's failure
            result["error"] = exc
        result["seconds"] = self.clock() - start

    def collect(self) -> Iterable[Metric]:
        # One daemon thread per collector and scrape: a collector that hangs is abandoned
        # for this scrape and can never keep the process from exiting.
        runs: list[tuple[Collector, threading.Thread, dict[str, Any]]] = []
        for c in self.collectors:
            result: dict[str, Any] = {}
            thread = threading.Thread(target=self._run, args=(c, result), daemon=True,
                                      name=f"collector-{c.name}")
            thread.start()
            runs.append((c, thread, result))
        deadline = time.monotonic() + self.timeout
        duration = family("node_scrape_collector_duration_seconds", "gauge",
                          "node_exporter: Duration of a collector scrape.")
        success = family("node_scrape_collector_success", "gauge",
                         "node_exporter: Whether a collector succeeded.")
        out: list[Metric] = []
        for collector, thread, result in runs:
            name = collector.name
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                add(duration, {"collector": name}, self.timeout)
                add(success, {"collector": name}, 0)
                self._report(name, f"timed out after {self.timeout:g}s", "collector_timeout")
                continue
            add(duration, {"collector": name}, result.get("seconds", 0.0))
            if "error" in result:
                exc = result["error"]
                add(success, {"collector": name}, 0)
                if isinstance(exc, SourceAbsent):
                    self._report(name, str(exc), "collector_source_absent")
                else:
                    self._report(name, f"{type(exc).__name__}: {exc}", "collector_failed")
            else:
                out.extend(result["metrics"])
                add(success, {"collector": name}, 1)
                self._recovered(name)
        return _merge(out) + [duration, success]


def _merge(metrics: list[Metric]) -> list[Metric]:
    """Families with the same name from several collectors become one family."""
    merged: dict[str, Metric] = {}
    for m in metrics:
        if m.name in merged:
            merged[m.name].samples.extend(m.samples)
        else:
            merged[m.name] = m
    return list(merged.values())


class BuildInfo(PromCollector):
    """``infrascope_agent_build_info{version, python_version} 1``, as Go exporters'
    ``*_build_info``: which agent runs where, joinable with ``group_left``."""

    def collect(self) -> Iterable[Metric]:
        import platform

        from . import __version__

        info = family("infrascope_agent_build_info", "gauge",
                      "A metric with a constant '1' value labeled by the version of the "
                      "InfraScope agent and the Python it runs on.")
        add(info, {"version": __version__, "python_version": platform.python_version()}, 1)
        return [info]


def agent_registry(collectors: Registry) -> CollectorRegistry:
    """What /metrics serves: the collectors, the build info and the ``process_*`` series
    of the agent's own process (CPU, memory, open files: the agent watched like any
    exporter)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collectors)
    registry.register(BuildInfo())
    ProcessCollector(registry=registry)
    return registry
