"""Control groups: who owns a process, and how much CPU and memory a group uses.

Both layouts are read:

* **cgroup v2** (unified; ``<cgroupfs>/cgroup.controllers`` exists): CPU from
  ``cpu.stat`` ``usage_usec``, memory from ``memory.current``.
* **cgroup v1** (one hierarchy per controller, also the "hybrid" layout where
  ``<cgroupfs>/unified`` only carries systemd's tree): CPU from
  ``cpuacct/cpuacct.usage`` (nanoseconds), memory from
  ``memory/memory.usage_in_bytes``.

**Memory is the working set on both layouts**: usage minus the inactive file
cache (``inactive_file`` in v2's ``memory.stat``; ``total_inactive_file`` —
the hierarchical value matching the hierarchical ``usage_in_bytes`` — in v1's),
floored at 0. That is cadvisor's ``container_memory_working_set_bytes`` and what
``kubectl top`` and the OOM killer care about: raw usage counts page cache the
kernel reclaims at will, so a service that merely reads a big file would look
like it leaks. Using the same definition on v1 and v2 keeps the series
comparable across hosts; when ``memory.stat`` is unreadable the raw usage is
reported.

A cgroup is addressed by its path inside the hierarchy (``/system.slice/nginx.service``),
which is what ``/proc/PID/cgroup`` shows; :func:`unit_cgroup_paths` and
:func:`container_cgroup_paths` give the candidate paths of a systemd unit or a
Docker container. Everything here only reads files; a file that is missing or
unreadable means "unknown" (``None``), never an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

V1_CPU_CONTROLLER = "cpuacct"
V1_MEMORY_CONTROLLER = "memory"
SYSTEMD_HIERARCHY = "name=systemd"
UNIFIED = ""  # the key of the "0::<path>" line of /proc/PID/cgroup

_CONTAINER_SCOPE = re.compile(
    r"(docker|cri-containerd|containerd|crio|libpod)-([0-9a-f]{64})\.scope")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_UNIT_SUFFIXES = (".service", ".scope")


@dataclass(frozen=True)
class Usage:
    """CPU seconds consumed since the cgroup was created, and working-set bytes."""

    cpu_seconds: float | None = None
    memory_bytes: float | None = None

    @property
    def known(self) -> bool:
        return self.cpu_seconds is not None or self.memory_bytes is not None


@dataclass(frozen=True)
class Owner:
    """Who a process belongs to.

    ``kind`` is ``"systemd"`` (``name`` = unit, e.g. ``nginx.service``),
    ``"docker"`` (``name`` = the 64-hex container id), ``"container"`` (another
    runtime — containerd, CRI-O, podman, Kubernetes pods whose runtime the path
    does not tell; ``name`` = container id) or ``"process"`` (none of those;
    ``name`` = "").
    """

    kind: str
    name: str = ""


PROCESS = Owner("process", "")


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` -> {controller: path}.

    v1 lines ``4:memory:/docker/<id>`` give one key per controller
    (``cpu,cpuacct`` gives both ``cpu`` and ``cpuacct``; ``name=systemd`` is kept
    as is); the v2 line ``0::/system.slice/x.service`` gives the key ``""``.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[UNIFIED] = path
            continue
        for controller in controllers.split(","):
            out[controller] = path
    return out


def owner_of(cgroups: dict[str, str] | str) -> Owner:
    """The service that owns a process, from its ``/proc/PID/cgroup`` (text or parsed).

    Containers win over systemd units (a ``docker-<id>.scope`` is a systemd scope
    too), the innermost path component wins (a container started from a user
    service belongs to the container). Recognised: ``/system.slice/docker-<id>.scope``
    and ``/docker/<id>`` (Docker with the systemd or cgroupfs driver),
    ``kubepods...`` with ``cri-containerd-``/``crio-``/``docker-`` scopes or bare ids,
    ``libpod-<id>.scope`` (podman), and systemd ``*.service`` / ``*.scope`` units.
    """
    paths = parse_proc_cgroup(cgroups) if isinstance(cgroups, str) else cgroups
    ordered = [paths[k] for k in (SYSTEMD_HIERARCHY, UNIFIED) if k in paths]
    ordered += [p for k, p in sorted(paths.items()) if k not in (SYSTEMD_HIERARCHY, UNIFIED)]
    for path in ordered:
        container = _container_in(path)
        if container is not None:
            return container
    for path in ordered:
        for part in reversed([p for p in path.split("/") if p]):
            if part.endswith(_UNIT_SUFFIXES):
                return Owner("systemd", part)
    return PROCESS


def _container_in(path: str) -> Owner | None:
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        m = _CONTAINER_SCOPE.fullmatch(part)
        if m:
            return Owner("docker" if m.group(1) == "docker" else "container", m.group(2))
        if _CONTAINER_ID.fullmatch(part):
            parent = parts[i - 1] if i > 0 else ""
            return Owner("docker" if parent == "docker" else "container", part)
    return None


def _escape_unit_prefix(prefix: str) -> str:
    """systemd's escaping of a template prefix inside a slice name (``-`` -> ``\\x2d``)."""
    return "".join(c if c.isalnum() or c in ":_." else f"\\x{ord(c):02x}" for c in prefix)


