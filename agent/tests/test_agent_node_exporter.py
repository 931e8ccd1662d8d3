"""Side by side with the real node_exporter (Debian prometheus-node-exporter 1.5).

1. Live: node_exporter is started on a loopback port, the agent is served in-process
   on another; both are scraped nearly simultaneously (ours, node's, ours again).
   For every family both expose from the collectors the agent implements, TYPE and
   HELP agree and the set of label sets is the same; values agree: MemTotal equal,
   filesystem sizes equal per mount point, CPU seconds within 1% (1 s for tiny
   values), counters such as network bytes between our two scrapes, boot time
   within 1 s, uname labels equal. Run twice: node_exporter with upstream 1.5's
   defaults against the agent's defaults, and Debian's patched defaults (lo and
   /run, /mnt, /media excluded) against the agent configured the same way.
2. Fixture: both read the same procfs/sysfs/udev tree written to tmp_path, so every
   series (names, labels, values) must be identical.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from infrascope_agent.collectors import build
from infrascope_agent.collectors.filesystem import (
    DEBIAN_MOUNT_POINTS_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
)
from infrascope_agent.registry import COLLECTORS, Registry, Settings
from infrascope_agent.web import AgentServer
from infrascope_core.node_exporter import NodeExporter
from infrascope_core.node_exporter import binary_available as node_exporter_available

OURS = ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "stat", "uname", "diskstats")

pytestmark = pytest.mark.skipif(not node_exporter_available(),
                                reason="node_exporter missing (apt-get install "
                                       "prometheus-node-exporter)")

# Families node_exporter's cpu collector derives from hardware the agent does not read
# (thermal throttle counters under /sys/devices/system/cpu); absent on VMs like CI's.
KNOWN_NODE_ONLY = {"node_cpu_core_throttles_total", "node_cpu_package_throttles_total"}
# Gauges that move on their own between two scrapes: only their label sets are compared.
VOLATILE_PREFIXES = ("node_memory_", "node_procs_", "node_disk_io_now", "node_load",
                     "node_filesystem_free_bytes", "node_filesystem_avail_bytes",
                     "node_filesystem_files_free")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    type: str
    help: str
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)


def parse(text: str) -> dict[str, Family]:
    out: dict[str, Family] = {}
    for fam in text_string_to_metric_families(text):
        f = out.setdefault(fam.name, Family(fam.type, fam.documentation))
        for s in fam.samples:
            f.samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def host_families(text: str) -> dict[str, Family]:
    """Families from the collectors themselves (no go_/process_/scrape bookkeeping)."""
    return {name: f for name, f in parse(text).items()
            if name.startswith("node_") and not name.startswith(("node_scrape_collector_",
                                                                 "node_exporter_"))}


def get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def serve_agent(settings: Settings, collectors: Sequence[str] = OURS) -> AgentServer:
    build(settings, {})  # imports (registers) every collector module
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Registry([COLLECTORS[name](settings) for name in collectors],
                               timeout=settings.collector_timeout))
    server = AgentServer(registry, "127.0.0.1", 0)
    server.start()
    return server


FLAVOURS = {
    # node_exporter 1.5 upstream defaults, spelled out because Debian patches two of them.
    "upstream": ([f"--collector.filesystem.mount-points-exclude={DEFAULT_MOUNT_POINTS_EXCLUDE}",
                  "--collector.netdev.device-exclude="], {}),
    # Debian's package as installed; the agent told the same through Settings.extra.
    "debian": ([], {"collector.filesystem.mount-points-exclude": DEBIAN_MOUNT_POINTS_EXCLUDE,
                    "collector.netdev.device-exclude": "^lo$"}),
}


@dataclass
class Scrapes:
    ours1: dict[str, Family]
    node: dict[str, Family]
    ours2: dict[str, Family]
    node_raw: str
    seconds: float


@pytest.fixture(scope="module", params=sorted(FLAVOURS))
def scrapes(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrapes]:
    node_args, extra = FLAVOURS[request.param]
    tmp = tmp_path_factory.mktemp(f"node-{request.param}")
    agent = serve_agent(Settings(extra=extra))
    try:
        with NodeExporter(node_args, workdir=tmp) as node:
            # node_exporter's collect[] restricts a scrape to the named collectors.
            node_url = node.metrics_url + "?" + "&".join(f"collect[]={c}" for c in OURS)
            ours_url = f"http://127.0.0.1:{agent.port}/metrics"
            get(ours_url)  # warm both up (first-scrape costs)
            get(node_url)
            start = time.monotonic()
            ours1 = get(ours_url)
            node_raw = get(node_url)
            ours2 = get(ours_url)
            seconds = time.monotonic() - start
            yield Scrapes(host_families(ours1), host_families(node_raw), host_families(ours2),
                          node_raw, seconds)
    finally:
        agent.stop()


def test_both_scrapes_succeeded(scrapes: Scrapes) -> None:
    success = parse(scrapes.node_raw)["node_scrape_collector_success"].samples
    for collector in OURS:
        assert success["node_scrape_collector_success"][(("collector", collector),)] == 1
    assert scrapes.seconds < 10


def test_families_and_types_match(scrapes: Scrapes) -> None:
    node, ours = scrapes.node, scrapes.ours1
    node_only = set(node) - set(ours)
    ours_only = set(ours) - set(node)
    print(f"families: both {len(set(node) & set(ours))}, node only {sorted(node_only)}, "
          f"ours only {sorted(ours_only)}")
    assert node_only <= KNOWN_NODE_ONLY
    for name in sorted(set(node) & set(ours)):
        assert ours[name].type == node[name].type, name
        assert ours[name].help == node[name].help, name


def test_label_sets_match(scrapes: Scrapes) -> None:
    """Per sample name, node's label sets equal ours (bracketed by our two scrapes)."""
    node, o1, o2 = scrapes.node, scrapes.ours1, scrapes.ours2
    compared = 0
    for name in sorted(set(node) & set(o1)):
        for sample, node_series in node[name].samples.items():
            first = set(o1[name].samples.get(sample, {}))
            second = set(o2[name].samples.get(sample, {})) if name in o2 else set()
            got = set(node_series)
            # Something appearing/disappearing between scrapes (a veth, a mount) may be seen
            # by only some of the three scrapes; whatever both of ours saw node must have seen.
            assert first & second <= got <= first | second, (
                f"{sample}: node only {sorted(got - (first | second))}, "
                f"ours only {sorted((first & second) - got)}")
            compared += len(got)
    assert compared > 100


