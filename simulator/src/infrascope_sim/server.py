"""Running the simulator: a uvicorn server in this process or in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from .agents import create_host_agents_app, loopback_agents
from .app import AGENTS_PREFIX, CLOUD_PREFIX, ROBOT_PREFIX, create_app
from .state import Simulator


@dataclass
class Endpoints:
    base: str

    @property
    def cloud(self) -> str:
        return self.base + CLOUD_PREFIX

    @property
    def robot(self) -> str:
        return self.base + ROBOT_PREFIX

    @property
    def agents_sd(self) -> str:
        return self.base + AGENTS_PREFIX + "/sd"

    @property
    def control(self) -> str:
        return self.base + "/_sim"


def make_server(sim: Simulator, host: str, port: int, access_log: bool = False) -> uvicorn.Server:
    config = uvicorn.Config(create_app(sim), host=host, port=port, log_level="warning",
                            access_log=access_log, lifespan="off",
                            timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


def make_host_agents_server(sim: Simulator, port: int
                            ) -> tuple[uvicorn.Server, list[socket.socket], int]:
    """A server answering ``/metrics`` on ``ADDRESS:port`` for every server of the fleet
    whose IPv4 address is a loopback one, as that server's agent; its sockets (bound
    now) and the number of servers left out (other addresses)."""
    by_ip, others = loopback_agents(sim)
    sockets = []
    try:
        for ip in sorted(by_ip):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(64)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    config = uvicorn.Config(create_host_agents_app(sim, by_ip), log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    return _SignalsLeftAlone(config), sockets, others


class _SignalsLeftAlone(uvicorn.Server):
    """A second server in the process: the main one handles SIGINT/SIGTERM (and ends
    the process); two servers replacing each other's handlers would leave one running."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bound_port(server: uvicorn.Server) -> int:
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("simulator server is not listening")


@contextmanager
def running(sim: Simulator, host: str = "127.0.0.1", port: int = 0,
            startup_timeout: float = 10.0) -> Iterator[Endpoints]:
    """Serve ``sim`` on a real loopback socket in a background thread.

    Used by tests and benchmarks: the server is a real HTTP server, stopped
    (and its thread joined) when the block ends.
    """
    server = make_server(sim, host, port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True,
                              name="infrascope-sim")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"simulator did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield Endpoints(f"http://{host}:{bound_port(server)}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
