#!/usr/bin/env python3
"""`make demo`: the whole InfraScope stack, natively, on the built-in demo fleet.

One command, nothing else running, state in ``.demo/`` only:

1. **The stack starts** under the demo's own supervisor (``demo/supervisor.py``): the
   Hetzner API simulator (the demo fleet plus one more dedicated server, the machine the
   demo runs on, and a simulated agent per server), the exporter, the real agent on this
   machine, Alertmanager with a webhook receiver that logs every notification,
   Prometheus (waiting for the history) and the recommender (waiting until every figure
   it reads is in Prometheus for every server, ``demo/readiness.py``, then ``recommender
   run`` and ``recommender serve``). A component that dies is reported and restarted.
2. **History**, through the one pipeline, ``infrascope history load`` (as on a real
   account): the exporter's real backfill writes 30 days of Cloud metrics and inventory
   from the simulator; ``infrascope-sim agents-history`` what the simulated agents would
   have reported over the same days (memory of every server, CPU counters of the
   dedicated ones: Hetzner keeps neither), handed to the pipeline as agents' history;
   the pipeline turns both into blocks and evaluates the recording-rule passes over them
   against a temporary Prometheus.
3. **Prometheus starts** on that data with the rules pack; once the recommender has run,
   the recommendation report and the URLs are printed. Ctrl-C (or SIGTERM, to the demo
   or to the ``make`` running it) stops every process, by pid; ``--once`` stops right
   after the report.

Ports are flags (0 picks a free one; a busy default port is replaced by a free one);
``--state-dir`` moves the state folder (it is emptied at start). The choices and
shortcuts are explained in the root README, "What the demo shows".
"""

# ruff: noqa: E402
from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # nothing outside the state folder, not even __pycache__

import argparse
import functools
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from types import FrameType, ModuleType
from typing import Any

import yaml

from infrascope_cli.history import plan_range
from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB
from infrascope_core.durations import parse_duration
from infrascope_core.procfs import proc_status
from infrascope_core.prometheus import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = ROOT / "demo"
RULES = ROOT / "prometheus" / "rules"
DEFAULT_STATE = ROOT / ".demo"
MARKER = ".infrascope-demo"

DEFAULT_PORTS = {"sim": 8480, "exporter": 8790, "agent": 8791, "recommender": 8792,
                 "webhook": 8798, "prometheus": 9190, "alertmanager": 9193}
PORT_HELP = {"sim": "Hetzner API simulator", "exporter": "exporter",
             "agent": "the real agent on this machine", "recommender": "recommender API",
             "webhook": "Alertmanager webhook receiver", "prometheus": "Prometheus",
             "alertmanager": "Alertmanager"}

THIS_MACHINE_NUMBER = 2391100
THIS_MACHINE_NAME = "this-machine"
HISTORY_DAYS = 30
RETENTION = "40d"  # >= 35 d: the 30-day windows plus margin

# The live demo rules: a copy of the committed files in which group intervals are 2 s
# (so the 30-day figures and alerts are there within seconds of the start) except the
# hourly group, whose rules write one sample an hour (the clock hour before) and keep
# their hour; alert `for` durations are divided by 60 (minutes become
# seconds: the 1-hour InfraScopeServerIdle fires after a minute).
DEMO_INTERVAL = "2s"
KEEP_INTERVAL = {"infrascope-utilisation-hourly"}
FOR_DIVISOR = 60
# Alertmanager: every group_wait 5 s (the production digest waits 10 minutes).
AM_TIMING = {"group_wait": "5s", "group_interval": "1m", "repeat_interval": "4h"}

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FIGURES_READY = "figures.ready"  # written once every figure the recommender reads is there
# Set in the environment of everything the demo starts: what it started can be found
# (and was stopped) by this mark, whatever became of its parent.
ENV_MARK = "INFRASCOPE_DEMO_STATE"


