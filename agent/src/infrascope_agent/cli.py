"""``infrascope-agent``: node_exporter-compatible host metrics and discovered services.

Flags are Prometheus' ``--section.flag-name``. The general ones are here; each collector
declares its own (:attr:`~.registry.Collector.options`, e.g.
``--collector.netdev.device-exclude``) with node_exporter's deprecated spellings as
aliases (:data:`FILTER_ALIASES`), so flags copied from a node_exporter unit work
unchanged, and is switched by ``--[no-]collector.<name>``. Logs: logfmt on stderr
(``infrascope_core.logfmt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from infrascope_core import logfmt

from . import __version__
from .collectors import build
from .registry import COLLECTORS, Registry, Settings, agent_registry, options

log = logging.getLogger("infrascope_agent")

PROG = "infrascope-agent"
DEFAULT_LISTEN = ":8791"

#: node_exporter's older names of collector flags (deprecated there, still accepted by
#: 1.5), as the collectors declare them: flag -> aliases
FILTER_ALIASES = {o.flag: list(o.aliases) for o in options() if o.aliases}
_SETTING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}


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
    p.add_argument("--collector.timeout", dest="collector_timeout", type=float, default=5.0,
                   help="seconds a collector may take before it is reported failed")
    for option in options():
        default = _SETTING_DEFAULTS.get(option.setting or "", option.default)
        shown = f" (default {default})" if default is not None else ""
        p.add_argument(f"--{option.flag}", *(f"--{a}" for a in option.aliases),
                       dest=option.dest, default=None, type=option.type,
                       metavar=option.metavar, help=option.help + shown)
    p.add_argument("--log.level", dest="log_level", default="info",
                   choices=("debug", "info", "warning", "error"))
    for name, cls in sorted(COLLECTORS.items()):
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=None,
                       action=argparse.BooleanOptionalAction,
                       help=f"{cls.help} (default {'on' if cls.default_enabled else 'off'})")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """The collectors' settings from the flags; ValueError naming a flag whose regular
    expression does not compile."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for option in options():
        value = getattr(args, option.dest)
        if value is None:
            continue
        if option.regex:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"--{option.flag}: invalid regular expression: {exc}") from None
        if option.setting:
            fields[option.setting] = value
        else:
            extra[option.flag] = value
    return Settings(procfs=args.procfs, sysfs=args.sysfs, rootfs=args.rootfs,
                    cgroupfs=args.cgroupfs, collector_timeout=args.collector_timeout,
                    extra=extra, **fields)


def split_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--web.listen-address: {address!r} is not [HOST]:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logfmt.setup("infrascope_agent", args.log_level)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
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
