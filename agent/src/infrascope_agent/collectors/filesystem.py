"""``filesystem``: node_filesystem_*{device, fstype, mountpoint} from statfs of each mount.

Mounts are read the way node_exporter 1.5 reads them: ``<procfs>/1/mounts`` (the
host's mount table when the agent runs in a container with the host's PID
namespace), falling back to ``<procfs>/mounts``; only ``\\040`` and ``\\011`` are
unescaped in the mount point; ``--path.rootfs`` is stripped from mount points and
prefixed to the path that is stat'ed. Default exclusions are node_exporter 1.5's
upstream ones (Debian's package patches them to also drop /run, /mnt and /media;
pass ``collector.filesystem.mount-points-exclude`` in ``Settings.extra`` for that).

Every statfs runs in its own daemon thread and is waited for at most
``Settings.filesystem_timeout`` seconds: a hung mount (dead NFS server, stuck
FUSE daemon) is reported with ``node_filesystem_device_error 1`` and the scrape
goes on. The stuck call is remembered, so later scrapes do not pile up more
threads on the same mount point while it is still hanging; once it returns the
mount is stat'ed normally again. Concurrent scrapes share an in-flight call.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

from ..registry import Collector, Option, Settings, add, family, register
from ._host import option

log = logging.getLogger("infrascope_agent")

DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)")
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs"
    r"|sysfs|tracefs)$")
# What Debian's prometheus-node-exporter 1.5 package uses instead (see its --help).
DEBIAN_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)")


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def labels(self) -> dict[str, str]:
        return {"device": self.device, "fstype": self.fstype, "mountpoint": self.mountpoint}

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


def parse_mounts(text: str, rootfs: str = "/") -> list[Mount]:
    """Parse a /proc/<pid>/mounts table exactly like node_exporter's parseFilesystemLabels."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ValueError(f"malformed mount point information: {line!r}")
        mountpoint = parts[1].replace("\\040", " ").replace("\\011", "\t")
        out.append(Mount(parts[0], strip_rootfs(mountpoint, rootfs), parts[2], parts[3]))
    return out


def strip_rootfs(path: str, rootfs: str) -> str:
    if rootfs == "/":
        return path
    stripped = path.removeprefix(rootfs)
    return stripped or "/"


def rootfs_path(rootfs: str, mountpoint: str) -> str:
    return os.path.normpath(os.path.join(rootfs, mountpoint.lstrip("/")))


class _Call:
    """One statvfs in flight on a mount point, possibly shared by concurrent scrapes."""

    __slots__ = ("started", "done", "result", "error", "stuck")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.stuck = False


