"""systemd collector with fake systemctl executables printing recorded list-units output.

The recorded output is a Debian 12 server's (systemd 252) ``systemctl list-units
--type=service --all`` in both formats: ``--output=json`` and the
``--no-legend --plain`` table; ``list-units.legacy-table`` is what a systemctl
without JSON tables prints when it ignores ``--output=json``.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
from agent_discovery_testlib import (
    FIXTURES,
    fake_systemctl,
    fixture,
    samples,
    success,
    systemctl_calls,
    values,
    write_tree,
)

from infrascope_agent.collectors.cpu import CPUCollector
from infrascope_agent.collectors.systemd import (
    JSON_ARGS,
    PLAIN_ARGS,
    SystemdCollector,
    SystemdError,
    parse_json_units,
    parse_plain_units,
)
from infrascope_agent.registry import Registry, Settings

JSON = FIXTURES / "systemd" / "list-units.json"
PLAIN = FIXTURES / "systemd" / "list-units.plain"
LEGACY = FIXTURES / "systemd" / "list-units.legacy-table"
JSON_CMD = " ".join(JSON_ARGS)
PLAIN_CMD = " ".join(PLAIN_ARGS)

MODERN = f"""
case "$*" in
  *--output=json*) cat "{JSON}" ;;
  *) cat "{PLAIN}" ;;
esac
"""
REJECTS_JSON = f"""
case "$*" in
  *--output=json*) echo "systemctl: unrecognized option '--output=json'" >&2; exit 1 ;;
  *) cat "{PLAIN}" ;;
esac
"""
IGNORES_JSON = f"""
case "$*" in
  *--plain*) cat "{PLAIN}" ;;
  *) cat "{LEGACY}" ;;
