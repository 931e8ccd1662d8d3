"""A local node_exporter (Debian's ``prometheus-node-exporter``): the reference the
agent's series are compared with, and a stand-in agent for the rules pack's tests.

:class:`NodeExporter` is a :class:`~infrascope_core.service.Service` (free port,
bounded wait until ``/metrics`` answers, stop by pid); :meth:`NodeExporter.scrape`
returns its exposition. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .service import OPENER, Service, ServiceError, executable, find_binary

NODE_EXPORTER = find_binary("prometheus-node-exporter", "node_exporter")


class NodeExporterError(ServiceError):
    """node_exporter did not start or died."""


def binary_available() -> bool:
    return executable(NODE_EXPORTER)


class NodeExporter(Service):
    """``node_exporter`` on ``127.0.0.1:port`` with ``flags`` (collectors and the
    like); its files in ``workdir`` (default: a temporary folder)."""

    name = "node_exporter"
    ready_path = "/metrics"
    error = NodeExporterError

    def __init__(self, flags: Sequence[str] = (), *, workdir: Path | None = None,
                 port: int | None = None, binary: str = NODE_EXPORTER,
                 ready_timeout: float = 15.0, stop_timeout: float = 10.0,
                 request_timeout: float = 10.0) -> None:
        super().__init__(binary, workdir=workdir, port=port, flags=flags,
                         ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self.request_timeout = request_timeout

    @property
    def metrics_url(self) -> str:
        return self.url + "/metrics"

    def command(self) -> list[str]:
        return [self.binary, f"--web.listen-address=127.0.0.1:{self.port}", *self.flags]

    def scrape(self, timeout: float | None = None) -> bytes:
        """The body of ``/metrics``."""
        with OPENER.open(self.metrics_url,
                         timeout=self.request_timeout if timeout is None else timeout) as r:
            return bytes(r.read())
