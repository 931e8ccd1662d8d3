"""The service runner itself, on small Python programs: free ports never handed out
twice, a lost port race retried, bounded readiness waits, errors with the log's tail,
SIGTERM then SIGKILL by pid, temporary folders removed."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from infrascope_core import service
from infrascope_core.service import Service, ServiceError, free_port, refused_port, wait_until

# Listens on 127.0.0.1:PORT (argv[1]) and answers every GET with 200; with argv[2] ==
# "deaf" it ignores SIGTERM.
SERVER = """
import http.server, signal, sys
if sys.argv[2:] == ["deaf"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class PyServer(Service):
    name = "pyserver"
    ready_path = "/"

    def __init__(self, *args: str, **kwargs: Any) -> None:
        super().__init__(sys.executable, **kwargs)
        self.args = list(args)

    def command(self) -> list[str]:
        return [self.binary, "-c", SERVER, str(self.port), *self.args]


class Silent(Service):
    """Runs but never answers, or prints and dies."""

    name = "silent"

    def __init__(self, code: str, **kwargs: Any) -> None:
        super().__init__(sys.executable, **kwargs)
        self.code = code

    def command(self) -> list[str]:
        return [self.binary, "-c", self.code]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class RepeatingSocket:
    """socket.socket stand-in whose bind(0) gets the ports of ``sequence``."""

    sequence: ClassVar[Iterator[int]] = iter(())

    def __init__(self, *args: object) -> None:
        self.port = 0

    def __enter__(self) -> RepeatingSocket:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        self.port = next(self.sequence)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_free_ports_are_distinct_even_when_the_system_repeats_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The system may call one port free twice in a row (nothing listens on it yet): the
    second caller gets another one (the demo once got two services on one port)."""
    base = 61000 + os.getpid() % 1000  # not handed out before in this process
    RepeatingSocket.sequence = iter([base, base, base + 1, base + 1, base + 1, base + 2,
                                     base + 3])
    monkeypatch.setattr(service, "socket", SimpleNamespace(socket=RepeatingSocket))
    assert [free_port(), free_port(), free_port(avoid={base + 2})] == [base, base + 1, base + 3]


def test_a_service_starts_answers_and_stops_by_pid_leaving_nothing(tmp_path: Path) -> None:
    with PyServer() as server:
        pid, port, folder = server.pid, server.port, server.dir
        assert pid is not None and port is not None
        assert service.http_status(server.url + "/") == 200
        assert folder.name.startswith("infrascope-pyserver-")  # a temporary folder
        assert "listening" in server.logs()
    assert gone(pid) and refused(port) and not folder.exists()
    assert server.stop() is None  # a second stop does nothing


def test_a_program_that_dies_gives_its_exit_code_and_log_tail(tmp_path: Path) -> None:
    dying = Silent("import sys; print('bad flag --x: explained here'); sys.exit(3)",
                   workdir=tmp_path)
    with pytest.raises(ServiceError, match=r"(?s)silent \(pid \d+\) exited with 3 before "
                                           r"it was ready: .*bad flag --x: explained here"):
        dying.start()
    assert dying.proc is None


def test_readiness_is_bounded_and_the_program_stopped(tmp_path: Path) -> None:
    mute = Silent("import time; print('starting', flush=True); time.sleep(60)",
                  workdir=tmp_path, ready_timeout=0.5)
    with pytest.raises(ServiceError, match=r"(?s)not ready after 0.5 s: starting"):
        mute.start()
    assert mute.proc is None
    log = next(tmp_path.glob("silent-*.log"))
    assert "starting" in log.read_text()  # a given folder is kept, log included


def test_sigkill_after_the_stop_timeout(tmp_path: Path) -> None:
    deaf = PyServer("deaf", workdir=tmp_path, stop_timeout=0.5).start()
    pid = deaf.pid
    assert pid is not None
    assert deaf.stop() == -signal.SIGKILL
    assert gone(pid)


def test_a_lost_port_race_is_retried_on_another_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, free_port()])
        monkeypatch.setattr(service, "free_port", lambda avoid=(): next(ports))
        with PyServer(workdir=tmp_path) as server:
            assert server.port != busy
            assert service.http_status(server.url + "/") == 200
        assert "Address already in use" in (tmp_path / f"pyserver-{busy}.log").read_text()


def test_a_given_busy_port_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ServiceError, match="Address already in use"):
            PyServer(workdir=tmp_path, port=busy).start()


def test_wait_until_gives_up_at_once_when_a_watched_service_died(tmp_path: Path) -> None:
    server = PyServer(workdir=tmp_path).start()
    try:
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait()
        with pytest.raises(ServiceError, match="pyserver .* exited with -9 while waiting "
                                               "for the answer"):
            wait_until(lambda: False, 30, "the answer", alive=[server])
    finally:
        server.stop()


def test_wait_until_names_what_and_the_last_error() -> None:
    def failing() -> bool:
        raise KeyError("not yet")

    with pytest.raises(TimeoutError, match=r"waiting for the thing; last: KeyError\('not "
                                           r"yet'\)"):
        wait_until(failing, 0.3, "the thing", interval=0.05, ignore=(KeyError,))
    with pytest.raises(KeyError):  # not ignored: raised at once
        wait_until(failing, 30, "the thing")


def test_refused_port() -> None:
    with refused_port() as port:
        assert refused(port)
