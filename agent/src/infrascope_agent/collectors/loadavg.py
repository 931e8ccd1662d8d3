"""``loadavg``: node_load1, node_load5, node_load15 from /proc/loadavg."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, add, family, register


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"unexpected /proc/loadavg content: {text!r}")
    return float(parts[0]), float(parts[1]), float(parts[2])


@register
class LoadavgCollector(Collector):
    name = "loadavg"
    help = "load averages from /proc/loadavg"

    def collect(self) -> Iterable[Metric]:
        with open(os.path.join(self.settings.procfs, "loadavg")) as fh:
            loads = parse_loadavg(fh.read())
        out = []
        for minutes, value in zip((1, 5, 15), loads, strict=True):
            m = family(f"node_load{minutes}", "gauge", f"{minutes}m load average.")
            add(m, {}, value)
            out.append(m)
        return out
