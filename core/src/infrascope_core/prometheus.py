"""A local Prometheus and promtool, driven by their real binaries.

Used by the history pipeline (a temporary Prometheus that the recording-rule
passes query), the demo, the tests and the benchmarks; everything runs on
loopback:

- :class:`Prometheus` runs one server (a :class:`~infrascope_core.service.Service`:
  free port, bounded readiness wait, stop by pid) on a data directory with a given
  configuration (or just rule files) and extra flags, and answers the HTTP API
  (:class:`PrometheusAPI`: :meth:`~PrometheusAPI.query`,
  :meth:`~PrometheusAPI.query_range`, :meth:`~PrometheusAPI.rule_groups`, its own
  ``/metrics``). It is a context manager::

      with Prometheus(tmp / "data", rule_files=[rules], evaluation_interval="5s") as prom:
          wait_until(lambda: prom.query("my:recorded:series"), timeout=30,
                     what="the first evaluation")
          value = prom.scalar("sum(my:recorded:series)")

- :class:`Promtool` runs ``promtool check``/``test`` commands;
  :func:`promtool_blocks` turns an OpenMetrics file into TSDB blocks
  (``promtool tsdb create-blocks-from openmetrics``); :func:`block_stats` reads a
  block's ``meta.json``.

:func:`free_port`, :func:`wait_until`, :func:`run_tool` and :func:`terminate_tools`
are :mod:`infrascope_core.service`'s, named here too for this module's callers.
Standard library only: HTTP goes through :mod:`urllib`.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .service import (
    OPENER,
    Service,
    ServiceError,
    Tool,
    config_text,
    executable,
    find_binary,
    free_port,
    run_tool,
    terminate_tools,
    wait_until,
)

__all__ = ["PROMETHEUS", "PROMTOOL", "Prometheus", "PrometheusAPI", "PrometheusError",
           "Promtool", "PromtoolError", "binaries_available", "block_stats", "free_port",
           "parse_samples", "promtool_blocks", "run_tool", "terminate_tools", "wait_until"]

PROMETHEUS = find_binary("prometheus")
PROMTOOL = find_binary("promtool")


class PrometheusError(ServiceError):
    """Prometheus did not start, died, or its API answered with an error."""


class PromtoolError(RuntimeError):
    """promtool exited non-zero; the message holds the end of its output."""


def binaries_available() -> bool:
    """True when both the prometheus and the promtool binaries are executable."""
    return executable(PROMETHEUS) and executable(PROMTOOL)


# ----------------------------------------------------------------------------
# The HTTP API (Prometheus' own, which VictoriaMetrics answers too)
# ----------------------------------------------------------------------------
class PrometheusAPI:
    """Prometheus' query API on :attr:`url`; failures raise :attr:`error`."""

    error: ClassVar[type[ServiceError]] = PrometheusError
    request_timeout: float = 60.0

    @property
    def url(self) -> str:
        raise NotImplementedError

    def api(self, path: str, params: Mapping[str, Any] | None = None,
            post: bool = False, timeout: float | None = None) -> Any:
        """``data`` of a JSON API answer (``/api/v1/...``); :attr:`error` with the
        server's error text when its status is not ``success``."""
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
            with OPENER.open(req, timeout=timeout or self.request_timeout) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                err = json.loads(text)
                text = f"{err.get('errorType')}: {err.get('error')}"
            except ValueError:
                pass
            raise self.error(f"{path} {dict(params or {})}: HTTP {e.code}: {text}") from e
        if body.get("status") != "success":
            raise self.error(f"{path} {dict(params or {})}: {body}")
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
            raise self.error(f"{expr!r}: expected one sample, got {len(result)}")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float,
                    timeout: float | None = None) -> list[dict[str, Any]]:
        """Range query: the result list (``values`` per series)."""
        data = self.api("/api/v1/query_range",
                        {"query": expr, "start": start, "end": end, "step": step},
                        post=True, timeout=timeout)
        return list(data["result"])

    def metrics_text(self) -> str:
        """The server's own ``/metrics`` (text format)."""
        with OPENER.open(self.url + "/metrics", timeout=self.request_timeout) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of ``name`` in the server's own ``/metrics`` whose labels include
        ``labels``."""
        return [(lbl, v) for lbl, v in parse_samples(self.metrics_text(), name)
                if all(lbl.get(k) == want for k, want in labels.items())]


# ----------------------------------------------------------------------------
# Prometheus
# ----------------------------------------------------------------------------
class Prometheus(Service, PrometheusAPI):
    """``prometheus`` on ``data_dir``, listening on ``127.0.0.1:port``.

    The configuration is ``config`` (the YAML text of a whole configuration file, or a
    mapping, written as JSON) or, when it is ``None``, one made of ``rule_files``
    (absolute paths are safest), ``evaluation_interval`` and no scrape jobs. It is
    written to ``workdir/prometheus-<port>.yml``, the server's output to
    ``workdir/prometheus-<port>.log``. ``workdir`` defaults to the parent of
    ``data_dir``; ``data_dir`` to ``workdir/data`` (both ``None``: a temporary folder,
    removed at stop). ``flags`` are appended to the command line; unless one of them
    sets it, ``--storage.tsdb.retention.time`` is ``retention`` (60d: backfilled 30-day
    data is not deleted at once, as with the default 15d) and ``--web.external-url`` its
    own URL (the generator URL of its alerts).

    :meth:`start` returns once ``/-/ready`` answers 200, within ``ready_timeout``
    seconds, or raises :class:`PrometheusError` (with the end of the log). :meth:`stop`
    sends SIGTERM to the pid it started and SIGKILL if it has not exited within its
    timeout; leaving the ``with`` block stops it.
    """

    name = "prometheus"
    ready_path = "/-/ready"
    error = PrometheusError

    def __init__(self, data_dir: Path | None = None, *,
                 config: str | Mapping[str, Any] | None = None,
                 rule_files: Sequence[Path] = (), evaluation_interval: str = "1m",
                 flags: Sequence[str] = (), retention: str = "60d",
                 workdir: Path | None = None, port: int | None = None,
                 binary: str = PROMETHEUS, ready_timeout: float = 60.0,
                 request_timeout: float = 60.0, stop_timeout: float = 30.0) -> None:
        if config is not None and rule_files:
            raise ValueError("give either config (a whole configuration) or rule_files")
        if workdir is None and data_dir is not None:
            workdir = Path(data_dir).parent
        super().__init__(binary, workdir=workdir, port=port, flags=flags,
                         ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        if config is None:
            config = _minimal_config(rule_files, evaluation_interval)
        self.config_text = config_text(config)
        self.retention = retention
        self.request_timeout = request_timeout

    @property
    def data_dir(self) -> Path:
        return self._data_dir if self._data_dir is not None else self.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.file(".yml")

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text)

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (the port must be known)."""
        cmd = [self.binary, f"--config.file={self.config_file}",
               f"--storage.tsdb.path={self.data_dir}",
               f"--web.listen-address=127.0.0.1:{self.port}"]
        if not any(f.startswith("--storage.tsdb.retention.time") for f in self.flags):
            cmd.append(f"--storage.tsdb.retention.time={self.retention}")
        if not any(f.startswith("--web.external-url") for f in self.flags):
            cmd.append(f"--web.external-url={self.url}")  # alerts link back to it
        return cmd + self.flags

    def rule_groups(self) -> list[dict[str, Any]]:
        """``/api/v1/rules`` groups: ``name``, ``file``, ``evaluationTime``,
        ``lastEvaluation`` and every rule's ``health``, ``lastError``,
        ``evaluationTime``."""
        return list(self.api("/api/v1/rules")["groups"])

    def targets(self) -> dict[str, Any]:
        """``/api/v1/targets``: ``activeTargets`` and ``droppedTargets``."""
        return dict(self.api("/api/v1/targets"))


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
class Promtool(Tool):
    """``promtool`` commands, run to their end (:class:`~infrascope_core.service.Tool`)."""

    def __init__(self, binary: str = PROMTOOL, timeout: float = 240.0) -> None:
        super().__init__(binary, timeout)

    def check_metrics(self, exposition: str | bytes) -> subprocess.CompletedProcess[str]:
        """``promtool check metrics`` of a text exposition."""
        return self.run("check", "metrics", input=exposition)

    def check_rules(self, *files: str | Path, lint: str | None = None
                    ) -> subprocess.CompletedProcess[str]:
        """``promtool check rules [--lint=LINT] FILES...``."""
        flags = [f"--lint={lint}"] if lint is not None else []
        return self.run("check", "rules", *flags, *files)

    def check_config(self, file: str | Path) -> subprocess.CompletedProcess[str]:
        """``promtool check config FILE``."""
        return self.run("check", "config", file)

    def test_rules(self, *files: str | Path, cwd: Path | None = None
                   ) -> subprocess.CompletedProcess[str]:
        """``promtool test rules FILES...``."""
        return self.run("test", "rules", *files, cwd=cwd)


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


def block_stats(block: Path) -> dict[str, Any]:
    """``meta.json`` of a block: ``minTime``, ``maxTime`` (ms) and ``stats``."""
    return dict(json.loads((Path(block) / "meta.json").read_text()))
