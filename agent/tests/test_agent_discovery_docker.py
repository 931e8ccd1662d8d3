"""docker collector against a fake dockerd on a real unix socket serving recorded Engine API JSON.

No Docker engine runs here, so the daemon is a real HTTP/1.1 server on
``tmp_path/docker.sock`` answering ``/version`` and ``/v<api>/containers/json``
with recorded Docker 26.1 (API 1.45) answers. Failure modes: socket missing,
permission denied (for real as an unprivileged user when the tests run as
root, plus the error mapping), connection refused, an API that never answers.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
from agent_discovery_testlib import (
    FakeDockerDaemon,
    HangingSocket,
    fixture,
    fixture_json,
    samples,
    success,
    values,
    write_tree,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from infrascope_agent.collectors import docker as docker_mod
from infrascope_agent.collectors.cpu import CPUCollector
from infrascope_agent.collectors.docker import DockerCollector, DockerError, negotiate
from infrascope_agent.discovery import CONTAINER_NAMES
from infrascope_agent.registry import Registry, Settings

WEB = "3f4e8b1c2d5a6978e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
APP = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
DB = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
SECRETS = ("Xk9-pg-S3cretPw", "Redis-Pa55-Do-Not-Leak", "$apr1$", "APP_DATABASE_URL",
           "basicauth", "traefik", "gunicorn", "docker-entrypoint", "requirepass", "/srv/shop",
           "config-hash", "maintainer", "172.18.0", "shop_pgdata")
ALLOWED_LABELS = {"kind", "service", "state", "image", "compose_project", "compose_service",
                  "collector"}


def cgroupfs(root: Path) -> Path:
    """cgroup v2: web under the systemd driver's scope, db under the cgroupfs driver's path."""
    return write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        f"system.slice/docker-{WEB}.scope/cpu.stat": fixture("cgroup", "v2-cpu.stat").replace(
            "usage_usec 8123456789", "usage_usec 1234567890"),
        f"system.slice/docker-{WEB}.scope/memory.current": "31457280\n",
        f"system.slice/docker-{WEB}.scope/memory.stat": "anon 20971520\ninactive_file 1048576\n",
        f"docker/{DB}/cpu.stat": "usage_usec 500000000\nuser_usec 400000000\n"
                                 "system_usec 100000000\n",
        f"docker/{DB}/memory.current": "268435456\n",
        f"docker/{DB}/memory.stat": fixture("cgroup", "v2-memory.stat"),
    })


def settings(tmp_path: Path, sock: Path, timeout: float = 5.0) -> Settings:
    return Settings(docker_socket=str(sock), cgroupfs=str(cgroupfs(tmp_path / "cgroup")),
                    collector_timeout=timeout)


def test_agent_discovery_docker_negotiates_and_lists(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    with FakeDockerDaemon(sock) as daemon:
        collector = DockerCollector(settings(tmp_path, sock))
        metrics = list(collector.collect())
    # the version comes from /version (1.45 in the recorded answer), never hard-coded
    assert daemon.requests == ["/version", "/v1.45/containers/json?all=1"]
    info = sorted(samples(metrics, "infrascope_service_info"), key=lambda x: x["service"])
    assert info == [
        {"kind": "docker", "service": "nightly-backup", "state": "exited",
         "image": "restic/restic:0.16.4"},
        {"kind": "docker", "service": "shop-app-1", "state": "running",
         "image": "ghcr.io/example/shop:2024.06.1", "compose_project": "shop",
         "compose_service": "app"},
        {"kind": "docker", "service": "shop-db-1", "state": "running", "image": "postgres:16",
         "compose_project": "shop", "compose_service": "db"},
        {"kind": "docker", "service": "shop-redis-1", "state": "restarting",
         "image": "redis:7.2-alpine", "compose_project": "shop", "compose_service": "redis"},
        {"kind": "docker", "service": "shop-web-1", "state": "running",
         "image": "nginx:1.27-alpine", "compose_project": "shop", "compose_service": "web"},
    ]
    web = (("kind", "docker"), ("service", "shop-web-1"))
    db = (("kind", "docker"), ("service", "shop-db-1"))
    cpu = values(metrics, "infrascope_service_cpu_seconds_total")
    memory = values(metrics, "infrascope_service_memory_bytes")
    assert cpu == {web: pytest.approx(1234.56789), db: pytest.approx(500.0)}
    assert memory == {web: 31457280 - 1048576, db: 268435456 - 134217728}
    # the ports collector names containers with what this collector listed
    assert CONTAINER_NAMES.name(WEB) == "shop-web-1"
    assert CONTAINER_NAMES.name("f" * 64) == "f" * 12


@pytest.mark.parametrize(("api", "minimum", "used"), [
    ("1.43", "1.12", "1.43"),   # Docker 24: older than the agent, use the daemon's
    ("1.45", "1.24", "1.45"),   # the recorded Docker 26.1
    ("1.49", "1.24", "1.47"),   # newer daemon: the newest the agent knows
    ("1.53", "1.50", "1.50"),   # a daemon that dropped old versions: its oldest
])
def test_agent_discovery_docker_version_negotiation(tmp_path: Path, api: str, minimum: str,
                                                     used: str) -> None:
    version = dict(fixture_json("docker", "version.json"), ApiVersion=api, MinAPIVersion=minimum)
    assert negotiate(version) == used
    sock = tmp_path / "docker.sock"
    with FakeDockerDaemon(sock, version=version) as daemon:
        metrics = list(DockerCollector(settings(tmp_path, sock)).collect())
    assert daemon.requests[1] == f"/v{used}/containers/json?all=1"
    assert len(samples(metrics, "infrascope_service_info")) == 5


def test_agent_discovery_docker_refuses_ancient_or_broken_version() -> None:
    with pytest.raises(DockerError, match="older than"):
        negotiate({"ApiVersion": "1.12"})
    with pytest.raises(DockerError, match="no ApiVersion"):
        negotiate({"Version": "26.1.4"})
    with pytest.raises(DockerError, match="MAJOR.MINOR"):
        negotiate({"ApiVersion": "latest"})


def test_agent_discovery_docker_exposes_no_secrets(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    registry = CollectorRegistry(auto_describe=False)
    with FakeDockerDaemon(sock):
        registry.register(Registry([DockerCollector(settings(tmp_path, sock))]))
        text = generate_latest(registry).decode()
    assert 'service="shop-app-1"' in text
    for secret in SECRETS:
        assert secret not in text, secret
    for family in registry.collect():
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample


def test_agent_discovery_docker_socket_missing(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "no" / "docker.sock"
    collector = DockerCollector(settings(tmp_path, sock))
    reason = (f"Docker socket {sock} does not exist (Docker not installed or not running? "
              f"see --docker.socket)")
    assert collector.absent() == reason
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    with pytest.raises(DockerError, match="does not exist"):
        list(collector.collect())
    assert time.monotonic() - start < 0.5
    registry = Registry([collector, CPUCollector(Settings())])
    assert registry.check_sources() == {"docker": reason}
    for _ in range(3):
        metrics = list(registry.collect())
        assert success(metrics) == {"docker": 0, "cpu": 1}
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("infrascope_agent")]
    assert lines == [f"collector docker disabled until its source appears: {reason}"]  # once


def test_agent_discovery_docker_connection_refused(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()  # a stale socket file: dockerd died without cleaning up
    with pytest.raises(DockerError, match="nothing listens"):
        list(DockerCollector(settings(tmp_path, sock)).collect())


def test_agent_discovery_docker_permission_denied_mapping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def denied(self: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(docker_mod._UnixHTTPConnection, "connect", denied)
    caplog.set_level(logging.WARNING)
    (tmp_path / "docker.sock").touch()  # there, but connect() is refused
    collector = DockerCollector(settings(tmp_path, tmp_path / "docker.sock"))
    with pytest.raises(DockerError, match="permission denied on Docker socket"):
        list(collector.collect())
    list(Registry([collector]).collect())
    assert any("docker group" in r.getMessage() for r in caplog.records)


def _connect_as_nobody(sock: Path) -> str:
    """Run the collector in a forked child that dropped root (root bypasses file modes)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: everything is imported already, only the credentials change
        code = 1
        try:
            os.close(read_end)
            logging.disable(logging.CRITICAL)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                list(DockerCollector(Settings(docker_socket=str(sock),
                                              cgroupfs="/nonexistent")).collect())
                message = "listed"
            except DockerError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        message = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.skip("cannot drop privileges to an unprivileged user here")
    return message


