"""The conventions every InfraScope component follows (issue 12, point 7), on the agent:
HTTP methods, ``*_build_info`` and ``process_*``, one log line per absent source at start,
logfmt logs, Prometheus-style flags with the old spellings as aliases."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from infrascope_agent import __version__
from infrascope_agent.cli import FILTER_ALIASES, build_parser
from infrascope_agent.collectors import build
from infrascope_agent.exposition import render
from infrascope_agent.registry import COLLECTORS, Registry, Settings, agent_registry
from infrascope_agent.web import AgentServer
from infrascope_core.service import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
LOGFMT_LINE = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=[a-z]+ '
                         r'msg=("[^"]*"|\S+)')


@contextlib.contextmanager
def serving() -> Iterator[AgentServer]:
    collectors = build(Settings(), {name: name == "loadavg" for name in COLLECTORS})
    server = AgentServer(agent_registry(Registry(collectors)), "127.0.0.1", 0, "/metrics")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(conn: http.client.HTTPConnection, method: str, path: str,
            body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp, resp.read()


# --- HTTP ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
@pytest.mark.parametrize("path", ["/metrics", "/"])
def test_wrong_methods_are_405_with_allow(method: str, path: str) -> None:
    with serving() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        resp, body = request(conn, method, path, body=b'{"x": 1}')
        assert resp.status == 405, (resp.status, body)
        assert resp.getheader("Allow") == "GET, HEAD"
        assert resp.getheader("Content-Type", "").startswith("text/plain")
        assert b"<html" not in body.lower()
        conn.close()


def test_unknown_path_is_404_for_every_method() -> None:
    with serving() as server:
        for method in ("GET", "HEAD", "POST"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            resp, _ = request(conn, method, "/nope")
            assert resp.status == 404, method
            conn.close()


@pytest.mark.parametrize("path", ["/metrics", "/"])
def test_head_answers_like_get_without_a_body(path: str) -> None:
    with serving() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        head, head_body = request(conn, "HEAD", path)
        assert head.status == 200 and head_body == b""
        length = int(head.getheader("Content-Length", "0"))
        assert length > 0
        # the connection stays usable: no stray body was sent after the headers
        get, get_body = request(conn, "GET", path)
        assert get.status == 200
        assert get.getheader("Content-Type") == head.getheader("Content-Type")
        if path == "/":
            assert len(get_body) == length
        conn.close()


# --- build info and process series ----------------------------------------------------------

class Static:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def test_build_info_and_process_series() -> None:
    live = agent_registry(Registry(build(Settings(), {n: n == "cpu" for n in COLLECTORS})))
    frozen = CollectorRegistry(auto_describe=False)
    frozen.register(Static(list(live.collect())))  # type: ignore[arg-type]
    text = render(frozen)
    assert text == generate_latest(frozen)  # the agent's fast renderer, byte for byte
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    info = families["infrascope_agent_build_info"]
    assert info.type == "gauge"
    [sample] = info.samples
    assert sample.value == 1
    assert sample.labels["version"] == __version__
    assert sample.labels["python_version"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("process_cpu_seconds", "process_resident_memory_bytes",
                 "process_virtual_memory_bytes", "process_start_time_seconds",
                 "process_open_fds", "process_max_fds"):
        assert name in families, name
    assert families["process_cpu_seconds"].type == "counter"
    started = families["process_start_time_seconds"].samples[0].value
    assert time.time() - 3600 < started <= time.time()


# --- the real process: logs and absent sources ----------------------------------------------

def run_agent(tmp_path: Path, *flags: str, scrapes: int = 3) -> tuple[str, str]:
    """Start the agent, scrape it ``scrapes`` times, stop it; (last exposition, stderr)."""
    port = free_port()
    err = tmp_path / "agent.err"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "infrascope_agent",
                                 f"--web.listen-address=127.0.0.1:{port}", *flags],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        text = ""
        done = 0
        while done < scrapes:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=10) as resp:
                    text = resp.read().decode()
                done += 1
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(err.read_text()) from None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return text, err.read_text()


def test_absent_sources_are_said_once_at_start_and_in_the_success_series(
        tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    systemctl = tmp_path / "bin" / "systemctl"
    text, stderr = run_agent(tmp_path, f"--docker.socket={sock}",
                             f"--systemd.systemctl={systemctl}",
                             "--no-collector.ports", "--no-collector.filesystem", scrapes=4)
    assert 'node_scrape_collector_success{collector="docker"} 0.0' in text
    assert 'node_scrape_collector_success{collector="systemd"} 0.0' in text
    assert 'node_scrape_collector_success{collector="cpu"} 1.0' in text
    lines = stderr.splitlines()
    docker = [line for line in lines if "collector=docker" in line]
    systemd = [line for line in lines if "collector=systemd" in line]
    assert len(docker) == 1 and f"Docker socket {sock} does not exist" in docker[0], lines
    assert len(systemd) == 1 and "systemctl not found" in systemd[0], lines
    assert "event=collector_source_absent" in docker[0] and "level=warn" in docker[0]


def test_logs_are_logfmt_with_prometheus_timestamps(tmp_path: Path) -> None:
    _, stderr = run_agent(tmp_path, "--log.level=info", f"--docker.socket={tmp_path}/no",
                          "--no-collector.systemd", "--no-collector.ports", scrapes=1)
    lines = stderr.splitlines()
    assert any("msg=listening" in line and "event=start" in line for line in lines), lines
    assert any("msg=stopping" in line for line in lines), lines
    for line in lines:
        assert LOGFMT_LINE.match(line), line


# --- flags --------------------------------------------------------------------------------

def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings  # noqa: SLF001
            if o.startswith("--")]


def test_flags_are_prometheus_style() -> None:
    style = re.compile(r"^--(no-)?[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+$")
    aliases = {f"--{a}" for names in FILTER_ALIASES.values() for a in names}
    for flag in option_strings(build_parser()):
        if flag in ("--help", "--version") or flag in aliases:
            continue
        assert style.match(flag), flag


@pytest.mark.parametrize("flag,alias", [(k, a) for k, v in FILTER_ALIASES.items() for a in v])
def test_node_exporter_spellings_are_aliases(flag: str, alias: str) -> None:
    parser = build_parser()
    new = parser.parse_args([f"--{flag}=^x$"])
    old = parser.parse_args([f"--{alias}=^x$"])
    assert vars(new) == vars(old)
    assert getattr(old, flag.replace(".", "_").replace("-", "_")) == "^x$"


def test_readme_flag_table_lists_every_flag() -> None:
    readme = README.read_text()
    table = readme[readme.index("## Flags"):readme.index("## Collectors and metrics")]
    for flag in option_strings(build_parser()):
        if flag in ("--help", "--version") or flag.startswith(("--collector.", "--no-collector.")) \
                and flag.removeprefix("--no-").removeprefix("--").split(".")[1] in COLLECTORS \
                and flag.count(".") == 1:
            continue  # --[no-]collector.<name>: one row for all
        assert f"`{flag}`" in table, flag
