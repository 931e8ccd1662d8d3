#!/usr/bin/env python3
"""The demo's Alertmanager webhook receiver: logs every notification it receives.

Alertmanager's demo configuration (``alertmanager/render_demo.py``) sends every
receiver that would notify someone in production (``pager``, ``chat``, ``digest``)
to ``<this>/alerts/<receiver>``. Each notification becomes one JSON line in
``--log``: when it arrived, the path, and Alertmanager's payload as received
(``version "4"``, ``receiver``, ``status``, ``alerts[]`` with labels and
annotations, ...), plus a one-line summary on stdout.

    webhook_receiver.py --listen 127.0.0.1:8798 --log .demo/webhook/notifications.jsonl

``GET /healthz`` answers ``ok``; ``GET /`` the number of notifications so far.
SIGTERM or SIGINT stop it (exit 0). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

MAX_BODY = 4 << 20


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], log: Path) -> None:
        super().__init__(address, Handler)
        self.log_path = log
        self.lock = threading.Lock()
        self.count = 0

    def record(self, path: str, payload: Any) -> dict[str, Any]:
        entry = {"received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "path": path, "payload": payload}
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
            self.count += 1
        return entry


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # one summary line per notification instead (below)

    def _answer(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/healthz":
            self._answer(200, "ok\n")
        elif self.path == "/":
            self._answer(200, f"{self.server.count} notifications in "
                              f"{self.server.log_path}\n")
        else:
            self._answer(404, "not found\n")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._answer(400, "a JSON body is required\n")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, "not JSON\n")
            return
        self.server.record(self.path, payload)
        alerts = payload.get("alerts", []) if isinstance(payload, dict) else []
        names = sorted({str(a.get("labels", {}).get("alertname")) for a in alerts})
        servers = sorted({str(a.get("labels", {}).get("server_name")) for a in alerts
                          if a.get("labels", {}).get("server_name")})
        status = payload.get("status") if isinstance(payload, dict) else None
        print(f"{self.path}: {status} {len(alerts)} alert(s) {', '.join(names)}"
              + (f" on {', '.join(servers)}" if servers else ""), flush=True)
        self._answer(200, "ok\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8798", help="HOST:PORT")
    parser.add_argument("--log", type=Path, required=True, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.touch()
    server = Receiver((host or "127.0.0.1", int(port)), args.log)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"webhook receiver: listening on http://{args.listen}/, logging to {args.log}",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