def _values(fams: dict[str, Family], sample: str) -> dict[Labels, float]:
    for f in fams.values():
        if sample in f.samples:
            return f.samples[sample]
    return {}


def test_memtotal_equal(scrapes: Scrapes) -> None:
    node = _values(scrapes.node, "node_memory_MemTotal_bytes")
    assert node and node == _values(scrapes.ours1, "node_memory_MemTotal_bytes")


def test_filesystem_values(scrapes: Scrapes) -> None:
    sizes = _values(scrapes.node, "node_filesystem_size_bytes")
    assert any(dict(labels)["mountpoint"] == "/" for labels in sizes)
    for name in ("node_filesystem_size_bytes", "node_filesystem_files",
                 "node_filesystem_readonly", "node_filesystem_device_error"):
        assert _values(scrapes.ours1, name) == _values(scrapes.node, name), name
    for name in ("node_filesystem_free_bytes", "node_filesystem_avail_bytes"):
        node, o1, o2 = (_values(s, name) for s in (scrapes.node, scrapes.ours1, scrapes.ours2))
        for labels, value in node.items():
            slack = 0.001 * sizes[labels] + 64 * 2**20  # other processes write meanwhile
            assert min(o1[labels], o2[labels]) - slack <= value <= max(o1[labels],
                                                                       o2[labels]) + slack


