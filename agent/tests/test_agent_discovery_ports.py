"""ports collector: recorded /proc/net tables with a fixture process tree, and the real /proc.

The fixture's /proc/net/{tcp,tcp6,udp,udp6} are in the kernel's format (the
first rows of ``tcp`` were recorded on the build machine: its 0.0.0.0:2024
listener, held by a process outside this pid namespace, and a TIME_WAIT row).
Processes are ``<procfs>/<pid>/{comm,cgroup,stat}`` plus ``fd/*`` symlinks to
``socket:[<inode>]``, owned by systemd units (cgroup v2 and v1), Docker
containers (systemd and cgroupfs drivers), a Kubernetes pod, or nobody.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from agent_discovery_testlib import fake_process, fixture_procfs, samples

from infrascope_agent.cgroups import owner_of
from infrascope_agent.collectors.ports import (
    UNRESOLVED_RETRY_SECONDS,
    PortsCollector,
    decode_address,
    parse_net,
)
from infrascope_agent.discovery import CONTAINER_NAMES
from infrascope_agent.registry import Settings

WEB = "3f4e8b1c2d5a6978e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
REDIS = "5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
HAPROXY = "77aa0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9"
BUSY_FDS = 200

V1_DHCLIENT = """12:pids:/system.slice/ifup@eth0.service
11:memory:/system.slice/ifup@eth0.service
10:cpu,cpuacct:/system.slice/ifup@eth0.service
1:name=systemd:/system.slice/ifup@eth0.service
0::/system.slice/ifup@eth0.service
"""
V1_DOCKER_WEB = f"11:memory:/docker/{WEB}\n10:cpu,cpuacct:/docker/{WEB}\n" \
                f"1:name=systemd:/docker/{WEB}\n0::/docker/{WEB}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def procfs(root: Path) -> Path:
    fixture_procfs(root)
    fake_process(root, 1, "systemd", "0::/init.scope\n", [])
    fake_process(root, 455, "systemd-resolve", "0::/system.slice/systemd-resolved.service\n",
                 [17201])
    fake_process(root, 612, "sshd", "0::/system.slice/ssh.service\n", [18421, 18423])
    fake_process(root, 702, "postgres",
                 "0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n",
                 [20577, 20578])
    fake_process(root, 840, "nginx", "0::/system.slice/nginx.service\n", [21011, 21012, 21013])
    fake_process(root, 841, "nginx", "0::/system.slice/nginx.service\n", [21011, 21012, 21013])
    fake_process(root, 1500, "redis-server", f"0::/system.slice/docker-{REDIS}.scope\n", [30002])
    fake_process(root, 1777, "dhclient", V1_DHCLIENT, [17455])
    fake_process(root, 2301, "java", V1_DOCKER_WEB, [30001])
    fake_process(root, 3000, "python3", "0::/user.slice/user-1000.slice/session-4.scope\n",
                 [31337])
    fake_process(root, 4000, "nc", "0::/\n", [32000])
    fake_process(root, 4100, "haproxy",
                 "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0c1d.slice/"
                 f"cri-containerd-{HAPROXY}.scope\n", [32001])
    fake_process(root, 9000, "chrome", "0::/user.slice/user-1000.slice/session-4.scope\n", [],
                 other_fds=BUSY_FDS)
    return root


def port(port: int, protocol: str, address: str, kind: str, service: str,
         process: str) -> dict[str, str]:
    return {"port": str(port), "protocol": protocol, "address": address, "kind": kind,
            "service": service, "process": process}


EXPECTED = [
    port(22, "tcp", "0.0.0.0", "systemd", "ssh.service", "sshd"),
    port(22, "tcp", "::", "systemd", "ssh.service", "sshd"),
    port(80, "tcp", "0.0.0.0", "systemd", "nginx.service", "nginx"),
    port(80, "tcp", "::", "systemd", "nginx.service", "nginx"),
    port(443, "tcp", "0.0.0.0", "systemd", "nginx.service", "nginx"),
    port(2024, "tcp", "0.0.0.0", "process", "", ""),  # holder not visible: still listed
    port(4444, "tcp", "0.0.0.0", "process", "", "nc"),
    port(5432, "tcp", "127.0.0.1", "systemd", "postgresql@15-main.service", "postgres"),
    port(5432, "tcp", "::1", "systemd", "postgresql@15-main.service", "postgres"),
    port(6379, "tcp", "127.0.0.1", "docker", REDIS[:12], "redis-server"),
    port(8000, "tcp", "127.0.0.1", "systemd", "session-4.scope", "python3"),
    port(8080, "tcp", "0.0.0.0", "docker", "shop-web-1", "java"),
    port(9000, "tcp", "::ffff:127.0.0.1", "container", HAPROXY[:12], "haproxy"),
    port(53, "udp", "127.0.0.53", "systemd", "systemd-resolved.service", "systemd-resolve"),
    port(68, "udp", "0.0.0.0", "systemd", "ifup@eth0.service", "dhclient"),
    port(546, "udp", "fe80::5054:ff:fe12:3456", "process", "", ""),
]


def key(s: dict[str, str]) -> tuple[str, int, str]:
    return (s["protocol"], int(s["port"]), s["address"])


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docker collector has listed shop-web-1, not the redis container."""
    monkeypatch.setattr(CONTAINER_NAMES, "_names", {WEB: "shop-web-1"})


