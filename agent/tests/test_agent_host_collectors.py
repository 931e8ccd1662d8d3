"""Host collectors on fixture procfs/sysfs trees: exact values, exclusions, hung mounts,
failing collectors, concurrent scrapes, and ``promtool check metrics``.

The fixture files are trimmed copies of real ones (a 4-CPU laptop, an LVM server).
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from infrascope_agent.collectors import build
from infrascope_agent.collectors.diskstats import DiskstatsCollector
from infrascope_agent.collectors.filesystem import FilesystemCollector, parse_mounts
from infrascope_agent.collectors.loadavg import LoadavgCollector
from infrascope_agent.collectors.netdev import NetDevCollector, parse_net_dev
from infrascope_agent.collectors.stat import StatCollector
from infrascope_agent.collectors.uname import UnameCollector
from infrascope_agent.registry import COLLECTORS, Collector, Registry, Settings
from infrascope_agent.web import AgentServer
from infrascope_core.node_exporter import NodeExporter
from infrascope_core.prometheus import Promtool

HOST = ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "stat", "uname", "diskstats")

PROC_STAT = """\
cpu  301854 612 111922 8979004 3552 2 3944 0 44 36
cpu0 44490 19 21045 1087069 220 1 3410 0 2 1
cpu1 47869 23 16474 1110787 591 0 46 0 3 2
cpu2 46504 36 15916 1112321 441 0 326 0 4 3
cpu3 47054 102 15683 1113230 533 0 60 0 5 30
intr 8885917 17 0 0 0 0 0 0 0 1 79281 0 0 0 0 0 0 0 231237 0 0 0 0 250586 103 0
ctxt 38014093
btime 1418183276
processes 26442
procs_running 3
procs_blocked 1
softirq 5057579 250191 1481983 1647 211099 186066 0 1783454 622196 12499 508444
"""

MEMINFO = """\
MemTotal:       15666184 kB
MemFree:          440324 kB
MemAvailable:    6213308 kB
Buffers:         1020128 kB
Cached:          6563800 kB
SwapCached:          148 kB
Active:          6843532 kB
Inactive:        6001520 kB
Active(anon):    3829732 kB
Inactive(anon):   389700 kB
Active(file):    3013800 kB
Inactive(file):  5611820 kB
Unevictable:        1508 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap4k:      185664 kB
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 435303245 1832522    0    0    0     0          0         0 435303245 1832522    0    0    0     0       0          0
  eth0: 68210035552 520993275  1    2    3     4          5         6 9315587528 43451486    7    8    9    10      11         12
docker0:   2568      38    0    0    0     0          0         0      438       8    0    0    0     0       0          0
"""  # noqa: E501

DISKSTATS = """\
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
   7       0 loop0 1 0 8 0 0 0 0 0 0 1 0
   8       0 sda 25354637 34367663 1003346126 18492372 28444756 11134226 2131716386 6124700 0 13002756 24630656
   8       1 sda1 250 0 2000 36 0 0 0 0 0 36 36
 253       0 dm-0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
 259       0 nvme0n1 47114 4 4643973 21650 1078320 43950 39451633 1011053 2 222766 1032546 100 3 2048 7 12 34
 259       1 nvme0n1p1 1140 0 9370 16 1 0 1 0 0 16 16 0 0 0 0 0 0
 202       0 xvda 1 1 1 1 1 1 1 1 0 1 1
 202       1 xvda1 1 1 1 1 1 1 1 1 0 1 1
"""  # noqa: E501

MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=8171868k,nr_inodes=2042967,mode=755 0 0
devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1635620k,mode=755 0 0
/dev/mapper/system-root / ext4 rw,relatime,errors=remount-ro 0 0
tmpfs /run/credentials/systemd-sysusers.service tmpfs ro,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 /boot ext4 rw,relatime 0 0
/dev/sdb1 /srv/media\\040library ext4 ro,relatime 0 0
/dev/loop0 /snap/core20/1974 squashfs ro,nodev,relatime 0 0
overlay /var/lib/docker/overlay2/l0123/merged overlay rw,relatime 0 0
/dev/mapper/system-root /var/lib/docker ext4 rw,relatime 0 0
/dev/sdc1 /var/lib/docker/volumes/x ext4 rw,relatime 0 0
nfs.example:/export /mnt/nfs nfs4 rw,relatime,vers=4.2 0 0
binfmt_misc /proc/sys/fs/binfmt_misc binfmt_misc rw,relatime 0 0
/dev/sda1 /boot ext4 rw,relatime 0 0
"""


