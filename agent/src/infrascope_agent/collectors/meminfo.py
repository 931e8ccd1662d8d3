"""``meminfo``: node_memory_<Field>_bytes for every line of /proc/meminfo.

Names as node_exporter derives them: ``Active(anon)`` becomes ``Active_anon``,
values in kB become bytes, unit-less fields (``HugePages_Total``) keep their
value and lose the ``_bytes`` suffix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from prometheus_client.core import Metric

from ..registry import Collector, add, family, register


def parse_meminfo(text: str) -> dict[str, tuple[float, bool]]:
    """Field -> (value, is_bytes)."""
    out: dict[str, tuple[float, bool]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, rest = line.split(":", 1)
        parts = rest.split()
        if not parts:
            continue
        key = re.sub(r"\((.*)\)", r"_\1", key.strip())
        value = float(parts[0])
        is_kb = len(parts) > 1 and parts[1] == "kB"
        out[key] = (value * 1024 if is_kb else value, is_kb)
    return out


@register
class MeminfoCollector(Collector):
    name = "meminfo"
    help = "memory statistics from /proc/meminfo"

    def collect(self) -> Iterable[Metric]:
        with open(os.path.join(self.settings.procfs, "meminfo")) as fh:
            fields = parse_meminfo(fh.read())
        out = []
        for key, (value, is_bytes) in fields.items():
            name = f"node_memory_{key}_bytes" if is_bytes else f"node_memory_{key}"
            m = family(name, "gauge", f"Memory information field {key}"
                       f"{'_bytes' if is_bytes else ''}.")
            add(m, {}, value)
            out.append(m)
        return out
