"""``infrascope-exporter backfill``: Hetzner's kept Cloud metrics as OpenMetrics for promtool.

    infrascope-exporter backfill --days 30 --output FILE [--step 300] [--end-offset 3h]
        [--end TIME] [--dry-run] [--job hetzner] [--instance HOST:PORT]
        [--label NAME=VALUE ...] [EXPORTER FLAGS]

Loading the file into Prometheus — blocks, the recording rules over them — is
``infrascope history load``'s job (it runs this command as its first step).

The exporter's own configuration (``--config.file``, environment, every flag of
``infrascope-exporter``) says which projects and Robot account to read; the
requests go through the same paced :class:`~.api.CloudClient`, inside the
same request budget (``--request-budget``), and are counted the same way.

What is written, for ``promtool tsdb create-blocks-from openmetrics``:

- The Cloud metrics series exactly as the live exposition names and labels
  them (``hetzner_server_cpu_cores_used``, ``hetzner_server_disk_iops``, ...).
  The range ``(start, end]`` is cut into buckets ``[ts, ts+step)``; each
  bucket's average is written at ``ts+step`` — as the live gauge at time ``t``
  shows the average of the window that ended before ``t`` — so
  ``avg_over_time`` over the backfilled range is the exact workload mean.
- At every sample timestamp, the inventory series recording rules join
  against (``hetzner_server_info``, ``_labels``, ``_cpu_cores``,
  ``_memory_bytes``, ``_monthly_cost_euros``, ``_hourly_cost_euros``) for
  Cloud and dedicated servers, taken verbatim from one rendering of the live
  exposition: identical names, labels and values.
- ``job``/``instance`` (and ``--label`` pairs): Prometheus attaches the
  target's labels when it scrapes the exporter, so they are part of the live
  series' identity; the backfilled series carry the same ones.

The names, labels and scale of the Cloud metrics series are not repeated
here: they are the live exposition's own table (``families.CLOUD_METRIC_SERIES``,
names and help from the series contract), so both can never drift.

The file is streamed (one part file per family, concatenated at the end, one
server in memory at a time), written as ``FILE.tmp`` and renamed only when
complete. Exit codes: 0 done, 2 bad configuration or options, 1 API or I/O
failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from infrascope_core import contract, logfmt

from .api import ApiError, Stopped
from .config import CloudProject, Config, ConfigError, build_parser, load_config, parse_duration
from .exporter import Exporter
from .families import CLOUD_METRIC_SERIES, help_text
from .model import METRIC_SERIES, CloudServer

PROG = "infrascope-exporter backfill"
log = logging.getLogger("infrascope_exporter.backfill")

RETENTION_SECONDS = 30 * 86_400  # Hetzner keeps 30 days of metrics
RETENTION_MARGIN = 60.0  # ask for a minute less than that
MAX_STEP = 300  # Prometheus' 5-minute lookback must always find a sample
MIN_END_OFFSET = 3 * 3600.0  # stay out of Prometheus' head block
DEFAULT_POINTS_PER_REQUEST = 500  # Hetzner's point cap per metrics response
METRICS_ENDPOINT = "/servers/{id}/metrics"
RATE_LIMIT_RETRIES = 3

INVENTORY_FAMILIES = (
    "hetzner_server_info",
    "hetzner_server_labels",
    "hetzner_server_cpu_cores",
    "hetzner_server_memory_bytes",
    "hetzner_server_monthly_cost_euros",
    "hetzner_server_hourly_cost_euros",
)


class BackfillError(Exception):
    """A runtime failure of the backfill (exit code 1)."""


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (family, label pairs)
Points = list[tuple[float, float]]  # (timestamp seconds, value), increasing


# ----------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    output: Path
    days: float = 30.0
    step: int = 300
    end_offset: float = MIN_END_OFFSET
    points_per_request: int = DEFAULT_POINTS_PER_REQUEST
    target_labels: Mapping[str, str] = field(default_factory=dict)
    end: float | None = None  # the range's end (Unix seconds); None: now - end_offset
    dry_run: bool = False


def build_backfill_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, add_help=False, allow_abbrev=False,
        description="Write the Cloud metrics Hetzner keeps (30 days) and the inventory series "
                    "as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`. "
                    "Every exporter flag (--config.file, ...) is accepted too. Loading it "
                    "into Prometheus, recording rules included: `infrascope history load`.")
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument("--output", "-o", default=None,
                        help="file to write (written as FILE.tmp, renamed when complete)")
    parser.add_argument("--days", default="30",
                        help="days back from the end (Hetzner keeps 30; default 30)")
    parser.add_argument("--step", default="300",
                        help="sample interval, at most 300s so Prometheus' 5-minute lookback "
                             "never sees a gap (default 300s)")
    parser.add_argument("--end-offset", default="3h",
                        help="end this long before now, at least 3h: Prometheus' head block "
                             "must not be overlapped (default 3h)")
    parser.add_argument("--end", default=None,
                        help="end of the range (RFC 3339 or Unix seconds), at least "
                             "--end-offset before now (default: now minus --end-offset)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read the inventory (a few requests), print the plan — servers, "
                             "metrics requests, time within the request budget — and stop")
    parser.add_argument("--points-per-request", default=str(DEFAULT_POINTS_PER_REQUEST),
                        help="buckets per metrics request (Hetzner's point cap, default 500)")
    parser.add_argument("--job", default="hetzner",
                        help="job label Prometheus gives the exporter's series (the scrape "
                             "job_name; default hetzner; empty: none)")
    parser.add_argument("--instance", default=None,
                        help="instance label Prometheus gives the exporter's series (the "
                             "target, e.g. exporter:8790)")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                        help="another target label to add to every series (repeatable)")
    return parser


def parse_options(args: argparse.Namespace) -> Options:
    if not args.output:
        raise ConfigError("--output: required (the OpenMetrics file to write)")
    try:
        days = float(args.days)
    except ValueError as exc:
        raise ConfigError(f"--days: {args.days!r} is not a number") from exc
    if not days > 0 or not math.isfinite(days):
        raise ConfigError("--days: must be positive")
    step_f = parse_duration(args.step, "--step")
    if step_f != int(step_f):
        raise ConfigError("--step: must be a whole number of seconds")
    step = int(step_f)
    if step > MAX_STEP:
        raise ConfigError(f"--step: {step}s is more than {MAX_STEP}s — Prometheus' 5-minute "
                          "lookback would see gaps between samples")
    end_offset = parse_duration(args.end_offset, "--end-offset")
    if end_offset < MIN_END_OFFSET:
        raise ConfigError("--end-offset: must be at least 3h (Prometheus' head block holds the "
                          "last ~3 hours; backfilled blocks must not overlap it)")
    try:
        ppr = int(args.points_per_request)
    except ValueError as exc:
        raise ConfigError(f"--points-per-request: {args.points_per_request!r} is not an "
                          "integer") from exc
    if ppr < 1:
        raise ConfigError("--points-per-request: must be at least 1")
    labels: dict[str, str] = {}
    if args.job:
        labels["job"] = args.job
    if args.instance:
        labels["instance"] = args.instance
    for pair in args.label:
        name, sep, value = pair.partition("=")
        if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit() \
                or name.startswith("__"):
            raise ConfigError(f"--label: {pair!r} is not NAME=VALUE with a valid label name")
        labels[name] = value
    end = None
    if args.end:
        try:
            end = float(args.end)
        except ValueError:
            try:
                end = datetime.fromisoformat(args.end.replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise ConfigError(f"--end: {args.end!r} is neither RFC 3339 nor Unix "
                                  "seconds") from exc
    return Options(output=Path(args.output), days=days, step=step, end_offset=end_offset,
                   points_per_request=ppr, target_labels=labels, end=end,
                   dry_run=args.dry_run)


# ----------------------------------------------------------------------------
# OpenMetrics text
# ----------------------------------------------------------------------------
def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + "}"


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def format_timestamp(ts: float) -> str:
    """Seconds, as OpenMetrics wants them (integers without a fraction)."""
    return str(int(ts)) if float(ts).is_integer() else repr(float(ts))


class OpenMetricsWriter:
    """Families streamed to one part file each; :meth:`finish` concatenates them.

    Each call writes one whole series (all its samples, increasing timestamps),
    so series are contiguous and families are not interleaved in the result.

    Resumable: :meth:`checkpoint` records, in ``journal.json`` beside the parts, that a
    server is complete and how long every part file was then; :meth:`resume` truncates
    the parts to the last checkpoint and returns the servers done, so a run that was
    interrupted goes on with the servers left (same range, step and labels only).
    """

    JOURNAL = "journal.json"

    def __init__(self, parts_dir: Path) -> None:
        self.parts_dir = parts_dir
        self.lock = threading.Lock()
        self.help: dict[str, str] = {}
        self.parts: dict[str, IO[str]] = {}
        self.samples: dict[str, int] = {}
        self.series_count = 0
        self.min_ts: float | None = None
        self.max_ts: float | None = None
        self.identity: dict[str, Any] = {}
        self.done: dict[str, int] = {}  # server key -> metrics requests it took
        self.server_lock = threading.Lock()

    def _part_path(self, name: str) -> Path:
        return self.parts_dir / f"{name}.om"

    def resume(self, identity: Mapping[str, Any]) -> dict[str, int]:
        """Servers already written by an interrupted run of the same ``identity`` (range
        end, step, labels), with their request counts; parts cut back to that point.
        Anything else in the folder is discarded."""
        self.identity = dict(identity)
        journal = self.parts_dir / self.JOURNAL
        try:
            state = json.loads(journal.read_text(encoding="utf-8"))
            if state.get("identity") != self.identity:
                raise ValueError("another range, step or labels")
            sizes = {str(k): int(v) for k, v in state["sizes"].items()}
            done = {str(k): int(v) for k, v in state["done"].items()}
            for path in self.parts_dir.glob("*.om"):
                size = sizes.get(path.stem, 0)
                if size:
                    with open(path, "r+b") as fh:
                        fh.truncate(size)
                else:
                    path.unlink()
            for name, size in sizes.items():
                if size and not self._part_path(name).is_file():
                    raise ValueError(f"part {name} is missing")
            self.samples = {str(k): int(v) for k, v in state["samples"].items()}
            self.series_count = int(state["series"])
            self.min_ts, self.max_ts = state["min_ts"], state["max_ts"]
            self.done = done
        except (OSError, ValueError, KeyError, TypeError):
            for path in self.parts_dir.iterdir():
                path.unlink()
            self.done = {}
        return dict(self.done)

    def checkpoint(self, server: str, requests: int) -> None:
        """``server`` is complete: every part flushed, the journal replaced atomically."""
        with self.lock:
            for part in self.parts.values():
                part.flush()
            self.done[server] = requests
            state = {"identity": self.identity, "done": self.done,
                     "sizes": {n: os.path.getsize(self._part_path(n)) for n in self.parts},
                     "samples": self.samples, "series": self.series_count,
                     "min_ts": self.min_ts, "max_ts": self.max_ts}
            tmp = self.parts_dir / (self.JOURNAL + ".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.parts_dir / self.JOURNAL)

    def declare(self, name: str, help_text: str) -> None:
        with self.lock:
            if name not in self.help:
                self.help[name] = help_text

    def _part(self, name: str) -> IO[str]:
        part = self.parts.get(name)
        if part is None:
            if name not in self.help:
                raise AssertionError(f"family {name} was not declared")
            part = open(self._part_path(name), "a", encoding="utf-8",  # noqa: SIM115
                        buffering=1 << 20)
            self.parts[name] = part
            self.samples.setdefault(name, 0)
        return part

    def server(self) -> threading.Lock:
        """Held while one server's series are written, so that a checkpoint never
        records half a server."""
        return self.server_lock

    def series(self, name: str, labels: Mapping[str, str],
               points: Sequence[tuple[float, float]]) -> None:
        """One series: ``points`` are (timestamp seconds, value), strictly increasing."""
        if not points:
            return
        prefix = name + format_labels(labels) + " "
        text = "".join(f"{prefix}{format_value(v)} {format_timestamp(t)}\n" for t, v in points)
        self._write(name, text, len(points), points[0][0], points[-1][0])

    def constant_series(self, name: str, labels: Mapping[str, str], value: float,
                        timestamps: Sequence[int]) -> None:
        """One series with the same value at every timestamp (inventory)."""
        if not timestamps:
            return
        prefix = f"{name}{format_labels(labels)} {format_value(value)} "
        text = "".join(f"{prefix}{t}\n" for t in timestamps)
        self._write(name, text, len(timestamps), timestamps[0], timestamps[-1])

    def _write(self, name: str, text: str, n: int, first: float, last: float) -> None:
        with self.lock:
            self._part(name).write(text)
            self.samples[name] += n
            self.series_count += 1
            self.min_ts = first if self.min_ts is None else min(self.min_ts, first)
            self.max_ts = last if self.max_ts is None else max(self.max_ts, last)

    @property
    def sample_count(self) -> int:
        return sum(self.samples.values())

    def close(self) -> None:
        for part in self.parts.values():
            part.close()

    def finish(self, target: Path) -> None:
        """Write the complete file to ``target``: families in declaration order, ``# EOF``."""
        self.close()
        with open(target, "w", encoding="utf-8", buffering=1 << 20) as out:
            for name, help_text in self.help.items():
                path = self._part_path(name)
                if not path.is_file() or not path.stat().st_size:
                    continue  # a family without samples is left out
                out.write(f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} gauge\n")
                with open(path, encoding="utf-8") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.unlink(path)  # keep the disk peak near one copy of the data
            out.write("# EOF\n")
            out.flush()
            os.fsync(out.fileno())