def test_agent_discovery_ports_decode_addresses() -> None:
    assert decode_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert decode_address("3500007F:0035") == ("127.0.0.53", 53)
    assert decode_address("00000000000000000000000001000000:1538") == ("::1", 5432)
    assert decode_address("0000000000000000FFFF00000100007F:2328") == ("::ffff:127.0.0.1", 9000)


def test_agent_discovery_ports_parse_states(tmp_path: Path) -> None:
    root = fixture_procfs(tmp_path)
    tcp = parse_net((root / "net" / "tcp").read_text(), "tcp", "0A")
    assert 40112 not in {x.inode for x in tcp}  # ESTABLISHED ssh session
    assert 0 not in {x.inode for x in tcp}  # TIME_WAIT
    udp = parse_net((root / "net" / "udp").read_text(), "udp", "07")
    assert [(x.address, x.port) for x in udp] == [("127.0.0.53", 53), ("0.0.0.0", 68)]


def test_agent_discovery_ports_fixture_tree(tmp_path: Path, names: None) -> None:
    collector = PortsCollector(Settings(procfs=str(procfs(tmp_path))))
    got = sorted(samples(collector.collect(), "infrascope_listen_port_info"), key=key)
    assert got == sorted(EXPECTED, key=key)


def test_agent_discovery_ports_cache_avoids_rescans(tmp_path: Path, names: None) -> None:
    root = procfs(tmp_path)
    clock = Clock()
    collector = PortsCollector(Settings(procfs=str(root)), clock=clock)
    list(collector.collect())
    assert collector.scans == 1
    first_reads = collector.fds_read
    assert first_reads > BUSY_FDS  # the unresolved inodes made this first scan a full one

    # steady state: nothing new listens, the unresolved are not looked for again
    clock.now += 60
    got = sorted(samples(collector.collect(), "infrascope_listen_port_info"), key=key)
    assert got == sorted(EXPECTED, key=key)
    assert (collector.scans, collector.fds_read) == (1, first_reads)

    # a new listener: only it is looked for, and the scan stops where it is found
    fake_process(root, 5000, "caddy", "0::/system.slice/caddy.service\n", [33000])
    with open(root / "net" / "tcp", "a") as fh:
        fh.write("  11: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 "
                 "00000000     0        0 33000 1 0000000012345678 100 0 0 10 0\n")
    got = samples(collector.collect(), "infrascope_listen_port_info")
    assert port(3000, "tcp", "0.0.0.0", "systemd", "caddy.service", "caddy") in got
    assert collector.scans == 2
    assert collector.fds_read - first_reads < BUSY_FDS  # pid 9000's fds were never read


