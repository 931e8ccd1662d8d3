"""Whole scrapes: discovery failures degrade only their collector; promtool accepts the series."""

from __future__ import annotations

import time
from pathlib import Path

from agent_discovery_testlib import (
    FIXTURES,
    FakeDockerDaemon,
    fake_process,
    fake_systemctl,
    fixture,
    fixture_procfs,
    samples,
    success,
    write_tree,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

import infrascope_agent.collectors  # noqa: F401 - registers every collector
from infrascope_agent.collectors import build
from infrascope_agent.registry import COLLECTORS, Registry, Settings
from infrascope_core.prometheus import Promtool

WEB = "3f4e8b1c2d5a6978e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
DISCOVERY = ("docker", "systemd", "ports")


def test_agent_discovery_full_scrape_without_docker_and_systemctl(tmp_path: Path) -> None:
    settings = Settings(docker_socket=str(tmp_path / "docker.sock"),
                        systemctl=str(tmp_path / "no-systemctl"), collector_timeout=5.0)
    collectors = build(settings)
    assert {"docker", "systemd", "ports"} <= {c.name for c in collectors}
    start = time.monotonic()
    metrics = list(Registry(collectors, timeout=5.0).collect())
    assert time.monotonic() - start < 5.0
    ok = success(metrics)
    assert ok.pop("docker") == 0 and ok.pop("systemd") == 0
    assert ok == {name: 1 for name in ok}, ok  # every host collector, and ports, succeeded
    assert set(ok) == {c.name for c in collectors} - {"docker", "systemd"}
    names = {s.name for m in metrics for s in m.samples}
    assert {"node_cpu_seconds_total", "node_memory_MemTotal_bytes"} <= names
    assert not samples(metrics, "infrascope_service_info")


def test_agent_discovery_collectors_registered_and_default_on() -> None:
    build(Settings())  # imports the collectors
    for name in DISCOVERY:
        assert COLLECTORS[name].default_enabled, name


def discovery_registry(tmp_path: Path) -> tuple[CollectorRegistry, FakeDockerDaemon]:
    cgroupfs = write_tree(tmp_path / "cgroup", {
        "cgroup.controllers": "cpuset cpu io memory pids\n",
        f"system.slice/docker-{WEB}.scope/cpu.stat": fixture("cgroup", "v2-cpu.stat"),
        f"system.slice/docker-{WEB}.scope/memory.current": "31457280\n",
        "system.slice/nginx.service/cpu.stat": fixture("cgroup", "v2-cpu.stat"),
        "system.slice/nginx.service/memory.current": "240123904\n",
        "system.slice/nginx.service/memory.stat": fixture("cgroup", "v2-memory.stat"),
    })
    procfs = fixture_procfs(tmp_path / "proc")
    fake_process(procfs, 612, "sshd", "0::/system.slice/ssh.service\n", [18421, 18423])
    fake_process(procfs, 840, "nginx", "0::/system.slice/nginx.service\n", [21011, 21012, 21013])
    fake_process(procfs, 2301, "java", f"0::/system.slice/docker-{WEB}.scope\n", [30001])
    systemctl = fake_systemctl(tmp_path, f"""
        case "$*" in
          *--output=json*) cat "{FIXTURES / 'systemd' / 'list-units.json'}" ;;
          *) cat "{FIXTURES / 'systemd' / 'list-units.plain'}" ;;
        esac
        """)
    daemon = FakeDockerDaemon(tmp_path / "docker.sock")
    settings = Settings(procfs=str(procfs), cgroupfs=str(cgroupfs),
                        docker_socket=str(tmp_path / "docker.sock"), systemctl=str(systemctl))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Registry(build(settings, {n: n in DISCOVERY for n in COLLECTORS})))
    return registry, daemon


def test_agent_discovery_exposition_passes_promtool(promtool: Promtool, tmp_path: Path) -> None:
    registry, daemon = discovery_registry(tmp_path)
    with daemon:
        text = generate_latest(registry)
    decoded = text.decode()
    for family in ("infrascope_service_info", "infrascope_service_cpu_seconds_total",
                   "infrascope_service_memory_bytes", "infrascope_listen_port_info"):
        assert f"\n{family}{{" in decoded, family
    assert 'kind="docker"' in decoded and 'kind="systemd"' in decoded
    assert 'node_scrape_collector_success{collector="docker"} 1.0' in decoded
    assert 'node_scrape_collector_success{collector="systemd"} 1.0' in decoded
    assert 'node_scrape_collector_success{collector="ports"} 1.0' in decoded
    assert decoded.count("node_scrape_collector_success{") == 3
    # docker and systemd both emit infrascope_service_info: one family, one HELP/TYPE
    assert decoded.count("# TYPE infrascope_service_info gauge") == 1
    proc = promtool.check_metrics(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr
