"""The exporter's HTTP endpoints, served from the last rendering only.

``/metrics`` (pre-rendered, gzip when asked; only the process's own series
are collected per scrape), ``/sd`` (and ``/sd/cloud``,
``/sd/dedicated``), ``/healthz`` (the process answers), ``/readyz`` (503 until
the first refresh completed), and ``/`` (a landing page). No request here
ever calls a Hetzner API. Every endpoint is read-only: GET and HEAD everywhere,
OPTIONS lists them, other methods are a 405 with ``Allow`` (plain text, never
http.server's HTML error page).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .exporter import Exporter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATHS = frozenset({"/", "/metrics", "/sd", "/sd/cloud", "/sd/dedicated", "/healthz", "/readyz"})
ALLOW = "GET, HEAD, OPTIONS"
LANDING = b"""<!doctype html><html><head><title>InfraScope exporter</title></head><body>
<h1>InfraScope exporter</h1><p>Hetzner Cloud and Robot inventory, cost and metrics.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/sd">/sd</a> (Prometheus http_sd:
agent targets)</li><li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a></li>
</ul></body></html>
"""


def make_handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "infrascope-exporter"
        protocol_version = "HTTP/1.1"
        # send_error's page (unrecognised methods: 501, malformed requests: 400)
        error_content_type = "text/plain; charset=utf-8"
        error_message_format = "%(code)d %(message)s\n"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without TCP_NODELAY Nagle's
            # algorithm and the client's delayed ACK add ~40 ms to every scrape.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # scrapes are not events; errors are logged by the refreshers

        def _send(self, status: int, body: bytes, ctype: str,
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_OPTIONS(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] not in PATHS:
                self._send(404, b"not found\n", "text/plain")
            else:
                self._send(200, b"", "text/plain", {"Allow": ALLOW})

        def _method_not_allowed(self) -> None:
            # The body is never read: close the connection rather than parse it as the
            # next request.
            self.close_connection = True
            if self.path.split("?", 1)[0] not in PATHS:
                self._send(404, b"not found\n", "text/plain", {"Connection": "close"})
            else:
                self._send(405, f"method {self.command} not allowed; use GET or HEAD\n"
                           .encode(), "text/plain; charset=utf-8",
                           {"Allow": ALLOW, "Connection": "close"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_TRACE = do_CONNECT = _method_not_allowed

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    self._send(200, exporter.exposition(gzipped=True), CONTENT_TYPE,
                               {"Content-Encoding": "gzip"})
                else:
                    self._send(200, exporter.exposition(), CONTENT_TYPE)
            elif path == "/sd":
                with exporter.lock:
                    body = exporter.rendered_sd
                self._send(200, body, "application/json")
            elif path in ("/sd/cloud", "/sd/dedicated"):
                self._send(200, exporter.sd_of(path.rsplit("/", 1)[1]), "application/json")
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready = exporter.ready()
                self._send(200 if ready else 503, b"ready\n" if ready else
                           b"waiting for the first refresh\n", "text/plain")
            elif path == "/":
                self._send(200, LANDING, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class ExporterHTTPServer:
    def __init__(self, exporter: Exporter, host: str, port: int) -> None:
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self.httpd = server_class((host, port), make_handler(exporter))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http",
                                       daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
