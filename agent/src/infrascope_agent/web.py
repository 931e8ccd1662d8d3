"""HTTP serving of the agent's metrics (TLS and basic auth: webconfig.py).

Every path answers GET and HEAD (same headers, no body); any other method on a
path that exists is 405 with ``Allow: GET, HEAD``, as Go's net/http servers of
node_exporter and Prometheus answer; an unknown path is 404 whatever the method.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from .exposition import render
from .webconfig import ConnectionRejected, WebGuard

log = logging.getLogger("infrascope_agent.web")

LANDING = """<!doctype html><html><head><title>InfraScope agent</title></head><body>
<h1>InfraScope agent</h1><p>node_exporter-compatible host metrics and discovered services.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


ALLOW = "GET, HEAD"


class AgentHandler(BaseHTTPRequestHandler):
    """Base of the handler classes :func:`make_handler` builds."""

    server_version = "infrascope-agent"
    protocol_version = "HTTP/1.1"

    def more_headers(self) -> Mapping[str, str]:
        """Headers added to every response (http_server_config.headers)."""
        return {}

    def respond(self, status: int, body: bytes, ctype: str,
                headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in self.more_headers().items():
            self.send_header(name, value)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.command not in ("GET", "HEAD"):
            # a request body was not read: the connection cannot carry another request
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


Authorize = Callable[[AgentHandler], bool]
TLSAccept = Callable[[socket.socket, Any], socket.socket]


def make_handler(registry: CollectorRegistry, telemetry_path: str,
                 authorize: Authorize | None = None, tls_accept: TLSAccept | None = None,
                 extra_headers: Callable[[], Mapping[str, str]] | None = None,
                 ) -> type[AgentHandler]:
    """The request handler class.

    ``authorize(handler) -> bool`` runs before every request; it answers (401, ...)
    itself and returns False to refuse. ``tls_accept(sock, client) -> sock`` runs
    first thing in the connection's own thread and returns the TLS socket after
    the handshake, or raises :class:`ConnectionRejected` (having closed it).
    ``extra_headers()`` are added to every response.
    """

    class Handler(AgentHandler):
        wrapped: socket.socket | None = None

        def setup(self) -> None:
            if tls_accept is not None:
                self.request = self.wrapped = tls_accept(self.request, self.client_address)
            super().setup()
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                if self.wrapped is not None:  # socketserver closes only the raw socket
                    with contextlib.suppress(OSError):
                        self.wrapped.shutdown(socket.SHUT_WR)
                    self.wrapped.close()

        def more_headers(self) -> Mapping[str, str]:
            return extra_headers() if extra_headers is not None else {}

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            if authorize is not None and not authorize(self):
                return
            path = self.path.split("?", 1)[0]
            if path not in (telemetry_path, "/"):
                self.respond(404, b"not found\n", "text/plain")
            elif self.command not in ("GET", "HEAD"):
                self.respond(405, b"method not allowed\n", "text/plain", {"Allow": ALLOW})
            elif path == telemetry_path:
                self.respond(200, render(registry), CONTENT_TYPE_LATEST)
            else:
                self.respond(200, LANDING.format(path=telemetry_path).encode(),
                             "text/html; charset=utf-8")

        # HEAD: GET's headers without the body (respond() leaves it out); every other
        # method reaches the same code and is refused there with 405.
        do_HEAD = do_GET  # noqa: N815

        def __getattr__(self, name: str) -> Any:
            # BaseHTTPRequestHandler answers 501 when there is no do_<METHOD>
            if name.startswith("do_"):
                return self.do_GET
            raise AttributeError(name)

    return Handler


class AgentServer:
    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 telemetry_path: str = "/metrics", web_config_file: str | None = None) -> None:
        handler = make_handler(registry, telemetry_path)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                exc = sys.exc_info()[1]
                if isinstance(exc, ConnectionRejected):
                    log.debug("connection rejected: %s", exc)
                elif isinstance(exc, OSError):  # resets, timeouts, TLS errors mid-connection
                    log.debug("connection from %s ended: %s", client_address, exc)
                else:
                    log.warning("error serving %s", client_address, exc_info=True)

        self.httpd = Server((host, port), handler)
        self.web: WebGuard | None = None
        if web_config_file:
            # web_config_file's TLS and basic auth in front of the handler. The TLS
            # handshake runs in each connection's handler thread (never in the accept
            # loop), so a slow or plain-HTTP client only ties up its own thread.
            try:
                self.web = guard = WebGuard(web_config_file)
            except BaseException:
                self.httpd.server_close()
                raise
            self.httpd.RequestHandlerClass = make_handler(
                registry, telemetry_path, authorize=guard.authorize,
                tls_accept=guard.accept if guard.tls_enabled else None,
                extra_headers=guard.headers)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="agent-http")

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.web is not None and self.web.tls_enabled else "http"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
