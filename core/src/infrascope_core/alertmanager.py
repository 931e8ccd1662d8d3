"""A local Alertmanager and amtool, driven by their real binaries (Debian's
``prometheus-alertmanager`` package names the server ``prometheus-alertmanager``).

- :class:`Alertmanager` runs one server (a :class:`~infrascope_core.service.Service`:
  free port, bounded wait for ``/-/ready``, stop by pid) on a configuration given as
  text, a mapping or a file, without clustering, its external URL its own address;
  :meth:`Alertmanager.alerts` and :meth:`Alertmanager.post_alerts` speak its v2 API.
- :class:`Amtool` runs ``amtool`` commands (``check-config``, ``config routes test``,
  ``template render``) to their end.

Standard library only.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .service import OPENER, Service, ServiceError, Tool, config_text, executable, find_binary

ALERTMANAGER = find_binary("alertmanager", "prometheus-alertmanager")
AMTOOL = find_binary("amtool")


class AlertmanagerError(ServiceError):
    """Alertmanager did not start, died, or its API answered with an error."""


def binaries_available() -> bool:
    """True when both the alertmanager and the amtool binaries are executable."""
    return executable(ALERTMANAGER) and executable(AMTOOL)


class Alertmanager(Service):
    """``alertmanager`` on ``127.0.0.1:port`` with ``config`` (YAML text, a mapping
    written as JSON, or the :class:`~pathlib.Path` of a file used where it is).

    The configuration is written to ``workdir/alertmanager-<port>.yml``, the data
    to ``workdir/alertmanager-<port>-data``; ``--cluster.listen-address=`` (no
    gossip) and ``--web.external-url`` (its own URL) are set unless ``flags`` set
    them. Otherwise as :class:`~infrascope_core.service.Service`.
    """

    name = "alertmanager"
    ready_path = "/-/ready"
    error = AlertmanagerError

    def __init__(self, config: str | Mapping[str, Any] | Path, *,
                 flags: Sequence[str] = (), workdir: Path | None = None,
                 port: int | None = None, binary: str = ALERTMANAGER,
                 ready_timeout: float = 60.0, stop_timeout: float = 30.0,
                 request_timeout: float = 10.0) -> None:
        super().__init__(binary, workdir=workdir, port=port, flags=flags,
                         ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self.config_path = config if isinstance(config, Path) else None
        self.config_text = None if isinstance(config, Path) else config_text(config)
        self.request_timeout = request_timeout

    @property
    def config_file(self) -> Path:
        return self.config_path if self.config_path is not None else self.file(".yml")

    @property
    def storage_path(self) -> Path:
        return self.file("-data")

    def prepare(self) -> None:
        if self.config_text is not None:
            self.config_file.write_text(self.config_text)

    def command(self) -> list[str]:
        cmd = [self.binary, f"--config.file={self.config_file}",
               f"--storage.path={self.storage_path}",
               f"--web.listen-address=127.0.0.1:{self.port}"]
        if not any(f.startswith("--cluster.listen-address") for f in self.flags):
            cmd.append("--cluster.listen-address=")
        if not any(f.startswith("--web.external-url") for f in self.flags):
            cmd.append(f"--web.external-url={self.url}")
        return cmd + self.flags

    # -- API v2 ----------------------------------------------------------------------
    def get(self, path: str, **params: str) -> Any:
        """The JSON answer of ``GET /api/v2<path>?params``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with OPENER.open(f"{self.url}/api/v2{path}{query}",
                         timeout=self.request_timeout) as r:
            return json.loads(r.read())

    def alerts(self, *filters: str) -> list[dict[str, Any]]:
        """``/api/v2/alerts``, each filter a matcher such as ``alertname="X"``."""
        query = urllib.parse.urlencode([("filter", f) for f in filters])
        with OPENER.open(f"{self.url}/api/v2/alerts" + (f"?{query}" if query else ""),
                         timeout=self.request_timeout) as r:
            return list(json.loads(r.read()))

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts to ``/api/v2/alerts`` as Prometheus does."""
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", method="POST",
                                         data=json.dumps(list(alerts)).encode(),
                                         headers={"Content-Type": "application/json"})
        with OPENER.open(request, timeout=self.request_timeout) as r:
            if r.status != 200:
                raise self.error(f"POST /api/v2/alerts: HTTP {r.status}")


class Amtool(Tool):
    """``amtool`` commands, run to their end (:class:`~infrascope_core.service.Tool`)."""

    def __init__(self, binary: str = AMTOOL, timeout: float = 30.0) -> None:
        super().__init__(binary, timeout)

    def check_config(self, file: str | Path) -> subprocess.CompletedProcess[str]:
        """``amtool check-config FILE``."""
        return self.run("check-config", file)