esac
"""
NOT_BOOTED = """
echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
echo "Failed to connect to bus: Host is down" >&2
exit 1
"""


def cgroupfs(root: Path) -> Path:
    return write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        "system.slice/nginx.service/cpu.stat": fixture("cgroup", "v2-cpu.stat"),
        "system.slice/nginx.service/memory.current": "240123904\n",
        "system.slice/nginx.service/memory.stat": fixture("cgroup", "v2-memory.stat"),
        "system.slice/system-postgresql.slice/postgresql@15-main.service/cpu.stat":
            "usage_usec 98765432\nuser_usec 90000000\nsystem_usec 8765432\n",
        "system.slice/system-postgresql.slice/postgresql@15-main.service/memory.current":
            "536870912\n",
        # a stopped unit whose cgroup is gone has no files; fail2ban left an empty one
        "system.slice/fail2ban.service/cgroup.procs": "",
    })


def collector(tmp_path: Path, script: str | None, timeout: float = 5.0) -> SystemdCollector:
    path = fake_systemctl(tmp_path, script) if script is not None else tmp_path / "absent"
    return SystemdCollector(Settings(systemctl=str(path), collector_timeout=timeout,
                                     cgroupfs=str(cgroupfs(tmp_path / "cgroup"))))


EXPECTED_INFO = {
    "nginx.service": ("active", "running"),
    "postgresql@15-main.service": ("active", "running"),
    "postgresql.service": ("active", "exited"),
    "fail2ban.service": ("failed", "failed"),
    "apt-daily.service": ("inactive", "dead"),
    "user@0.service": ("active", "running"),
}


def check_series(metrics: list) -> None:
    info = samples(metrics, "infrascope_service_info")
    by_unit = {s["service"]: s for s in info}
    assert len(info) == len(by_unit) == 27  # 29 listed, minus 2 not-found (auditd, rsyslog)
    assert "auditd.service" not in by_unit and "rsyslog.service" not in by_unit
    for unit, (state, sub) in EXPECTED_INFO.items():
        assert by_unit[unit] == {"kind": "systemd", "service": unit, "state": state,
                                 "sub_state": sub}
    nginx = (("kind", "systemd"), ("service", "nginx.service"))
    pg = (("kind", "systemd"), ("service", "postgresql@15-main.service"))
    assert values(metrics, "infrascope_service_cpu_seconds_total") == {
        nginx: pytest.approx(8123.456789), pg: pytest.approx(98.765432)}
    assert values(metrics, "infrascope_service_memory_bytes") == {
        nginx: 240123904 - 134217728, pg: 536870912}


def test_agent_discovery_systemd_json(tmp_path: Path) -> None:
    c = collector(tmp_path, MODERN)
    check_series(list(c.collect()))
    check_series(list(c.collect()))
    assert systemctl_calls(tmp_path) == [JSON_CMD, JSON_CMD]
    assert c.json_supported is True


def test_agent_discovery_systemd_plain_fallback_when_json_rejected(tmp_path: Path) -> None:
    c = collector(tmp_path, REJECTS_JSON)
    check_series(list(c.collect()))
    check_series(list(c.collect()))
    # JSON tried once; once known unsupported, one command per scrape
    assert systemctl_calls(tmp_path) == [JSON_CMD, PLAIN_CMD, PLAIN_CMD]
    assert c.json_supported is False


def test_agent_discovery_systemd_plain_fallback_when_json_ignored(tmp_path: Path) -> None:
    c = collector(tmp_path, IGNORES_JSON)
    check_series(list(c.collect()))
    assert systemctl_calls(tmp_path) == [JSON_CMD, PLAIN_CMD]
    assert c.json_supported is False


def test_agent_discovery_systemd_formats_agree() -> None:
    assert parse_json_units(JSON.read_text()) == parse_plain_units(PLAIN.read_text())
    legacy = [u for u in parse_plain_units(LEGACY.read_text()) if u.name.endswith(".service")]
    assert legacy == parse_plain_units(PLAIN.read_text())  # markers and legend skipped


def test_agent_discovery_systemd_plain_with_job_column() -> None:
    text = ("nginx.service  loaded active   reloading reload A high performance web server\n"
            "backup.service loaded inactive dead      start  Nightly backup\n")
    units = parse_plain_units(text)
    assert [(u.name, u.active, u.sub) for u in units] == [
        ("nginx.service", "active", "reloading"), ("backup.service", "inactive", "dead")]


def test_agent_discovery_systemd_json_rejects_non_array() -> None:
    for text in ('{"unit": "x"}', "[1, 2]", "UNIT LOAD ACTIVE SUB"):
        with pytest.raises(ValueError):
            parse_json_units(text)


def test_agent_discovery_systemd_systemctl_absent(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    c = collector(tmp_path, None)
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    with pytest.raises(SystemdError, match="systemctl not found"):
        list(c.collect())
    with pytest.raises(SystemdError):
        list(c.collect())
    assert time.monotonic() - start < 1.0
    registry = Registry([c, CPUCollector(Settings())])
    assert "--systemd.systemctl" in registry.check_sources()["systemd"]
    for _ in range(3):
        assert success(list(registry.collect())) == {"systemd": 0, "cpu": 1}
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("infrascope_agent")]
    assert len(lines) == 1 and "--systemd.systemctl" in lines[0]  # once, not per scrape


def test_agent_discovery_systemd_not_booted_with_systemd(tmp_path: Path) -> None:
    c = collector(tmp_path, NOT_BOOTED)
    with pytest.raises(SystemdError, match="System has not been booted with systemd"):
        list(c.collect())
    assert systemctl_calls(tmp_path) == [JSON_CMD, PLAIN_CMD]
    assert c.json_supported is None  # nothing learnt from a systemctl that cannot run


def test_agent_discovery_systemd_hanging_systemctl(tmp_path: Path) -> None:
    timeout = 1.0
    c = collector(tmp_path, "exec sleep 30\n", timeout=timeout)
    registry = Registry([c, CPUCollector(Settings())], timeout=timeout)
    start = time.monotonic()
    metrics = list(registry.collect())
    assert time.monotonic() - start < timeout
    assert success(metrics) == {"systemd": 0, "cpu": 1}
    with pytest.raises(SystemdError, match="did not finish within"):
        list(c.collect())


def test_agent_discovery_systemd_hanging_grandchild_is_killed(tmp_path: Path) -> None:
    """A wrapper whose child keeps the pipe open: the whole process group goes."""
    c = collector(tmp_path, "sleep 30\n", timeout=1.0)
    start = time.monotonic()
    with pytest.raises(SystemdError, match="did not finish within"):
        list(c.collect())
    assert time.monotonic() - start < 1.0


def test_agent_discovery_systemd_real_systemctl() -> None:
    """The machine's own systemctl: units when systemd runs, a clean failure otherwise."""
    if shutil.which("systemctl") is None:
        pytest.skip("no systemctl on this machine")
    c = SystemdCollector(Settings(collector_timeout=5.0))
    start = time.monotonic()
    try:
        metrics = list(c.collect())
    except SystemdError as exc:
        assert str(exc).startswith("systemctl ") or "not running systemd" in str(exc)
        ok = 0
    else:
        info = samples(metrics, "infrascope_service_info")
        assert info and all(s["kind"] == "systemd" for s in info)
        ok = 1
    assert time.monotonic() - start < 5.0
    metrics = list(Registry([c, CPUCollector(Settings())]).collect())
    assert success(metrics) == {"systemd": ok, "cpu": 1}


def test_agent_discovery_systemd_skips_systemctl_without_systemd(tmp_path) -> None:
    """The default systemctl is not spawned when /run/systemd/system is absent (sd_booted)."""
    marker = tmp_path / "spawned"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    import os

    env_path = os.environ["PATH"]
    os.environ["PATH"] = f"{fake.parent}:{env_path}"
    try:
        c = SystemdCollector(Settings(rootfs=str(tmp_path)))  # no run/systemd/system here
        with pytest.raises(SystemdError, match="not running systemd"):
            list(c.collect())
        assert not marker.exists()
        (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
        with pytest.raises(SystemdError):
            list(c.collect())
        assert marker.exists(), "with systemd running, systemctl is asked"
    finally:
        os.environ["PATH"] = env_path
