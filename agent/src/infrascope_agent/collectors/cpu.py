"""``cpu``: node_cpu_seconds_total{cpu, mode} from /proc/stat.

Read straight from procfs like node_exporter, so the ``cpu`` label is the
kernel's CPU id (``cpu7``), not a list index — psutil's per-CPU index is wrong
on machines with offline or hot-plugged CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, add, family, register

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@register
class CPUCollector(Collector):
    name = "cpu"
    help = "CPU time per CPU and mode"

    def collect(self) -> Iterable[Metric]:
        seconds = family("node_cpu_seconds", "counter",
                         "Seconds the CPUs spent in each mode.")
        guest = family("node_cpu_guest_seconds", "counter",
                       "Seconds the CPUs spent in guests (VMs) for each mode.")
        with open(os.path.join(self.settings.procfs, "stat")) as fh:
            for line in fh:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                parts = line.split()
                cpu = parts[0][3:]
                values = [int(v) / USER_HZ for v in parts[1:]]
                for mode, value in zip(MODES, values, strict=False):
                    add(seconds, {"cpu": cpu, "mode": mode}, value, "_total")
                if len(values) >= 10:
                    # /proc/stat counts guest time inside user/nice too, as node_exporter notes.
                    add(guest, {"cpu": cpu, "mode": "user"}, values[8], "_total")
                    add(guest, {"cpu": cpu, "mode": "nice"}, values[9], "_total")
        return [seconds, guest]