class DemoError(Exception):
    """The demo cannot go on; the message says why (and which log to read)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # One stop is enough: a second signal (Ctrl-C in a terminal reaches the demo and,
    # through make, its parent watch too) must not interrupt the clean-up.
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def log(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def choose_ports(given: Mapping[str, int | None]) -> dict[str, int]:
    """Each port as given; 0 is a free one; a busy *default* port becomes a free one."""
    ports: dict[str, int] = {}
    explicit = {p for p in given.values() if p}

    def another_free_port() -> int:
        # A port the system calls free can come back twice in a row (it was free both
        # times): take one that no other service of the demo has, or is given.
        for _ in range(100):
            port = free_port()
            if port not in explicit and port not in ports.values():
                return port
        raise DemoError("no free loopback port found")

    for name, default in DEFAULT_PORTS.items():
        port = given.get(name)
        if port == 0:
            ports[name] = another_free_port()
        elif port is not None:
            if port_busy(port):
                raise DemoError(f"--{name}-port {port} is in use (0 picks a free port)")
            ports[name] = port
        elif port_busy(default):
            ports[name] = another_free_port()
            log(f"port {default} ({PORT_HELP[name]}) is in use: using {ports[name]}")
        else:
            ports[name] = default
    if len(set(ports.values())) != len(ports):
        raise DemoError(f"two services on one port: {ports}")
    return ports


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= int(r.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def http_page(url: str, timeout: float = 5.0) -> str | None:
    """The body of a page that answers 200 (after redirects), else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode(errors="replace") if int(r.status) == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: created 0600, never world-readable, even
    for a moment (credentials, even the demo fleet's public fixtures)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


@dataclass
class Phases:
    """Wall-clock time of each start-up phase (printed, and read by the benchmark)."""

    start: float = field(default_factory=time.monotonic)
    times: list[tuple[str, float]] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._last = self.start

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times.append((name, now - self._last))
        self._last = now

    def step(self, name: str, seconds: float) -> None:
        """A step inside a phase (steps of one phase may overlap)."""
        self.steps.append((name, seconds))

    def total(self) -> float:
        return time.monotonic() - self.start

    def summary(self) -> str:
        text = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.times)
        if self.steps:
            text += "; steps: " + ", ".join(f"{n} {s:.1f} s" for n, s in self.steps)
        return text


