"""HTTP serving of the agent's metrics (plain HTTP; TLS and basic auth: webconfig.py)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

LANDING = """<!doctype html><html><head><title>InfraScope agent</title></head><body>
<h1>InfraScope agent</h1><p>node_exporter-compatible host metrics and discovered services.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


def make_handler(registry: CollectorRegistry, telemetry_path: str,
                 authorize: object = None) -> type[BaseHTTPRequestHandler]:
    """``authorize(handler) -> bool`` may answer 401 itself and return False."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "infrascope-agent"
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if authorize is not None and not authorize(self):  # type: ignore[operator]
                return
            path = self.path.split("?", 1)[0]
            if path == telemetry_path:
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/":
                self._send(200, LANDING.format(path=telemetry_path).encode(),
                           "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


class AgentServer:
    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 telemetry_path: str = "/metrics", web_config_file: str | None = None) -> None:
        from .webconfig import wrap_server

        handler = make_handler(registry, telemetry_path)
        ThreadingHTTPServer.daemon_threads = True
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family

        self.httpd = Server((host, port), handler)
        if web_config_file:
            wrap_server(self.httpd, web_config_file, registry, telemetry_path)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="agent-http")

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
