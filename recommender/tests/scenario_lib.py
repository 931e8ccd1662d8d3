"""Scenario harness: a real Prometheus holding a fleet that the caller describes.

Used by ``test_scenario_prometheus.py`` (a crafted fleet of a dozen servers) and by
``bench/recommender_bench.py`` (a generated fleet of 10,000). Everything runs on
loopback with the real binaries (``/usr/bin/prometheus``, ``/usr/bin/promtool``)
through :mod:`infrascope_core.prometheus`, the files written by
:mod:`infrascope_core.exposition`; nothing is mocked on the recommender's side of
the HTTP API.

How a fleet gets into Prometheus:

1. **History by backfill.** The 30-day recording rules read one hourly sample per
   server and hour (``source_server_id:{cpu,memory}_utilisation:{avg1h,max1h}``,
   what the ``infrascope-utilisation-hourly`` group writes in production). The
   harness writes those four series for the last 30 days (720 hours, fewer for a
   server with little data, none for a resource without data) as OpenMetrics and
   turns the file into TSDB blocks with ``promtool tsdb create-blocks-from
   openmetrics``. Hour ``k`` (0 = newest) is stamped ``end - k * 3600`` with ``end``
   a minute before Prometheus starts, so all 720 are inside the 30-day window for
   the next hour. Values are rounded to 1e-6 before writing, so the figures
   Prometheus computes can be compared with numpy's on the very same numbers. The
   file also holds ``hetzner_server_info`` for the last four minutes with the labels
   the scrape will give it (one series), so the 30-day group's first evaluation has
   the inventory even when it comes before the first scrape (at 10,000 servers one
   evaluation takes tens of seconds).
2. **Current state by scrape.** A loopback HTTP server of the harness serves
   pre-rendered expositions (rendered once): job ``hetzner`` gets the exporter's
   inventory, cost and catalogue series with the exporter's names and labels
   (``exporter/src/infrascope_exporter/families.py``), job ``infrascope-agent``
   gets one target per server with an agent, discovered through an HTTP SD
   endpoint that gives each target ``source``, ``server_id`` and ``server_name``
   as the exporter's ``/sd`` does (``single_agent_target=True``: one target with
   every agent's series and ``honor_labels``, for fleets too big for a target
   each). Agent series: ``node_memory_MemTotal_bytes``, ``node_cpu_seconds_total``
   (one ``cpu`` per core), ``node_filesystem_{size,avail,free}_bytes`` of ``/`` and
   ``infrascope_service_info``. Sizes on the exporter's side are what the exporter's
   own parsing (``infrascope_exporter.model``) makes of the catalogue's API objects;
   on the agent's side they come from the harness's own model of the machine (an ext4
   ``/`` on a disk of decimal GB, memory in GiB: "Sizes" below), so the two meet only
   if the contract's units are right.
3. **The committed rule files** (``prometheus/rules/*.rules.yml``) are loaded from a
   temporary copy in which only the group ``interval`` is shortened (a second by
   default): same expressions, so the test need not wait four minutes for the 30-day
   group. The hourly group is left out of the copy: step 1 wrote its output.

What keeps the live rules from disturbing the backfilled history: the per-minute
ratios would otherwise mix live data into what the loader reads (``via``), and in
production the hourly group would add a 721st sample of the live hour. The
expositions therefore hold no live utilisation input: no
``hetzner_server_cpu_cores_used`` (Cloud metrics), no
``node_memory_MemAvailable_bytes``, and the CPU counters carry a fixed timestamp (the
exposition is a snapshot taken once), so every scrape repeats the same sample and
``rate()`` over them is empty. The loader's instant queries (cores of a dedicated
server) still see them for the five minutes of the lookback, longer than a test runs;
:meth:`Scenario.restamp_agents` serves a new snapshot for longer runs. The history is
exactly what the backfill wrote. The price: ``source_server_id:cpu_utilisation:ratio``
(where the loader reads ``via``, agent or Cloud API) is empty too.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from infrascope_cli.history import openmetrics_to_blocks
from infrascope_core.exposition import OpenMetricsWriter, TextExposition
from infrascope_core.prometheus import Prometheus, block_stats
from infrascope_exporter import model as exporter_model
from infrascope_sim.catalogue import (
    BACKUP_PERCENTAGE,
    LOCATIONS,
    PRIMARY_IPV4_MONTHLY,
    PRIMARY_IPV6_MONTHLY,
    ROBOT_PRODUCTS,
    SERVER_TYPES,
    VAT_RATE,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "prometheus" / "rules"
HOUR = 3600
HOURS_30D = 720
BLOCK = 54 * HOUR  # promtool --max-block-duration=72h writes 54-hour blocks
MAX_BLOCK_DURATION = "72h"  # promtool --max-block-duration: 54-hour blocks
LOOKBACK_SECONDS = 300  # Prometheus' default --query.lookback-delta
INFO_OFFSETS = (240, 120, 0)  # backfilled hetzner_server_info: seconds before the end

FloatArray = npt.NDArray[np.float64]

HOURLY_SERIES = {
    ("cpu", "avg"): "source_server_id:cpu_utilisation:avg1h",
    ("cpu", "max"): "source_server_id:cpu_utilisation:max1h",
    ("memory", "avg"): "source_server_id:memory_utilisation:avg1h",
    ("memory", "max"): "source_server_id:memory_utilisation:max1h",
    # one family, two directions: written one after the other (families are contiguous)
    ("network_in", "avg"): "source_server_id:network_bytes_per_second:avg1h",
    ("network_out", "avg"): "source_server_id:network_bytes_per_second:avg1h",
    ("network_in", "max"): "source_server_id:network_bytes_per_second:max1h",
    ("network_out", "max"): "source_server_id:network_bytes_per_second:max1h",
}
RESOURCES = ("cpu", "memory", "network_in", "network_out")
#: Extra labels of a resource's hourly series.
RESOURCE_LABELS = {"network_in": {"direction": "in"}, "network_out": {"direction": "out"}}


# ----------------------------------------------------------------------------
# Workload: hourly averages and maxima
# ----------------------------------------------------------------------------
def daily_shape(hours: int) -> FloatArray:
    """A daily cycle in [-1, 1] for ``hours`` consecutive hours (oldest first)."""
    h = np.arange(hours, dtype=np.float64)
    return np.asarray(np.sin(2 * np.pi * (h % 24) / 24), dtype=np.float64)


def hourly_matrix(levels: npt.ArrayLike, swings: npt.ArrayLike, hours: int,
                  peaks: npt.ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
    """Hourly averages and maxima, shape ``(servers, hours)``, rounded to 1e-6.

    Average of hour ``h``: ``level * (1 + swing * sin(2 pi h / 24))``; its maximum is
    25 % above the average plus half a point. Where ``peaks`` is given (not NaN) the
    maxima are capped at it and the middle hour's maximum is set to it: the month's
    highest 5-minute value is exactly ``peak``.
    """
    lv = np.asarray(levels, dtype=np.float64).reshape(-1, 1)
    sw = np.asarray(swings, dtype=np.float64).reshape(-1, 1)
    avg: FloatArray = np.round(np.clip(lv * (1 + sw * daily_shape(hours)[None, :]), 0.0, 1.0),
                               6).astype(np.float64)
    top: FloatArray = np.round(np.clip(avg * 1.25 + 0.005, 0.0, 1.0), 6).astype(np.float64)
    if peaks is not None:
        pk = np.asarray(peaks, dtype=np.float64).reshape(-1)
        rows = np.flatnonzero(~np.isnan(pk))
        if rows.size:
            if np.any(avg[rows].max(axis=1) > pk[rows]):
                raise ValueError("a peak below the hourly averages")
            top[rows] = np.minimum(top[rows], pk[rows, None])
            top[rows, hours // 2] = np.round(pk[rows], 6)
    return avg, top


@dataclass(frozen=True)
class DailyJob:
    """A job of one clock hour, ``hour``:00 to ``hour``+1:00 UTC, at ``level`` (its hourly
    average) on ``days`` of the 30 days, its busiest 5 minutes at ``peak`` (default: like
    any hour, 25 % above its average plus half a point).

    The days it runs are spread evenly over the month, counted back from the newest
    hour ``hour`` of the history: day ``i`` (0 = the newest) runs when
    ``floor((i + 0.5) * days / 30 + 0.5)`` exceeds ``floor((i - 0.5) * days / 30 + 0.5)``,
    so a job of one day runs on day 15, the middle of the month, and one of 27 days skips
    days 0, 10 and 20."""

    hour: int
    level: float
    days: int = 30
    peak: float | None = None

    def runs(self, day: int) -> bool:
        return (math.floor((day + 0.5) * self.days / 30 + 0.5)
                > math.floor((day - 0.5) * self.days / 30 + 0.5))


@dataclass(frozen=True)
class Profile:
    """One resource's 30 days: ``level`` (mean), daily ``swing``, optional ``peak``, and
    optionally a daily ``job`` (which needs the clock: :meth:`hourly` with ``end``)."""

    level: float
    swing: float = 0.2
    peak: float | None = None
    job: DailyJob | None = None

    def hourly(self, hours: int, end: int | None = None) -> tuple[FloatArray, FloatArray]:
        """``hours`` hourly averages and maxima, oldest first; the newest is stamped
        ``end`` (unix seconds), as :func:`timestamps` stamps them."""
        avg, top = hourly_matrix([self.level], [self.swing], hours,
                                 None if self.peak is None else [self.peak])
        avg, top = avg[0], top[0]
        if self.job is None:
            return avg, top
        if end is None:
            raise ValueError("a daily job needs the time of the newest hour (end)")
        job = self.job
        # A sample stamped t = H + phase holds the clock hour [H - 1h, H), as the hourly
        # rules stamp theirs: the job's samples are those whose hour before starts at
        # job.hour; day 0 is the newest of them.
        stamps = end - HOUR * np.arange(hours - 1, -1, -1, dtype=np.int64)
        starts = (stamps // HOUR - 1) * HOUR
        at = np.flatnonzero((starts // HOUR) % 24 == job.hour)[::-1]
        runs = [i for day, i in enumerate(at) if job.runs(day)]
        top_job = job.peak if job.peak is not None else min(1.0, job.level * 1.25 + 0.005)
        avg[runs] = round(job.level, 6)
        top[runs] = round(top_job, 6)
        return avg, top


@dataclass(frozen=True)
class Traffic:
    """Network throughput of 30 days, bytes/s: means ``inbound`` and ``outbound``, with a
    daily ``swing``; each hour's busiest 5 minutes are 50 % above its mean."""

    inbound: float
    outbound: float
    swing: float = 0.2

    def hourly(self, hours: int) -> dict[str, tuple[FloatArray, FloatArray]]:
        out = {}
        for res, level in (("network_in", self.inbound), ("network_out", self.outbound)):
            avg = np.round(np.maximum(level * (1 + self.swing * daily_shape(hours)), 0.0), 3)
            out[res] = (avg, np.round(avg * 1.5, 3))
        return out