# ----------------------------------------------------------------------------
# Series templates from the live exposition
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricTemplate:
    """Where one Hetzner metrics series goes: family, labels (with the probe's id), scale."""

    family: str
    help: str
    labels: tuple[tuple[str, str], ...]
    divisor: float | None
    factor: float

    def value(self, raw: float) -> float:
        return raw / self.divisor if self.divisor is not None else raw * self.factor

    def labels_for(self, server_id: int) -> dict[str, str]:
        return {k: (str(server_id) if k == "server_id" else v) for k, v in self.labels}


def metric_templates() -> dict[str, list[MetricTemplate]]:
    """Per Hetzner metrics series, where the live exposition puts it (its family table)."""
    by_name = {s.hetzner: s for s in CLOUD_METRIC_SERIES}
    templates: dict[str, list[MetricTemplate]] = {}
    for name in METRIC_SERIES:
        series = by_name[name]
        family = contract.family(series.family)
        labels = (("source", "cloud"), ("server_id", ""), *series.labels)
        factor = 1.0 if series.divisor is None else 1.0 / series.divisor
        templates[name] = [MetricTemplate(family.name, help_text(family), labels,
                                          series.divisor, factor)]
    return templates


@dataclass(frozen=True)
class InventorySeries:
    family: str
    labels: dict[str, str]
    value: float


