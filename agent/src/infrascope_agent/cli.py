"""``infrascope-agent``: node_exporter-compatible host metrics and discovered services.

Flags are Prometheus' ``--section.flag-name``; node_exporter's deprecated spellings of
its filter flags (:data:`FILTER_ALIASES`) are accepted too, so flags copied from a
node_exporter unit work unchanged. Logs: logfmt on stderr (``infrascope_core.logfmt``).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence

from infrascope_core import logfmt

from . import __version__
from .collectors import build
from .registry import COLLECTORS, Registry, Settings, agent_registry

log = logging.getLogger("infrascope_agent")

PROG = "infrascope-agent"
DEFAULT_LISTEN = ":8791"


FILTER_OPTIONS = {
    "collector.filesystem.mount-points-exclude": "mount points to ignore (replaces the default)",
    "collector.filesystem.fs-types-exclude": "filesystem types to ignore (replaces the default)",
    "collector.netdev.device-exclude": "network devices to ignore",
    "collector.netdev.device-include": "network devices to keep (exclusive with -exclude)",
    "collector.diskstats.device-exclude": "block devices to ignore (replaces the default)",
    "collector.diskstats.device-include": "block devices to keep (exclusive with -exclude)",
}
# node_exporter's older names of the same flags (deprecated there, still accepted by 1.5)
FILTER_ALIASES = {
    "collector.filesystem.mount-points-exclude": ["collector.filesystem.ignored-mount-points"],
    "collector.filesystem.fs-types-exclude": ["collector.filesystem.ignored-fs-types"],
    "collector.netdev.device-exclude": ["collector.netdev.device-blacklist"],
    "collector.netdev.device-include": ["collector.netdev.device-whitelist"],
    "collector.diskstats.device-exclude": ["collector.diskstats.ignored-devices"],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                   help=f"address to listen on (default {DEFAULT_LISTEN})")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                   help="path under which to expose metrics (default /metrics)")
    p.add_argument("--web.config.file", dest="web_config", default=None,
                   help="exporter-toolkit web config: TLS and basic auth")
    p.add_argument("--path.procfs", dest="procfs", default="/proc")
    p.add_argument("--path.sysfs", dest="sysfs", default="/sys")
    p.add_argument("--path.rootfs", dest="rootfs", default="/")
    p.add_argument("--path.cgroupfs", dest="cgroupfs", default="/sys/fs/cgroup")
    p.add_argument("--docker.socket", dest="docker_socket", default="/var/run/docker.sock")
    p.add_argument("--systemd.systemctl", dest="systemctl", default="systemctl",
                   help="systemctl binary used by the systemd collector")
    p.add_argument("--collector.timeout", dest="collector_timeout", type=float, default=5.0,
                   help="seconds a collector may take before it is reported failed")
    p.add_argument("--collector.filesystem.timeout", dest="filesystem_timeout", type=float,
                   default=2.0, help="seconds one statfs may take before the mount is skipped")
    for key, what in FILTER_OPTIONS.items():
        aliases = [f"--{a}" for a in FILTER_ALIASES.get(key, [])]
        p.add_argument(f"--{key}", *aliases, dest=key.replace(".", "_").replace("-", "_"),
                       default=None, metavar="REGEX",
                       help=f"{what} (node_exporter's flag of the same name)")
    p.add_argument("--log.level", dest="log_level", default="info",
                   choices=("debug", "info", "warning", "error"))
    for name, cls in sorted(COLLECTORS.items()):
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=None,
                       action=argparse.BooleanOptionalAction,
                       help=f"{cls.help} (default {'on' if cls.default_enabled else 'off'})")
    return p


def split_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--web.listen-address: {address!r} is not [HOST]:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logfmt.setup("infrascope_agent", args.log_level)
    settings = Settings(procfs=args.procfs, sysfs=args.sysfs, rootfs=args.rootfs,
                        cgroupfs=args.cgroupfs, docker_socket=args.docker_socket,
                        systemctl=args.systemctl, collector_timeout=args.collector_timeout,
                        filesystem_timeout=args.filesystem_timeout)
    for key in FILTER_OPTIONS:
        value = getattr(args, key.replace(".", "_").replace("-", "_"))
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                print(f"{PROG}: --{key}: invalid regular expression: {exc}", file=sys.stderr)
                return 2
            settings.extra[key] = value
    enabled = {name: getattr(args, f"collector_{name}") for name in COLLECTORS
               if getattr(args, f"collector_{name}") is not None}
    try:
        host, port = split_listen(args.listen)
        collectors = build(settings, enabled)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    runner = Registry(collectors, timeout=args.collector_timeout)
    registry = agent_registry(runner)
    from .web import AgentServer
    from .webconfig import WebConfigError

    try:
        server = AgentServer(registry, host, port, args.telemetry_path, args.web_config)
    except WebConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner.check_sources()  # one line per collector whose source is absent on this host
    server.start()
    print(f"{PROG}: listening on {host}:{server.port}{args.telemetry_path} with collectors "
          f"{', '.join(c.name for c in collectors)}", flush=True)
    log.info("listening", extra={"event": "start", "address": f"{host}:{server.port}",
                                 "version": __version__,
                                 "collectors": ",".join(c.name for c in collectors)})
    stop.wait()
    log.info("stopping", extra={"event": "stop"})
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