supervisor = load_module(DEMO / "supervisor.py", "infrascope_demo_supervisor")


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             alive: Callable[[], str | None] = lambda: None, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true; ``alive`` returns a reason to give up early."""
    deadline = time.monotonic() + timeout
    while not check():
        reason = alive()
        if reason:
            raise DemoError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not there after {timeout:.0f} s")
        time.sleep(interval)


def run(cmd: Sequence[str], logfile: Path, what: str, timeout: float = 600,
        log_stdout: bool = True) -> str:
    """Run a command to completion, its stderr (and, unless it is data that must not be
    logged, its stdout) appended to ``logfile``; returns its stdout."""
    with open(logfile, "ab") as err:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL)
        try:
            raw, _ = proc.communicate(timeout=timeout)
        except BaseException:
            # Ctrl-C, SIGTERM or the timeout: SIGTERM first, so that the command stops
            # what it started itself (infrascope history load: promtool, a temporary
            # Prometheus), then SIGKILL.
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    out = raw.decode(errors="replace")
    if log_stdout:
        with open(logfile, "a", encoding="utf-8") as fh:
            fh.write(out)
    if proc.returncode != 0:
        raise DemoError(f"{what} exited with {proc.returncode}:\n{tail(logfile)}")
    return out


# --------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------
@dataclass
class Demo:
    state: Path
    ports: dict[str, int]
    phases: Phases = field(default_factory=Phases)
    stack: Any = None  # the Supervisor of the long-running components
    ready: bool = False
    servers: int = 0
    server_keys: list[tuple[str, str]] = field(default_factory=list)  # (source, id)
    range_: tuple[int, int] = (0, 0)

    # -- paths ---------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state / "prometheus" / "data"

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def exe(self, name: str) -> str:
        found = BIN / name
        if found.exists():
            return str(found)
        other = shutil.which(name)
        if other is None:
            raise DemoError(f"{name} not found: run `make demo` (it installs what it needs)")
        return other

    # -- state and inputs ----------------------------------------------------------
    def prepare(self) -> None:
        for tool in ("prometheus", "promtool"):
            if shutil.which(tool) is None:
                raise DemoError(f"{tool} is not installed: `make demo` installs it "
                                "(scripts/ensure-apt-deps.sh)")
        alertmanager()  # raises when missing
        if self.state.exists() and any(self.state.iterdir()) \
                and not (self.state / MARKER).exists():
            raise DemoError(f"{self.state} is not empty and not a demo state folder: "
                            "choose another --state-dir")
        if self.state.exists():
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True, mode=0o700)
        self.state.chmod(0o700)  # configuration with credentials, the API token
        for sub in ("logs", "history", "prometheus/data", "prometheus/rules",
                    "alertmanager/data", "webhook", "recommender"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / MARKER).write_text("state folder of scripts/demo.py; emptied at start\n")
        self.write_fleet()

    def write_fleet(self) -> None:
        """The demo fleet plus this machine as one more dedicated server."""
        fleet = yaml.safe_load(resources.files("infrascope_sim").joinpath(
            "demo_fleet.yaml").read_text())
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        fleet["robot"]["servers"].append({
            "number": THIS_MACHINE_NUMBER, "name": THIS_MACHINE_NAME,
            "product": "this machine", "dc": "FSN1-DC1",
            "cores": os.cpu_count() or 1,
            "memory_gb": max(1, round(pages / MEMORY_BYTES_PER_GB)),
            "disk_gb": max(1, round(shutil.disk_usage("/").total / DISK_BYTES_PER_GB)),
            "paid_until": "2026-12-31",
            # Nothing to pay: it is the machine the demo runs on. Priced, so the
            # bill and the roll-ups know it (an unpriced server is flagged).
            "monthly_price_net": "0.00",
            "labels": {"env": "demo", "project": "infrascope"},
            "workload": {"profile": "idle"},  # unused: the real agent reports it
        })
        self.server_keys = [("dedicated", str(d["number"])) for d in fleet["robot"]["servers"]]
        self.server_keys += [("cloud", str(c["id"])) for p in fleet["cloud"]["projects"]
                             for c in p["servers"]]
        self.servers = len(self.server_keys)
        text = ("# The built-in demo fleet plus this machine as dedicated server "
                f"{THIS_MACHINE_NUMBER}\n# (written by scripts/demo.py).\n"
                + yaml.safe_dump(fleet, sort_keys=False))
        write_private(self.state / "fleet.yaml", text)  # the fleet's API credentials
        config = run([self.exe("infrascope-sim"), "exporter-config", "--fleet",
                      str(self.state / "fleet.yaml"), "--base-url", self.url("sim")],
                     self.logs / "prepare.log", "infrascope-sim exporter-config",
                     log_stdout=False)  # the configuration holds the fleet's credentials
        # the demo fleet's tokens (public fixtures, still treated as such)
        write_private(self.state / "exporter.yaml", config)

    # -- history ---------------------------------------------------------------------
    def history(self) -> None:
        """30 days of history through the one pipeline, ``infrascope history load``: the
        exporter's real backfill from the simulator and, as agents' history, what the
        simulated agents would have reported (Hetzner keeps no memory figures and no
        dedicated servers' metrics), into blocks, with the recording-rule passes over
        them against a temporary Prometheus (the demo's starts afterwards)."""
        self.range_ = plan_range(time.time(), HISTORY_DAYS)
        start, end = self.range_
        self.wait_stack(["sim"])
        hist = self.state / "history"
        t0 = time.monotonic()
        run([self.exe("infrascope-sim"), "agents-history",
             "--fleet", str(self.state / "fleet.yaml"), "--output", str(hist / "agents.om"),
             "--start", str(start), "--end", str(end), "--cpus", "1",
             "--exclude", f"dedicated/{THIS_MACHINE_NUMBER}"],
            self.logs / "history-agents.log", "infrascope-sim agents-history")
        self.phases.step("agents history", time.monotonic() - t0)
        t0 = time.monotonic()
        run([self.exe("infrascope"), "history", "load",
             "--exporter.config-file", str(self.state / "exporter.yaml"),
             "--exporter.instance", f"127.0.0.1:{self.ports['exporter']}",
             "--exporter.request-budget", "0.9", "--openmetrics", str(hist / "agents.om"),
             "--data-dir", str(self.data_dir), "--work-dir", str(hist / "load"),
             "--rules-dir", str(RULES), "--days", str(HISTORY_DAYS), "--end", iso(end),
             "--progress", "lines"],
            self.logs / "history-load.log", "infrascope history load", timeout=900)
        self.phases.step("infrascope history load", time.monotonic() - t0)
        (hist / "agents.om").unlink()
        self.phases.done("history")

    # -- configuration of the stack -------------------------------------------------
    def write_configs(self) -> None:
        self.write_rules()
        values = {f"{k}_port": str(v) for k, v in self.ports.items()}
        values.update(rules_dir=str(self.state / "prometheus" / "rules"),
                      this_machine_number=str(THIS_MACHINE_NUMBER),
                      this_machine_name=THIS_MACHINE_NAME)
        text = Template((DEMO / "prometheus.yml").read_text()).substitute(values)
        (self.state / "prometheus" / "prometheus.yml").write_text(text)
        self.write_alertmanager()
        token = self.state / "recommender" / "api-token"
        write_private(token, secrets.token_urlsafe(32) + "\n")
        rec = {"prometheus": {"url": self.url("prometheus")},
               "state": {"path": str(self.state / "recommender" / "state.db")},
               "api": {"listen": f"127.0.0.1:{self.ports['recommender']}",
                       "token_file": str(token)},
               "schedule": {"interval": "1h"}}
        (self.state / "recommender" / "recommender.yml").write_text(
            "# The recommender of `make demo` (written by scripts/demo.py).\n"
            + yaml.safe_dump(rec, sort_keys=False))

    def write_rules(self) -> None:
        """The committed rule files with demo intervals and `for` durations (see top)."""
        out = self.state / "prometheus" / "rules"
        for path in sorted(RULES.glob("*.rules.yml")):
            doc = yaml.safe_load(path.read_text())
            for group in doc["groups"]:
                if group["name"] not in KEEP_INTERVAL:
                    group["interval"] = DEMO_INTERVAL
                for rule in group["rules"]:
                    if "for" in rule:
                        for_seconds = parse_duration(rule["for"], "for", prometheus=True,
                                                     allow_zero=True)
                        rule["for"] = f"{int(for_seconds) // FOR_DIVISOR}s"
            (out / path.name).write_text(
                f"# {path.relative_to(ROOT)} for the demo (written by scripts/demo.py): group "
                f"intervals {DEMO_INTERVAL} except {', '.join(sorted(KEEP_INTERVAL))}, every "
                f"`for` divided by {FOR_DIVISOR}.\n"
                + yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True))
        result = subprocess.run(["promtool", "check", "rules", *map(str, out.glob("*.yml"))],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DemoError(f"promtool check rules failed on the demo rules:\n{result.stdout}"
                            f"{result.stderr}")

    def write_alertmanager(self) -> None:
        render_demo = load_module(ROOT / "alertmanager" / "render_demo.py", "render_demo")
        production = render_demo.load(render_demo.PRODUCTION)
        sink = self.url("webhook", "/alerts")
        config = render_demo.render(production, sink,
                                    template_dir=render_demo.PRODUCTION.parent)

        def timing(route: dict[str, Any], root: bool) -> None:
            for key, value in AM_TIMING.items():
                if root or key in route:
                    route[key] = value
            for child in route.get("routes", []):
                timing(child, False)

        timing(config["route"], True)
        (self.state / "alertmanager" / "alertmanager.yml").write_text(
            render_demo.dump(config, sink).replace(
                "# GENERATED by alertmanager/render_demo.py", "# Written by scripts/demo.py "
                f"with alertmanager/render_demo.py (timings: {AM_TIMING})", 1))

    def commands(self) -> dict[str, list[str]]:
        """The argv of each long-running component, in start order."""
        s = self.state
        py = sys.executable
        after = [py, str(DEMO / "after.py")]
        return {
            "simulator": [self.exe("infrascope-sim"), "serve", "--fleet", str(s / "fleet.yaml"),
                          "--listen", f"127.0.0.1:{self.ports['sim']}"],
            # The exporter reads the simulator at start (Robot only every 10 minutes).
            "exporter": [*after, "--name", "exporter", "--url", self.url("sim", "/healthz"),
                         "--", self.exe("infrascope-exporter"), "--config.file",
                         str(s / "exporter.yaml"), "--web.listen-address",
                         f"127.0.0.1:{self.ports['exporter']}", "--render-interval", "2s"],
            "agent": [self.exe("infrascope-agent"), "--web.listen-address",
                      f"127.0.0.1:{self.ports['agent']}"],
            "webhook": [py, str(DEMO / "webhook_receiver.py"), "--listen",
                        f"127.0.0.1:{self.ports['webhook']}", "--log",
                        str(s / "webhook" / "notifications.jsonl")],
            "alertmanager": [alertmanager(),
                             "--config.file=" + str(s / "alertmanager" / "alertmanager.yml"),
                             "--storage.path=" + str(s / "alertmanager" / "data"),
                             f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                             "--web.external-url=" + self.url("alertmanager", "/"),
                             "--cluster.listen-address=", "--data.retention=192h"],
            # Prometheus starts once the history is loaded and its targets answer (no
            # alert fires for a target that is merely not up yet).
            "prometheus": [*after, "--name", "prometheus", "--timeout", "900",
                           "--file", str(s / "backfill.done"),
                           "--url", self.url("sim", "/healthz"),
                           "--url", self.url("exporter", "/readyz"),
                           "--url", self.url("agent", "/metrics"),
                           "--url", self.url("webhook", "/healthz"),
                           "--url", self.url("alertmanager", "/-/ready"), "--",
                           "prometheus", "--config.file=" + str(s / "prometheus" /
                                                                "prometheus.yml"),
                           "--storage.tsdb.path=" + str(self.data_dir),
                           f"--storage.tsdb.retention.time={RETENTION}",
                           f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                           "--web.external-url=" + self.url("prometheus", "/")],
            # `recommender run` once every figure it reads is in Prometheus for every
            # server (the demo checks, then writes figures.ready), then serve.
            "recommender": [*after, "--name", "recommender", "--timeout", "900",
                            "--file", str(s / FIGURES_READY),
                            "--run", shlex.join([self.exe("recommender"), "run", "--config",
                                                 str(s / "recommender" / "recommender.yml")]),
                            "--", self.exe("recommender"), "serve", "--config",
                            str(s / "recommender" / "recommender.yml")],
        }

    # -- the stack ------------------------------------------------------------------
    def launch_stack(self) -> None:
        """Every component starts now, under the supervisor; Prometheus waits for the
        history (``backfill.done``), the recommender for every figure it reads."""
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        self.stack = supervisor.Supervisor(log, on_change=self.on_restart)
        for name, argv in self.commands().items():
            self.stack.add(name, argv, self.logs / f"{name}.log", env=env, cwd=self.state)
        self.stack.start()
        self.write_info()

    def on_restart(self) -> None:
        """A component was restarted: demo.json names its new pid."""
        self.write_info()

    def stack_alive(self) -> str | None:
        """Why the stack cannot come up (a component out of restarts), or None."""
        if self.stack is None:
            return None
        reason = self.stack.given_up()
        if reason is None:
            return None
        name = reason.split(" ", 1)[0]
        return f"{reason}:\n{tail(self.logs / (name + '.log'))}"

    READY = {"sim": ("the simulator", "/healthz", 30),
             "exporter": ("the exporter", "/readyz", 60),
             "agent": ("the agent", "/metrics", 30),
             "webhook": ("the webhook receiver", "/healthz", 30),
             "alertmanager": ("Alertmanager", "/-/ready", 30),
             "prometheus": ("Prometheus", "/-/ready", 90),
             "recommender": ("the recommender (see logs/recommender.log)", "/readyz", 300)}

    def wait_stack(self, names: Sequence[str]) -> None:
        for name in names:
            what, path, timeout = self.READY[name]
            wait_for(what, functools.partial(http_ok, self.url(name, path)), timeout,
                     self.stack_alive)

    def wait_figures(self, timeout: float = 600) -> None:
        """Until every figure the recommender reads is in Prometheus, for every server
        (the 30-day ones for every server with history): then ``figures.ready``."""
        readiness = load_module(DEMO / "readiness.py", "infrascope_demo_readiness")
        expected = {readiness.ServerKey(*key) for key in self.server_keys}
        no_history = {readiness.ServerKey("dedicated", str(THIS_MACHINE_NUMBER))}
        gaps: list[str] = []

        def complete() -> bool:
            gaps[:] = readiness.check(self.url("prometheus"), expected, no_history)
            return not gaps

        try:
            wait_for("every figure the recommender reads", complete, timeout,
                     self.stack_alive, interval=1.0)
        except DemoError as exc:
            shown = "\n".join(f"    {gap}" for gap in gaps[:20])
            more = f"\n    ... {len(gaps) - 20} more" if len(gaps) > 20 else ""
            raise DemoError(f"{exc}; still missing:\n{shown}{more}") from None
        (self.state / FIGURES_READY).write_text("")

    def children_pids(self) -> dict[str, int]:
        """The current pid of each component."""
        return dict(self.stack.pids()) if self.stack is not None else {}

    def stop_stack(self) -> None:
        """SIGTERM to every component (its process group), SIGKILL after 10 s."""
        if self.stack is not None:
            for name in self.stack.stop(timeout=10):
                log(f"{name} did not stop on SIGTERM within 10 s: killed")

    # -- the report -----------------------------------------------------------------
    def report(self) -> str:
        cfg = str(self.state / "recommender" / "recommender.yml")
        table = run([self.exe("recommender"), "report", "--config", cfg, "--from-state"],
                    self.logs / "report.log", "recommender report")
        run([self.exe("recommender"), "report", "--config", cfg, "--from-state",
             "--format", "html", "--output", str(self.state / "recommender" / "report.html")],
            self.logs / "report.log", "recommender report --format html")
        (self.state / "recommender" / "report.txt").write_text(table)
        return table

    def web_links(self) -> tuple[list[tuple[str, str, str]], str]:
        """Prometheus' and Alertmanager's pages as the installed versions serve them.

        Prometheus 2.x without its React UI (Debian's package) serves the classic pages
        under ``/classic/`` and answers 404 at ``/rules``; Debian's Alertmanager has no
        web application at all (its ``/`` says so): the API is what there is."""
        prom = ""
        for prefix in ("", "/classic"):
            if http_page(self.url("prometheus", prefix + "/rules")):
                prom = prefix
                break
        rows = [("Prometheus", self.url("prometheus", prom + "/graph"),
                 f"rules {self.url('prometheus', prom + '/rules')}, alerts "
                 f"{self.url('prometheus', prom + '/alerts')}, targets "
                 f"{self.url('prometheus', prom + '/targets')}")]
        home = http_page(self.url("alertmanager", "/")) or ""
        if "<script" in home:  # the web application (an Elm app) is installed
            rows.append(("Alertmanager", self.url("alertmanager", "/#/alerts"), ""))
            note = ""
        else:
            rows.append(("Alertmanager", self.url("alertmanager", "/api/v2/alerts"),
                         f"API; status {self.url('alertmanager', '/api/v2/status')}"))
            note = ("Alertmanager's web UI is not in this package (Debian's): the link is "
                    "its API; `amtool alert` lists the alerts too (--alertmanager.url: "
                    "Alertmanager's address above)")
        return rows, note

    def summary(self) -> str:
        s = self.state
        rows, note = self.web_links()
        rows += [
            ("exporter", self.url("exporter", "/metrics"),
             f"service discovery {self.url('exporter', '/sd')}"),
            ("recommender API", self.url("recommender", "/api/recommendations"),
             f"docs {self.url('recommender', '/docs')}, annotations "
             f"{self.url('recommender', '/api/annotations')}, summary "
             f"{self.url('recommender', '/api/summary')}"),
            ("HTML report", self.url("recommender", "/report"),
             f"also {s / 'recommender' / 'report.html'}"),
            ("agent (this machine)", self.url("agent", "/metrics"),
             f"dedicated server {THIS_MACHINE_NUMBER} '{THIS_MACHINE_NAME}'"),
            ("Hetzner API simulator", self.url("sim", "/"), "demo fleet, simulated agents"),
            ("webhook receiver", self.url("webhook", "/"),
             f"notifications: {s / 'webhook' / 'notifications.jsonl'}"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"InfraScope demo: {self.servers} servers ({self.servers - 8} Cloud, 8 "
                 f"dedicated incl. this machine), {HISTORY_DAYS} days of history "
                 f"({iso(self.range_[0])} .. {iso(self.range_[1])}), up in "
                 f"{self.phases.total():.1f} s"]
        for name, url, text in rows:
            lines.append(f"  {name:<{width}}  {url}" + (f"   ({text})" if text else ""))
        lines.append(f"  {'API token':<{width}}  {s / 'recommender' / 'api-token'} "
                     "(for accept/dismiss)")
        lines.append(f"  {'state and logs':<{width}}  {s}/ (logs/<component>.log)")
        if note:
            lines.append(f"  {note}")
        return "\n".join(lines)

    def write_info(self) -> None:
        """demo.json: ports, URLs, the components' pids (rewritten after a restart)."""
        stack = self.stack
        info = {"state_dir": str(self.state), "ports": self.ports,
                "urls": {name: self.url(name) for name in self.ports},
                "demo_pid": os.getpid(), "ready": self.ready,
                "pids": self.children_pids(),
                "all_pids": stack.all_pids() if stack is not None else [],
                "logs": {name: str(self.logs / f"{name}.log") for name in self.commands()},
                "servers": self.servers,
                "this_machine": {"source": "dedicated", "server_id": str(THIS_MACHINE_NUMBER),
                                 "server_name": THIS_MACHINE_NAME},
                "history": {"start": self.range_[0], "end": self.range_[1]},
                "phases": dict(self.phases.times), "steps": dict(self.phases.steps),
                "ready_seconds": self.phases.total()}
        # a name of its own per thread (the supervisor's rewrites it after a restart):
        # readers never see half a file
        tmp = self.state / f"demo.json.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(self.state / "demo.json")


def alertmanager() -> str:
    """Alertmanager's binary: Debian calls it prometheus-alertmanager."""
    for name in ("alertmanager", "prometheus-alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    raise DemoError("Alertmanager is not installed: `make demo` installs it "
                    "(Debian package prometheus-alertmanager, scripts/ensure-apt-deps.sh)")


@contextmanager
def signals_raise() -> Iterator[None]:
    previous = {s: signal.signal(s, _interrupt) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------------------
# `make demo`: Ctrl-C and SIGINT/SIGTERM to make's pid
# --------------------------------------------------------------------------------------
SHELLS = {"sh", "dash", "bash"}
MAKES = {"make", "gmake"}


def make_ancestor() -> int | None:
    """The ``make`` this demo runs under: its parent, or its grandparent through the
    shell make ran the recipe with; None when not run by make."""
    pid = os.getppid()
    for _ in range(2):
        status = proc_status(pid)
        name = status.get("Name", "")
        if name in MAKES:
            return pid
        if name not in SHELLS:
            return None
        pid = int(status.get("PPid", "0") or 0)
    return None


def sigint_blocked(pid: int) -> bool:
    """True while ``pid`` has SIGINT blocked. GNU make blocks it while it handles a
    SIGINT: it does not forward the signal (a terminal sends Ctrl-C to the whole process
    group), it waits for its children to exit, then dies of it."""
    mask = proc_status(pid).get("SigBlk", "")
    return bool(mask) and bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


def watch_parent(done: threading.Event, interval: float = 0.25) -> None:
    """Stop the demo when make was interrupted, or when the parent is gone.

    SIGINT sent to make's pid alone (not to its process group, as a terminal does) never
    reaches the demo: make only waits for it, forever. The demo watches make instead and
    raises SIGINT in itself when make is handling one; a parent that dies (SIGKILL to
    make, a closed terminal) stops the demo with SIGTERM. make forwards SIGTERM itself."""
    parent = os.getppid()
    make = make_ancestor()
    while not done.wait(interval):
        if os.getppid() != parent:
            log(f"parent process {parent} is gone")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if make is not None and sigint_blocked(make):
            log(f"make (pid {make}) got SIGINT")
            os.kill(os.getpid(), signal.SIGINT)
            return


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true",
                        help="start, print the report and the URLs, stop (for tests)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE,
                        help="state folder, emptied at start (default: %(default)s)")
    for name, default in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=None, metavar="PORT",
                            help=f"{PORT_HELP[name]} (default {default}; 0: a free port)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # for every Python program it starts
    watching = threading.Event()
    with signals_raise():
        demo: Demo | None = None
        try:
            threading.Thread(target=watch_parent, args=(watching,), name="parent",
                             daemon=True).start()
            ports = choose_ports({n: getattr(args, f"{n}_port") for n in DEFAULT_PORTS})
            demo = Demo(state=args.state_dir.resolve(), ports=ports)
            os.environ[ENV_MARK] = str(demo.state)  # inherited by everything it starts
            log(f"state folder {demo.state}; building 30 days of history (about a minute)")
            demo.prepare()
            demo.write_configs()
            demo.launch_stack()
            demo.phases.done("prepare")
            demo.history()
            (demo.state / "backfill.done").write_text("")
            log("history loaded; Prometheus starts")
            demo.wait_stack(["exporter", "agent", "webhook", "alertmanager", "prometheus"])
            demo.phases.done("Prometheus")
            demo.wait_figures()
            demo.phases.done("figures")
            demo.wait_stack(["recommender"])
            demo.phases.done("recommender")
            table = demo.report()
            demo.ready = True
            demo.write_info()
            print(table, end="" if table.endswith("\n") else "\n")
            print()
            print(demo.summary(), flush=True)
            log(f"ready in {demo.phases.total():.1f} s ({demo.phases.summary()})")
            if args.once:
                return 0
            print("Press Ctrl-C to stop.", flush=True)
            while True:  # the supervisor restarts what dies; this waits for a signal
                time.sleep(0.5)
        except Interrupted as exc:
            log(f"{exc}: stopping")
            return 0
        except DemoError as exc:
            log(f"failed: {exc}")
            return 1
        finally:
            watching.set()
            if demo is not None:
                # A second Ctrl-C must not cut the clean-up short.
                for s in SIGNALS:
                    signal.signal(s, signal.SIG_IGN)
                demo.stop_stack()
                log("stopped every process it started")


if __name__ == "__main__":
    raise SystemExit(main())