def test_cpu_seconds_within_one_percent(scrapes: Scrapes) -> None:
    for sample in ("node_cpu_seconds_total", "node_cpu_guest_seconds_total"):
        node = _values(scrapes.node, sample)
        o1, o2 = _values(scrapes.ours1, sample), _values(scrapes.ours2, sample)
        assert node.keys() == o1.keys()
        for labels, value in node.items():
            tol = max(0.01 * value, 1.0)
            assert math.isclose(value, o1[labels], abs_tol=tol), (sample, labels)
            # idle/iowait can step back on tickless kernels, hence the tolerance here too.
            assert o1[labels] - tol <= value <= o2[labels] + tol, (sample, labels)


def test_counters_between_our_scrapes(scrapes: Scrapes) -> None:
    """Monotonic counters (network, disk, stat): ours1 <= node <= ours2."""
    checked = 0
    for name, fam in scrapes.node.items():
        if fam.type != "counter" or name.startswith("node_cpu") or name not in scrapes.ours1:
            continue
        for sample, series in fam.samples.items():
            o1, o2 = scrapes.ours1[name].samples[sample], scrapes.ours2[name].samples[sample]
            for labels, value in series.items():
                if labels in o1 and labels in o2:
                    eps = 1e-9 * abs(value)
                    assert o1[labels] - eps <= value <= o2[labels] + eps, (sample, labels)
                    checked += 1
    assert checked > 10


def test_network_bytes_consistent(scrapes: Scrapes) -> None:
    for direction in ("receive", "transmit"):
        sample = f"node_network_{direction}_bytes_total"
        node = _values(scrapes.node, sample)
        o1, o2 = _values(scrapes.ours1, sample), _values(scrapes.ours2, sample)
        assert node and node.keys() == o1.keys()
        for labels, value in node.items():
            assert o1[labels] <= value <= o2[labels], (sample, labels)
            # Between our scrapes only the scrapes themselves and background traffic.
            assert o2[labels] - o1[labels] <= 2**30 * (1 + scrapes.seconds), (sample, labels)


def test_boot_time_and_uname(scrapes: Scrapes) -> None:
    node = _values(scrapes.node, "node_boot_time_seconds")[()]
    assert abs(node - _values(scrapes.ours1, "node_boot_time_seconds")[()]) <= 1
    assert _values(scrapes.node, "node_uname_info") == _values(scrapes.ours1, "node_uname_info")
    assert len(_values(scrapes.node, "node_uname_info")) == 1


def test_volatile_gauges_are_plausible(scrapes: Scrapes) -> None:
    for name in ("node_load1", "node_load5", "node_load15"):
        node, o1, o2 = (_values(s, name)[()] for s in (scrapes.node, scrapes.ours1,
                                                      scrapes.ours2))
        assert min(o1, o2) - 1 <= node <= max(o1, o2) + 1, name
    node = _values(scrapes.node, "node_memory_MemAvailable_bytes")[()]
    ours = _values(scrapes.ours1, "node_memory_MemAvailable_bytes")[()]
    total = _values(scrapes.node, "node_memory_MemTotal_bytes")[()]
    assert abs(node - ours) < 0.05 * total


# -- 2. the same fixture tree through both -------------------------------------------------

PROC_STAT = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335999 34325 596183 13423455 4437 0 3734 0 21390 0
cpu2 1398800 38427 590640 13360632 2116 0 1186 0 25000 10
intr 8885917 17 0 0 0 0 0 0 0 1 79281 0 0 0 0 0 0 0 231237 0 0 0 0 250586 103 0 0
ctxt 38014093
btime 1418183276
processes 26442
procs_running 2
procs_blocked 1
softirq 5057579 250191 1481983 1647 211099 186066 0 1783454 622196 12499 508444
"""

MEMINFO = """\
MemTotal:       15666184 kB
MemFree:          440324 kB
MemAvailable:    6213308 kB
Buffers:         1020128 kB
Cached:          6563800 kB
Active:          6843532 kB
Inactive:        6001520 kB
Active(anon):    3829732 kB
Inactive(anon):   389700 kB
Active(file):    3013800 kB
Inactive(file):  5611820 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap4k:      185664 kB
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 435303245 1832522    0    0    0     0          0         0 435303245 1832522    0    0    0     0       0          0
  eth0: 68210035552 520993275    1    2    3     4          5         6 9315587528 43451486    7    8    9    10      11         12