def inventory_from_exposition(text: str) -> tuple[dict[str, str],
                                                  dict[tuple[str, str], list[InventorySeries]]]:
    """HELP per inventory family, and every inventory sample keyed by (source, server_id)."""
    helps: dict[str, str] = {}
    by_server: dict[tuple[str, str], list[InventorySeries]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in INVENTORY_FAMILIES:
            continue
        helps[family.name] = family.documentation
        for sample in family.samples:
            key = (sample.labels.get("source", ""), sample.labels.get("server_id", ""))
            by_server.setdefault(key, []).append(
                InventorySeries(sample.name, dict(sample.labels), sample.value))
    return helps, by_server


# ----------------------------------------------------------------------------
# Time grid and metrics chunks
# ----------------------------------------------------------------------------
def floor_to(ts: float, step: int) -> int:
    return int(math.floor(ts / step)) * step


def ceil_to(ts: float, step: int) -> int:
    return int(math.ceil(ts / step)) * step


def retention_floor(now: float, step: int) -> int:
    """The earliest bucket start Hetzner still has, on the step grid."""
    return ceil_to(now - RETENTION_SECONDS + RETENTION_MARGIN, step)


def plan_range(now: float, options: Options) -> tuple[int, int]:
    """(start, end) on the step grid: buckets [start, end) → samples at (start, end]."""
    step = options.step
    end = floor_to(now - options.end_offset, step)
    if options.end is not None:
        if options.end > now - options.end_offset:
            raise ConfigError(f"--end: {iso(options.end)} is less than --end-offset "
                              f"({options.end_offset:g}s) before now: Prometheus' head block "
                              "must not be overlapped")
        end = floor_to(options.end, step)
    start = max(ceil_to(end - options.days * 86_400, step), retention_floor(now, step))
    if start >= end:
        raise ConfigError("--days: the range before --end-offset is empty")
    return start, end


def server_first_bucket(start: int, server: CloudServer, step: int) -> int:
    """No request for the time before the server existed."""
    return max(start, floor_to(server.created, step))


def chunks(first: int, end: int, step: int, points: int) -> list[tuple[int, int]]:
    out = []
    c = first
    while c < end:
        out.append((c, min(c + points * step, end)))
        c = out[-1][1]
    return out


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_metrics_chunk(body: Any, server_id: int, step: int, chunk_end: int,
                        points_per_request: int) -> dict[str, list[tuple[float, float]]]:
    """Points of one response as (sample time = bucket start + step, value)."""
    what = f"Cloud metrics of server {server_id}"
    m = body.get("metrics") if isinstance(body, Mapping) else None
    if not isinstance(m, Mapping) or not isinstance(m.get("time_series"), Mapping):
        raise ApiError("malformed", f"{what}: no metrics.time_series in the response")
    got: Any = m.get("step")
    try:
        got_f = float(got)
    except (TypeError, ValueError) as exc:
        raise ApiError("malformed", f"{what}: response step {got!r} is not a number") from exc
    if got_f != step:
        raise BackfillError(
            f"{what}: asked for step={step}s with {points_per_request} points per request, "
            f"the API answered step={got}s — its point cap is lower than "
            f"{points_per_request}; rerun with a smaller --points-per-request")
    out: dict[str, list[tuple[float, float]]] = {}
    for name, series in m["time_series"].items():
        values = series.get("values") if isinstance(series, Mapping) else None
        if not isinstance(values, list):
            raise ApiError("malformed", f"{what}: series {name} has no values list")
        points: list[tuple[float, float]] = []
        for point in values:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ApiError("malformed", f"{what}: series {name} has a malformed point")
            try:
                ts, value = float(point[0]), float(point[1])
            except (TypeError, ValueError) as exc:
                raise ApiError("malformed", f"{what}: series {name} has a non-numeric "
                                            "point") from exc
            if math.isfinite(value):
                points.append((min(ts + step, float(chunk_end)), value))
        points.sort()
        out[str(name)] = points
    return out


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------
@dataclass
class Result:
    output: Path
    start: int
    end: int
    step: int
    servers_cloud: int
    servers_dedicated: int
    series: int
    samples: int
    metric_requests: int
    requests: int
    seconds: float
    exporter: Exporter | None = None
    planned_only: bool = False  # --dry-run: metric_requests are planned, nothing written
    estimated_minutes: float = 0.0
    budget_per_hour: int = 0


class Progress:
    def __init__(self, exporter: Exporter, total_servers: int, planned_requests: int,
                 interval: float = 10.0) -> None:
        self.exporter = exporter
        self.total = total_servers
        self.planned = planned_requests
        self.interval = interval
        self.done = 0
        self.metric_requests = 0
        self.lock = threading.Lock()
        self.last_log = time.monotonic()
        self.started = time.monotonic()

    def requests(self) -> int:
        return self.exporter.health.requests_made("cloud")

    def server_done(self, requests: int) -> None:
        with self.lock:
            self.done += 1
            self.metric_requests += requests
            now = time.monotonic()
            if self.done < self.total and now - self.last_log < self.interval:
                return
            self.last_log = now
            elapsed = now - self.started
            left = self.planned - self.metric_requests
            rate = self.metric_requests / elapsed if elapsed > 0 else 0.0
            log.info("backfill progress", extra={
                "event": "backfill_progress", "servers_done": self.done,
                "servers_total": self.total, "metric_requests": self.metric_requests,
                "metric_requests_planned": self.planned, "requests_used": self.requests(),
                "eta_s": round(left / rate) if rate > 0 else "unknown"})


def _fetch_server(exporter: Exporter, project: CloudProject, server: CloudServer,
                  start: int, end: int, options: Options,
                  templates: Mapping[str, list[MetricTemplate]],
                  clock: Callable[[], float]) -> tuple[int, int, dict[SeriesKey, Points]]:
    """Every chunk of one server, in time order; retried from scratch after a 429 pause.

    Returns (first bucket start, requests made, points per series).
    """
    client = exporter.clients[project.name]
    step = options.step
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        # Hetzner's 30 days move on while a long backfill runs: clip per server.
        first = max(server_first_bucket(start, server, step), retention_floor(clock(), step))
        series: dict[SeriesKey, Points] = {}
        requests = 0
        try:
            for c0, c1 in chunks(first, end, step, options.points_per_request):
                body = client.get(f"/servers/{server.id}/metrics", METRICS_ENDPOINT, {
                    "type": "cpu,disk,network", "start": iso(c0), "end": iso(c1),
                    "step": step})
                requests += 1
                parsed = parse_metrics_chunk(body, server.id, step, c1,
                                             options.points_per_request)
                for name, points in parsed.items():
                    for template in templates.get(name, ()):
                        labels = template.labels_for(server.id)
                        key = (template.family, tuple(labels.items()))
                        out = series.setdefault(key, [])
                        for t, raw in points:
                            if out and t <= out[-1][0]:
                                continue  # keep timestamps strictly increasing per series
                            out.append((t, template.value(raw)))
            return first, requests, series
        except ApiError as exc:
            if exc.kind != "rate_limited" or attempt == RATE_LIMIT_RETRIES:
                raise
            wait = min(3600.0, max(1.0, (exc.retry_at or clock() + 60.0) - clock() + 1.0))
            log.warning("rate limited, waiting for RateLimit-Reset", extra={
                "event": "backfill_rate_limited", "project": project.name,
                "server_id": server.id, "wait_s": round(wait)})
            if exporter.stop_event.wait(wait):
                raise Stopped() from exc
    raise AssertionError("unreachable")


def run(config: Config, options: Options, *, clock: Callable[[], float] = time.time,
        keep_exporter: bool = False) -> Result:
    """Refresh the inventory, fetch every Cloud server's metrics, write ``options.output``."""
    started = time.monotonic()
    output = options.output
    if output.is_dir():
        raise ConfigError(f"--output: {output} is a directory")
    if not output.parent.is_dir() and not options.dry_run:
        raise ConfigError(f"--output: directory {output.parent} does not exist")
    tmp = output.with_name(output.name + ".tmp")
    # Parts next to the output (same file system, and /tmp may be too small), kept when a
    # run is interrupted so that the next one resumes. A dry run writes nothing: its
    # (empty) parts folder is a temporary one.
    if options.dry_run:
        parts_dir = Path(tempfile.mkdtemp(prefix=f".{output.name}.parts-"))
    else:
        parts_dir = output.with_name(f".{output.name}.parts")
        parts_dir.mkdir(exist_ok=True)
    complete = False
    writer = OpenMetricsWriter(parts_dir)
    exporter = Exporter(config, clock=clock)
    try:
        # 1. Inventory, pricing and Robot, exactly as the live exporter gets them.
        for project in config.projects:
            exporter.refresh_pricing(project)
            exporter.refresh_inventory(project)
        if exporter.robot is not None:
            if config.dedicated_prices.default_from_catalogue:
                exporter.refresh_robot_products()
            exporter.refresh_robot()
        exporter.render()
        helps, inventory = inventory_from_exposition(exporter.rendered.decode())

        # 2. The time grid and the plan.
        step = options.step
        start, end = plan_range(clock(), options)
        if start > end - options.days * 86_400 + step:
            log.info("range clipped to the 30 days Hetzner keeps", extra={
                "event": "backfill_clipped", "days_asked": options.days,
                "days": round((end - start) / 86_400, 3)})
        servers = [(p, s) for p in config.projects
                   for s in sorted(exporter.projects[p.name].servers, key=lambda s: s.id)]
        per_project = {p.name: 0 for p in config.projects}
        for p, s in servers:
            per_project[p.name] += len(chunks(server_first_bucket(start, s, step), end, step,
                                              options.points_per_request))
        planned = sum(per_project.values())
        budget = sum(exporter.clients[p.name].budget_per_hour for p in config.projects)
        # Projects run in parallel; each pacer lets a burst go at once, then its refill rate.
        estimate_h = max((max(0.0, n - (c.budget_per_hour - c.sustainable_per_hour))
                          / c.sustainable_per_hour
                          for name, n in per_project.items()
                          for c in [exporter.clients[name]] if c.sustainable_per_hour > 0),
                         default=0.0)
        dedicated_keys = sorted((k for k in inventory if k[0] == "dedicated"),
                                key=lambda k: int(k[1]) if k[1].isdigit() else 0)
        log.info("backfill plan", extra={
            "event": "backfill_plan", "start": iso(start), "end": iso(end), "step_s": step,
            "cloud_servers": len(servers), "dedicated_servers": len(dedicated_keys),
            "metric_requests": planned, "budget_per_hour": round(budget),
            "estimated_minutes": round(estimate_h * 60, 1)})
        if options.dry_run:
            return Result(output=output, start=start, end=end, step=step,
                          servers_cloud=len(servers), servers_dedicated=len(dedicated_keys),
                          series=0, samples=0, metric_requests=planned, requests=0,
                          seconds=time.monotonic() - started, planned_only=True,
                          estimated_minutes=round(estimate_h * 60, 1),
                          budget_per_hour=round(budget))
        if "instance" not in options.target_labels:
            log.warning("no --instance given: Prometheus gives scraped series an instance "
                        "label, so backfilled series without it are different series; pass "
                        "--instance as Prometheus sees the exporter target",
                        extra={"event": "backfill_no_instance"})

        # 3. Family order: metrics families, then inventory families.
        templates = metric_templates() if servers else {}
        for name in METRIC_SERIES:
            for t in templates.get(name, ()):
                writer.declare(t.family, t.help)
        for family in INVENTORY_FAMILIES:
            if family in helps:
                writer.declare(family, helps[family])
        extra = dict(options.target_labels)

        def write_inventory(key: tuple[str, str], timestamps: Sequence[int]) -> None:
            for inv in sorted(inventory.get(key, ()),
                              key=lambda i: INVENTORY_FAMILIES.index(i.family)):
                writer.constant_series(inv.family, {**inv.labels, **extra}, inv.value,
                                       timestamps)

        progress = Progress(exporter, len(servers) + len(dedicated_keys), planned)
        done = writer.resume({"end": end, "step": step, "labels": extra,
                              "points_per_request": options.points_per_request})
        if done:
            log.info("resuming an interrupted backfill", extra={
                "event": "backfill_resumed", "servers_done": len(done),
                "parts": str(parts_dir)})

        # 4. Cloud servers: one worker per project (each has its own budget).
        def do_project(project: CloudProject) -> None:
            for p, server in servers:
                if p.name != project.name:
                    continue
                key = f"cloud/{server.id}"
                if key in done:
                    progress.server_done(done[key])
                    continue
                if exporter.stop_event.is_set():
                    raise Stopped()
                first, requests, series = _fetch_server(exporter, project, server, start, end,
                                                        options, templates, clock)
                with writer.server():
                    for (family, labels), points in series.items():
                        writer.series(family, {**dict(labels), **extra}, points)
                    # Inventory at every bucket end from the first bucket it existed in.
                    write_inventory(("cloud", str(server.id)),
                                    range(first + step, end + 1, step))
                    writer.checkpoint(key, requests)
                progress.server_done(requests)

        with ThreadPoolExecutor(max_workers=max(1, len(config.projects)),
                                thread_name_prefix="backfill") as pool:
            futures = [pool.submit(do_project, p) for p in config.projects]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                if not all(f.done() for f in futures):  # a failure or an interrupt:
                    exporter.stop_event.set()  # the other projects stop at their next server
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                real = [e for e in errors if not isinstance(e, Stopped)]
                raise (real or errors)[0]

        # 5. Dedicated servers: inventory only (Robot has no metrics), on the whole grid.
        grid = range(start + step, end + 1, step)
        for key in dedicated_keys:
            write_inventory(key, grid)
            progress.server_done(0)

        # 6. The complete file, atomically.
        writer.finish(tmp)
        os.replace(tmp, output)
        complete = True
        requests = progress.requests()
        return Result(output=output, start=start, end=end, step=step,
                      servers_cloud=len(servers), servers_dedicated=len(dedicated_keys),
                      series=writer.series_count, samples=writer.sample_count,
                      metric_requests=progress.metric_requests, requests=requests,
                      seconds=time.monotonic() - started,
                      exporter=exporter if keep_exporter else None)
    finally:
        writer.close()
        if complete or options.dry_run or not writer.done:
            shutil.rmtree(parts_dir, ignore_errors=True)
        else:
            log.warning("backfill stopped: the servers done are kept; the same command "
                        "resumes", extra={"event": "backfill_kept",
                                          "servers_done": len(writer.done),
                                          "parts": str(parts_dir)})
        if tmp.exists():
            tmp.unlink()
        exporter.stop()


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------
def next_steps(result: Result) -> str:
    start, end = iso(result.start), iso(result.end)
    servers = (f"{result.servers_cloud} Cloud and {result.servers_dedicated} dedicated "
               "servers")
    if result.planned_only:
        return (f"{PROG}: plan: {start} .. {end}, step {result.step}s, {servers}: "
                f"{result.metric_requests} metrics requests within a budget of "
                f"{result.budget_per_hour} requests an hour, about "
                f"{result.estimated_minutes:g} minutes; nothing written (--dry-run)")
    return "\n".join([
        f"{PROG}: wrote {result.output}: {result.series} series, {result.samples} samples, "
        f"{start} .. {end}, step {result.step}s ({servers}, {result.requests} Cloud API "
        f"requests, {result.seconds:.1f}s)",
        "Load it into Prometheus, with the recording rules over it: `infrascope history "
        f"load --no-backfill --openmetrics {shlex.quote(str(result.output))} --end {end} ...` "
        "(or let `infrascope history load` run this backfill itself; "
        "exporter/docs/backfill.md)",
    ])


def _secrets(config: Config) -> list[str]:
    secrets = [p.token.reveal() for p in config.projects]
    if config.robot:
        secrets.append(config.robot.password.reveal())
    return [s for s in secrets if s]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_backfill_parser()
    args, rest = parser.parse_known_args(args_list)
    if args.help:
        parser.print_help()
        print("\nexporter configuration flags:")
        build_parser(PROG).print_help()
        return 0
    try:
        options = parse_options(args)
        config = load_config(rest)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    secrets = _secrets(config)
    logfmt.setup("infrascope_exporter", config.log_level, secrets)
    try:
        result = run(config, options)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {_scrub(str(exc), secrets)}", file=sys.stderr)
        return 2
    except (ApiError, BackfillError) as exc:
        print(f"{PROG}: failed, nothing written: {_scrub(str(exc), secrets)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: failed, nothing written: {exc.strerror or exc}: "
              f"{exc.filename or options.output}", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt):
        print(f"{PROG}: interrupted, nothing written", file=sys.stderr)
        return 130
    print(next_steps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