def test_agent_discovery_ports_cache_invalidation(tmp_path: Path, names: None) -> None:
    root = procfs(tmp_path)
    clock = Clock()
    collector = PortsCollector(Settings(procfs=str(root)), clock=clock)
    list(collector.collect())
    assert collector.inode_owner[21011][0] == 840

    # the nginx master exits: its sockets are found again, now held by the worker
    shutil.rmtree(root / "840")
    got = samples(collector.collect(), "infrascope_listen_port_info")
    assert collector.scans == 2 and collector.inode_owner[21011][0] == 841
    assert port(80, "tcp", "0.0.0.0", "systemd", "nginx.service", "nginx") in got

    # pid 612 reused by another process (new start time): not trusted
    shutil.rmtree(root / "612")
    fake_process(root, 612, "sshd", "0::/system.slice/ssh.service\n", [18421, 18423],
                 start_time=99999)
    list(collector.collect())
    assert collector.scans == 3 and collector.inode_owner[18421] == (612, "99999")

    # a socket that stops listening leaves the cache
    tcp = (root / "net" / "tcp").read_text().splitlines()
    (root / "net" / "tcp").write_text("\n".join(x for x in tcp if " 32000 " not in x) + "\n")
    list(collector.collect())
    assert 32000 not in collector.inode_owner and collector.scans == 3

    # unresolved inodes are looked for again after a while
    clock.now += UNRESOLVED_RETRY_SECONDS
    list(collector.collect())
    assert collector.scans == 4


def test_agent_discovery_ports_no_procnet_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(PortsCollector(Settings(procfs=str(tmp_path))).collect())


def test_agent_discovery_ports_ipv4_only_host(tmp_path: Path, names: None) -> None:
    root = procfs(tmp_path)
    (root / "net" / "tcp6").unlink()
    (root / "net" / "udp6").unlink()
    got = samples(PortsCollector(Settings(procfs=str(root))).collect(),
                  "infrascope_listen_port_info")
    assert {s["address"] for s in got} == {"0.0.0.0", "127.0.0.1", "127.0.0.53"}


def test_agent_discovery_ports_real_proc() -> None:
    """Sockets this test opens show up with this process's comm and owner, from /proc."""
    comm = Path("/proc/self/comm").read_text().strip()
    owner = owner_of(Path("/proc/self/cgroup").read_text())
    service = owner.name if owner.kind == "systemd" else (owner.name[:12] if owner.name else "")
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        collector = PortsCollector(Settings(procfs="/proc"))
        got = samples(collector.collect(), "infrascope_listen_port_info")
        for sock, protocol in ((tcp, "tcp"), (udp, "udp")):
            listed = [s for s in got
                      if s["port"] == str(sock.getsockname()[1]) and s["protocol"] == protocol
                      and s["address"] == "127.0.0.1"]
            assert listed == [port(sock.getsockname()[1], protocol, "127.0.0.1", owner.kind,
                                   service, comm)], got
        # the socket's inode is cached against this process for the next scrapes
        assert collector.inode_owner[os.fstat(tcp.fileno()).st_ino][0] == os.getpid()
        again = samples(collector.collect(), "infrascope_listen_port_info")
        assert port(tcp.getsockname()[1], "tcp", "127.0.0.1", owner.kind, service, comm) in again
    finally:
        tcp.close()
        udp.close()


def test_agent_discovery_ports_real_proc_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        sock.listen(1)
        got = samples(PortsCollector(Settings()).collect(), "infrascope_listen_port_info")
        mine = [s for s in got if s["port"] == str(sock.getsockname()[1])]
        assert [(s["protocol"], s["address"]) for s in mine] == [("tcp", "::1")]
        assert mine[0]["process"] == Path("/proc/self/comm").read_text().strip()
    finally:
        sock.close()
