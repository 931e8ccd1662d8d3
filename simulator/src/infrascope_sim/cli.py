"""``infrascope-sim``: serve the Hetzner API simulator, or describe a fleet."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

from . import __version__
from .faults import FaultError, fault_from_dict, parse_fault_spec
from .fleet import FleetError, load_fleet
from .history import CPU_CHOICES, parse_exclude, write_history
from .server import Endpoints, bound_port, make_host_agents_server, make_server
from .state import Settings, Simulator


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infrascope-sim",
        description="Hetzner Cloud + Robot API simulator with simulated agents.")
    parser.add_argument("--version", action="version", version=f"infrascope-sim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the simulated APIs")
    serve.add_argument("--fleet", default="demo",
                       help="'demo', 'generated:N[:PROJECTS]' or a fleet YAML file (default demo)")
    serve.add_argument("--listen", type=_listen, default=("127.0.0.1", 8480),
                       help="HOST:PORT to listen on (default 127.0.0.1:8480; port 0 picks one)")
    serve.add_argument("--fault", action="append", default=[], metavar="SPEC",
                       help="inject a fault, e.g. kind=latency,api=cloud,ms=20 (repeatable)")
    serve.add_argument("--faults-file", help="YAML/JSON file with a list of faults")
    serve.add_argument("--metrics-point-cap", type=int, default=500,
                       help="most points per metrics response (default 500)")
    serve.add_argument("--refill-per-second", type=float, default=None,
                       help="Cloud bucket refill rate (default: limit/3600, i.e. 1/s)")
    serve.add_argument("--action-seconds", type=float, default=0.0,
                       help="how long a Cloud action (a write) runs, locking its server "
                            "(default 0: finished when answered)")
    serve.add_argument("--robot-block-after", type=int, default=3,
                       help="failed Robot logins before the client IP is blocked (0: never)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--agents-port", type=int, default=None, metavar="PORT",
                       help="also serve each server's simulated agent at /metrics on the "
                            "server's own IPv4 address and PORT, as a real agent listens, for "
                            "the servers whose address is a loopback one (127.0.0.0/8: give "
                            "them such addresses in the fleet file); the exporter's /sd then "
                            "lists reachable agents")

    fleet = sub.add_parser("fleet", help="print a fleet's servers")
    fleet.add_argument("--fleet", default="demo")
    fleet.add_argument("--format", choices=("table", "json"), default="table")

    exp = sub.add_parser("exporter-config",
                         help="print an infrascope-exporter YAML configuration for a fleet")
    exp.add_argument("--fleet", default="demo")
    exp.add_argument("--base-url", default="http://127.0.0.1:8480",
                     help="where the simulator is served")

    hist = sub.add_parser(
        "agents-history",
        help="write the simulated agents' past series as OpenMetrics (for promtool)",
        description="Write what Prometheus would have scraped from the simulated agents "
                    "(memory of every server, CPU counters of the servers --cpu picks) over a "
                    "past range, as OpenMetrics for `promtool tsdb create-blocks-from "
                    "openmetrics`, with the labels the scrape of /agents/sd adds.")
    hist.add_argument("--fleet", default="demo")
    hist.add_argument("--output", "-o", required=True, help="OpenMetrics file to write")
    hist.add_argument("--days", type=float, default=30.0,
                      help="days before --end (default 30; ignored with --start)")
    hist.add_argument("--start", default=None,
                      help="start of the range, exclusive (RFC 3339 or Unix seconds)")
    hist.add_argument("--end", default=None,
                      help="end of the range (RFC 3339 or Unix seconds; default now - 3h, "
                           "rounded down to --step)")
    hist.add_argument("--step", type=int, default=300,
                      help="seconds between memory samples (default 300)")
    hist.add_argument("--cpu-step", type=int, default=150,
                      help="seconds between CPU counter samples (default 150: two per 5m rate)")
    hist.add_argument("--cpu", choices=CPU_CHOICES, default="dedicated",
                      help="servers whose node_cpu_seconds_total is written (default dedicated: "
                           "Cloud servers' CPU history comes from the Cloud API)")
    hist.add_argument("--cpus", type=int, default=None, metavar="N",
                      help="write the first N CPUs of each server only (default: every CPU)")
    hist.add_argument("--job", default="infrascope-agent",
                      help="job label: the scrape job of the simulated agents")
    hist.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                      help="another label the scrape adds (repeatable)")
    hist.add_argument("--exclude", action="append", default=[], metavar="SOURCE/ID",
                      help="leave a server out, e.g. dedicated/2391099 (repeatable)")
    return parser


def _timestamp(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"{what}: expected RFC 3339 or Unix seconds, got {value!r}") from None


def _agents_history(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    if args.end is not None:
        end = _timestamp(args.end, "--end")
    else:
        end = math.floor((time.time() - 3 * 3600) / args.step) * args.step
    start = (_timestamp(args.start, "--start") if args.start is not None
             else end - args.days * 86_400)
    extra = {}
    for item in args.label:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--label: expected NAME=VALUE, got {item!r}")
        extra[name] = value
    result = write_history(fleet, Path(args.output), start, end, step=args.step,
                           cpu_step=args.cpu_step, cpu=args.cpu, cpus=args.cpus, job=args.job,
                           extra_labels=extra, exclude=parse_exclude(args.exclude))
    span = (datetime.fromtimestamp(result.start, UTC).isoformat().replace("+00:00", "Z")
            + " .. " + datetime.fromtimestamp(result.end, UTC).isoformat().replace("+00:00", "Z"))
    print(f"infrascope-sim agents-history: wrote {result.path}: {result.servers} servers, "
          f"{result.series} series, {result.samples} samples, {span}, "
          f"{result.bytes / 1e6:.1f} MB")
    return 0


def exporter_config(spec: str, base_url: str) -> dict:
    """What an operator would write for this account: projects, Robot, dedicated prices."""
    fleet = load_fleet(spec)
    base = base_url.rstrip("/")
    data: dict = {"cloud": {"endpoint": base + "/v1", "projects": [
        {"name": p.name, "token": p.token} for p in fleet.projects]}}
    if fleet.robot:
        data["robot"] = {
            "endpoint": base + "/robot", "user": fleet.robot.user,
            "password": fleet.robot.password,
            "labels": {d.number: dict(d.labels) for d in fleet.robot.servers if d.labels}}
        data["prices"] = {"dedicated_servers": {
            d.number: str(d.monthly_price_net) for d in fleet.robot.servers
            if d.monthly_price_net is not None}}
    return data


def _print_fleet(spec: str, fmt: str) -> int:
    fleet = load_fleet(spec)
    rows = []
    for project in fleet.projects:
        for s in project.servers:
            rows.append({"source": "cloud", "id": s.id, "name": s.name, "project": project.name,
                         "type": s.server_type.name, "location": s.location,
                         "profile": s.workload.profile, "labels": s.labels})
    if fleet.robot:
        for d in fleet.robot.servers:
            rows.append({"source": "dedicated", "id": d.number, "name": d.name, "project": "robot",
                         "type": d.product, "location": d.location,
                         "profile": d.workload.profile, "labels": d.labels})
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'source':<10} {'id':>9} {'name':<22} {'type':<15} {'loc':<5} profile")
    for r in rows:
        print(f"{r['source']:<10} {r['id']:>9} {r['name']:<22} {r['type']:<15} "
              f"{r['location']:<5} {r['profile']}")
    return 0


async def _serve(sim: Simulator, host: str, port: int, access_log: bool,
                 agents_port: int | None = None) -> None:
    server = make_server(sim, host, port, access_log)
    agents_task = None
    if agents_port is not None:
        agents, sockets, others = make_host_agents_server(sim, agents_port)
        agents_task = asyncio.create_task(agents.serve(sockets=sockets))
    serve_task = asyncio.create_task(server.serve())
    while not server.started:
        if serve_task.done():
            await serve_task
            raise SystemExit(f"infrascope-sim: could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    shown_host = f"[{host}]" if ":" in host else host
    ep = Endpoints(f"http://{shown_host}:{bound_port(server)}")
    summary = sim.fleet.summary()
    print(f"infrascope-sim: fleet {summary['name']}: {summary['cloud_servers']} Cloud servers in "
          f"{len(summary['projects'])} project(s), {summary['dedicated_servers']} dedicated")
    print(f"  HCLOUD_ENDPOINT={ep.cloud}   (Bearer token per project, see the fleet file)")
    print(f"  ROBOT_ENDPOINT={ep.robot}   (basic auth, see the fleet file)")
    print(f"  simulated agents (Prometheus http_sd): {ep.agents_sd}")
    print(f"  control: {ep.control}/stats  {ep.control}/faults  {ep.control}/metrics")
    if agents_task is not None:
        print(f"  agents on their servers' addresses, port {agents_port}: {len(sockets)} "
              f"(left out, not a loopback address: {others})")
    sys.stdout.flush()
    await serve_task
    if agents_task is not None:
        agents.should_exit = True
        await agents_task


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fleet":
            return _print_fleet(args.fleet, args.format)
        if args.command == "agents-history":
            return _agents_history(args)
        if args.command == "exporter-config":
            print(yaml.safe_dump(exporter_config(args.fleet, args.base_url), sort_keys=False),
                  end="")
            return 0
        fleet = load_fleet(args.fleet)
        settings = Settings(metrics_point_cap=args.metrics_point_cap,
                            refill_per_second=args.refill_per_second,
                            robot_block_after_failures=args.robot_block_after,
                            action_seconds=args.action_seconds)
        sim = Simulator(fleet, settings)
        for spec in args.fault:
            sim.faults.add(parse_fault_spec(spec))
        if args.faults_file:
            with open(args.faults_file) as fh:
                for entry in yaml.safe_load(fh) or []:
                    sim.faults.add(fault_from_dict(entry))
    except (FleetError, FaultError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"infrascope-sim: {exc}", file=sys.stderr)
        return 2
    host, port = args.listen
    try:
        asyncio.run(_serve(sim, host, port, args.access_log, args.agents_port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"infrascope-sim: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
