"""``docker``: containers from the Docker Engine API, with their CPU and memory.

Talks HTTP/1.1 to the Engine API over its unix socket (``--docker.socket``,
default ``/var/run/docker.sock``) with the standard library only — no docker
CLI, no SDK. The API version is negotiated like the docker CLI does: ``GET
/version`` (unversioned) gives the daemon's ``ApiVersion``; the agent uses the
lower of that and the newest version it was written against, raised to the
daemon's ``MinAPIVersion`` when a daemon no longer serves that one, and then
lists ``GET /v<version>/containers/json?all=1``.

Exposed per container (``kind="docker"``, ``service`` = container name):
``infrascope_service_info{state, image, compose_project?, compose_service?}``,
and from the container's cgroup, when readable,
``infrascope_service_cpu_seconds_total`` and ``infrascope_service_memory_bytes``.
Only the two compose labels are read from the container's labels; its command,
environment and other labels are never exposed.

Failure modes each fail this collector only (``node_scrape_collector_success
{collector="docker"} 0``) with one log line from the registry saying why, repeated
only when the reason changes: socket missing (said once at start: Docker is not
on this host, :class:`DockerAbsent`), permission denied, nothing listening, and an
API that does not answer — every socket operation times out well before the
collector timeout (:data:`SOCKET_BUDGET` of it for the whole exchange).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from ..cgroups import Cgroups
from ..discovery import CONTAINER_NAMES, add_usage, service_families
from ..registry import Collector, Option, Settings, SourceAbsent, add, register

CLIENT_MAX_API = (1, 47)  # newest Engine API whose /containers/json this was checked against
CLIENT_MIN_API = (1, 24)  # oldest with the fields used here (State, Labels)
SOCKET_BUDGET = 0.6  # share of the collector timeout the Engine API exchange may take
MAX_BODY = 64 * 1024 * 1024
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


class DockerError(Exception):
    """The Engine API could not be used; the message says why, for the log."""


class DockerAbsent(DockerError, SourceAbsent):
    """No Docker socket at the configured path: Docker is not on this host."""


def socket_missing(path: str) -> str:
    return (f"Docker socket {path} does not exist (Docker not installed or not running? "
            f"see --docker.socket)")


def _version(text: object) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except ValueError as exc:
        raise DockerError(f"Docker API version {text!r} is not MAJOR.MINOR") from exc


def negotiate(server: dict[str, Any]) -> str:
    """The API version to use with a daemon, from its ``/version`` answer."""
    if "ApiVersion" not in server:
        raise DockerError("Docker /version answer has no ApiVersion")
    api = _version(server["ApiVersion"])
    if api < CLIENT_MIN_API:
        raise DockerError(f"Docker API {api[0]}.{api[1]} is older than the oldest supported "
                          f"({CLIENT_MIN_API[0]}.{CLIENT_MIN_API[1]})")
    chosen = min(api, CLIENT_MAX_API)
    if "MinAPIVersion" in server:
        chosen = max(chosen, _version(server["MinAPIVersion"]))
    return f"{chosen[0]}.{chosen[1]}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DockerClient:
    """GET JSON from the Engine API over a unix socket, all within ``timeout`` seconds."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def get_many(self, first: str, then: Any) -> tuple[Any, Any]:
        """GET ``first``; then GET ``then(answer)`` on the same connection."""
        deadline = time.monotonic() + self.timeout
        conn = _UnixHTTPConnection(self.path, self.timeout)
        try:
            a = self._get(conn, first, deadline)
            b = self._get(conn, then(a), deadline)
            return a, b
        except FileNotFoundError as exc:
            raise DockerAbsent(socket_missing(self.path)) from exc
        except PermissionError as exc:
            raise DockerError(f"permission denied on Docker socket {self.path} (run the agent "
                              f"as root or in the docker group)") from exc
        except ConnectionRefusedError as exc:
            raise DockerError(f"nothing listens on Docker socket {self.path} "
                              f"(daemon stopped?)") from exc
        except TimeoutError as exc:
            raise DockerError(f"Docker API on {self.path} did not answer within "
                              f"{self.timeout:g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DockerError(f"Docker API on {self.path}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()

    def _get(self, conn: _UnixHTTPConnection, path: str, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        conn.timeout = remaining
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        conn.request("GET", path, headers={"Host": "docker", "Accept": "application/json",
                                           "User-Agent": "infrascope-agent"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise DockerError(f"Docker API GET {path}: answer larger than {MAX_BODY} bytes")
        if resp.status != 200:
            raise DockerError(f"Docker API GET {path} answered {resp.status}: "
                              f"{_error_message(body)}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DockerError(f"Docker API GET {path} answered invalid JSON") from exc


def _error_message(body: bytes) -> str:
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return str(message).strip()[:200]


def container_name(container: dict[str, Any]) -> str:
    """``/web`` -> ``web``; legacy link aliases (``/other/alias``) are skipped."""
    names = [str(n).lstrip("/") for n in container.get("Names") or []]
    for name in names:
        if "/" not in name:
            return name
    return names[0] if names else str(container.get("Id", ""))[:12]


@register
class DockerCollector(Collector):
    name = "docker"
    help = "Docker containers (Engine API over the unix socket) with CPU and memory"
    options = (Option("docker.socket", "Docker Engine API socket", setting="docker_socket",
                      metavar="PATH"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cgroups = Cgroups(settings.cgroupfs)

    def absent(self) -> str | None:
        path = self.settings.docker_socket
        return None if os.path.exists(path) else socket_missing(path)

    def list_containers(self) -> list[dict[str, Any]]:
        client = DockerClient(self.settings.docker_socket,
                              max(0.05, self.settings.collector_timeout * SOCKET_BUDGET))

        def containers_path(version_answer: Any) -> str:
            if not isinstance(version_answer, dict):
                raise DockerError("Docker /version answer is not an object")
            return f"/v{negotiate(version_answer)}/containers/json?all=1"

        reason = self.absent()
        if reason is not None:
            raise DockerAbsent(reason)
        _, containers = client.get_many("/version", containers_path)
        if not isinstance(containers, list):
            raise DockerError("Docker /containers/json answer is not a list")
        return [c for c in containers if isinstance(c, dict)]

    def collect(self) -> Iterable[Metric]:
        containers = self.list_containers()
        info, cpu, memory = service_families()
        names: dict[str, str] = {}
        seen: set[str] = set()
        for c in containers:
            name = container_name(c)
            if not name or name in seen:
                continue
            seen.add(name)
            cid = str(c.get("Id", ""))
            names[cid] = name
            labels = {"kind": "docker", "service": name,
                      "state": str(c.get("State") or "unknown").lower(),
                      "image": str(c.get("Image", ""))}
            compose = c.get("Labels") or {}
            if isinstance(compose, dict):
                for key, label in ((COMPOSE_PROJECT, "compose_project"),
                                   (COMPOSE_SERVICE, "compose_service")):
                    if compose.get(key):
                        labels[label] = str(compose[key])
            add(info, labels, 1)
            if cid:
                add_usage(cpu, memory, "docker", name, self.cgroups.container_usage(cid))
        CONTAINER_NAMES.replace(names)
        return [info, cpu, memory]