#: A server's traffic when the scenario does not say: a quiet box (updates, NTP, the
#: agent's own scrapes), far below the idle rule's threshold.
QUIET = Traffic(1500.0, 2500.0)


@dataclass(frozen=True)
class Stats:
    """What the 30-day rules compute from the hourly samples."""

    avg: float
    max: float
    p95: float
    coverage: float


def stats(avg1h: FloatArray, max1h: FloatArray) -> Stats:
    """The rules pack's formulas: mean of the averages, max of the maxima, the 0.95
    quantile of the averages (Prometheus interpolates like numpy's ``linear``) and
    hours / 720 capped at 1."""
    return Stats(float(np.mean(avg1h)), float(np.max(max1h)),
                 float(np.quantile(avg1h, 0.95)), min(avg1h.size / HOURS_30D, 1.0))


# ----------------------------------------------------------------------------
# Sizes: what the exporter makes of the API, and what the machine shows its agent
# ----------------------------------------------------------------------------
# The exporter's side goes through the exporter's own parsing of the API objects
# (``infrascope_exporter.model``, with the units of ``infrascope_core.contract``). The
# agent's side is this harness's own model of the machine, written out here and not
# taken from the contract, so that ``test_scenario_disk_units.py`` compares two
# independent paths: a unit changed in the contract shows up as a mismatch.
MACHINE_BYTES_PER_DISK_GB = 10**9
"""A disk sold as N GB holds N·10^9 bytes."""
MACHINE_BYTES_PER_MEMORY_GB = 2**30
"""A server with N GB of memory has N GiB."""
MACHINE_EXT4_SHARE = 0.98
"""The share of a disk an ext4 filesystem on it offers (the rest: inodes, journal)."""
MACHINE_BLOCK = 4096


