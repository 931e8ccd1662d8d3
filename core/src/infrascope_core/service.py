"""A server program on loopback, run by its pid: the one runner behind the Prometheus,
Alertmanager, VictoriaMetrics and node_exporter runners (and so behind the history
pipeline's temporary Prometheus, the benchmarks and every test that needs one).

- :func:`free_port` picks a free loopback TCP port, never one this process handed out
  lately: the system can return one port twice in a row (it was free both times), and
  two runners started one after the other would then share it (the demo once got
  Prometheus and Alertmanager on one port). :func:`refused_port` holds a port that is
  bound but never listens (connections to it are refused).
- :func:`wait_until` polls with a deadline, optionally giving up early when a
  :class:`Service` it watches has exited.
- :class:`Service` runs one program: a temporary or given work folder for its files,
  a free port (another one, at most :attr:`Service.port_attempts` times, when it loses
  the race for the port), a bounded wait for its readiness URL, and a stop by its pid
  (SIGTERM, then SIGKILL after a bound). Every error names the program and ends with
  the tail of its log. Subclasses give the command line and the readiness path.
- :func:`run_tool` runs a one-shot command (promtool, amtool) to its end, known to
  :func:`terminate_tools` while it runs.

Standard library only; HTTP to the programs goes through :mod:`urllib` without proxies
(everything is on loopback).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Service")

#: Loopback only: never send a request to these programs through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A program did not start, died, or answered with an error; the message holds the
    end of its log."""