FAMILIES = (
    ("size_bytes", "Filesystem size in bytes."),
    ("free_bytes", "Filesystem free space in bytes."),
    ("avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("files", "Filesystem total file nodes."),
    ("files_free", "Filesystem total free file nodes."),
    ("readonly", "Filesystem read-only status."),
    ("device_error", "Whether an error occurred while getting statistics for the given device."),
)


@register
class FilesystemCollector(Collector):
    name = "filesystem"
    help = "filesystem statistics: statfs of each mount, hung mounts skipped"
    options = (
        Option("collector.filesystem.timeout",
               "seconds one statfs may take before the mount is skipped",
               setting="filesystem_timeout", type=float, metavar="SECONDS"),
        Option("collector.filesystem.mount-points-exclude",
               "mount points to ignore (replaces the default)",
               aliases=("collector.filesystem.ignored-mount-points",), metavar="REGEX",
               regex=True),
        Option("collector.filesystem.fs-types-exclude",
               "filesystem types to ignore (replaces the default)",
               aliases=("collector.filesystem.ignored-fs-types",), metavar="REGEX", regex=True),
    )

    def __init__(self, settings: Settings,
                 statvfs: Callable[[str], Any] | None = None) -> None:
        super().__init__(settings)
        self.statvfs: Callable[[str], Any] = statvfs or os.statvfs
        self.mount_points_exclude = re.compile(option(
            settings, "collector.filesystem.mount-points-exclude", DEFAULT_MOUNT_POINTS_EXCLUDE))
        self.fs_types_exclude = re.compile(option(
            settings, "collector.filesystem.fs-types-exclude", DEFAULT_FS_TYPES_EXCLUDE))
        self._lock = threading.Lock()
        self._inflight: dict[str, _Call] = {}

    # -- mounts ---------------------------------------------------------------------------

    def read_mounts(self) -> list[Mount]:
        procfs = self.settings.procfs
        try:
            with open(os.path.join(procfs, "1", "mounts")) as fh:
                text = fh.read()
        except (FileNotFoundError, PermissionError):
            # hidepid, or an unprivileged agent: our own mount namespace is the next best.
            with open(os.path.join(procfs, "mounts")) as fh:
                text = fh.read()
        return parse_mounts(text, self.settings.rootfs)

    def mounts(self) -> list[Mount]:
        """Mounts to report: exclusions applied, one per label set (first wins)."""
        seen: set[tuple[str, str, str]] = set()
        out = []
        for m in self.read_mounts():
            if self.mount_points_exclude.search(m.mountpoint):
                continue
            if self.fs_types_exclude.search(m.fstype):
                continue
            key = (m.device, m.mountpoint, m.fstype)
            if key in seen:
                continue
            seen.add(key)
            out.append(m)
        return out

    # -- statfs with a timeout ------------------------------------------------------------

    def stuck_mountpoints(self) -> set[str]:
        with self._lock:
            return {mp for mp, call in self._inflight.items() if call.stuck}

    def _start(self, mountpoint: str) -> tuple[_Call, bool]:
        """The call to wait for, and whether it is already known to be stuck."""
        with self._lock:
            call = self._inflight.get(mountpoint)
            if call is not None:
                return call, call.stuck
            call = self._inflight[mountpoint] = _Call()
        path = rootfs_path(self.settings.rootfs, mountpoint)
        threading.Thread(target=self._stat, args=(mountpoint, path, call), daemon=True,
                         name=f"statfs {mountpoint}").start()
        return call, False

    def _stat(self, mountpoint: str, path: str, call: _Call) -> None:
        try:
            call.result = self.statvfs(path)
        except BaseException as exc:  # noqa: BLE001 - reported as device_error
            call.error = exc
        with self._lock:
            if self._inflight.get(mountpoint) is call:
                del self._inflight[mountpoint]
            if call.stuck:
                log.info("mount point has recovered, monitoring will resume",
                         extra={"event": "filesystem_recovered", "mountpoint": mountpoint})
            call.done.set()

    def _wait(self, mountpoint: str, call: _Call) -> bool:
        remaining = call.started + self.settings.filesystem_timeout - time.monotonic()
        if call.done.wait(max(0.0, remaining)):
            return True
        with self._lock:
            if call.done.is_set():
                return True
            if not call.stuck:
                call.stuck = True
                log.warning("statfs timed out, mount point marked as stuck",
                            extra={"event": "filesystem_stuck", "mountpoint": mountpoint,
                                   "timeout": self.settings.filesystem_timeout})
        return False

    # -- collect --------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        metrics = {suffix: family(f"node_filesystem_{suffix}", "gauge", doc)
                   for suffix, doc in FAMILIES}
        mounts = self.mounts()
        calls = [(m, *self._start(m.mountpoint)) for m in mounts]
        for mount, call, stuck in calls:
            labels = mount.labels
            ok = not stuck and self._wait(mount.mountpoint, call) and call.error is None
            add(metrics["device_error"], labels, 0 if ok else 1)
            if not ok:
                if call.error is not None:
                    log.debug("statfs failed", extra={"event": "filesystem_error",
                                                      "mountpoint": mount.mountpoint,
                                                      "error": str(call.error)})
                continue
            st = call.result
            add(metrics["size_bytes"], labels, st.f_blocks * st.f_frsize)
            add(metrics["free_bytes"], labels, st.f_bfree * st.f_frsize)
            add(metrics["avail_bytes"], labels, st.f_bavail * st.f_frsize)
            add(metrics["files"], labels, st.f_files)
            add(metrics["files_free"], labels, st.f_ffree)
            add(metrics["readonly"], labels, 1 if mount.readonly else 0)
        return list(metrics.values())
