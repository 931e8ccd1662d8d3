"""``infrascope-exporter``: serve the exporter, check a configuration, or backfill.

    infrascope-exporter [FLAGS]                 serve /metrics, /sd, /healthz
    infrascope-exporter check-config [FLAGS]    validate the configuration and exit
    infrascope-exporter backfill --days 30 --output FILE [FLAGS]

Exit codes: 0 success, 2 bad configuration or arguments, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from infrascope_core import logfmt

from . import __version__
from .config import ConfigError, build_parser, load_config, parse_host_port

PROG = "infrascope-exporter"
log = logging.getLogger("infrascope_exporter")


def serve(argv: Sequence[str]) -> int:
    from .exporter import Exporter
    from .server import ExporterHTTPServer

    config = load_config(argv)
    secrets = [p.token.reveal() for p in config.projects]
    if config.robot:
        secrets.append(config.robot.password.reveal())
    logfmt.setup("infrascope_exporter", config.log_level, secrets)
    for warning in config.warnings:
        log.warning(warning, extra={"event": "config"})
    exporter = Exporter(config)
    host, port = parse_host_port(config.listen_address, "web.listen_address")
    host = host or "0.0.0.0"
    try:
        http = ExporterHTTPServer(exporter, host, port)
    except OSError as exc:
        print(f"{PROG}: cannot listen on {config.listen_address}: {exc.strerror}",
              file=sys.stderr)
        return 1
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    exporter.start()
    http.start()
    log.info("listening", extra={"event": "start", "address": f"{host}:{http.port}",
                                 **{k: str(v) for k, v in config.describe().items()}})
    print(f"{PROG}: listening on http://{host}:{http.port}/metrics", flush=True)
    stop.wait()
    log.info("stopping", extra={"event": "stop"})
    http.stop()
    exporter.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(f"{PROG} {__version__}")
        return 0
    try:
        if args[:1] == ["check-config"]:
            config = load_config(args[1:])
            for warning in config.warnings:
                print(f"{PROG}: warning: {warning}", file=sys.stderr)
            print(f"{PROG}: configuration OK: {config.describe()}")
            return 0
        if args[:1] == ["backfill"]:
            from .backfill import main as backfill_main

            return backfill_main(args[1:])
        if args[:1] in (["-h"], ["--help"]):
            parser = build_parser(PROG)
            parser.description = __doc__
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            parser.print_help()
            return 0
        return serve(args)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