docker0: 2568 38 0 0 0 0 0 0 438 8 0 0 0 0 0 0
veth4b09: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
"""  # noqa: E501

DISKSTATS = """\
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
   7       0 loop0 1 0 8 0 0 0 0 0 0 1 0
   8       0 sda 25354637 34367663 1003346126 18492372 28444756 11134226 2131716386 6124700 0 13002756 24630656
   8       1 sda1 250 0 2000 36 0 0 0 0 0 36 36
 253       0 dm-0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
 259       0 nvme0n1 47114 4 4643973 21650 1078320 43950 39451633 1011053 0 222766 1032546 0 0 0 0 12 34
 259       1 nvme0n1p1 1140 0 9370 16 1 0 1 0 0 16 16 0 0 0 0 0 0
  11       0 sr0 0 0 0 0 0 0 0 0 0 0 0
"""  # noqa: E501

UDEV = {
    "b8:0": "E:ID_ATA=1\nE:ID_ATA_WRITE_CACHE=1\nE:ID_ATA_WRITE_CACHE_ENABLED=1\n"
            "E:ID_ATA_ROTATION_RATE_RPM=0\nE:ID_MODEL=SAMSUNG_SSD\nE:ID_SERIAL_SHORT=S3XYZ\n"
            "E:ID_REVISION=RVT01B6Q\nE:ID_WWN=0x5002538e00000000\nE:ID_PATH=pci-0000:00:1f.2-ata-1\n"
            "E:ID_FS_TYPE=LVM2_member\nE:ID_FS_USAGE=raid\nE:ID_FS_UUID=c3C3uW\n"
            "E:ID_FS_VERSION=LVM2 001\nS:disk/by-id/ata-SAMSUNG\n",
    "b253:0": "E:DM_NAME=system-root\nE:DM_UUID=LVM-abc\nE:DM_VG_NAME=system\n"
              "E:DM_LV_NAME=root\nE:ID_FS_TYPE=ext4\nE:ID_FS_USAGE=filesystem\n",
    "b259:0": "E:ID_SERIAL=nvme-serial-long\nE:ID_MODEL=KXG50ZNV\n",
}


def write_fixture(root: Path) -> tuple[Path, Path, Path]:
    proc, sys_, udev = root / "proc", root / "sys", root / "udev"
    for d in (proc / "1", proc / "net", sys_, udev, root / "mnt" / "data dir", root / "ro"):
        d.mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(PROC_STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "loadavg").write_text("0.21 0.37 0.39 1/719 19737\n")
    (proc / "net" / "dev").write_text(NET_DEV)
    (proc / "diskstats").write_text(DISKSTATS)
    for name, text in UDEV.items():
        (udev / name).write_text(text)
    mnt = str(root / "mnt" / "data dir").replace(" ", "\\040")
    (proc / "1" / "mounts").write_text(f"""\
