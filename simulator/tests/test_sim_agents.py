"""Simulated agents: node_exporter-format endpoints driven by the workload model."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infrascope_sim.agents import REBOOT_PERIOD_SECONDS, boot_time, render_agent
from infrascope_sim.fleet import load_fleet

NOW = 1_795_000_000.0


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def cpu_busy(parsed: dict) -> float:
    return sum(v for (name, labels), v in parsed.items()
               if name == "node_cpu_seconds_total" and dict(labels)["mode"] != "idle")


def cpu_total(parsed: dict) -> float:
    return sum(v for (name, _), v in parsed.items() if name == "node_cpu_seconds_total")


@pytest.fixture(scope="module")
def fleet():
    return load_fleet("demo")


def test_cpu_counters_give_back_the_workload(fleet) -> None:
    server = fleet.find("cloud", 41000101)  # diurnal web, 4 vCPU
    a = samples(render_agent(server, NOW - 3600))
    b = samples(render_agent(server, NOW))
    busy = cpu_busy(b) - cpu_busy(a)
    elapsed = cpu_total(b) - cpu_total(a)
    assert elapsed == pytest.approx(4 * 3600, rel=1e-4)
    # Counters are rounded to 10 ms per sample; over an hour that is noise.
    assert busy / elapsed == pytest.approx(server.workload.mean_cpu(NOW - 3600, NOW), abs=1e-4)
    cpus = {dict(labels)["cpu"] for (name, labels) in b if name == "node_cpu_seconds_total"}
    assert cpus == {"0", "1", "2", "3"}
    modes = {dict(labels)["mode"] for (name, labels) in b if name == "node_cpu_seconds_total"}
    assert modes == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}


def test_memory_filesystem_and_identity(fleet) -> None:
    server = fleet.find("dedicated", 2391001)  # AX102, 128 GB, memory-heavy
    parsed = samples(render_agent(server, NOW))
    total = parsed[("node_memory_MemTotal_bytes", ())]
    avail = parsed[("node_memory_MemAvailable_bytes", ())]
    assert total == pytest.approx(128 * 1024**3 * 0.97, rel=1e-3)
    assert 1 - avail / total == pytest.approx(server.workload.mem_at(NOW), abs=1e-6)
    fs = (("device", "/dev/md2"), ("fstype", "ext4"), ("mountpoint", "/"))
    assert parsed[("node_filesystem_avail_bytes", fs)] < parsed[("node_filesystem_size_bytes", fs)]
    # the product's 3840 GB of disk are decimal GB; ext4 keeps 2 % (whole 4 KiB blocks)
    assert server.disk_gb == 3840
    assert parsed[("node_filesystem_size_bytes", fs)] == pytest.approx(3840 * 10**9 * 0.98,
                                                                       abs=4096)
    uname = [labels for (name, labels) in parsed if name == "node_uname_info"][0]
    assert dict(uname)["nodename"] == "db-primary"
    assert ("node_boot_time_seconds", ()) in parsed
    svc = [dict(labels) for (name, labels) in parsed if name == "infrascope_service_info"]
    assert svc == [{"kind": "systemd", "service": "postgresql@16-main.service",
                    "state": "active", "sub_state": "running"}]
    ports = [dict(labels) for (name, labels) in parsed if name == "infrascope_listen_port_info"]
    assert ports[0]["port"] == "5432" and ports[0]["process"] == "postgresql"


def test_the_root_filesystem_is_the_primary_disk_in_decimal_gb(fleet) -> None:
    """A Cloud server's ``/`` is its primary disk (the API's ``primary_disk_size``, kept at
    160 GB by a CPU/RAM-only upgrade to a ccx33, whose own disk is 240 GB) in GB of 10^9
    bytes, less ext4's 2 %: what the exporter's ``hetzner_server_disk_bytes`` must match."""
    server = fleet.find("cloud", 41000103)  # shop-db-1
    assert (server.server_type.disk_gb, server.primary_disk_size) == (240, 160)
    fs = (("device", "/dev/sda1"), ("fstype", "ext4"), ("mountpoint", "/"))
    size = samples(render_agent(server, NOW))[("node_filesystem_size_bytes", fs)]
    assert size == pytest.approx(160 * 10**9 * 0.98, abs=4096)
    assert size % 4096 == 0


def test_counters_reset_only_at_reboot(fleet) -> None:
    server = fleet.find("cloud", 41000108)
    boot = boot_time(server, NOW)
    assert boot <= NOW < boot + REBOOT_PERIOD_SECONDS
    assert (boot - server.created) % REBOOT_PERIOD_SECONDS == 0
    before = cpu_total(samples(render_agent(server, NOW - 60)))
    after = cpu_total(samples(render_agent(server, NOW)))
    assert after > before or boot > NOW - 60


def test_agents_served_and_discoverable(served) -> None:
    sd = httpx.get(served.agents_sd).json()
    assert len(sd) == 23  # every server of the demo fleet: 16 Cloud, 7 dedicated
    group = next(g for g in sd if g["labels"]["server_name"] == "shop-db-1")
    assert group["labels"]["source"] == "cloud" and group["labels"]["server_id"] == "41000103"
    host = group["targets"][0]
    r = httpx.get(f"http://{host}{group['labels']['__metrics_path__']}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "node_memory_MemAvailable_bytes" in r.text
    assert httpx.get(served.base + "/agents/cloud/1/metrics").status_code == 404


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool comes from the Debian 'prometheus' package that make test "
                           "installs")
def test_promtool_accepts_the_exposition(fleet) -> None:
    """promtool's only complaint is node_exporter's own camelCase meminfo names.

    node_exporter itself exposes ``node_memory_MemTotal_bytes`` and friends,
    which promtool's lint flags; the simulated agents keep those names on
    purpose so that node-mixin queries work. Anything else is a real problem.
    """
    for server in [fleet.find("cloud", 41000101), fleet.find("dedicated", 2391007)]:
        text = render_agent(server, NOW)
        result = subprocess.run(["promtool", "check", "metrics"], input=text,
                                capture_output=True, text=True, timeout=30)
        problems = [line for line in (result.stdout + result.stderr).splitlines() if line]
        unexpected = [line for line in problems if not (
            line.startswith("node_memory_") and "not 'camelCase'" in line)]
        assert unexpected == []
        assert result.returncode in (0, 3)


def test_agents_on_their_servers_loopback_addresses(tmp_path) -> None:
    """``serve --agents-port``: each server whose address is a loopback one has its agent
    at ADDRESS:PORT/metrics, as a real agent on that server; other servers are left out."""
    import os
    import re
    import sys
    import time
    from pathlib import Path

    import yaml

    from infrascope_core.prometheus import free_port, wait_until

    fleet = {
        "cloud": {"projects": [{"name": "p", "token": "t", "servers": [
            {"name": "web-1", "type": "cx23", "ipv4": "127.78.0.11"},
            {"name": "web-2", "type": "cx33", "ipv4": "127.78.0.12"},
            {"name": "public-1", "type": "cx23"}]}]},
        "robot": {"user": "u", "password": "pw", "servers": [
            {"name": "db-1", "product": "AX42", "ip": "127.78.1.1"}]},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    port = free_port()
    exe = Path(sys.executable).with_name("infrascope-sim")
    proc = subprocess.Popen([str(exe), "serve", "--fleet", str(path), "--listen",
                             "127.0.0.1:0", "--agents-port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if "agents on their servers' addresses" in line:
                break
        assert re.search(rf"port {port}: 3 \(left out, not a loopback address: 1\)",
                         lines[-1]), lines

        def nodename(ip: str) -> str:
            r = httpx.get(f"http://{ip}:{port}/metrics", timeout=5)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            return re.search(r'node_uname_info\{.*nodename="([^"]+)"', r.text).group(1)

        wait_until(lambda: nodename("127.78.0.11"), 10, "the agents")
        assert nodename("127.78.0.11") == "web-1"
        assert nodename("127.78.0.12") == "web-2"
        assert nodename("127.78.1.1") == "db-1"
        with pytest.raises(httpx.ConnectError):  # nothing else listens on that port
            httpx.get(f"http://127.78.0.13:{port}/metrics", timeout=5)
        proc.terminate()
        assert proc.wait(timeout=10) == 0 or proc.returncode == -15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