def test_agent_discovery_docker_permission_denied_real(tmp_path: Path) -> None:
    """A socket only root may use (like docker.sock without the docker group), used by nobody."""
    if os.geteuid() != 0:
        sock = tmp_path / "docker.sock"
        with FakeDockerDaemon(sock) as daemon:
            sock.chmod(0)
            with pytest.raises(DockerError, match="permission denied"):
                list(DockerCollector(settings(tmp_path, sock)).collect())
        assert daemon.requests == []
        return
    base = Path(tempfile.mkdtemp(prefix="infrascope-docker-"))  # traversable, unlike tmp_path
    try:
        base.chmod(0o755)
        sock = base / "docker.sock"
        with FakeDockerDaemon(sock) as daemon:
            sock.chmod(0o600)
            message = _connect_as_nobody(sock)
        assert message.startswith(f"permission denied on Docker socket {sock}"), message
        assert daemon.requests == []
        # and root itself is let in, so it is the mode that refused the unprivileged user
        with FakeDockerDaemon(sock.with_name("root.sock")) as daemon:
            sock.with_name("root.sock").chmod(0o600)
            list(DockerCollector(settings(tmp_path, sock.with_name("root.sock"))).collect())
        assert len(daemon.requests) == 2
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_agent_discovery_docker_api_hanging(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A daemon that accepts and never answers: docker fails inside its budget, cpu is served."""
    sock = tmp_path / "docker.sock"
    timeout = 1.0
    caplog.set_level(logging.WARNING)
    with HangingSocket(sock):
        collector = DockerCollector(settings(tmp_path, sock, timeout=timeout))
        start = time.monotonic()
        with pytest.raises(DockerError, match="did not answer within"):
            list(collector.collect())
        alone = time.monotonic() - start
        assert alone < timeout
        registry = Registry([collector, CPUCollector(Settings())], timeout=timeout)
        start = time.monotonic()
        metrics = list(registry.collect())
        elapsed = time.monotonic() - start
    assert elapsed < timeout
    assert success(metrics) == {"docker": 0, "cpu": 1}
    assert samples(metrics, "node_cpu_seconds_total")
    # the collector's own socket timeout fired, not the registry's
    assert not any(r.getMessage() == "collector timed out" for r in caplog.records)


def test_agent_discovery_docker_http_error(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    version = dict(fixture_json("docker", "version.json"), ApiVersion="1.45", MinAPIVersion="1.46")
    with FakeDockerDaemon(sock, version=version):  # inconsistent daemon: rejects what it offers
        with pytest.raises(DockerError, match=r"answered 400: client version 1.46"):
            list(DockerCollector(settings(tmp_path, sock)).collect())


def test_agent_discovery_docker_failure_degrades_only_docker(tmp_path: Path) -> None:
    registry = Registry([DockerCollector(settings(tmp_path, tmp_path / "absent.sock")),
                         CPUCollector(Settings())], timeout=5.0)
    metrics = list(registry.collect())
    assert success(metrics) == {"docker": 0, "cpu": 1}
    assert not samples(metrics, "infrascope_service_info")
