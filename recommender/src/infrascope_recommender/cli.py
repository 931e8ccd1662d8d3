"""``recommender``: regenerate once, print a report, or serve the API.

    recommender run     [FLAGS]     regenerate once into the state file; one summary line
    recommender report  [FLAGS] [--format table|markdown|json|html] [--output FILE]
                                    [--from-state]
    recommender serve   [FLAGS]     the JSON API, /metrics and the annotation feed, with a
                                    regeneration at start and every schedule.interval
    recommender check-config [FLAGS]  validate the configuration (every key, the secret
                                    files' shape and modes) and exit

    FLAGS, in Prometheus' --section.flag-name style (the old spellings in brackets still
    work): --config.file FILE (--config), --prometheus.url URL (--prometheus-url),
    --state.path PATH (--state, --state-path), --web.listen-address [HOST]:PORT
    (--listen), --schedule.interval DURATION (--interval),
    --log.level debug|info|warn|error (--log-level)

``report`` runs the engine fresh (it does not write the state) and shows the decisions
the state file holds for the same recommendations; ``--from-state`` reports the state
file alone, without asking Prometheus.

Exit codes: 0 success; 2 bad configuration or usage (the message names the key or flag);
3 Prometheus unreachable or erroring (the message names the URL and the failure, and no
report is printed); 1 any other failure. Logs are logfmt on stderr in the format every
InfraScope component uses (``infrascope_core.logfmt``), with every configured secret
scrubbed; no secret is ever printed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

from infrascope_core.logfmt import LogfmtFormatter
from infrascope_recommender import __version__

from .config import Config, ConfigError, load_config

PROG = "recommender"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PROMETHEUS = 3
DESCRIPTION = (
    "InfraScope recommender: Savings recommendations for a Hetzner fleet, computed from PromQL."
)
LOGGER = "infrascope_recommender"


# --- logging ---------------------------------------------------------------------------

def _drop_uvicorn_colours(record: logging.LogRecord) -> bool:
    """uvicorn adds ``color_message`` (the message with ANSI codes) to its records: not a
    field of the event."""
    record.__dict__.pop("color_message", None)
    return True


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(secrets))
    handler.addFilter(_drop_uvicorn_colours)
    for name in (LOGGER, "uvicorn", "uvicorn.error", "uvicorn.access", "httpx"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level.upper() if name != "httpx" else max(
            logging.WARNING, logging.getLevelName(level.upper())))


def _secrets(config: Config) -> list[str]:
    out = []
    for secret in (config.api.token, config.prometheus.bearer_token,
                   config.prometheus.basic_auth_password,
                   config.grafana.token if config.grafana else None):
        if secret:
            out.append(secret.reveal())
    return out


# --- arguments ---------------------------------------------------------------------------

#: Each flag: Prometheus-style name first, then the spellings it had before (aliases).
FLAGS: dict[str, tuple[str, ...]] = {
    "config": ("--config.file", "--config"),
    "prometheus_url": ("--prometheus.url", "--prometheus-url"),
    "state": ("--state.path", "--state", "--state-path"),
    "listen": ("--web.listen-address", "--listen"),
    "interval": ("--schedule.interval", "--interval"),
    "log_level": ("--log.level", "--log-level"),
}


def build_parser() -> argparse.ArgumentParser:
    from .report import RENDERERS  # every report format, as each registered itself

    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(*FLAGS["config"], dest="config", metavar="FILE",
                        help="YAML configuration file")
    common.add_argument(*FLAGS["prometheus_url"], dest="prometheus_url", metavar="URL",
                        help="Prometheus-compatible query URL (prometheus.url, env "
                             "PROMETHEUS_URL)")
    common.add_argument(*FLAGS["state"], dest="state", metavar="PATH",
                        help="SQLite state file (state.path, env RECOMMENDER_STATE_PATH)")
    common.add_argument(*FLAGS["listen"], dest="listen", metavar="[HOST]:PORT",
                        help="API address for serve (api.listen, env "
                             "RECOMMENDER_LISTEN_ADDRESS)")
    common.add_argument(*FLAGS["interval"], dest="interval", metavar="DURATION",
                        help="regeneration interval for serve, e.g. 24h (schedule.interval)")
    common.add_argument(*FLAGS["log_level"], dest="log_level", default=None,
                        choices=["debug", "info", "warning", "error"],
                        help="default: info for serve, warning otherwise")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="regenerate once into the state file",
                   description="Regenerate once: query Prometheus, apply the rules, merge "
                               "into the state file; prints one summary line.")
    report = sub.add_parser("report", parents=[common], help="print the recommendations",
                            description="Print the recommendations, totals first.")
    report.add_argument("--format", default="table", choices=list(RENDERERS))
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    report.add_argument("--from-state", action="store_true",
                        help="report the state file's last run, without asking Prometheus")
    sub.add_parser("serve", parents=[common], help="serve the API, /metrics and annotations",
                   description="Serve the JSON API, the Grafana annotation feed and /metrics; "
                               "regenerate at start and every schedule.interval.")
    sub.add_parser("check-config", parents=[common], help="validate the configuration",
                   description="Read the configuration as run, report and serve would "
                               "(file, environment, flags), every key at every depth and the "
                               "secret files included, without asking Prometheus; print "
                               "what it says or the first error (exit 2), and a warning for "
                               "each secret file others may read.")
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        "prometheus_url": args.prometheus_url, "state_path": args.state,
        "listen": args.listen, "interval": args.interval}
    return load_config(args.config, overrides={k: v for k, v in overrides.items() if v})


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


# --- wiring ------------------------------------------------------------------------------

def make_runner(config: Config) -> Callable[[], Any]:
    """``pipeline.run(config)``, imported when called (the seam tests replace)."""

    def runner() -> Any:
        from .pipeline import run

        return run(config)

    return runner


def make_history(config: Config) -> Callable[[], list[tuple[str, Decimal]]]:
    def history() -> list[tuple[str, Decimal]]:
        from .loader import cost_history
        from .promql import PrometheusClient

        client = PrometheusClient(config.prometheus)
        try:
            return list(cost_history(client, config.prometheus))
        finally:
            client.close()

    return history


def build_service(config: Config) -> Any:
    from .annotations import GrafanaPusher
    from .service import RecommenderService
    from .state import Store

    store = Store(config.state_path)
    pusher = GrafanaPusher(config.grafana) if config.grafana else None
    return RecommenderService(store, make_runner(config), make_history(config),
                              api_token=config.api.token, pusher=pusher,
                              prometheus_url=config.prometheus.url,
                              dashboard_url=config.dashboard_url)


# --- commands ----------------------------------------------------------------------------

def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from .service import RunFailed

    service = build_service(config)
    try:
        outcome = service.regenerate()
    except RunFailed as exc:
        return _fail(str(exc), EXIT_PROMETHEUS if exc.prometheus else EXIT_ERROR)
    finally:
        service.close()
    run = outcome.run
    line = (f"{PROG}: run {run.id}: {run.pending} pending recommendation(s) saving "
            f"{run.pending_savings} EUR/month ({run.new} new, {run.stale} stale removed, "
            f"{run.reopened} reopened); {run.servers} servers, "
            f"{len(run.exclusions)} excluded, {run.queries} PromQL queries in "
            f"{run.duration_seconds:.1f} s; state {config.state_path}")
    if outcome.push is not None:
        p = outcome.push
        line += (f"; grafana: {p.created} created, {p.updated} updated, "
                 f"{p.deleted} deleted")
    elif service.pusher is not None:
        line += f"; grafana push failed: {service.push_status.error}"
    print(line)
    return EXIT_OK


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from .report import NoRunYet, render, view_from_result, view_from_store
    from .service import is_prometheus_error
    from .state import Store

    state_exists = config.state_path.exists()
    if args.from_state:
        if not state_exists:
            return _fail(f"state.path: no state file at {config.state_path} (run "
                         f"`{PROG} run` first, or drop --from-state)", EXIT_USAGE)
        with Store(config.state_path) as store:
            try:
                view = view_from_store(store, dashboard_url=config.dashboard_url)
            except NoRunYet as exc:
                return _fail(str(exc), EXIT_ERROR)
    else:
        try:
            result = make_runner(config)()
        except Exception as exc:
            if is_prometheus_error(exc):
                return _fail(str(exc), EXIT_PROMETHEUS)
            raise
        decisions = {}
        if state_exists:
            with Store(config.state_path) as store:
                decisions = store.statuses()
        view = view_from_result(result, decisions,
                                origin=f"a fresh run against {config.prometheus.url}",
                                dashboard_url=config.dashboard_url)
    text = render(view, args.format)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"--output: cannot write {args.output}: {exc.strerror}", EXIT_ERROR)
        print(f"{PROG}: wrote {args.format} report to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_OK


def _split_listen(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app

    service = build_service(config)
    app = create_app(service, max_request_bytes=config.api.max_request_bytes)
    host, port = _split_listen(config.api.listen)
    log = logging.getLogger(LOGGER)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            bound = [s.getsockname() for srv in self.servers for s in srv.sockets or ()]
            shown = ", ".join(f"http://{a[0]}:{a[1]}/" for a in bound)
            print(f"{PROG}: listening on {shown}", flush=True)
            log.info("listening", extra={"event": "start", "address": shown,
                                         "state": str(config.state_path),
                                         "prometheus": config.prometheus.url,
                                         "interval_seconds": config.interval_seconds,
                                         "writes": "enabled" if config.api.token
                                         else "disabled (no api token)"})
            service.start(config.interval_seconds)

    # Access logs only at debug: Prometheus scraping /metrics would fill the log otherwise.
    server = Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                   lifespan="off", server_header=False,
                                   access_log=logging.getLogger(LOGGER).isEnabledFor(
                                       logging.DEBUG)))

    # uvicorn re-raises the signal it stopped on after a graceful shutdown; with these
    # handlers in place that ends the process with 0 instead of a signal exit.
    def stopped(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        service.close()
        return _fail(f"api.listen: cannot serve on {config.api.listen}", EXIT_ERROR) \
            if exc.code else EXIT_OK
    log.info("stopping", extra={"event": "stop"})
    service.close(timeout=5.0)
    return EXIT_OK


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    for warning in config.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    p = config.prometheus
    auth = ("bearer token" if p.bearer_token else "basic auth" if p.basic_auth_user
            else "none")
    print(f"{PROG}: configuration OK: prometheus {p.url} (auth: {auth}, jobs "
          f"{p.exporter_job}/{p.agent_job}), state {config.state_path}, api "
          f"{config.api.listen} (writes {'enabled' if config.api.token else 'disabled'}), "
          f"interval {config.interval_seconds:g}s, grafana push "
          f"{config.grafana.url if config.grafana else 'off'}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "run": cmd_run, "report": cmd_report, "serve": cmd_serve,
    "check-config": cmd_check_config}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_usage(sys.stderr)
        return _fail("a command is required: run, report, serve or check-config", EXIT_USAGE)
    from .state import StateError

    try:
        config = _config(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    level = args.log_level or ("info" if args.command == "serve" else "warning")
    setup_logging(level, _secrets(config))
    if args.command != "check-config":
        for warning in config.warnings:
            logging.getLogger(LOGGER).warning(warning, extra={"event": "config"})
    try:
        return COMMANDS[args.command](config, args)
    except StateError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_ERROR)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        logging.getLogger(LOGGER).debug("failed", exc_info=True)
        message = str(exc) or type(exc).__name__
        for secret in _secrets(config):
            message = message.replace(secret, "***")
        return _fail(f"{args.command} failed: {message}", EXIT_ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