def root_filesystem_bytes(disk_gb: float) -> int:
    """``node_filesystem_size_bytes`` of ``/``: an ext4 over the whole disk."""
    return (int(disk_gb * MACHINE_BYTES_PER_DISK_GB * MACHINE_EXT4_SHARE) // MACHINE_BLOCK
            * MACHINE_BLOCK)


@functools.cache
def exporter_type(name: str) -> exporter_model.ServerType:
    """A type of the simulator's catalogue as the exporter parses its API object."""
    return exporter_model.parse_server_type(SERVER_TYPES[name].to_api(), "net")


@functools.cache
def exporter_primary_disk_bytes(server_type: str, disk_gb: int) -> int:
    """``primary_disk_bytes`` the exporter parses from a server of the API with this
    type and ``primary_disk_size``."""
    stype = SERVER_TYPES[server_type]
    raw = {"id": 1, "name": "harness", "status": "running", "created": "2025-01-01T00:00:00Z",
           "location": {"name": stype.locations[0]}, "server_type": stype.to_api(),
           "primary_disk_size": disk_gb}
    return exporter_model.parse_cloud_server(raw, "harness", "net").primary_disk_bytes


# ----------------------------------------------------------------------------
# The fleet
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlacementGroup:
    """A Cloud placement group, as the exporter labels ``hetzner_server_placement_group_info``."""

    id: str
    name: str
    type: str = "spread"


