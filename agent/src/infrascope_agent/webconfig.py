"""exporter-toolkit web configuration (``--web.config.file``): TLS and basic auth.

Not implemented yet: a web config file is refused with a clear error rather
than silently served without the protection it asks for.
"""

from __future__ import annotations

from http.server import HTTPServer

from prometheus_client.registry import CollectorRegistry


class WebConfigError(ValueError):
    pass


def wrap_server(httpd: HTTPServer, path: str, registry: CollectorRegistry,
                telemetry_path: str) -> None:
    raise WebConfigError(f"{path}: --web.config.file is not supported yet")
