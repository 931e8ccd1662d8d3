"""``diskstats``: node_disk_*{device} from /proc/diskstats, named as node_exporter 1.5 names them.

Sectors are the kernel's fixed 512-byte units, times are milliseconds (both
converted like node_exporter: bytes and seconds, except
``discarded_sectors_total`` which node_exporter keeps in sectors). Kernels
before 4.18 have no discard fields and before 5.5 no flush fields; only the
fields a line has are exported. ``node_disk_info`` and the udev-derived
``node_disk_filesystem_info``, ``node_disk_device_mapper_info`` and
``node_disk_ata_*`` come from the udev database (``/run/udev/data``, or
``path.udev.data`` in ``Settings.extra``) as in node_exporter 1.5.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, Option, Settings, add, family, register
from ._host import DeviceFilter, option

DEFAULT_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
DEFAULT_UDEV_DATA = "/run/udev/data"
SECTOR = 512.0
MS = 1 / 1000.0

# In /proc/diskstats column order (after major, minor, name): name, type, HELP, scale.
STATS = (
    ("reads_completed_total", "counter", "The total number of reads completed successfully.", 1),
    ("reads_merged_total", "counter", "The total number of reads merged.", 1),
    ("read_bytes_total", "counter", "The total number of bytes read successfully.", SECTOR),
    ("read_time_seconds_total", "counter", "The total number of seconds spent by all reads.",
     MS),
    ("writes_completed_total", "counter", "The total number of writes completed successfully.",
     1),
    ("writes_merged_total", "counter", "The number of writes merged.", 1),
    ("written_bytes_total", "counter", "The total number of bytes written successfully.",
     SECTOR),
    ("write_time_seconds_total", "counter",
     "This is the total number of seconds spent by all writes.", MS),
    ("io_now", "gauge", "The number of I/Os currently in progress.", 1),
    ("io_time_seconds_total", "counter", "Total seconds spent doing I/Os.", MS),
    ("io_time_weighted_seconds_total", "counter",
     "The weighted # of seconds spent doing I/Os.", MS),
    ("discards_completed_total", "counter",
     "The total number of discards completed successfully.", 1),
    ("discards_merged_total", "counter", "The total number of discards merged.", 1),
    ("discarded_sectors_total", "counter",
     "The total number of sectors discarded successfully.", 1),
    ("discard_time_seconds_total", "counter",
     "This is the total number of seconds spent by all discards.", MS),
    ("flush_requests_total", "counter",
     "The total number of flush requests completed successfully", 1),
    ("flush_requests_time_seconds_total", "counter",
     "This is the total number of seconds spent by all flush requests.", MS),
)

ATA = (
    ("ID_ATA_WRITE_CACHE", "ata_write_cache", "ATA disk has a write cache."),
    ("ID_ATA_WRITE_CACHE_ENABLED", "ata_write_cache_enabled",
     "ATA disk has its write cache enabled."),
    ("ID_ATA_ROTATION_RATE_RPM", "ata_rotation_rate_rpm",
     "ATA disk rotation rate in RPMs (0 for SSDs)."),
)


def parse_diskstats(text: str) -> list[tuple[int, int, str, list[int]]]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        out.append((int(parts[0]), int(parts[1]), parts[2], [int(v) for v in parts[3:]]))
    return out


def read_udev(udev_data: str, major: int, minor: int) -> dict[str, str]:
    """``E:KEY=VALUE`` properties of ``<udev_data>/b<major>:<minor>`` (empty if absent)."""
    info: dict[str, str] = {}
    try:
        with open(os.path.join(udev_data, f"b{major}:{minor}"), errors="replace") as fh:
            for line in fh:
                if line.startswith("E:"):
                    key, sep, value = line[2:].rstrip("\n").partition("=")
                    if sep:
                        info[key] = value
    except OSError:
        pass
    return info


@register
class DiskstatsCollector(Collector):
    name = "diskstats"
    help = "block device I/O statistics from /proc/diskstats"
    options = (
        Option("collector.diskstats.device-exclude",
               "block devices to ignore (replaces the default)",
               aliases=("collector.diskstats.ignored-devices",), metavar="REGEX", regex=True),
        Option("collector.diskstats.device-include",
               "block devices to keep (exclusive with -exclude)", metavar="REGEX",
               regex=True),
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.filter = DeviceFilter.from_settings(settings, "collector.diskstats",
                                                 DEFAULT_DEVICE_EXCLUDE)
        self.udev_data = option(settings, "path.udev.data", DEFAULT_UDEV_DATA)

    def collect(self) -> Iterable[Metric]:
        with open(os.path.join(self.settings.procfs, "diskstats")) as fh:
            disks = parse_diskstats(fh.read())
        info = family("node_disk_info", "gauge", "Info of /sys/block/<block_device>.")
        stats = [family(f"node_disk_{name.removesuffix('_total')}", kind, doc)
                 for name, kind, doc, _ in STATS]
        fs_info = family("node_disk_filesystem_info", "gauge", "Info about disk filesystem.")
        dm_info = family("node_disk_device_mapper_info", "gauge",
                         "Info about disk device mapper.")
        ata = {key: family(f"node_disk_{name}", "gauge", doc) for key, name, doc in ATA}
        for major, minor, dev, values in disks:
            if self.filter.ignored(dev):
                continue
            udev = read_udev(self.udev_data, major, minor)
            add(info, {"device": dev, "major": str(major), "minor": str(minor),
                       "path": udev.get("ID_PATH", ""), "wwn": udev.get("ID_WWN", ""),
                       "model": udev.get("ID_MODEL", ""),
                       "serial": udev.get("ID_SERIAL_SHORT", ""),
                       "revision": udev.get("ID_REVISION", "")}, 1)
            for metric, (name, _, _, scale), value in zip(stats, STATS, values, strict=False):
                add(metric, {"device": dev}, value * scale,
                    "_total" if name.endswith("_total") else "")
            if udev.get("ID_FS_TYPE"):
                add(fs_info, {"device": dev, "type": udev["ID_FS_TYPE"],
                              "usage": udev.get("ID_FS_USAGE", ""),
                              "uuid": udev.get("ID_FS_UUID", ""),
                              "version": udev.get("ID_FS_VERSION", "")}, 1)
            if udev.get("DM_NAME"):
                add(dm_info, {"device": dev, "name": udev["DM_NAME"],
                              "uuid": udev.get("DM_UUID", ""),
                              "vg_name": udev.get("DM_VG_NAME", ""),
                              "lv_name": udev.get("DM_LV_NAME", ""),
                              "lv_layer": udev.get("DM_LV_LAYER", "")}, 1)
            if udev.get("ID_ATA"):
                for key, _, _ in ATA:
                    try:
                        add(ata[key], {"device": dev}, float(udev[key]))
                    except (KeyError, ValueError):
                        pass
        return [m for m in (info, *stats, fs_info, dm_info, *ata.values()) if m.samples]