@pytest.fixture
def tree(tmp_path: Path) -> Settings:
    proc, sys_, udev = tmp_path / "proc", tmp_path / "sys", tmp_path / "udev"
    for d in (proc / "1", proc / "net", proc / "sys" / "kernel", udev,
              sys_ / "class" / "net" / "eth0" / "statistics"):
        d.mkdir(parents=True)
    (proc / "stat").write_text(PROC_STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "loadavg").write_text("0.21 0.37 0.39 1/719 19737\n")
    (proc / "net" / "dev").write_text(NET_DEV)
    (proc / "diskstats").write_text(DISKSTATS)
    (proc / "1" / "mounts").write_text(MOUNTS)
    (proc / "sys" / "kernel" / "domainname").write_text("example.internal\n")
    (sys_ / "class" / "net" / "eth0" / "statistics" / "rx_nohandler").write_text("42\n")
    (udev / "b8:0").write_text(
        "S:disk/by-id/ata-SAMSUNG_SSD\nE:ID_ATA=1\nE:ID_ATA_WRITE_CACHE=1\n"
        "E:ID_ATA_WRITE_CACHE_ENABLED=0\nE:ID_ATA_ROTATION_RATE_RPM=0\n"
        "E:ID_MODEL=Samsung_SSD_860\nE:ID_SERIAL=Samsung_SSD_860_S3Z\nE:ID_SERIAL_SHORT=S3Z\n"
        "E:ID_REVISION=RVT01B6Q\nE:ID_WWN=0x5002538e40000000\n"
        "E:ID_PATH=pci-0000:00:1f.2-ata-1\nE:ID_FS_TYPE=LVM2_member\nE:ID_FS_USAGE=raid\n"
        "E:ID_FS_UUID=c3C3uW-a\nE:ID_FS_VERSION=LVM2 001\n")
    (udev / "b253:0").write_text(
        "E:DM_NAME=system-root\nE:DM_UUID=LVM-abc\nE:DM_VG_NAME=system\nE:DM_LV_NAME=root\n")
    return Settings(procfs=str(proc), sysfs=str(sys_), filesystem_timeout=1.0,
                    extra={"path.udev.data": str(udev)})


def samples(metrics: Iterable[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in metrics for s in m.samples}


def by_label(metrics: Iterable[Metric], name: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for m in metrics for s in m.samples if s.name == name}


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def registry_of(*collectors: Collector, timeout: float = 5.0) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Registry(collectors, timeout=timeout))
    return reg


