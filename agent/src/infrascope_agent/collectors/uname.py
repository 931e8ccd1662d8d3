"""``uname``: node_uname_info{sysname, release, version, machine, nodename, domainname}."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client.core import Metric

from ..registry import Collector, Settings, add, family, register


@register
class UnameCollector(Collector):
    name = "uname"
    help = "system information from uname(2)"

    def __init__(self, settings: Settings,
                 uname: Callable[[], os.uname_result] = os.uname) -> None:
        super().__init__(settings)
        self.uname = uname

    def domainname(self) -> str:
        # uname(2)'s utsname.domainname, which Python's os.uname() leaves out.
        try:
            with open(os.path.join(self.settings.procfs, "sys", "kernel", "domainname")) as fh:
                return fh.read().strip()
        except OSError:
            return "(none)"

    def collect(self) -> Iterable[Metric]:
        u = self.uname()
        m = family("node_uname_info", "gauge",
                   "Labeled system information as provided by the uname system call.")
        add(m, {"sysname": u.sysname, "release": u.release, "version": u.version,
                "machine": u.machine, "nodename": u.nodename,
                "domainname": self.domainname()}, 1)
        return [m]
