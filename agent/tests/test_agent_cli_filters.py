"""node_exporter's device/mount filter flags, through the real CLI and HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from infrascope_core.service import free_port


def scrape(*flags: str) -> str:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "infrascope_agent",
                             f"--web.listen-address=127.0.0.1:{port}", *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return str(r.read().decode())
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(err) from None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_filters_apply() -> None:
    default = scrape()
    if not series(default, "node_network_receive_bytes_total"):
        pytest.fail("no network devices reported by default")
    assert any('device="lo"' in s for s in series(default, "node_network_receive_bytes_total"))
    assert any('mountpoint="/"' in s for s in series(default, "node_filesystem_size_bytes"))
    filtered = scrape("--collector.netdev.device-exclude=^lo$",
                      "--collector.filesystem.mount-points-exclude=^/$",
                      "--collector.diskstats.device-include=^no-such-device$")
    devices = series(filtered, "node_network_receive_bytes_total")
    assert devices and not any('device="lo"' in s for s in devices)
    mounts = series(filtered, "node_filesystem_size_bytes")
    assert not any('mountpoint="/"' in s for s in mounts)
    assert series(filtered, "node_disk_read_bytes_total") == []


def test_invalid_regex_is_a_clear_error() -> None:
    result = subprocess.run([sys.executable, "-m", "infrascope_agent",
                             "--collector.netdev.device-exclude=(",
                             "--web.listen-address=127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--collector.netdev.device-exclude: invalid regular expression" in result.stderr


def test_exclude_and_include_together_is_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "infrascope_agent",
                             "--collector.netdev.device-exclude=^lo$",
                             "--collector.netdev.device-include=^eth",
                             "--web.listen-address=127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "mutually exclusive" in result.stderr
