#!/usr/bin/env python3
"""`make demo`: run what exists of the stack natively on the built-in demo fleet.

So far: the Hetzner API simulator (demo fleet, simulated agents) and the
exporter configured against it. Prints the URLs and this month's bill, then
keeps running until Ctrl-C (or exits at once with --once) and stops every
process it started, by pid. State lives in .demo/ only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STATE = ROOT / ".demo"


def wait_for(url: str, seconds: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"demo: {p.args[0]} exited with {p.returncode}; "
                                 f"see {STATE}/*.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: {url} did not answer within {seconds:.0f} s")


def bill(metrics: str) -> tuple[float, int]:
    total, servers = 0.0, 0
    for line in metrics.splitlines():
        if line.startswith(("hetzner_server_monthly_cost_euros{",
                            "hetzner_resource_monthly_cost_euros{",
                            "hetzner_server_traffic_overage_projected_cost_euros{")):
            total += float(line.rsplit(" ", 1)[1])
        if line.startswith("hetzner_server_info{"):
            servers += 1
    return total, servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="start, print, stop (for tests)")
    parser.add_argument("--sim-port", type=int, default=8480)
    parser.add_argument("--exporter-port", type=int, default=8790)
    args = parser.parse_args()
    STATE.mkdir(exist_ok=True)
    sim_url = f"http://127.0.0.1:{args.sim_port}"
    exporter_url = f"http://127.0.0.1:{args.exporter_port}"
    procs: list[subprocess.Popen] = []
    try:
        with open(STATE / "simulator.log", "w") as log:
            procs.append(subprocess.Popen(
                [str(BIN / "infrascope-sim"), "serve", "--fleet", "demo",
                 "--listen", f"127.0.0.1:{args.sim_port}"], stdout=log, stderr=log))
        wait_for(sim_url + "/healthz", 30, procs)
        config = subprocess.run(
            [str(BIN / "infrascope-sim"), "exporter-config", "--fleet", "demo",
             "--base-url", sim_url], check=True, capture_output=True, text=True).stdout
        (STATE / "exporter.yaml").write_text(config)
        os.chmod(STATE / "exporter.yaml", 0o600)  # it holds the demo fleet's tokens
        with open(STATE / "exporter.log", "w") as log:
            procs.append(subprocess.Popen(
                [str(BIN / "infrascope-exporter"), "--config.file", str(STATE / "exporter.yaml"),
                 "--web.listen-address", f"127.0.0.1:{args.exporter_port}",
                 "--render-interval", "2s"], stdout=log, stderr=log))
        wait_for(exporter_url + "/readyz", 60, procs)
        time.sleep(2.5)  # one render after the first refreshes
        with urllib.request.urlopen(exporter_url + "/metrics", timeout=10) as r:
            total, servers = bill(r.read().decode())
        print("InfraScope demo (so far: Hetzner API simulator + exporter)")
        print(f"  simulator:  {sim_url}/  (Cloud {sim_url}/v1, Robot {sim_url}/robot)")
        print(f"  exporter:   {exporter_url}/metrics   service discovery: {exporter_url}/sd")
        print(f"  demo fleet: {servers} servers; this month's projected bill: "
              f"EUR {total:,.2f} net")
        print(f"  logs and config: {STATE}/")
        if args.once:
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    raise SystemExit(main())
