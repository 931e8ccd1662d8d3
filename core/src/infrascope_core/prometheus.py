"""A local Prometheus and promtool, driven by their real binaries.

Used by the history pipeline (a temporary Prometheus that the recording-rule
passes query), the demo, the tests and the benchmarks; everything runs on
loopback:

- :func:`free_port` picks a free loopback TCP port; :func:`wait_until` polls
  with a deadline.
- :class:`Prometheus` runs one server on a data directory with a given
  configuration (or just rule files) and extra flags, waits for ``/-/ready``
  with a deadline, answers the HTTP API (:meth:`Prometheus.query`,
  :meth:`Prometheus.query_range`, :meth:`Prometheus.rule_groups`, its own
  ``/metrics``) and is stopped by its pid (SIGTERM, then SIGKILL). It is a
  context manager::

      with Prometheus(tmp / "data", rule_files=[rules], evaluation_interval="5s") as prom:
          wait_until(lambda: prom.query("my:recorded:series"), timeout=30,
                     what="the first evaluation")
          value = prom.scalar("sum(my:recorded:series)")

- :func:`promtool_blocks` turns an OpenMetrics file into TSDB blocks
  (``promtool tsdb create-blocks-from openmetrics``); :func:`block_stats`
  reads a block's ``meta.json``.

Standard library only: HTTP goes through :mod:`urllib`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus did not start, died, or its API answered with an error."""


class PromtoolError(RuntimeError):
    """promtool exited non-zero; the message holds the end of its output."""


def binaries_available() -> bool:
    """True when both the prometheus and the promtool binaries are executable."""
    return os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race applies)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               interval: float = 0.2) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------
# Prometheus
# ----------------------------------------------------------------------------
class Prometheus:
    """``prometheus`` on ``data_dir``, listening on ``127.0.0.1:port``.

    The configuration is ``config`` (the YAML text of a whole configuration
    file) or, when it is ``None``, one made of ``rule_files`` (absolute paths
    are safest), ``evaluation_interval`` and no scrape jobs. It is written to
    ``workdir/prometheus-<port>.yml``, the server's output to
    ``workdir/prometheus-<port>.log`` (``workdir`` defaults to the parent of
    ``data_dir``). ``flags`` are appended to the command line; unless one of
    them sets it, ``--storage.tsdb.retention.time`` is ``retention`` (60d:
    backfilled 30-day data is not deleted at once, as with the default 15d).

    :meth:`start` returns once ``/-/ready`` answers 200, within
    ``ready_timeout`` seconds, or raises :class:`PrometheusError` (with the end
    of the log). :meth:`stop` sends SIGTERM to the pid it started and SIGKILL
    if it has not exited within its timeout; leaving the ``with`` block stops it.
    """

    def __init__(self, data_dir: Path, *, config: str | None = None,
                 rule_files: Sequence[Path] = (), evaluation_interval: str = "1m",
                 flags: Sequence[str] = (), retention: str = "60d",
                 workdir: Path | None = None, port: int | None = None,
                 binary: str = PROMETHEUS, ready_timeout: float = 60.0,
                 request_timeout: float = 60.0) -> None:
        if config is not None and rule_files:
            raise ValueError("give either config (a whole configuration) or rule_files")
        self.data_dir = Path(data_dir)
        self.workdir = Path(workdir) if workdir is not None else self.data_dir.parent
        if config is None:
            config = _minimal_config(rule_files, evaluation_interval)
        self.config_text = config
        self.flags = list(flags)
        self.retention = retention
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.request_timeout = request_timeout
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (the port is chosen on start)."""
        if self.port is None:
            raise PrometheusError("not started yet: no port")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def config_file(self) -> Path:
        return self.workdir / f"prometheus-{self.port}.yml"

    @property
    def log_file(self) -> Path:
        return self.workdir / f"prometheus-{self.port}.log"

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (the port must be known)."""
        cmd = [self.binary, f"--config.file={self.config_file}",
               f"--storage.tsdb.path={self.data_dir}",
               f"--web.listen-address=127.0.0.1:{self.port}"]
        if not any(f.startswith("--storage.tsdb.retention.time") for f in self.flags):
            cmd.append(f"--storage.tsdb.retention.time={self.retention}")
        return cmd + self.flags

    def start(self) -> Prometheus:
        """Start the server and wait until it is ready; returns ``self``."""
        if self.running():
            raise PrometheusError(f"already running (pid {self.pid})")
        if self.port is None:
            self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text)
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready after {self.ready_timeout:g} s: {self.logs()}")
            time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the server's pid, SIGKILL it after ``timeout`` s; its exit code."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def restart(self) -> Prometheus:
        """Stop and start again on the same port (e.g. to load new blocks)."""
        self.stop()
        return self.start()

    def logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of the server's output."""
        try:
            return self.log_file.read_text(errors="replace")[-tail:]
        except (OSError, PrometheusError):
            return ""

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- HTTP API -------------------------------------------------------------
    def api(self, path: str, params: Mapping[str, Any] | None = None,
            post: bool = False, timeout: float | None = None) -> Any:
        """``data`` of a JSON API answer (``/api/v1/...``); :class:`PrometheusError`
        with Prometheus' error text when its status is not ``success``."""
        query = urllib.parse.urlencode({k: _param(v) for k, v in (params or {}).items()})
        url = self.url + path
        data = None
        if post:
            data = query.encode()
        elif query:
            url += "?" + query
        req = urllib.request.Request(url, data=data)
        if post:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.request_timeout) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                err = json.loads(text)
                text = f"{err.get('errorType')}: {err.get('error')}"
            except ValueError:
                pass
            raise PrometheusError(f"{path} {dict(params or {})}: HTTP {e.code}: {text}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params or {})}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None,
              timeout: float | None = None) -> list[dict[str, Any]]:
        """Instant query (at ``at``, a Unix time, or now): the result list."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("/api/v1/query", params, post=True, timeout=timeout)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def scalar(self, expr: str, at: float | None = None) -> float:
        """The value of a query that must return exactly one sample."""
        result = self.query(expr, at)
        if len(result) != 1:
            raise PrometheusError(f"{expr!r}: expected one sample, got {len(result)}")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float,
                    timeout: float | None = None) -> list[dict[str, Any]]:
        """Range query: the result list (``values`` per series)."""
        data = self.api("/api/v1/query_range",
                        {"query": expr, "start": start, "end": end, "step": step},
                        post=True, timeout=timeout)
        return list(data["result"])

    def rule_groups(self) -> list[dict[str, Any]]:
        """``/api/v1/rules`` groups: ``name``, ``file``, ``evaluationTime``,
        ``lastEvaluation`` and every rule's ``health``, ``lastError``,
        ``evaluationTime``."""
        return list(self.api("/api/v1/rules")["groups"])

    def metrics_text(self) -> str:
        """The server's own ``/metrics`` (text format)."""
        with urllib.request.urlopen(self.url + "/metrics",
                                    timeout=self.request_timeout) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of ``name`` in the server's own ``/metrics`` whose labels include
        ``labels``."""
        return [(lbl, v) for lbl, v in parse_samples(self.metrics_text(), name)
                if all(lbl.get(k) == want for k, want in labels.items())]


def _param(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _minimal_config(rule_files: Iterable[Path], evaluation_interval: str) -> str:
    lines = ["global:", f"  evaluation_interval: {evaluation_interval}"]
    files = [str(Path(p)) for p in rule_files]
    if files:
        lines.append("rule_files:")
        lines += [f"  - {json.dumps(f)}" for f in files]
    lines.append("scrape_configs: []")
    return "\n".join(lines) + "\n"


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of metric ``name`` in a Prometheus text exposition: ``(labels, value)``.

    A small parser for our own checks (exact name match, comments skipped), not a
    validator.
    """
    out: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != name:
            continue
        labels = {k: re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], v)
                  for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((labels, float(m.group(3))))
    return out


