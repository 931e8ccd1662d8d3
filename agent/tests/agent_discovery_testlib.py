"""Helpers for the discovery tests: a fake Docker daemon, fake systemctl, fixture trees."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import stat
import textwrap
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

FIXTURES = Path(__file__).parent / "fixtures" / "discovery"


def fixture(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text()


def fixture_json(*parts: str) -> Any:
    return json.loads(fixture(*parts))


# --- Docker -------------------------------------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDockerDaemon:
    """An Engine API on a real unix socket, answering recorded JSON like dockerd does.

    ``GET /version`` (also under ``/v1.x/``) answers ``version``; ``GET
    /v<api>/containers/json`` answers ``containers`` only for the API versions in
    its [MinAPIVersion, ApiVersion] range (dockerd answers 400 outside it). Bodies
    over 4 KiB are sent chunked, as Go's net/http does for dockerd. Every request
    path is recorded in ``requests``.
    """

    def __init__(self, path: Path, version: dict[str, Any] | None = None,
                 containers: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.version = version if version is not None else fixture_json("docker", "version.json")
        self.containers = (containers if containers is not None
                           else fixture_json("docker", "containers.json"))
        self.requests: list[str] = []
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "Docker/26.1.4 (linux)"
            sys_version = ""

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                daemon.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                api = daemon.version.get("ApiVersion", "1.45")
                if path == "/version" or path.endswith("/version"):
                    self._json(200, daemon.version, api)
                    return
                prefix, _, rest = path.lstrip("/").partition("/")
                if rest == "containers/json" and prefix.startswith("v"):
                    asked = tuple(int(x) for x in prefix[1:].split("."))
                    low = tuple(int(x) for x in daemon.version.get("MinAPIVersion",
                                                                   "1.24").split("."))
                    high = tuple(int(x) for x in api.split("."))
                    if not low <= asked <= high:
                        self._json(400, {"message": f"client version {prefix[1:]} is not "
                                                    f"supported"}, api)
                        return
                    self._json(200, daemon.containers, api)
                    return
                self._json(404, {"message": "page not found"}, api)

            def _json(self, status: int, body: Any, api: str) -> None:
                data = json.dumps(body).encode() + b"\n"
                self.send_response(status)
                self.send_header("Api-Version", api)
                self.send_header("Content-Type", "application/json")
                self.send_header("Docker-Experimental", "false")
                self.send_header("Ostype", "linux")
                if len(data) <= 4096:  # Go's net/http: small bodies get a Content-Length...
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")  # ...larger ones are chunked
                self.end_headers()
                for i in range(0, len(data), 4096):
                    chunk = data[i:i + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

        self.server = _UnixHTTPServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeDockerDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class HangingSocket:
    """A unix socket that accepts connections and never answers (a wedged dockerd)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)  # connections complete in the backlog; nobody reads them

    def __enter__(self) -> HangingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- systemctl ----------------------------------------------------------------------------


def fake_systemctl(tmp: Path, script: str, name: str = "systemctl") -> Path:
    """An executable shell script standing in for systemctl; its args go to ``<name>.log``."""
    path = tmp / name
    log = tmp / f"{name}.log"
    path.write_text("#!/bin/sh\n" + f'echo "$*" >> "{log}"\n' + textwrap.dedent(script))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def systemctl_calls(tmp: Path, name: str = "systemctl") -> list[str]:
    log = tmp / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


# --- files --------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` ({relative path: content}) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def fake_process(procfs: Path, pid: int, comm: str, cgroup: str, sockets: list[int],
                 other_fds: int = 0, start_time: int = 1000) -> None:
    """``<procfs>/<pid>/{comm,cgroup,stat,fd/*}`` as the kernel shows them."""
    base = procfs / str(pid)
    (base / "fd").mkdir(parents=True, exist_ok=True)
    (base / "comm").write_text(comm + "\n")
    (base / "cgroup").write_text(cgroup)
    # field 22 (starttime) is the 20th after the ") " that closes comm
    fields = ["S", "1", str(pid), str(pid), "0", "-1", "4194560"] + ["0"] * 12 + [str(start_time)]
    (base / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + " 0 0\n")
    fd = 0
    for _ in range(3):
        os.symlink("/dev/null", base / "fd" / str(fd))
        fd += 1
    for inode in sockets:
        os.symlink(f"socket:[{inode}]", base / "fd" / str(fd))
        fd += 1
    for i in range(other_fds):
        os.symlink(f"socket:[{900000 + pid * 1000 + i}]", base / "fd" / str(fd))
        fd += 1


def fixture_procfs(root: Path) -> Path:
    """The recorded /proc/net tables and no processes yet."""
    for name in ("tcp", "tcp6", "udp", "udp6"):
        write_tree(root, {f"net/{name}": fixture("procnet", name)})
    return root


# --- metrics ------------------------------------------------------------------------------


def samples(metrics: list[Metric] | Any, name: str) -> list[dict[str, str]]:
    return [dict(s.labels) for m in metrics for s in m.samples if s.name == name]


def values(metrics: list[Metric] | Any, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for m in metrics for s in m.samples if s.name == name}


def success(metrics: list[Metric]) -> dict[str, float]:
    return {s.labels["collector"]: s.value for m in metrics for s in m.samples
            if s.name == "node_scrape_collector_success"}
