"""``netdev``: node_network_{receive,transmit}_*_total{device} from /proc/net/dev.

node_exporter 1.5 reads the same kernel counters over netlink by default and
renames them back to the /proc/net/dev names (``receive_errs``, ``transmit_colls``
...), so the series are identical; the one counter netlink has and
/proc/net/dev lacks, ``rx_nohandler``, is read from
``<sysfs>/class/net/<dev>/statistics/rx_nohandler`` when the kernel has it.

Devices: upstream node_exporter 1.5 reports every device, ``lo`` included;
Debian's package defaults ``--collector.netdev.device-exclude`` to ``^lo$``.
Set ``collector.netdev.device-exclude`` / ``-include`` in ``Settings.extra``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, Option, Settings, add, family, register
from ._host import DeviceFilter


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """device -> {"receive_bytes": ..., "transmit_colls": ...}, field names from the header."""
    lines = text.splitlines()
    if len(lines) < 2 or lines[1].count("|") < 2:
        raise ValueError("unexpected /proc/net/dev header")
    _, rx_header, tx_header = lines[1].split("|")[:3]
    keys = ([f"receive_{h}" for h in rx_header.split()]
            + [f"transmit_{h}" for h in tx_header.split()])
    out: dict[str, dict[str, int]] = {}
    for line in lines[2:]:
        dev, sep, rest = line.rpartition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) != len(keys):
            raise ValueError(f"/proc/net/dev: {len(values)} values for {len(keys)} fields "
                             f"in {line!r}")
        out[dev.strip()] = {k: int(v) for k, v in zip(keys, values, strict=True)}
    return out


@register
class NetDevCollector(Collector):
    name = "netdev"
    help = "network device statistics from /proc/net/dev"
    options = (
        Option("collector.netdev.device-exclude", "network devices to ignore",
               aliases=("collector.netdev.device-blacklist",), metavar="REGEX", regex=True),
        Option("collector.netdev.device-include",
               "network devices to keep (exclusive with -exclude)",
               aliases=("collector.netdev.device-whitelist",), metavar="REGEX", regex=True),
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.filter = DeviceFilter.from_settings(settings, "collector.netdev")

    def _nohandler(self, dev: str) -> int | None:
        path = os.path.join(self.settings.sysfs, "class", "net", dev, "statistics",
                            "rx_nohandler")
        try:
            with open(path) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    def collect(self) -> Iterable[Metric]:
        with open(os.path.join(self.settings.procfs, "net", "dev")) as fh:
            stats = parse_net_dev(fh.read())
        metrics: dict[str, Metric] = {}

        def put(key: str, dev: str, value: int) -> None:
            m = metrics.get(key)
            if m is None:
                m = metrics[key] = family(f"node_network_{key}", "counter",
                                          f"Network device statistic {key}.")
            add(m, {"device": dev}, value, "_total")

        for dev, counters in stats.items():
            if self.filter.ignored(dev):
                continue
            for key, value in counters.items():
                put(key, dev, value)
            nohandler = self._nohandler(dev)
            if nohandler is not None:
                put("receive_nohandler", dev, nohandler)
        return list(metrics.values())