# ----------------------------------------------------------------------------
# promtool
# ----------------------------------------------------------------------------
def promtool_blocks(openmetrics_file: Path, data_dir: Path, *flags: str,
                    timeout: float | None = None, binary: str = PROMTOOL) -> list[Path]:
    """``promtool tsdb create-blocks-from openmetrics [flags] FILE DATA_DIR``.

    Returns the block directories it created (sorted; blocks already in
    ``data_dir`` are not listed). Raises :class:`PromtoolError` on failure.

    promtool parses the whole file once to find its time range and once more
    for every block it writes, aligned to multiples of the block duration
    (2h by default). ``--max-block-duration=72h`` gives 54-hour blocks (the
    largest of 2h·3^k not above it), what a Prometheus with a 35-day retention
    compacts to; a file spanning one such aligned range is parsed only twice.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in data_dir.iterdir()}
    proc = run_tool([binary, "tsdb", "create-blocks-from", "openmetrics", *flags,
                     str(openmetrics_file), str(data_dir)], timeout=timeout)
    if proc.returncode != 0:
        raise PromtoolError(f"promtool exited with {proc.returncode} on {openmetrics_file}: "
                            f"{(proc.stderr or proc.stdout)[-3000:]}")
    return sorted(p for p in data_dir.iterdir()
                  if p.name not in before and (p / "meta.json").is_file())


_tools: set[subprocess.Popen[str]] = set()
_tools_lock = threading.Lock()


def run_tool(cmd: Sequence[str], timeout: float | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (output captured), like :func:`subprocess.run`, but
    known to :func:`terminate_tools` while it runs: an interrupted caller stops it
    instead of waiting for it."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    with _tools_lock:
        _tools.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        with _tools_lock:
            _tools.discard(proc)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


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


def block_stats(block: Path) -> dict[str, Any]:
    """``meta.json`` of a block: ``minTime``, ``maxTime`` (ms) and ``stats``."""
    return dict(json.loads((Path(block) / "meta.json").read_text()))
