"""`make demo`'s runner starts the stack so far, prints it, and stops every process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_once_prints_urls_and_the_bill_then_stops() -> None:
    sim_port, exporter_port = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--once",
         "--sim-port", str(sim_port), "--exporter-port", str(exporter_port)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"http://127.0.0.1:{exporter_port}/metrics" in out
    assert "demo fleet: 19 servers" in out
    bill = float(out.split("projected bill: EUR ")[1].split()[0].replace(",", ""))
    assert 700 < bill < 1000
    assert "demo-webshop-token" not in out + result.stderr
    # Every process it started is gone: nothing listens on its ports any more.
    for port in (sim_port, exporter_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