# ----------------------------------------------------------------------------
# Binaries, ports, polling
# ----------------------------------------------------------------------------
def find_binary(*names: str) -> str:
    """The first of ``names`` on ``PATH`` (or in ``/usr/bin``), else ``/usr/bin/<first>``
    (which :func:`executable` then reports as missing)."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin")
        if found:
            return found
    return f"/usr/bin/{names[0]}"


def executable(path: str) -> bool:
    return os.access(path, os.X_OK)


_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=1024)
_PORTS_LOCK = threading.Lock()


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port free on 127.0.0.1 right now, not in ``avoid`` and not one of the last
    1024 this process handed out (a port handed out may not be bound yet, and the
    system would return it again). The usual small race with other processes applies:
    :class:`Service` retries on another port when it loses it."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with _PORTS_LOCK:
            if port not in _RECENT_PORTS and port not in avoid:
                _RECENT_PORTS.append(port)
                return port
    raise OSError("no free loopback port found in 100 tries")


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port bound (so nobody else gets it) but never listening: connections
    to it are refused, while the block runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               interval: float = 0.2, *, alive: Iterable[Service] = (),
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises :class:`TimeoutError` naming ``what`` (and the last value or ignored error)
    after ``timeout`` seconds, and :class:`ServiceError` at once when one of the
    services in ``alive`` has exited. Exceptions of the types in ``ignore`` count as a
    falsy answer; any other propagates.
    """
    watched = list(alive)
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for service in watched:
            service.check_running(f"while waiting for {what}")
        try:
            result = predicate()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() > deadline:
            shown = f"; last: {last!r}" if last is not None else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{shown}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET of ``url`` (errors included), ``None`` when nothing
    answers."""
    try:
        with OPENER.open(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


def config_text(config: str | Mapping[str, Any]) -> str:
    """A configuration file's text: ``config`` itself, or a mapping written as JSON
    (which every YAML parser of these programs reads)."""
    if isinstance(config, str):
        return config
    return json.dumps(config, indent=2) + "\n"


# ----------------------------------------------------------------------------
# Service
# ----------------------------------------------------------------------------
class Service:
    """One program listening on ``127.0.0.1:port``, started and stopped by its pid.

    ``workdir`` holds its files (``<name>-<port>.log`` and whatever the subclass
    writes in :meth:`prepare`); when it is ``None`` a temporary folder is made at start
    and removed at :meth:`stop` (logs included: read :meth:`logs` before). ``port``
    ``None`` takes a :func:`free_port`; when the program then exits because the port
    was taken meanwhile, another port is tried, :attr:`port_attempts` times in all.
    ``flags`` are appended to the command line.

    :meth:`start` returns once :meth:`ready` is true, within ``ready_timeout``
    seconds, or raises :attr:`error` with the end of the log and stops the program.
    :meth:`stop` sends SIGTERM to the pid it started and SIGKILL when it has not
    exited within ``stop_timeout`` seconds. It is a context manager.
    """

    #: Used in file names and messages.
    name: ClassVar[str] = "service"
    #: GET of this path answers 200 once the program is ready.
    ready_path: ClassVar[str] = "/-/ready"
    #: What a failure raises.
    error: ClassVar[type[ServiceError]] = ServiceError
    port_attempts: ClassVar[int] = 3

    def __init__(self, binary: str, *, workdir: Path | None = None, port: int | None = None,
                 flags: Sequence[str] = (), ready_timeout: float = 60.0,
                 stop_timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.workdir = Path(workdir) if workdir is not None else None
        self.port = port
        self.flags = list(flags)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._temporary: Path | None = None

    # -- what subclasses give --------------------------------------------------------
    def command(self) -> list[str]:
        """The command line :meth:`start` runs (port and work folder known)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write what the program reads (configuration files, data folders) before it
        starts; the port and the work folder are known."""

    def ready(self) -> bool:
        """True once the program serves: a GET of :attr:`ready_path` answers 200."""
        return http_status(self.url + self.ready_path) == 200

    # -- state -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (the port is chosen on start)."""
        if self.port is None:
            raise self.error(f"{self.name}: not started yet: no port")
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a scrape target."""
        return self.url.removeprefix("http://")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def dir(self) -> Path:
        """The work folder (known once started, or when given)."""
        if self.workdir is None:
            raise self.error(f"{self.name}: no work folder before start")
        return self.workdir

    def file(self, suffix: str) -> Path:
        """``<workdir>/<name>-<port><suffix>``: where this instance keeps a file (each
        instance its own, even in a shared work folder)."""
        return self.dir / f"{self.name}-{self.port}{suffix}"

    @property
    def log_file(self) -> Path:
        return self.file(".log")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self, when: str = "") -> None:
        """Raise :attr:`error` (with the log's end) when the program has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise self.error(f"{self.name} (pid {self.proc.pid}) exited with "
                             f"{self.proc.returncode} {when}".rstrip() + f": {self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of the program's output."""
        try:
            return self.log_file.read_text(errors="replace")[-tail:]
        except (OSError, ServiceError):
            return ""

    # -- lifecycle -------------------------------------------------------------------
    def start(self: S) -> S:
        """Start the program and wait until it is ready; returns ``self``."""
        if self.running():
            raise self.error(f"{self.name}: already running (pid {self.pid})")
        if self.workdir is None:
            self._temporary = Path(tempfile.mkdtemp(prefix=f"infrascope-{self.name}-"))
            self.workdir = self._temporary
        chosen = self.port is None
        for attempt in range(1, self.port_attempts + 1):
            if chosen:
                self.port = free_port()
            try:
                self._start_once()
                return self
            except ServiceError:
                lost_port = "address already in use" in self.logs().lower()
                self._stop_process()
                if not (chosen and lost_port and attempt < self.port_attempts):
                    self._remove_temporary()
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("not reached")  # pragma: no cover

    def _start_once(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir, env=self.env)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self.check_running("before it was ready")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise self.error(f"{self.name} (pid {self.pid}) not ready after "
                                 f"{self.ready_timeout:g} s: {self.logs()}")
            time.sleep(0.1)

    def _stop_process(self, timeout: float | None = None) -> int | None:
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def _remove_temporary(self) -> None:
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            if self.workdir == self._temporary:
                self.workdir = None
            self._temporary = None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the program's pid, SIGKILL it after ``timeout`` s (default
        ``stop_timeout``); its exit code. A temporary work folder is removed."""
        code = self._stop_process(timeout)
        self._remove_temporary()
        return code

    def restart(self: S) -> S:
        """Stop and start again on the same port and work folder."""
        self._stop_process()
        return self.start()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# ----------------------------------------------------------------------------
# One-shot tools
# ----------------------------------------------------------------------------
class Tool:
    """A command-line program run to its end (promtool, amtool): :meth:`run` returns the
    :class:`subprocess.CompletedProcess` (text output) for the caller to judge."""

    def __init__(self, binary: str, timeout: float) -> None:
        self.binary = binary
        self.timeout = timeout

    def available(self) -> bool:
        return executable(self.binary)

    def run(self, *args: str | Path, input: str | bytes | None = None,
            timeout: float | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        """``BINARY ARGS...`` (``input`` on its stdin), killed after ``timeout``
        (default: the tool's)."""
        return run_tool([self.binary, *map(str, args)], input=input, cwd=cwd,
                        timeout=self.timeout if timeout is None else timeout)


_tools: set[subprocess.Popen[bytes]] = set()
_tools_lock = threading.Lock()


def run_tool(cmd: Sequence[str], timeout: float | None = None,
             input: str | bytes | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, ``input`` (text as UTF-8) on its stdin, its output
    captured as text; like :func:`subprocess.run`, but known to :func:`terminate_tools`
    while it runs: an interrupted caller stops it instead of waiting for it.
    ``timeout`` kills it and raises :class:`subprocess.TimeoutExpired`."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                            cwd=cwd)
    with _tools_lock:
        _tools.add(proc)
    try:
        out, err = proc.communicate(
            input=input.encode() if isinstance(input, str) else input, timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        with _tools_lock:
            _tools.discard(proc)
    return subprocess.CompletedProcess(list(cmd), proc.returncode,
                                       out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def terminate_tools(timeout: float = 10.0) -> None:
    """SIGTERM every command :func:`run_tool` runs now (SIGKILL after ``timeout``)."""
    with _tools_lock:
        running = list(_tools)
    for proc in running:
        if proc.poll() is None:
            proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