/dev/sda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=1635620k,mode=755 0 0
tmpfs /run/credentials/systemd-sysusers.service tmpfs ro,nosuid 0 0
/dev/sdb1 {mnt} ext4 rw,relatime 0 0
tmpfs {root / 'ro'} tmpfs ro,relatime 0 0
overlay /var/lib/docker/overlay2/0123/merged overlay rw,relatime 0 0
nfs.example:/export /nonexistent/infrascope-test-nfs nfs4 rw,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0
/dev/loop1 /snap/core/123 squashfs ro,nodev,relatime 0 0
""")
    return proc, sys_, udev


def scrape_fixture(tmp_path: Path, proc: Path, sys_: Path, udev: Path,
                   collectors: list[str]) -> tuple[dict[str, Family], dict[str, Family]]:
    """(ours, node's) families with both pointed at the same fixture tree."""
    args = [f"--path.procfs={proc}", f"--path.sysfs={sys_}", f"--path.udev.data={udev}",
            "--collector.disable-defaults", "--no-collector.netdev.netlink",
            "--collector.netdev.device-exclude=",
            f"--collector.filesystem.mount-points-exclude={DEFAULT_MOUNT_POINTS_EXCLUDE}",
            *(f"--collector.{c}" for c in collectors)]
    agent = serve_agent(Settings(procfs=str(proc), sysfs=str(sys_),
                                 extra={"path.udev.data": str(udev)}), collectors)
    try:
        with NodeExporter(args, workdir=tmp_path) as node:
            ours = host_families(get(f"http://127.0.0.1:{agent.port}/metrics"))
            theirs = host_families(get(node.metrics_url))
    finally:
        agent.stop()
    return ours, theirs


def test_fixture_tree_identical(tmp_path: Path) -> None:
    proc, sys_, udev = write_fixture(tmp_path)
    # uname(2) is not in procfs: that one is compared live only.
    ours, theirs = scrape_fixture(tmp_path, proc, sys_, udev,
                                  [c for c in OURS if c != "uname"])
    assert set(ours) == set(theirs)
    for name, fam in theirs.items():
        assert (ours[name].type, ours[name].help) == (fam.type, fam.help), name
        for sample, series in fam.samples.items():
            mine = ours[name].samples[sample]
            assert mine.keys() == series.keys(), sample
            for labels, value in series.items():
                if sample in ("node_filesystem_free_bytes", "node_filesystem_avail_bytes",
                              "node_filesystem_files_free"):
                    continue  # the real file system under tmp_path, shared with other tests
                assert mine[labels] == value, (sample, labels)
    # The fixture covers what it is meant to: exclusions, escapes, errors, udev.
    mounts = {dict(lb)["mountpoint"]: v for lb, v in
              theirs["node_filesystem_device_error"].samples[
                  "node_filesystem_device_error"].items()}
    assert mounts == {"/": 0, "/run": 0, str(tmp_path / "mnt" / "data dir"): 0,
                      str(tmp_path / "ro"): 0, "/nonexistent/infrascope-test-nfs": 1}
    devices = {dict(lb)["device"] for lb in
               theirs["node_disk_info"].samples["node_disk_info"]}
    assert devices == {"sda", "dm-0", "nvme0n1", "sr0"}
    assert "node_disk_ata_rotation_rate_rpm" in theirs
    assert "node_disk_device_mapper_info" in theirs


def test_offline_cpu_known_difference(tmp_path: Path) -> None:
    """The one known difference: CPUs missing from /proc/stat (offline, hot-unplugged).

    node_exporter 1.5's procfs keeps CPUs in a slice indexed by CPU id, so with cpu2
    offline it exports all-zero ``cpu="2"`` series; the agent exports the CPUs the
    kernel lists, so ``count(node_cpu_seconds_total{mode="idle"})`` counts online CPUs.
    Every series both export is identical.
    """
    proc, sys_, udev = write_fixture(tmp_path)
    (proc / "stat").write_text(PROC_STAT.replace("cpu2 ", "cpu3 "))
    ours, theirs = scrape_fixture(tmp_path, proc, sys_, udev, ["cpu"])
    for sample in ("node_cpu_seconds_total", "node_cpu_guest_seconds_total"):
        mine = _values(ours, sample)
        node = _values(theirs, sample)
        phantom = {lb: v for lb, v in node.items() if dict(lb)["cpu"] == "2"}
        assert phantom and set(phantom.values()) == {0.0}
        assert {lb: v for lb, v in node.items() if lb not in phantom} == mine
        assert {dict(lb)["cpu"] for lb in mine} == {"0", "1", "3"}