def unit_cgroup_paths(unit: str) -> list[str]:
    """Where systemd puts a system unit's cgroup, most likely first."""
    paths = [f"/system.slice/{unit}"]
    if "@" in unit:
        prefix, _, rest = unit.partition("@")
        if prefix == "user" and rest.removesuffix(".service").isdigit():
            uid = rest.removesuffix(".service")
            paths.insert(0, f"/user.slice/user-{uid}.slice/{unit}")
        paths.append(f"/system.slice/system-{_escape_unit_prefix(prefix)}.slice/{unit}")
    return paths


def container_cgroup_paths(container_id: str) -> list[str]:
    """Docker's cgroup for a container: systemd driver, then cgroupfs driver."""
    return [f"/system.slice/docker-{container_id}.scope", f"/docker/{container_id}"]


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _stat_value(text: str | None, *keys: str) -> int | None:
    """First of ``keys`` found in a flat-keyed file (``cpu.stat``, ``memory.stat``)."""
    if text is None:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            values[parts[0]] = parts[1]
    for key in keys:
        if key in values:
            try:
                return int(values[key])
            except ValueError:
                return None
    return None


def _working_set(usage: int | None, stat: str | None, *inactive_keys: str) -> float | None:
    if usage is None:
        return None
    inactive = _stat_value(stat, *inactive_keys)
    return float(max(0, usage - inactive)) if inactive is not None else float(usage)


class Cgroups:
    """Reads usage under one cgroup mount point (``--path.cgroupfs``)."""

    def __init__(self, root: str = "/sys/fs/cgroup") -> None:
        self.root = root
        self.version = 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1
        self._v1_dirs: dict[str, str | None] = {}

    def _v1_dir(self, controller: str) -> str | None:
        """The mount of a v1 controller: ``cpuacct``, ``cpu,cpuacct`` or ``cpuacct,cpu``."""
        if controller not in self._v1_dirs:
            found = None
            try:
                names = sorted(os.listdir(self.root))
            except OSError:
                names = []
            for name in names:
                if controller in name.split(",") and os.path.isdir(os.path.join(self.root, name)):
                    found = os.path.join(self.root, name)
                    break
            self._v1_dirs[controller] = found
        return self._v1_dirs[controller]

    def _dir(self, controller: str, path: str) -> str | None:
        base = self.root if self.version == 2 else self._v1_dir(controller)
        if base is None:
            return None
        return os.path.join(base, path.lstrip("/"))

    def usage(self, path: dict[str, str] | str) -> Usage:
        """Usage of one cgroup: a path valid in every hierarchy, or parsed /proc/PID/cgroup."""
        if isinstance(path, str):
            cpu_path = mem_path = path
        elif self.version == 2:
            cpu_path = mem_path = path.get(UNIFIED, "")
        else:
            cpu_path = path.get(V1_CPU_CONTROLLER, "")
            mem_path = path.get(V1_MEMORY_CONTROLLER, "")
        cpu = mem = None
        cpu_dir = self._dir(V1_CPU_CONTROLLER, cpu_path) if cpu_path else None
        mem_dir = self._dir(V1_MEMORY_CONTROLLER, mem_path) if mem_path else None
        if self.version == 2:
            if cpu_dir is not None:
                usec = _stat_value(_read(os.path.join(cpu_dir, "cpu.stat")), "usage_usec")
                cpu = usec / 1e6 if usec is not None else None
            if mem_dir is not None:
                mem = _working_set(_int(_read(os.path.join(mem_dir, "memory.current"))),
                                   _read(os.path.join(mem_dir, "memory.stat")), "inactive_file")
        else:
            if cpu_dir is not None:
                ns = _int(_read(os.path.join(cpu_dir, "cpuacct.usage")))
                cpu = ns / 1e9 if ns is not None else None
            if mem_dir is not None:
                mem = _working_set(_int(_read(os.path.join(mem_dir, "memory.usage_in_bytes"))),
                                   _read(os.path.join(mem_dir, "memory.stat")),
                                   "total_inactive_file", "inactive_file")
        return Usage(cpu, mem)

    def first_usage(self, candidates: list[str]) -> Usage:
        """Usage of the first candidate path that exists in some hierarchy."""
        for path in candidates:
            usage = self.usage(path)
            if usage.known:
                return usage
        return Usage()

    def unit_usage(self, unit: str) -> Usage:
        return self.first_usage(unit_cgroup_paths(unit))

    def container_usage(self, container_id: str) -> Usage:
        return self.first_usage(container_cgroup_paths(container_id))


__all__ = ["Cgroups", "Owner", "PROCESS", "Usage", "container_cgroup_paths", "owner_of",
           "parse_proc_cgroup", "unit_cgroup_paths"]
