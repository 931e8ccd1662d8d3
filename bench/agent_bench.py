#!/usr/bin/env python3
"""The agent against node_exporter on this host, scraped alike in the same run.

Starts ``/usr/bin/prometheus-node-exporter`` (its default collectors) and the
agent's CLI (its default collectors) on loopback ports, scrapes each N=100
times, alternating (which one goes first flips every round), over one
keep-alive connection each, without gzip (the uncompressed exposition; asking
for gzip would only add compression work to node_exporter's side), after 3
warm-up scrapes each. Measured per exporter:

* CPU per scrape: the process's utime+stime over the whole measured loop
  (``/proc/PID/stat``, divided by CLK_TCK), divided by N; the CPU of children
  it waited for (cutime+cstime: the agent runs ``systemctl``) is counted too.
* scrape latency: median time from sending the request to the last body byte.
* resident memory: VmRSS after the scrapes.
* exposition size: bytes of the last (uncompressed) body.

Targets: CPU per scrape and median latency no worse than node_exporter's
(ratio <= 1); RSS under 40 MB; exposition under half of node_exporter's.
Prints every measurement with its ratio and OK or MISSED; exits 1 on any
MISSED, 2 when node_exporter is not installed.

Also printed: the agent's slowest collectors by its own
node_scrape_collector_duration_seconds (wall time; a collector that failed
reports none), to tell where its time goes.

Run: `make bench` or `.venv/bin/python bench/agent_bench.py [N] [-- AGENT_FLAGS...]`
(e.g. `-- --no-collector.ports` to see what one collector costs; the targets
are for the default collectors).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infrascope_core.service import free_port

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
SCRAPES = 100
WARMUP = 3
RSS_LIMIT_MB = 40.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, waited-for children's cutime+cstime) of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Exporter:
    name: str
    cmd: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = field(default_factory=list)
    body: bytes = b""
    cpu_start: tuple[float, float] = (0.0, 0.0)
    cpu_end: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.cmd}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not listen on {self.port}") from None
                time.sleep(0.1)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def scrape(self) -> float:
        assert self.conn is not None
        start = time.perf_counter()
        self.conn.request("GET", "/metrics", headers={"Accept-Encoding": "identity"})
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"{self.name}: /metrics answered {resp.status}")
        self.body = body
        return elapsed

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def cpu_per_scrape(self, n: int) -> tuple[float, float]:
        own = self.cpu_end[0] - self.cpu_start[0]
        children = self.cpu_end[1] - self.cpu_start[1]
        return (own + children) / n, children / n


def agent_command(port: int, flags: list[str]) -> list[str]:
    script = Path(sys.executable).with_name("infrascope-agent")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "infrascope_agent"]
    return base + [f"--web.listen-address=127.0.0.1:{port}", *flags]


def collector_durations(body: bytes) -> list[tuple[str, float]]:
    pattern = re.compile(rb'^node_scrape_collector_duration_seconds\{collector="([^"]+)"\} (\S+)$',
                         re.M)
    found = [(m.group(1).decode(), float(m.group(2))) for m in pattern.finditer(body)]
    return sorted(found, key=lambda x: -x[1])


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main(argv: list[str]) -> int:
    args, flags = argv[1:], []
    if "--" in args:
        args, flags = args[:args.index("--")], args[args.index("--") + 1:]
    n = int(args[0]) if args else SCRAPES
    if not os.access(NODE_EXPORTER, os.X_OK):
        print(f"agent_bench: {NODE_EXPORTER} not installed (apt-get install "
              "prometheus-node-exporter, or scripts/ensure-apt-deps.sh)", file=sys.stderr)
        return 2
    node_port, agent_port = free_port(), free_port()
    node = Exporter("node_exporter", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}"],
                    node_port)
    agent = Exporter("agent", agent_command(agent_port, flags), agent_port)
    version = subprocess.run([NODE_EXPORTER, "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[:1] or ["node_exporter ?"]
    print(f"agent_bench: {version[0].strip()} vs infrascope-agent"
          f"{' ' + ' '.join(flags) if flags else ''}, {n} scrapes each, alternating, "
          f"{os.cpu_count()} CPUs")
    try:
        node.start()
        agent.start()
        for exporter in (node, agent):
            for _ in range(WARMUP):
                exporter.scrape()
        pair = (node, agent)
        for exporter in pair:
            exporter.cpu_start = cpu_seconds(exporter.pid)
        for i in range(n):
            for exporter in (pair if i % 2 == 0 else pair[::-1]):
                exporter.latencies.append(exporter.scrape())
        for exporter in pair:
            exporter.cpu_end = cpu_seconds(exporter.pid)
        rss = {e.name: rss_mb(e.pid) for e in pair}
    finally:
        agent.stop()
        node.stop()

    results: list[bool] = []

    def line(label: str, a: str, b: str, ratio: float, target: str, ok: bool) -> None:
        results.append(ok)
        print(f"  {label:<22} agent {a:>10}   node_exporter {b:>10}   ratio {ratio:5.2f}"
              f"   target {target:<14} {verdict(ok)}")

    cpu_a, cpu_a_children = agent.cpu_per_scrape(n)
    cpu_n, _ = node.cpu_per_scrape(n)
    line("CPU per scrape", f"{cpu_a * 1000:.2f} ms", f"{cpu_n * 1000:.2f} ms",
         cpu_a / cpu_n if cpu_n else float("inf"), "ratio <= 1", cpu_a <= cpu_n)
    if cpu_a_children:
        print(f"    (agent: {cpu_a_children * 1000:.2f} ms of it in child processes)")
    lat_a = statistics.median(agent.latencies)
    lat_n = statistics.median(node.latencies)
    line("median scrape latency", f"{lat_a * 1000:.2f} ms", f"{lat_n * 1000:.2f} ms",
         lat_a / lat_n, "ratio <= 1", lat_a <= lat_n)
    line("RSS after scrapes", f"{rss['agent']:.1f} MB", f"{rss['node_exporter']:.1f} MB",
         rss["agent"] / rss["node_exporter"], f"< {RSS_LIMIT_MB:.0f} MB",
         rss["agent"] < RSS_LIMIT_MB)
    size_a, size_n = len(agent.body), len(node.body)
    line("exposition size", f"{size_a / 1024:.1f} KiB", f"{size_n / 1024:.1f} KiB",
         size_a / size_n, "ratio < 0.5", size_a < size_n / 2)
    print(f"  series: agent {_series(agent.body)}, node_exporter {_series(node.body)}; "
          f"latency p90 agent {_p90(agent.latencies) * 1000:.2f} ms, node_exporter "
          f"{_p90(node.latencies) * 1000:.2f} ms")
    slowest = ", ".join(f"{name} {seconds * 1000:.1f} ms"
                        for name, seconds in collector_durations(agent.body)[:4])
    print(f"  agent's slowest collectors (last scrape, wall): {slowest}")
    missed = results.count(False)
    print(f"agent_bench: {len(results) - missed} targets met, {missed} missed")
    return 1 if missed else 0


def _series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
