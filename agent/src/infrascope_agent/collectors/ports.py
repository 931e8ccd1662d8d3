"""``ports``: listening sockets, the process holding each, and the service owning it.

Listeners come from the kernel over netlink sock_diag (LISTEN and unconnected
sockets only, filtered in the kernel), or, where that is unavailable or a
fixture procfs is given, from ``<procfs>/net/{tcp,tcp6,udp,udp6}`` (the network namespace
of the agent — the host's when it runs on the host or with ``--network host``):
TCP sockets in state ``0A`` (LISTEN) and UDP sockets in state ``07``
(unconnected, i.e. receiving from anyone). Each row's socket inode is tied to a
process by the ``socket:[<inode>]`` links in ``<procfs>/<pid>/fd``; the process
is named by ``<procfs>/<pid>/comm`` (never its command line) and its owner
(systemd unit or container) read from ``<procfs>/<pid>/cgroup``.

Walking every fd of every process on every scrape is expensive on busy hosts,
so the collector keeps an inode -> process cache:

* only listening inodes not in the cache are looked for, and the scan of
  ``/proc/*/fd`` (in pid order, so a socket shared by a master and its workers
  goes to the master) stops as soon as all of them are found;
* an entry is dropped when its socket stops listening or its process is gone
  (pid directory missing, or a different start time: the pid was reused);
* inodes no process could be found for (sockets held in another pid
  namespace, or processes the agent may not inspect) are not looked for again
  for :data:`UNRESOLVED_RETRY_SECONDS`; they are still exposed, with
  ``kind="process"`` and empty ``service`` and ``process``.

Series: ``infrascope_listen_port_info{port, protocol="tcp"|"udp", address,
kind="systemd"|"docker"|"container"|"process", service, process} 1`` where
``address`` is the bound address (``0.0.0.0``, ``::``, ``127.0.0.1``, ``::1``...;
IPv6 sockets are told apart by it, not by the protocol), ``service`` is the unit
or container name ("" for a bare process) and ``process`` the comm.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric

from ..cgroups import PROCESS, Owner, owner_of
from ..discovery import CONTAINER_NAMES, listen_port_family
from ..registry import Collector, Settings, add, register

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"
NET_FILES = (("tcp", "tcp", TCP_LISTEN), ("tcp6", "tcp", TCP_LISTEN),
             ("udp", "udp", UDP_UNCONNECTED), ("udp6", "udp", UDP_UNCONNECTED))
UNRESOLVED_RETRY_SECONDS = 300.0
_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


@dataclass(frozen=True)
class Listener:
    protocol: str
    address: str
    port: int
    inode: int


def decode_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> (``127.0.0.1``, 8080); IPv6 rows likewise.

    The kernel prints the address as 32-bit words in host byte order, the port
    as a plain hex number.
    """
    host, port = text.split(":")
    words = [int(host[i:i + 8], 16) for i in range(0, len(host), 8)]
    packed = struct.pack(f"={len(words)}I", *words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(port, 16)


def parse_net(text: str, protocol: str, state: str) -> list[Listener]:
    """Rows of a ``/proc/net/{tcp,udp}[6]`` table in ``state`` (header skipped)."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != state:
            continue
        try:
            address, port = decode_address(parts[1])
            inode = int(parts[9])
        except (ValueError, OSError, struct.error):
            continue
        out.append(Listener(protocol, address, port, inode))
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_TCP_LISTEN_STATE, _UDP_CLOSE_STATE = 10, 7
_NLMSG = struct.Struct("=IHHII")
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")


def sock_diag_listeners() -> list[Listener]:
    """LISTEN TCP and unconnected UDP sockets from the kernel over netlink (sock_diag).

    The kernel filters by state itself, so this costs the same on a host with a
    few listeners and a hundred thousand connections — unlike /proc/net/tcp*, which
    renders a text row for every socket. Raises OSError where netlink is unavailable.
    """
    out: list[Listener] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        seq = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            for protocol, proto_num, state in (("tcp", socket.IPPROTO_TCP, _TCP_LISTEN_STATE),
                                               ("udp", socket.IPPROTO_UDP, _UDP_CLOSE_STATE)):
                seq += 1
                req = struct.pack("=BBBBI", family, proto_num, 0, 0, 1 << state) + bytes(48)
                nl.send(_NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY,
                                    NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req)
                done = False
                while not done:
                    data = nl.recv(65536)
                    offset = 0
                    while offset + _NLMSG.size <= len(data):
                        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                        if length < _NLMSG.size:
                            raise OSError("sock_diag: malformed netlink message")
                        if kind == NLMSG_DONE:
                            done = True
                            break
                        if kind == NLMSG_ERROR:
                            raise OSError("sock_diag: the kernel refused the request")
                        body = data[offset + _NLMSG.size: offset + length]
                        if len(body) >= _DIAG_MSG.size:
                            fields = _DIAG_MSG.unpack_from(body)
                            msg_family, sport, src, inode = fields[0], fields[4], fields[6], \
                                fields[-1]
                            raw = src[:4] if msg_family == socket.AF_INET else src
                            out.append(Listener(protocol, socket.inet_ntop(msg_family, raw),
                                                int.from_bytes(sport, "big"), inode))
                        offset += (length + 3) & ~3
    return out


@register
class PortsCollector(Collector):
    name = "ports"
    help = "listening TCP/UDP sockets with their process and owning service"

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings)
        self.clock = clock
        self.inode_owner: dict[int, tuple[int, str | None]] = {}  # inode -> (pid, start time)
        self.unresolved: dict[int, float] = {}  # inode -> when a full scan missed it
        self.scans = 0  # scans of <procfs>/*/fd
        self.fds_read = 0  # fd links read by those scans
        self._lock = threading.Lock()

    use_sock_diag: bool | None = None  # None: try netlink on the real /proc first

    def listeners(self) -> list[Listener]:
        if self.settings.procfs == "/proc" and self.use_sock_diag is not False:
            try:
                found = sock_diag_listeners()
                self.use_sock_diag = True
                return found
            except OSError:
                self.use_sock_diag = False  # e.g. netlink filtered: read the tables
        out: list[Listener] = []
        for filename, protocol, state in NET_FILES:
            path = os.path.join(self.settings.procfs, "net", filename)
            text = _read(path)
            if text is None:
                if filename == "tcp":  # no IPv6 or no UDP is normal; no /proc/net/tcp is not
                    raise FileNotFoundError(f"cannot read {path}")
                continue
            out.extend(parse_net(text, protocol, state))
        return out

    def _start_time(self, pid: int) -> str | None:
        """Field 22 of /proc/PID/stat: tells a reused pid from the process cached."""
        stat = _read(os.path.join(self.settings.procfs, str(pid), "stat"))
        if not stat or ")" not in stat:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return fields[19] if len(fields) > 19 else None

    def _alive(self, pid: int, start: str | None) -> bool:
        if not os.path.isdir(os.path.join(self.settings.procfs, str(pid))):
            return False
        return start is None or self._start_time(pid) == start

    def _pids(self) -> list[int]:
        try:
            return sorted(int(n) for n in os.listdir(self.settings.procfs) if n.isdigit())
        except OSError:
            return []

    def _scan(self, wanted: set[int]) -> None:
        """Find the processes holding ``wanted`` inodes; stop once all are found."""
        self.scans += 1
        wanted = set(wanted)
        for pid in self._pids():
            fd_dir = os.path.join(self.settings.procfs, str(pid), "fd")
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # gone, or not ours to look at
                continue
            start: str | None = None
            found_here = False
            for fd in fds:
                try:
                    link = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                self.fds_read += 1
                m = _SOCKET_LINK.fullmatch(link)
                if not m or int(m.group(1)) not in wanted:
                    continue
                if not found_here:
                    start, found_here = self._start_time(pid), True
                inode = int(m.group(1))
                self.inode_owner[inode] = (pid, start)
                wanted.discard(inode)
                if not wanted:
                    return
        now = self.clock()
        for inode in wanted:
            self.unresolved[inode] = now

    def resolve(self, inodes: set[int]) -> dict[int, int]:
        """inode -> pid for the listening ``inodes``, scanning fds only for new ones."""
        now = self.clock()
        alive: dict[tuple[int, str | None], bool] = {}
        for inode, owner in list(self.inode_owner.items()):
            if owner not in alive:
                alive[owner] = self._alive(*owner)
            if inode not in inodes or not alive[owner]:
                del self.inode_owner[inode]
        for inode, when in list(self.unresolved.items()):
            if inode not in inodes or now - when >= UNRESOLVED_RETRY_SECONDS:
                del self.unresolved[inode]
        wanted = inodes - self.inode_owner.keys() - self.unresolved.keys()
        if wanted:
            self._scan(wanted)
        return {inode: owner[0] for inode, owner in self.inode_owner.items() if inode in inodes}

    def _process(self, pid: int) -> tuple[str, Owner]:
        base = os.path.join(self.settings.procfs, str(pid))
        comm = (_read(os.path.join(base, "comm")) or "").strip()
        cgroup = _read(os.path.join(base, "cgroup"))
        return comm, owner_of(cgroup) if cgroup is not None else PROCESS

    def collect(self) -> Iterable[Metric]:
        listeners = self.listeners()
        with self._lock:
            pids = self.resolve({lst.inode for lst in listeners if lst.inode})
        info = listen_port_family()
        processes: dict[int, tuple[str, Owner]] = {}
        seen: set[tuple[str, ...]] = set()
        for lst in sorted(listeners, key=lambda x: (x.protocol, x.port, x.address)):
            pid = pids.get(lst.inode)
            comm, owner = "", PROCESS
            if pid is not None:
                if pid not in processes:
                    processes[pid] = self._process(pid)
                comm, owner = processes[pid]
            if owner.kind == "docker":
                service = CONTAINER_NAMES.name(owner.name)
            elif owner.kind == "container":
                service = owner.name[:12]
            else:
                service = owner.name
            labels = {"port": str(lst.port), "protocol": lst.protocol, "address": lst.address,
                      "kind": owner.kind, "service": service, "process": comm}
            key = tuple(labels.values())
            if key in seen:  # SO_REUSEPORT groups: one series per address and owner
                continue
            seen.add(key)
            add(info, labels, 1)
        return [info]