@dataclass
class FleetServer:
    """One server as the exporter and its agent would show it.

    Cloud: ``server_type`` is a type of the simulator's catalogue and sizes come from
    it; ``disk_gb`` is the primary disk when it differs from the type's (a CPU/RAM-only
    rescale). Dedicated: ``server_type`` is the Robot product, ``monthly_price`` the
    configured price, cores and memory come from the agent only (``cores``,
    ``memory_gb``; default: the product's).
    """

    source: str
    server_id: str
    name: str
    server_type: str
    location: str = "fsn1"
    project: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    cpu: Profile | None = None  # None: no utilisation history at all
    memory: Profile | None = None  # None: no memory history (no agent)
    network: Traffic | None = QUIET  # None: no network history
    hours: int = HOURS_30D  # hours of history (coverage = hours / 720)
    backups: bool = False
    disk_gb: int | None = None
    status: str = "running"
    image: str = "ubuntu-24.04"
    agent: bool = True
    cores: int | None = None
    memory_gb: float | None = None
    disk_used_gb: float = 10.0  # the agent's "/" filesystem: used (GB of 10^9 bytes)
    services: tuple[tuple[str, str], ...] = ()  # (kind, name) the agent found
    monthly_price: Decimal | None = None  # dedicated: configured monthly price
    datacenter: str = ""  # dedicated: e.g. FSN1-DC14
    ipv4: bool = True  # a primary IPv4 (Cloud)
    placement_group: PlacementGroup | None = None  # Cloud: the group it is in

    @property
    def key(self) -> str:
        return f"{self.source}/{self.server_id}"

    @property
    def cloud(self) -> bool:
        return self.source == "cloud"

    @property
    def type_cores(self) -> int:
        if self.cores is not None:
            return self.cores
        if self.cloud:
            return SERVER_TYPES[self.server_type].cores
        return ROBOT_PRODUCTS[self.server_type].cores

    @property
    def machine_memory_gb(self) -> float:
        """The GB of memory the machine has (the type's, the product's, or ``memory_gb``)."""
        if self.memory_gb is not None:
            return self.memory_gb
        if self.cloud:
            return SERVER_TYPES[self.server_type].memory_gb
        return ROBOT_PRODUCTS[self.server_type].memory_gb

    @property
    def machine_disk_gb(self) -> int:
        """The GB of its disk: the primary disk (``disk_gb``, else the type's) of a Cloud
        server, the product's disk of a dedicated one."""
        if self.disk_gb is not None:
            return self.disk_gb
        if self.cloud:
            return SERVER_TYPES[self.server_type].disk_gb
        return ROBOT_PRODUCTS[self.server_type].disk_gb

    @property
    def memory_bytes(self) -> int:
        """What the agent measures: ``MemTotal`` (the harness's machine model)."""
        return int(round(self.machine_memory_gb * MACHINE_BYTES_PER_MEMORY_GB))

    @property
    def root_filesystem_bytes(self) -> int:
        """What the agent measures: the size of ``/`` (the harness's machine model)."""
        return root_filesystem_bytes(self.machine_disk_gb)

    @property
    def exporter_memory_bytes(self) -> int:
        """``hetzner_server_memory_bytes`` of a Cloud server: the exporter's own parsing."""
        return exporter_type(self.server_type).memory_bytes

    @property
    def primary_disk_bytes(self) -> int:
        """``hetzner_server_disk_bytes`` of a Cloud server: the exporter's own parsing of
        the API's ``primary_disk_size``."""
        return exporter_primary_disk_bytes(self.server_type, self.machine_disk_gb)

    def cost_components(self) -> dict[str, Decimal]:
        """``hetzner_server_monthly_cost_breakdown_euros`` (net, a whole month)."""
        if not self.cloud:
            if self.monthly_price is None:
                return {"server": ROBOT_PRODUCTS[self.server_type].monthly_net}
            return {"server": self.monthly_price}
        price = SERVER_TYPES[self.server_type].monthly_net(self.location)
        backup = price * BACKUP_PERCENTAGE / 100 if self.backups else Decimal(0)
        return {"server": price, "backup": backup,
                "primary_ipv4": PRIMARY_IPV4_MONTHLY if self.ipv4 else Decimal(0),
                "primary_ipv6": PRIMARY_IPV6_MONTHLY}

    def monthly_cost(self) -> Decimal:
        return sum(self.cost_components().values(), Decimal(0))

    def history(self, end: int | None = None) -> dict[str, tuple[FloatArray, FloatArray]]:
        """``{"cpu"|"memory": (avg1h, max1h)}`` of the resources with data (``end``: the
        newest hour's time, needed by a daily job)."""
        out = {}
        if self.cpu is not None:
            out["cpu"] = self.cpu.hourly(self.hours, end)
        if self.memory is not None:
            out["memory"] = self.memory.hourly(self.hours, end)
        return out

    def network_history(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        """``{"network_in"|"network_out": (avg1h, max1h)}`` (bytes/s), if it has data
        (with CPU data only: the same hours)."""
        if self.network is None or self.cpu is None:
            return {}
        return self.network.hourly(self.hours)

    def expected(self, end: int | None = None) -> dict[str, Stats]:
        return {res: stats(*arrays) for res, arrays in self.history(end).items()}


# ----------------------------------------------------------------------------
# History: OpenMetrics -> promtool blocks
# ----------------------------------------------------------------------------
@dataclass
class History:
    """Hourly series of many servers as matrices (oldest hour first).

    ``labels[i]`` is server i's ``{source, server_id}``; ``hours[i]`` how many of the
    newest hours it has; ``has[resource][i]`` whether it has that resource at all.
    """

    labels: list[dict[str, str]]
    hours: npt.NDArray[np.int64]
    values: dict[tuple[str, str], FloatArray]  # (resource, avg|max) -> (n, 720)
    has: dict[str, npt.NDArray[np.bool_]]
    info: list[dict[str, str]] = field(default_factory=list)  # hetzner_server_info labels

    @classmethod
    def of(cls, servers: Sequence[FleetServer], end: int | None = None) -> History:
        n = len(servers)
        values = {k: np.zeros((n, HOURS_30D)) for k in HOURLY_SERIES}
        has = {r: np.zeros(n, dtype=bool) for r in RESOURCES}
        for i, s in enumerate(servers):
            for res, (avg, top) in {**s.history(end), **s.network_history()}.items():
                values[(res, "avg")][i, HOURS_30D - avg.size:] = avg
                values[(res, "max")][i, HOURS_30D - top.size:] = top
                has[res][i] = True
        # `shard`: the last two digits of the id, as the hourly rules label their output
        return cls([{"source": s.source, "server_id": s.server_id,
                     "shard": s.server_id[-2:].zfill(2)} for s in servers],
                   np.asarray([s.hours for s in servers], dtype=np.int64), values, has)

    @property
    def samples(self) -> int:
        hourly = sum(int(self.hours[self.has[res]].sum()) for res, _ in HOURLY_SERIES)
        return int(hourly) + len(self.info) * len(INFO_OFFSETS)


def timestamps(end: int) -> npt.NDArray[np.int64]:
    """The 720 hourly sample times, oldest first, the newest at ``end``."""
    return end - HOUR * np.arange(HOURS_30D - 1, -1, -1, dtype=np.int64)


def write_history(path: Path, history: History, end: int,
                  window: tuple[int, int] | None = None) -> int:
    """Write the hourly series (only times in ``[lo, hi)`` if ``window``); returns the
    number of samples written."""
    ts = timestamps(end)
    cols = np.arange(HOURS_30D) if window is None else np.flatnonzero(
        (ts >= window[0]) & (ts < window[1]))
    with OpenMetricsWriter(path) as om:
        if cols.size:
            family = None
            for (res, stat), name in HOURLY_SERIES.items():
                if name != family:
                    om.family(name)
                    family = name
                extra = RESOURCE_LABELS.get(res, {})
                first = HOURS_30D - history.hours  # first column with data, per server
                rows = np.flatnonzero(history.has[res])
                # group servers by their first column so each group shares timestamps
                for start in np.unique(first[rows]):
                    idx = rows[first[rows] == start]
                    use = cols[cols >= start]
                    if not use.size:
                        continue
                    om.series([{**history.labels[i], **extra} for i in idx],
                              history.values[(res, stat)][np.ix_(idx, use)], ts[use])
        info_ts = end - np.asarray(INFO_OFFSETS, dtype=np.int64)
        if window is not None:
            info_ts = info_ts[(info_ts >= window[0]) & (info_ts < window[1])]
        if history.info and info_ts.size:
            om.family("hetzner_server_info")
            om.series(history.info, np.ones((len(history.info), info_ts.size)), info_ts)
        return om.samples


@dataclass
class Backfill:
    blocks: list[Path]
    samples: int
    bytes: int
    seconds: float


def backfill(history: History, end: int, data_dir: Path, workdir: Path,
             workers: int = 1, split: bool = False) -> Backfill:
    """Write the history and turn it into blocks in ``data_dir``.

    ``split``: one file per aligned 54-hour block (promtool then parses each file
    twice instead of the whole month once per block), converted by ``workers``
    promtool processes in parallel; otherwise one file. Checks that the blocks hold
    exactly the samples written.
    """
    t0 = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    ts = timestamps(end)
    if split:
        windows: list[tuple[int, int] | None] = [
            (k * BLOCK, (k + 1) * BLOCK) for k in range(int(ts[0]) // BLOCK,
                                                        int(ts[-1]) // BLOCK + 1)]
    else:
        windows = [None]
    size = 0

    def convert(job: tuple[int, tuple[int, int] | None]) -> tuple[list[Path], int, int]:
        i, window = job
        path = workdir / f"history-{i}.om"
        count = write_history(path, history, end, window)
        nbytes = path.stat().st_size
        own = workdir / f"blocks-{i}"
        made = openmetrics_to_blocks(path, own, block=MAX_BLOCK_DURATION, timeout=3600)
        path.unlink()
        moved = [b.rename(data_dir / b.name) for b in made]
        shutil.rmtree(own)
        return moved, count, nbytes

    blocks: list[Path] = []
    samples = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for made, count, nbytes in pool.map(convert, enumerate(windows)):
            blocks += made
            samples += count
            size += nbytes
    stored = sum(int(block_stats(b)["stats"]["numSamples"]) for b in blocks)
    if stored != samples or samples != history.samples:
        raise RuntimeError(f"backfill: wrote {samples} samples (expected {history.samples}), "
                           f"the blocks hold {stored}")
    return Backfill(sorted(blocks), samples, size, time.monotonic() - t0)


# ----------------------------------------------------------------------------
# Expositions
# ----------------------------------------------------------------------------
def _money(value: Decimal) -> Decimal:
    return value.normalize() if value else Decimal(0)


def info_labels(s: FleetServer) -> dict[str, str]:
    """The labels of the server's ``hetzner_server_info`` (as the exporter sets them)."""
    ids = {"source": s.source, "server_id": s.server_id}
    if s.cloud:
        t = SERVER_TYPES[s.server_type]
        return {**ids, "server_name": s.name, "server_type": s.server_type,
                "location": s.location, "datacenter": "",
                "network_zone": LOCATIONS[s.location].network_zone,
                "architecture": t.architecture, "cpu_type": t.cpu_type,
                "hcloud_project": s.project, "image": s.image, "product": ""}
    return {**ids, "server_name": s.name, "server_type": s.server_type,
            "location": s.location, "datacenter": s.datacenter, "network_zone": "",
            "architecture": "x86", "cpu_type": "dedicated", "hcloud_project": "",
            "image": "", "product": s.server_type}


def exporter_exposition(servers: Iterable[FleetServer], projects: Iterable[str] = ()
                        ) -> bytes:
    """What ``infrascope-exporter`` serves for these servers: inventory, cost, labels,
    the catalogue (every type of the simulator's, prices per location), pricing."""
    e = TextExposition()
    servers = list(servers)
    for s in servers:
        ids = {"source": s.source, "server_id": s.server_id}
        e.add("hetzner_server_info", info_labels(s), 1)
        e.add("hetzner_server_status", {**ids, "status": s.status}, 1)
        e.add("hetzner_server_labels",
              {**ids, **{f"label_{k}": v for k, v in sorted(s.labels.items())}}, 1)
        if s.placement_group is not None:
            pg = s.placement_group
            e.add("hetzner_server_placement_group_info",
                  {**ids, "placement_group_id": pg.id, "placement_group": pg.name,
                   "placement_group_type": pg.type}, 1)
        if s.cloud:
            e.add("hetzner_server_cpu_cores", ids, s.type_cores)
            e.add("hetzner_server_memory_bytes", ids, s.exporter_memory_bytes)
            e.add("hetzner_server_disk_bytes", ids, s.primary_disk_bytes)
            e.add("hetzner_server_created_timestamp_seconds", ids, 1_700_000_000)
            e.add("hetzner_server_backups_enabled", ids, int(s.backups))
        else:
            e.add("hetzner_server_cancelled", ids, 0)
        components = s.cost_components()
        e.add("hetzner_server_price_known", ids, 1)
        e.add("hetzner_server_monthly_cost_euros", ids, _money(s.monthly_cost()))
        e.add("hetzner_server_hourly_cost_euros", ids,
              _money((s.monthly_cost() / 730).quantize(Decimal("0.0001"))))
        for component, amount in components.items():
            e.add("hetzner_server_monthly_cost_breakdown_euros",
                  {**ids, "component": component}, _money(amount))
    for t in sorted(SERVER_TYPES.values(), key=lambda t: t.name):
        tl = {"server_type": t.name}
        e.add("hetzner_server_type_info", {**tl, "cpu_type": t.cpu_type,
                                           "architecture": t.architecture,
                                           "category": t.category}, 1)
        e.add("hetzner_server_type_cpu_cores", tl, t.cores)
        parsed = exporter_type(t.name)
        e.add("hetzner_server_type_memory_bytes", tl, parsed.memory_bytes)
        e.add("hetzner_server_type_disk_bytes", tl, parsed.disk_bytes)
        for loc in t.locations:
            ll = {**tl, "location": loc}
            e.add("hetzner_server_type_monthly_price_euros", ll, _money(t.monthly_net(loc)))
            e.add("hetzner_server_type_hourly_price_euros", ll, _money(t.hourly_net(loc)))
            e.add("hetzner_server_type_included_traffic_bytes", ll,
                  LOCATIONS[loc].included_traffic)
            e.add("hetzner_server_type_traffic_tebibyte_price_euros", ll,
                  _money(LOCATIONS[loc].price_per_tb))
            e.add("hetzner_server_type_available", ll, int(not t.legacy))
            e.add("hetzner_server_type_deprecated", ll, int(t.legacy))
    for p in sorted(ROBOT_PRODUCTS.values(), key=lambda p: p.id):
        for loc in p.locations:
            e.add("hetzner_dedicated_product_monthly_price_euros",
                  {"product": p.id, "location": loc.lower()}, _money(p.monthly_net))
    e.add("hetzner_cost_info", {"currency": "EUR", "price_mode": "net"}, 1)
    for project in sorted(set(projects) | {s.project for s in servers if s.project}):
        e.add("hetzner_pricing_vat_rate_ratio", {"hcloud_project": project},
              _money(VAT_RATE / 100))
        e.add("hetzner_pricing_backup_ratio", {"hcloud_project": project},
              _money(BACKUP_PERCENTAGE / 100))
        e.add("hetzner_api_up", {"api": "cloud", "project": project}, 1)
    return e.render().encode()


def agent_exposition(servers: Iterable[FleetServer], snapshot_ms: int,
                     with_ids: bool) -> bytes:
    """The agent series of ``servers`` (those with ``agent``). ``with_ids``: carry
    ``source``/``server_id``/``server_name`` in the exposition (one target for all);
    otherwise the target labels add them. CPU counters are stamped ``snapshot_ms``
    (see the module docstring)."""
    e = TextExposition()
    for s in servers:
        if not s.agent:
            continue
        ids = ({"source": s.source, "server_id": s.server_id, "server_name": s.name}
               if with_ids else {})
        e.add("node_memory_MemTotal_bytes", ids, s.memory_bytes)
        for cpu in range(s.type_cores):
            for mode, seconds in (("idle", 9_000_000), ("user", 1_000_000)):
                e.add("node_cpu_seconds_total", {**ids, "cpu": str(cpu), "mode": mode},
                      seconds, type_="counter", timestamp=snapshot_ms / 1000)
        size = s.root_filesystem_bytes
        avail = max(0, size - int(s.disk_used_gb * MACHINE_BYTES_PER_DISK_GB))
        fs = {**ids, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}
        e.add("node_filesystem_size_bytes", fs, size)
        e.add("node_filesystem_avail_bytes", fs, avail)
        e.add("node_filesystem_free_bytes", fs, avail)
        for kind, name in s.services:
            e.add("infrascope_service_info", {**ids, "kind": kind, "service": name,
                                              "state": "running" if kind == "docker"
                                              else "active"}, 1)
    return e.render().encode()


class ExpositionServer:
    """Serves fixed byte strings by path on ``127.0.0.1`` (gzip when asked)."""

    def __init__(self, routes: Mapping[str, bytes], content_types: Mapping[str, str]
                 | None = None) -> None:
        self.routes = {p: (body, gzip.compress(body, 1)) for p, body in routes.items()}
        self.content_types = dict(content_types or {})
        self.requests = 0
        routes_ref, types_ref, server_ref = self.routes, self.content_types, self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server_ref.requests += 1
                found = routes_ref.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404)
                    return
                zipped = "gzip" in self.headers.get("Accept-Encoding", "")
                body = found[1] if zipped else found[0]
                self.send_response(200)
                self.send_header("Content-Type", types_ref.get(
                    self.path, "text/plain; version=0.0.4; charset=utf-8"))
                if zipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def set_route(self, path: str, body: bytes) -> None:
        self.routes[path] = (body, gzip.compress(body, 1))

    def start(self) -> ExpositionServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=10)
        self.httpd.server_close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


# ----------------------------------------------------------------------------
# Rules and configuration
# ----------------------------------------------------------------------------
#: The group whose output the harness backfills itself (left out of the live rules).
HOURLY_GROUP = "infrascope-utilisation-hourly"


def rule_files(out_dir: Path, interval: str | None) -> list[Path]:
    """Copies of ``prometheus/rules/*.rules.yml`` with every group's interval set to
    ``interval`` (None: the committed ones; expressions untouched), without
    :data:`HOURLY_GROUP`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(RULES_DIR.glob("*.rules.yml")):
        doc = yaml.safe_load(src.read_text())
        doc["groups"] = [g for g in doc["groups"] if g["name"] != HOURLY_GROUP]
        for group in doc["groups"]:
            if interval is not None:
                group["interval"] = interval
        dst = out_dir / src.name
        dst.write_text(yaml.safe_dump(doc, sort_keys=False, width=10_000))
        written.append(dst)
    return written


def prometheus_config(rules: Sequence[Path], exposition: str, scrape_interval: str,
                      single_agent_target: bool) -> str:
    agent: dict[str, Any] = {"job_name": "infrascope-agent"}
    if single_agent_target:
        agent.update(honor_labels=True, metrics_path="/agents",
                     static_configs=[{"targets": [exposition]}])
    else:
        agent["http_sd_configs"] = [{"url": f"http://{exposition}/sd",
                                     "refresh_interval": "5m"}]
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [
            {"job_name": "hetzner", "metrics_path": "/metrics",
             "static_configs": [{"targets": [exposition]}]},
            agent,
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


# ----------------------------------------------------------------------------
# The scenario
# ----------------------------------------------------------------------------
#: Scrape interval (and timeout) of the scenarios. Not 1 s: the expositions are served by a
#: thread of the test's own process, which shares the GIL with the recommender run under
#: test; on a loaded machine a 1-second scrape timed out now and then, and a failed scrape
#: marks the agent's untimestamped series (MemTotal, filesystem sizes) stale — the loader
#: then saw a copy of a server without its memory or disk and judged it otherwise (78 of
#: 80 recommendations, or 80 with other targets, in test_query_count_does_not_grow_...).
SCRAPE_INTERVAL = "5s"


class Scenario:
    """Backfill, serve, start Prometheus with the rules, wait until the rules' outputs
    exist for every server. A context manager; :meth:`stop` ends what it started."""

    def __init__(self, servers: Sequence[FleetServer], workdir: Path, *,
                 rule_interval: str = "1s", scrape_interval: str = SCRAPE_INTERVAL,
                 single_agent_target: bool = False, workers: int = 1,
                 split_backfill: bool = False,
                 load_history: Callable[[Path, str], None] | None = None) -> None:
        """``load_history(data_dir, exporter_address)``, if given, puts the history into
        the data directory instead of the harness' hourly backfill (step 1): e.g. raw
        inputs through ``infrascope history load``. The servers' ``cpu``/``memory``
        profiles then only say which resources have data."""
        self.servers = list(servers)
        self.load_history = load_history
        self.workdir = Path(workdir)
        self.rule_interval = rule_interval
        self.scrape_interval = scrape_interval
        self.single_agent_target = single_agent_target
        self.workers = workers
        self.split_backfill = split_backfill
        self.end = 0
        self.prometheus: Prometheus | None = None
        self.http: ExpositionServer | None = None
        self.backfill: Backfill | None = None
        self.timings: dict[str, float] = {}
        self.snapshot_ms = 0
        self.history: History | None = None
        self.progress: Callable[[dict[str, tuple[int, int]]], None] | None = None

    @property
    def url(self) -> str:
        if self.prometheus is None:
            raise RuntimeError("scenario not started")
        return self.prometheus.url

    @property
    def prom(self) -> Prometheus:
        if self.prometheus is None:
            raise RuntimeError("scenario not started")
        return self.prometheus

    def start(self, ready_timeout: float = 120.0) -> Scenario:
        try:
            self._start(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, ready_timeout: float) -> None:
        t0 = time.monotonic()
        self.snapshot_ms = snapshot_ms = int(time.time() * 1000)
        agents = [s for s in self.servers if s.agent]
        routes: dict[str, bytes] = {"/metrics": exporter_exposition(self.servers)}
        types: dict[str, str] = {}
        if self.single_agent_target:
            routes["/agents"] = agent_exposition(agents, snapshot_ms, with_ids=True)
        else:
            sd = []
            for s in agents:
                path = f"/agent/{s.source}/{s.server_id}"
                routes[path] = agent_exposition([s], snapshot_ms, with_ids=False)
                sd.append({"targets": ["ADDRESS"],
                           "labels": {"source": s.source, "server_id": s.server_id,
                                      "server_name": s.name, "__metrics_path__": path}})
            routes["/sd"] = json.dumps(sd).encode()
            types["/sd"] = "application/json"
        self.http = ExpositionServer(routes, types)
        address = self.http.address
        if not self.single_agent_target:  # the SD document names the server's own address
            self.http.set_route("/sd", routes["/sd"].replace(b"ADDRESS", address.encode()))
        self.timings["render"] = time.monotonic() - t0

        # The history, and hetzner_server_info for the last minutes as the scrape will
        # give it (same labels: one series), so the first evaluation of the 30-day group
        # has it even if it comes before the first scrape.
        t1 = time.monotonic()
        self.end = int(time.time()) - 60
        history = History.of(self.servers, self.end)
        history.info = [{"job": "hetzner", "instance": address, **info_labels(s)}
                        for s in self.servers]
        data = self.workdir / "data"
        if self.load_history is None:
            self.backfill = backfill(history, self.end, data, self.workdir / "backfill",
                                     workers=self.workers, split=self.split_backfill)
        else:
            data.mkdir(parents=True, exist_ok=True)
            self.load_history(data, address)
        self.timings["backfill"] = time.monotonic() - t1
        self.http.start()

        t2 = time.monotonic()
        rules = rule_files(self.workdir / "rules", self.rule_interval)
        config = prometheus_config(rules, address, self.scrape_interval,
                                   self.single_agent_target)
        self.prometheus = Prometheus(data, config=config, workdir=self.workdir,
                                     ready_timeout=ready_timeout)
        self.prometheus.start()
        self.timings["prometheus_start"] = time.monotonic() - t2
        t3 = time.monotonic()
        self.history = history
        self.wait_ready(ready_timeout)
        self.timings["rules_ready"] = time.monotonic() - t3

    def expected_counts(self) -> dict[str, int]:
        """Expression -> the count it must reach once the rules have run."""
        history = self.history
        if history is None:
            raise RuntimeError("scenario not started")
        agents = sum(1 for s in self.servers if s.agent)
        n = len(history.labels)
        with_cpu = int(history.has["cpu"].sum())
        with_memory = int(history.has["memory"].sum())
        with_network = int(history.has["network_in"].sum() + history.has["network_out"].sum())
        return {
            "count(hetzner_server_info)": n,
            "count(hetzner_server_type_info)": len(SERVER_TYPES),
            # the provider-neutral layer the loader reads: recorded, so present only after
            # the provider group's first evaluation that follows the first scrape
            "count(source_server_id:server_info:normalised)": n,
            "count(source_server_id:server_monthly_cost_euros:normalised)": n,
            "count(server_type:server_type_info:normalised)": len(SERVER_TYPES),
            "count(server_type_location:server_type_monthly_price_euros:normalised)":
                sum(len(t.locations) for t in SERVER_TYPES.values()),
            "count(provider:cost_info:normalised)": 1,
            "count(source_server_id:server_placement_group_info:normalised)":
                sum(1 for s in self.servers if s.placement_group is not None),
            'count(up{job="infrascope-agent"} == 1)': 1 if self.single_agent_target
            else agents,
            "count(node_memory_MemTotal_bytes)": agents,
            "count(source_server_id:monthly_cost_euros:sum)": n,
            "count(:monthly_cost_euros:avg1d)": 1,
            "count(source_server_id:cpu_utilisation:avg30d)": with_cpu,
            "count(source_server_id:cpu_utilisation:p95_30d)": with_cpu,
            "count(source_server_id:memory_utilisation:max30d)": with_memory,
            "count(source_server_id:memory_utilisation:coverage30d)": with_memory,
            "count(source_server_id:network_bytes_per_second:coverage30d)": with_network,
            "count(source_server_id:utilisation:tier30d)": n,
        }

    def wait_ready(self, timeout: float) -> None:
        """Until every count the rules should produce is reached. ``self.progress``
        (if set) is called with the counts still missing every 10 s."""
        want = self.expected_counts()
        prom = self.prom
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + 10
        last: dict[str, int] = {}

        def counts() -> dict[str, int]:
            out = {}
            for expr in want:
                result = prom.query(expr)
                out[expr] = int(float(result[0]["value"][1])) if result else 0
            return out

        while True:
            last = counts()
            if all(last[k] == v for k, v in want.items()):
                break
            if self.progress is not None and time.monotonic() > next_report:
                next_report += 10
                self.progress({k: (last[k], v) for k, v in want.items() if last[k] != v})
            if time.monotonic() > deadline:
                missing = {k: (last.get(k), v) for k, v in want.items() if last.get(k) != v}
                raise TimeoutError(f"rules not ready after {timeout:g} s "
                                   f"(expression: (got, want)): {missing}\n{prom.logs()}")
            time.sleep(0.25)

    def agent_age(self) -> float:
        """Seconds since the agents' CPU counters were stamped (visible for 300)."""
        return time.time() - self.snapshot_ms / 1000

    def restamp_agents(self, timeout: float = 120.0) -> None:
        """Serve the agents' series with a new snapshot time, for runs that go on longer
        than the 5-minute lookback. Waits until the previous stamp has left every
        5-minute window (two samples of an unchanged counter would give ``rate()`` a
        0/0), then until Prometheus has scraped the new one."""
        if self.http is None:
            raise RuntimeError("scenario not started")
        wait = LOOKBACK_SECONDS + 1 - self.agent_age()
        if wait > 0:
            time.sleep(wait)
        self.snapshot_ms = int(time.time() * 1000)
        agents = [s for s in self.servers if s.agent]
        if self.single_agent_target:
            self.http.set_route("/agents", agent_exposition(agents, self.snapshot_ms, True))
        else:
            for s in agents:
                self.http.set_route(f"/agent/{s.source}/{s.server_id}",
                                    agent_exposition([s], self.snapshot_ms, False))
        stamp = self.snapshot_ms / 1000
        deadline = time.monotonic() + timeout
        while True:
            fresh = self.prom.query(f"count(timestamp(node_cpu_seconds_total) == {stamp!r})")
            every = self.prom.query("count(node_cpu_seconds_total)")
            if fresh and every and fresh[0]["value"][1] == every[0]["value"][1]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents not re-scraped within {timeout:g} s")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.http is not None:
            self.http.stop()
            self.http = None

    def __enter__(self) -> Scenario:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def vector(prom: Prometheus, expr: str) -> dict[str, tuple[dict[str, str], float]]:
    """An instant vector keyed by ``source/server_id``."""
    out = {}
    for item in prom.query(expr):
        m = item["metric"]
        out[f"{m['source']}/{m['server_id']}"] = (m, float(item["value"][1]))
    return out


def replicate(servers: Sequence[FleetServer], copies: int,
              rename: Callable[[FleetServer, int], FleetServer] | None = None
              ) -> list[FleetServer]:
    """``copies`` copies of the fleet; copy ``r`` gets ids ``+ r * 100000``, names with
    ``-r<r>`` and projects with ``-r<r>`` (copy 0 is the original)."""
    import dataclasses

    out = []
    for r in range(copies):
        for s in servers:
            if r == 0:
                out.append(s)
                continue
            copy = dataclasses.replace(
                s, server_id=str(int(s.server_id) + r * 100_000), name=f"{s.name}-r{r}",
                project=f"{s.project}-r{r}" if s.project else "",
                labels=dict(s.labels))
            out.append(rename(copy, r) if rename else copy)
    return out


def env_without_proxy() -> dict[str, str]:
    """The environment for subprocesses, without proxies (everything is loopback)."""
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
