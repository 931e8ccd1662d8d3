"""``stat``: boot time, context switches, forks, interrupts and process counts from /proc/stat.

Per-CPU times come from the ``cpu`` collector; like node_exporter's ``stat``
collector this one exposes the system-wide lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, add, family, register

# /proc/stat key -> (metric, type, HELP), in node_exporter's wording.
FIELDS = {
    "intr": ("node_intr", "counter", "Total number of interrupts serviced."),
    "ctxt": ("node_context_switches", "counter", "Total number of context switches."),
    "processes": ("node_forks", "counter", "Total number of forks."),
    "btime": ("node_boot_time_seconds", "gauge", "Node boot time, in unixtime."),
    "procs_running": ("node_procs_running", "gauge", "Number of processes in runnable state."),
    "procs_blocked": ("node_procs_blocked", "gauge",
                      "Number of processes blocked waiting for I/O to complete."),
}


def parse_stat(text: str) -> dict[str, int]:
    """The system-wide single-number lines of /proc/stat (``intr``: its total)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in FIELDS:
            out[parts[0]] = int(parts[1])
    return out


@register
class StatCollector(Collector):
    name = "stat"
    help = "boot time, context switches, forks, interrupts, process counts from /proc/stat"

    def collect(self) -> Iterable[Metric]:
        with open(os.path.join(self.settings.procfs, "stat")) as fh:
            values = parse_stat(fh.read())
        out = []
        for key, (name, kind, doc) in FIELDS.items():
            if key not in values:
                continue
            m = family(name, kind, doc)
            add(m, {}, values[key], "_total" if kind == "counter" else "")
            out.append(m)
        return out
