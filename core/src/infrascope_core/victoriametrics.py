"""A local VictoriaMetrics single node (the "outgrown one box" backend), driven by the
real binary of Debian's ``victoria-metrics`` package, which also ships ``vmagent`` and
``vmalert`` (their paths are here; the rules pack's tests run ``vmalert -dryRun``).

:class:`VictoriaMetrics` is a :class:`~infrascope_core.service.Service` (free port,
bounded wait for ``/health``, stop by pid) that answers Prometheus' query API
(:class:`~infrascope_core.prometheus.PrometheusAPI`) and takes samples in the text
format (:meth:`VictoriaMetrics.import_prometheus`). Standard library only.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .prometheus import PrometheusAPI
from .service import OPENER, Service, ServiceError, config_text, executable, find_binary

VICTORIA_METRICS = find_binary("victoria-metrics", "victoria-metrics-prod")
VMAGENT = find_binary("vmagent", "vmagent-prod")
VMALERT = find_binary("vmalert", "vmalert-prod")


class VictoriaMetricsError(ServiceError):
    """VictoriaMetrics did not start, died, or its API answered with an error."""


def binary_available() -> bool:
    return executable(VICTORIA_METRICS)


class VictoriaMetrics(Service, PrometheusAPI):
    """``victoria-metrics`` on ``127.0.0.1:port`` storing into ``data_dir`` (default
    ``workdir/victoria-metrics-<port>-data``).

    ``scrape_config`` (YAML text or a mapping with ``scrape_configs``), when given, is
    written to ``workdir/victoria-metrics-<port>-scrape.yml`` and scraped
    (``-promscrape.config``). Defaults for tests, each overridden by a flag of the same
    name in ``flags``: ``-retentionPeriod=100y`` (old backfilled samples are kept) and
    ``-search.latencyOffset=0s`` (a sample is visible to queries at once).
    """

    name = "victoria-metrics"
    ready_path = "/health"
    error = VictoriaMetricsError
    defaults: ClassVar[dict[str, str]] = {"-retentionPeriod": "100y", "-search.latencyOffset": "0s"}

    def __init__(self, data_dir: Path | None = None, *,
                 scrape_config: str | Mapping[str, Any] | None = None,
                 flags: Sequence[str] = (), workdir: Path | None = None,
                 port: int | None = None, binary: str = VICTORIA_METRICS,
                 ready_timeout: float = 60.0, stop_timeout: float = 30.0,
                 request_timeout: float = 60.0) -> None:
        if workdir is None and data_dir is not None:
            workdir = Path(data_dir).parent
        super().__init__(binary, workdir=workdir, port=port, flags=flags,
                         ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.scrape_config = None if scrape_config is None else config_text(scrape_config)
        self.request_timeout = request_timeout

    @property
    def data_dir(self) -> Path:
        return self._data_dir if self._data_dir is not None else self.file("-data")

    @property
    def scrape_config_file(self) -> Path:
        return self.file("-scrape.yml")

    def prepare(self) -> None:
        if self.scrape_config is not None:
            self.scrape_config_file.write_text(self.scrape_config)

    def command(self) -> list[str]:
        cmd = [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}",
               f"-storageDataPath={self.data_dir}"]
        given = {f.split("=", 1)[0].replace("--", "-", 1) for f in self.flags}
        cmd += [f"{flag}={value}" for flag, value in self.defaults.items()
                if flag not in given]
        if self.scrape_config is not None:
            cmd.append(f"-promscrape.config={self.scrape_config_file}")
        return cmd + self.flags

    def import_prometheus(self, text: str | bytes) -> None:
        """POST samples in the Prometheus text format (timestamps in ms) to
        ``/api/v1/import/prometheus``, then flush them so that queries see them."""
        body = text.encode() if isinstance(text, str) else text
        request = urllib.request.Request(f"{self.url}/api/v1/import/prometheus",
                                         data=body, method="POST")
        with OPENER.open(request, timeout=self.request_timeout) as r:
            if r.status not in (200, 204):
                raise self.error(f"/api/v1/import/prometheus: HTTP {r.status}")
        self.flush()

    def flush(self) -> None:
        """``/internal/force_flush``: samples received so far become searchable."""
        with OPENER.open(f"{self.url}/internal/force_flush", timeout=self.request_timeout):
            pass