def statvfs_result(bsize: int, frsize: int, blocks: int, bfree: int, bavail: int,
                   files: int, ffree: int) -> os.statvfs_result:
    return os.statvfs_result((bsize, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


# -- stat, loadavg, uname, meminfo, cpu ----------------------------------------------------

def test_stat(tree: Settings) -> None:
    assert samples(StatCollector(tree).collect()) == {
        ("node_boot_time_seconds", ()): 1418183276,
        ("node_context_switches_total", ()): 38014093,
        ("node_forks_total", ()): 26442,
        ("node_intr_total", ()): 8885917,
        ("node_procs_running", ()): 3,
        ("node_procs_blocked", ()): 1,
    }
    types = {m.name: m.type for m in StatCollector(tree).collect()}
    assert types["node_context_switches"] == "counter"
    assert types["node_boot_time_seconds"] == "gauge"


def test_loadavg(tree: Settings) -> None:
    assert samples(LoadavgCollector(tree).collect()) == {
        ("node_load1", ()): 0.21, ("node_load5", ()): 0.37, ("node_load15", ()): 0.39}


def test_uname(tree: Settings) -> None:
    fake = os.uname_result(("Linux", "web-1", "6.1.0-18-amd64",
                            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", "x86_64"))
    got = samples(UnameCollector(tree, uname=lambda: fake).collect())
    assert got == {("node_uname_info", (
        ("domainname", "example.internal"), ("machine", "x86_64"), ("nodename", "web-1"),
        ("release", "6.1.0-18-amd64"), ("sysname", "Linux"),
        ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"))): 1}
    os.remove(os.path.join(tree.procfs, "sys", "kernel", "domainname"))
    ((_, labels), _), = samples(UnameCollector(tree, uname=lambda: fake).collect()).items()
    assert dict(labels)["domainname"] == "(none)"


def test_meminfo_and_cpu_from_fixture(tree: Settings) -> None:
    build(tree, {})
    mem = samples(COLLECTORS["meminfo"](tree).collect())
    assert mem[("node_memory_Active_anon_bytes", ())] == 3829732 * 1024
    assert mem[("node_memory_MemTotal_bytes", ())] == 15666184 * 1024
    assert mem[("node_memory_HugePages_Total", ())] == 0
    cpu = samples(COLLECTORS["cpu"](tree).collect())
    hz = os.sysconf("SC_CLK_TCK")
    assert cpu[("node_cpu_seconds_total", (("cpu", "3"), ("mode", "user")))] == 47054 / hz
    assert cpu[("node_cpu_guest_seconds_total", (("cpu", "3"), ("mode", "nice")))] == 30 / hz
    assert len(cpu) == 4 * 8 + 4 * 2


# -- netdev ------------------------------------------------------------------------------

def test_netdev_exact(tree: Settings) -> None:
    metrics = list(NetDevCollector(tree).collect())
    got = samples(metrics)
    eth0 = {name.removeprefix("node_network_"): v for (name, labels), v in got.items()
            if labels == (("device", "eth0"),)}
    assert eth0 == {
        "receive_bytes_total": 68210035552, "receive_packets_total": 520993275,
        "receive_errs_total": 1, "receive_drop_total": 2, "receive_fifo_total": 3,
        "receive_frame_total": 4, "receive_compressed_total": 5,
        "receive_multicast_total": 6, "receive_nohandler_total": 42,
        "transmit_bytes_total": 9315587528, "transmit_packets_total": 43451486,
        "transmit_errs_total": 7, "transmit_drop_total": 8, "transmit_fifo_total": 9,
        "transmit_colls_total": 10, "transmit_carrier_total": 11,
        "transmit_compressed_total": 12}
    # upstream node_exporter 1.5 reports every device, lo included.
    assert set(by_label(metrics, "node_network_receive_bytes_total", "device")) == {
        "lo", "eth0", "docker0"}
    assert {m.type for m in metrics} == {"counter"}
    assert all(m.documentation == f"Network device statistic {m.name[13:]}." for m in metrics)


def test_netdev_device_filters(tree: Settings) -> None:
    debian = Settings(procfs=tree.procfs, sysfs=tree.sysfs,
                      extra={"collector.netdev.device-exclude": "^lo$"})
    assert set(by_label(NetDevCollector(debian).collect(), "node_network_receive_bytes_total",
                        "device")) == {"eth0", "docker0"}
    include = Settings(procfs=tree.procfs, sysfs=tree.sysfs,
                       extra={"collector.netdev.device-include": "^eth"})
    assert set(by_label(NetDevCollector(include).collect(), "node_network_receive_bytes_total",
                        "device")) == {"eth0"}
    with pytest.raises(ValueError, match="mutually exclusive"):
        NetDevCollector(Settings(extra={"collector.netdev.device-include": "a",
                                        "collector.netdev.device-exclude": "b"}))


def test_parse_net_dev_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_net_dev("garbage\n")
    with pytest.raises(ValueError):
        parse_net_dev(NET_DEV + "  eth1: 1 2 3\n")


# -- diskstats ---------------------------------------------------------------------------

def test_diskstats_exact(tree: Settings) -> None:
    metrics = list(DiskstatsCollector(tree).collect())
    got = samples(metrics)
    sda = {name: v for (name, labels), v in got.items() if labels == (("device", "sda"),)}
    # A pre-4.18 line (11 fields): no discard or flush series.
    assert sda == {
        "node_disk_reads_completed_total": 25354637,
        "node_disk_reads_merged_total": 34367663,
        "node_disk_read_bytes_total": 1003346126 * 512,
        "node_disk_read_time_seconds_total": 18492.372,
        "node_disk_writes_completed_total": 28444756,
        "node_disk_writes_merged_total": 11134226,
        "node_disk_written_bytes_total": 2131716386 * 512,
        "node_disk_write_time_seconds_total": 6124.7,
        "node_disk_io_now": 0,
        "node_disk_io_time_seconds_total": 13002.756,
        "node_disk_io_time_weighted_seconds_total": 24630.656,
        "node_disk_ata_write_cache": 1,
        "node_disk_ata_write_cache_enabled": 0,
        "node_disk_ata_rotation_rate_rpm": 0,
    }
    nvme = {name: v for (name, labels), v in got.items() if labels == (("device", "nvme0n1"),)}
    assert nvme["node_disk_io_now"] == 2
    assert nvme["node_disk_discards_completed_total"] == 100
    assert nvme["node_disk_discards_merged_total"] == 3
    assert nvme["node_disk_discarded_sectors_total"] == 2048  # sectors, as node_exporter
    assert nvme["node_disk_discard_time_seconds_total"] == 0.007
    assert nvme["node_disk_flush_requests_total"] == 12
    assert nvme["node_disk_flush_requests_time_seconds_total"] == 0.034
    dm = {name for (name, labels), _ in got.items() if labels == (("device", "dm-0"),)}
    assert "node_disk_discard_time_seconds_total" in dm  # 4.18+ line (15 fields)
    assert "node_disk_flush_requests_total" not in dm
    # Partitions, ram, loop excluded; whole disks (also nvme0n1, xvda) kept.
    assert set(by_label(metrics, "node_disk_info", "device")) == {
        "sda", "dm-0", "nvme0n1", "xvda"}
    info = {k: v for k, v in got.items() if k[0] != "node_disk_info" or
            dict(k[1])["device"] == "sda"}
    assert info[("node_disk_info", (
        ("device", "sda"), ("major", "8"), ("minor", "0"), ("model", "Samsung_SSD_860"),
        ("path", "pci-0000:00:1f.2-ata-1"), ("revision", "RVT01B6Q"), ("serial", "S3Z"),
        ("wwn", "0x5002538e40000000")))] == 1
    assert got[("node_disk_filesystem_info", (
        ("device", "sda"), ("type", "LVM2_member"), ("usage", "raid"), ("uuid", "c3C3uW-a"),
        ("version", "LVM2 001")))] == 1
    assert got[("node_disk_device_mapper_info", (
        ("device", "dm-0"), ("lv_layer", ""), ("lv_name", "root"), ("name", "system-root"),
        ("uuid", "LVM-abc"), ("vg_name", "system")))] == 1
    types = {m.name: m.type for m in metrics}
    assert types["node_disk_io_now"] == "gauge"
    assert types["node_disk_read_bytes"] == "counter"


def test_diskstats_without_udev(tree: Settings) -> None:
    bare = Settings(procfs=tree.procfs, extra={"path.udev.data": "/nonexistent"})
    got = samples(DiskstatsCollector(bare).collect())
    assert got[("node_disk_info", (("device", "sda"), ("major", "8"), ("minor", "0"),
                                   ("model", ""), ("path", ""), ("revision", ""),
                                   ("serial", ""), ("wwn", "")))] == 1
    assert not any(name.startswith("node_disk_ata_") for name, _ in got)


# -- filesystem --------------------------------------------------------------------------

def fake_statvfs(values: dict[str, os.statvfs_result]
                 ) -> Callable[[str], os.statvfs_result]:
    def statvfs(path: str) -> os.statvfs_result:
        if path not in values:
            raise FileNotFoundError(2, "No such file or directory", path)
        return values[path]
    return statvfs


ROOT = statvfs_result(4096, 4096, 1000, 400, 300, 5000, 4000)
BOOT = statvfs_result(1024, 1024, 500000, 250000, 240000, 131072, 131000)
# A file system whose fragment size differs from its block size (FUSE can):
# blocks are counted in f_frsize units.
MEDIA = statvfs_result(131072, 4096, 2000, 1000, 900, 0, 0)


def test_filesystem_exact(tree: Settings) -> None:
    fs = FilesystemCollector(tree, statvfs=fake_statvfs(
        {"/": ROOT, "/boot": BOOT, "/srv/media library": MEDIA, "/run": ROOT,
         "/var/lib/docker": ROOT}))
    metrics = list(fs.collect())
    got = samples(metrics)
    by_mount: dict[str, dict[str, float]] = {}
    for (name, labels), value in got.items():
        by_mount.setdefault(dict(labels)["mountpoint"], {})[name[16:]] = value
    # Excluded: /sys, /proc, /dev/*, /run/credentials/*, cgroup2, squashfs, overlay,
    # /var/lib/docker/* (but /var/lib/docker itself is kept, as node_exporter does).
    assert set(by_mount) == {"/", "/run", "/boot", "/srv/media library", "/var/lib/docker",
                             "/mnt/nfs"}
    assert by_mount["/"] == {"size_bytes": 4096000, "free_bytes": 1638400,
                             "avail_bytes": 1228800, "files": 5000, "files_free": 4000,
                             "readonly": 0, "device_error": 0}
    assert by_mount["/srv/media library"] == {
        "size_bytes": 2000 * 4096, "free_bytes": 1000 * 4096, "avail_bytes": 900 * 4096,
        "files": 0, "files_free": 0, "readonly": 1, "device_error": 0}
    assert by_mount["/mnt/nfs"] == {"device_error": 1}  # statfs failed: nothing else
    label_sets = {tuple(sorted(s.labels.items())) for m in metrics for s in m.samples
                  if s.name == "node_filesystem_device_error"}
    assert (("device", "/dev/sdb1"), ("fstype", "ext4"),
            ("mountpoint", "/srv/media library")) in label_sets
    assert len(label_sets) == 6  # the duplicate /boot line is reported once
    assert {m.type for m in metrics} == {"gauge"}


def test_filesystem_options_and_fallbacks(tree: Settings, tmp_path: Path) -> None:
    # No /proc/1/mounts (hidepid): /proc/mounts.
    os.rename(os.path.join(tree.procfs, "1", "mounts"), os.path.join(tree.procfs, "mounts"))
    fs = FilesystemCollector(tree, statvfs=fake_statvfs({"/": ROOT}))
    assert ("/" in {s.labels["mountpoint"] for m in fs.collect() for s in m.samples})
    # Debian's exclusions, and fs-types override.
    debian = Settings(procfs=tree.procfs, extra={
        "collector.filesystem.mount-points-exclude":
            r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)"
            r"($|/)",
        "collector.filesystem.fs-types-exclude": "^(nfs4|cgroup2|squashfs|overlay|proc|sysfs|"
                                                 "devtmpfs|devpts|tmpfs|binfmt_misc)$"})
    mounts = {m.mountpoint for m in FilesystemCollector(debian).mounts()}
    assert mounts == {"/", "/boot", "/srv/media library", "/var/lib/docker"}
    # --path.rootfs: stripped from mount points, prefixed to what is stat'ed.
    table = "/dev/sda1 /host ext4 rw 0 0\n/dev/sdb1 /host/data xfs ro 0 0\n"
    assert [(m.mountpoint, m.readonly) for m in parse_mounts(table, "/host")] == [
        ("/", False), ("/data", True)]
    (tmp_path / "proc" / "mounts").write_text(table)
    seen: list[str] = []

    def record(path: str) -> os.statvfs_result:
        seen.append(path)
        return ROOT

    list(FilesystemCollector(Settings(procfs=tree.procfs, rootfs="/host"),
                             statvfs=record).collect())
    assert sorted(seen) == ["/host", "/host/data"]
    with pytest.raises(ValueError, match="malformed"):
        parse_mounts("/dev/sda1 /\n")


def test_hung_mount_never_blocks_the_scrape(tree: Settings) -> None:
    release = threading.Event()
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def statvfs(path: str) -> os.statvfs_result:
        with lock:
            calls[path] = calls.get(path, 0) + 1
        if path == "/mnt/nfs":
            release.wait(60)  # a dead NFS server
        return ROOT

    fs = FilesystemCollector(tree, statvfs=statvfs)
    reg = registry_of(fs, LoadavgCollector(tree))
    timeout = tree.filesystem_timeout
    try:
        start = time.monotonic()
        first = scrape(reg)
        elapsed = time.monotonic() - start
        assert timeout * 0.9 <= elapsed < timeout + 1.5
        nfs = (("device", "nfs.example:/export"), ("fstype", "nfs4"), ("mountpoint", "/mnt/nfs"))
        assert first["node_filesystem_device_error"][nfs] == 1
        assert nfs not in first["node_filesystem_size_bytes"]
        root = (("device", "/dev/mapper/system-root"), ("fstype", "ext4"), ("mountpoint", "/"))
        assert first["node_filesystem_size_bytes"][root] == 4096000
        assert first["node_filesystem_device_error"][root] == 0
        assert first["node_scrape_collector_success"][(("collector", "filesystem"),)] == 1
        assert first["node_load1"][()] == 0.21
        assert fs.stuck_mountpoints() == {"/mnt/nfs"}

        # Still hung: the next scrape does not wait for it, nor stat it again.
        start = time.monotonic()
        second = scrape(reg)
        assert time.monotonic() - start < timeout / 2
        assert second["node_filesystem_device_error"][nfs] == 1
        assert second["node_filesystem_size_bytes"][root] == 4096000
        assert calls["/mnt/nfs"] == 1
        assert calls["/"] == 2
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while fs.stuck_mountpoints() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fs.stuck_mountpoints() == set()
    # Recovered: stat'ed again and reported normally.
    third = scrape(reg)
    assert third["node_filesystem_device_error"][nfs] == 0
    assert third["node_filesystem_size_bytes"][nfs] == 4096000
    assert calls["/mnt/nfs"] == 2


def test_concurrent_scrapes_share_a_hung_call(tree: Settings) -> None:
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        if path == "/mnt/nfs":
            release.wait(60)
        return ROOT

    fs = FilesystemCollector(tree, statvfs=statvfs)
    reg = registry_of(fs)
    results: list[float] = []

    def one() -> None:
        start = time.monotonic()
        out = scrape(reg)
        assert out["node_filesystem_device_error"][(
            ("device", "nfs.example:/export"), ("fstype", "nfs4"), ("mountpoint", "/mnt/nfs"))] == 1
        results.append(time.monotonic() - start)

    try:
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        release.set()
    assert len(results) == 10
    assert max(results) < tree.filesystem_timeout + 2
    assert calls.count("/mnt/nfs") == 1


# -- the registry: failures and concurrency ----------------------------------------------

class Broken(Collector):
    name = "broken"

    def collect(self) -> Iterable[Metric]:
        raise RuntimeError("boom")


def test_failing_collector_is_reported_and_others_served(tree: Settings) -> None:
    os.remove(os.path.join(tree.procfs, "diskstats"))
    reg = registry_of(Broken(tree), LoadavgCollector(tree), DiskstatsCollector(tree),
                      StatCollector(tree))
    out = scrape(reg)
    success = {dict(k)["collector"]: v for k, v in out["node_scrape_collector_success"].items()}
    assert success == {"broken": 0, "loadavg": 1, "diskstats": 0, "stat": 1}
    assert out["node_load1"][()] == 0.21
    assert out["node_forks_total"][()] == 26442
    assert not any(name.startswith("node_disk_") for name in out)


@pytest.fixture
def agent(tree: Settings) -> Iterator[str]:
    build(tree, {})
    collectors: list[Collector] = [COLLECTORS[n](tree) for n in HOST if n != "filesystem"]
    collectors.append(FilesystemCollector(tree, statvfs=fake_statvfs({"/": ROOT})))
    registry = registry_of(*collectors)
    server = AgentServer(registry, "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        server.stop()


def test_ten_concurrent_scrapes(agent: str) -> None:
    bodies: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                with urllib.request.urlopen(agent, timeout=30) as resp:
                    assert resp.status == 200
                    bodies.append(resp.read().decode())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(bodies) == 50
    for body in bodies:
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        success = {s.labels["collector"]: s.value
                   for s in fams["node_scrape_collector_success"].samples}
        assert success == dict.fromkeys(HOST, 1.0)
        assert fams["node_forks"].samples[0].value == 26442
        assert len(fams["node_network_receive_bytes"].samples) == 3


# -- promtool ----------------------------------------------------------------------------

def promtool_problems(promtool: Promtool, exposition: bytes) -> set[str]:
    proc = promtool.check_metrics(exposition)
    lines = (proc.stdout + proc.stderr).splitlines()
    return {line.strip() for line in lines if line.strip()}


CAMEL = re.compile(r"^node_memory_\w+ metric names should be written in 'snake_case' not "
                   r"'camelCase'$")


def test_promtool_only_complains_like_about_node_exporter(
        promtool: Promtool, node_exporter: Callable[..., NodeExporter]) -> None:
    """The agent's full exposition (every default collector, this host) passes
    ``promtool check metrics`` except for node_exporter's own camelCase meminfo names,
    kept for node-mixin compatibility; promtool says the same about node_exporter."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Registry(build(Settings())))
    ours = promtool_problems(promtool, generate_latest(registry))
    node = promtool_problems(promtool, node_exporter().scrape())
    print(f"promtool: agent {len(ours)} problems, node_exporter {len(node)}")
    assert ours, "expected the meminfo camelCase complaints"
    assert {p for p in ours if not CAMEL.match(p)} == set()
    assert ours <= node  # the very same complaints, about the very same series
    assert {p for p in node if CAMEL.match(p)} == ours
