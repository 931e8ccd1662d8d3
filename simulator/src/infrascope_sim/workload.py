"""Deterministic workloads: CPU and memory as functions of absolute time.

A workload is piecewise constant over 60-second ticks. The value of tick ``k``
(covering ``[60k, 60k+60)`` in Unix seconds) depends only on the profile, its
parameters, the server's seed and ``k`` — never on when it is asked for. So
every request for the same window returns the same numbers, and every derived
figure is an exact integral over those ticks:

- the Cloud API's ``cpu`` series for a bucket is ``100 * cores * mean(cpu)``
  over the bucket (percent of one vCPU, summed over vCPUs);
- a simulated agent's ``node_cpu_seconds_total`` is the integral of the same
  ticks since boot, so ``rate()`` over it gives back the same utilisation;
- disk and network rates are affine in the CPU work (the ratio, until a type
  change rescales it: :class:`Resize`), so their bucket means are exact too, and
  ``outgoing_traffic`` is the integral of the outbound bandwidth since the start
  of the billing month.

Tests compute expected values with :meth:`Workload.mean_cpu` and friends.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

TICK_SECONDS = 60
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A stateless 64-bit hash (SplitMix64 finaliser) over uint64 arrays."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


_NOISE_PERIOD = 1_048_573  # prime; a stream repeats after about two years of ticks
_NOISE_TABLE = (_splitmix64(np.arange(_NOISE_PERIOD, dtype=np.uint64)) >> np.uint64(11)) * (
    1.0 / float(1 << 53))


def uniform_noise(seed: int, ticks: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) values that depend only on (seed, tick, stream).

    Each (seed, stream) reads the shared hash table at its own offset: as
    deterministic as hashing every tick, and several times cheaper.
    """
    key = np.array([(seed * 0x100000001B3 + stream * 0x9E37) & 0xFFFFFFFFFFFFFFFF],
                   dtype=np.uint64)
    offset = int(_splitmix64(key)[0] % np.uint64(_NOISE_PERIOD))
    return _NOISE_TABLE[(ticks + offset) % _NOISE_PERIOD]


PATTERNS = ("flat", "diurnal", "nightly", "bursts")
_TICKS_PER_WEEK = 7 * 86_400 // TICK_SECONDS


@dataclass(frozen=True)
class WorkloadParams:
    """Knobs of a workload; every profile is a preset of these.

    ``activity`` (0..1) follows the pattern: flat is always 0, diurnal follows
    office hours in UTC (peak 14:00, weekends at 60 %), nightly is 1 during a
    batch window, bursts is 1 in pseudo-random hours. CPU and memory move from
    their base towards their peak with the activity, plus uniform jitter.
    """

    pattern: str = "flat"
    cpu_base: float = 0.05
    cpu_peak: float = 0.05
    cpu_jitter: float = 0.02
    mem_base: float = 0.30
    mem_peak: float = 0.30
    mem_jitter: float = 0.02
    job_start_hour: int = 1
    job_hours: int = 2
    burst_probability: float = 0.15
    weekend_factor: float = 0.6
    # Bytes per second and IOPS: value = base + at_full * cpu ratio.
    net_out_base: float = 2_000.0
    net_out_at_full: float = 2_000_000.0
    net_in_ratio: float = 0.35
    packet_bytes: float = 900.0
    disk_iops_base: float = 2.0
    disk_iops_at_full: float = 400.0
    disk_read_share: float = 0.6
    disk_bytes_per_io: float = 32_768.0
    disk_used_ratio: float = 0.35


PROFILES: dict[str, WorkloadParams] = {
    "constant": WorkloadParams(cpu_base=0.5, cpu_peak=0.5, cpu_jitter=0.0,
                               mem_base=0.5, mem_peak=0.5, mem_jitter=0.0),
    "idle": WorkloadParams(cpu_base=0.008, cpu_peak=0.008, cpu_jitter=0.006,
                           mem_base=0.12, mem_peak=0.12, mem_jitter=0.01,
                           net_out_base=300.0, net_out_at_full=50_000.0, disk_iops_at_full=20.0),
    "steady-low": WorkloadParams(cpu_base=0.06, cpu_peak=0.06, cpu_jitter=0.03,
                                 mem_base=0.30, mem_peak=0.30, mem_jitter=0.03),
    "diurnal-web": WorkloadParams(pattern="diurnal", cpu_base=0.08, cpu_peak=0.55,
                                  cpu_jitter=0.05, mem_base=0.42, mem_peak=0.55,
                                  mem_jitter=0.02, net_out_at_full=6_000_000.0),
    "batch": WorkloadParams(pattern="nightly", cpu_base=0.03, cpu_peak=0.85, cpu_jitter=0.03,
                            mem_base=0.25, mem_peak=0.70, mem_jitter=0.03),
    "bursty": WorkloadParams(pattern="bursts", cpu_base=0.05, cpu_peak=0.80, cpu_jitter=0.05,
                             mem_base=0.35, mem_peak=0.45, mem_jitter=0.02),
    "cpu-bound": WorkloadParams(cpu_base=0.90, cpu_peak=0.90, cpu_jitter=0.08,
                                mem_base=0.55, mem_peak=0.55, mem_jitter=0.03),
    "memory-heavy": WorkloadParams(pattern="diurnal", cpu_base=0.08, cpu_peak=0.18,
                                   cpu_jitter=0.03, mem_base=0.86, mem_peak=0.90,
                                   mem_jitter=0.02),
    "database": WorkloadParams(pattern="diurnal", cpu_base=0.04, cpu_peak=0.12, cpu_jitter=0.02,
                               mem_base=0.22, mem_peak=0.26, mem_jitter=0.01,
                               disk_iops_at_full=2_000.0),
}

_PARAM_NAMES = {f.name for f in fields(WorkloadParams)}


@functools.lru_cache(maxsize=256)
def _weekly_table(p: WorkloadParams) -> np.ndarray:
    """Activity of every tick of a week (tick 0 is Thursday 00:00 UTC, like the epoch)."""
    ticks = np.arange(_TICKS_PER_WEEK, dtype=np.int64)
    hour = ((ticks * TICK_SECONDS) % 86_400) / 3_600.0
    if p.pattern == "diurnal":
        shape = np.where((hour >= 6) & (hour < 22), np.sin(np.pi * (hour - 6) / 16.0), 0.0)
        weekday = ((ticks * TICK_SECONDS) // 86_400 + 3) % 7  # 1970-01-01 was a Thursday
        table = shape * np.where(weekday >= 5, p.weekend_factor, 1.0)
    else:  # nightly
        table = (((hour - p.job_start_hour) % 24.0) < p.job_hours).astype(np.float64)
    table.setflags(write=False)
    return table


def params_from_config(config: dict[str, Any] | None, where: str) -> tuple[str, WorkloadParams]:
    """Build params from a fleet-file ``workload:`` mapping (profile + overrides)."""
    config = dict(config or {})
    profile = str(config.pop("profile", "steady-low"))
    if profile not in PROFILES:
        raise ValueError(f"{where}: unknown workload profile {profile!r} "
                         f"(known: {', '.join(sorted(PROFILES))})")
    unknown = set(config) - _PARAM_NAMES
    if unknown:
        raise ValueError(f"{where}: unknown workload keys {sorted(unknown)}")
    params = replace(PROFILES[profile], **config)
    if params.pattern not in PATTERNS:
        raise ValueError(f"{where}: unknown workload pattern {params.pattern!r}")
    return profile, params


@dataclass(frozen=True)
class Resize:
    """From tick ``tick`` on, the server's work runs on a machine of a different size.

    ``cores`` and ``memory`` are the new size over the size the workload was defined
    for (its first server type): the work itself — cores busy, bytes in use — stays,
    so the utilisation ratios are divided by them (1 core busy of 4 is 25 %; after a
    resize to 2 cores, ``cores = 0.5``, it is 50 %).
    """

    tick: int
    cores: float
    memory: float


@dataclass(frozen=True)
class Workload:
    """CPU and memory utilisation of one server, deterministic in time."""

    params: WorkloadParams = field(default_factory=WorkloadParams)
    seed: int = 0
    profile: str = "custom"
    resizes: tuple[Resize, ...] = ()

    def resized(self, at: float, cores: float, memory: float) -> Workload:
        """The same work on a server resized at ``at`` (effective from the next tick on,
        so that every tick keeps one value), relative to the original size."""
        tick = math.ceil(at / TICK_SECONDS)
        kept = tuple(r for r in self.resizes if r.tick < tick)
        return replace(self, resizes=(*kept, Resize(tick, cores, memory)))

    def _size(self, ticks: np.ndarray, which: str) -> np.ndarray:
        """The size at each tick over the original size (1 before the first resize)."""
        out = np.ones(ticks.shape)
        for r in self.resizes:  # ordered by tick: a later resize overrides
            out[ticks >= r.tick] = r.cores if which == "cpu" else r.memory
        return out

    # --- per-tick values -------------------------------------------------
    def _activity(self, ticks: np.ndarray) -> np.ndarray:
        p = self.params
        if p.pattern == "flat":
            return np.zeros(ticks.shape)
        if p.pattern == "bursts":  # whole hours chosen by a hash of the hour index
            hours = ticks // (3_600 // TICK_SECONDS)
            return (uniform_noise(self.seed, hours, 7) < p.burst_probability).astype(np.float64)
        # diurnal and nightly repeat weekly: look the tick up in a cached table.
        return _weekly_table(p)[ticks % _TICKS_PER_WEEK]

    def cpu_ticks(self, ticks: np.ndarray) -> np.ndarray:
        p = self.params
        a = self._activity(ticks)
        jitter = (uniform_noise(self.seed, ticks, 1) - 0.5) * 2.0 * p.cpu_jitter
        work = p.cpu_base + (p.cpu_peak - p.cpu_base) * a + jitter
        if self.resizes:
            work = work / self._size(ticks, "cpu")
        return np.clip(work, 0.0, 1.0)

    def mem_ticks(self, ticks: np.ndarray) -> np.ndarray:
        p = self.params
        a = self._activity(ticks)
        jitter = (uniform_noise(self.seed, ticks, 2) - 0.5) * 2.0 * p.mem_jitter
        work = p.mem_base + (p.mem_peak - p.mem_base) * a + jitter
        if self.resizes:
            work = work / self._size(ticks, "mem")
        return np.clip(work, 0.0, 1.0)

    def cpu_at(self, t: float) -> float:
        return float(self.cpu_ticks(np.array([math.floor(t / TICK_SECONDS)], dtype=np.int64))[0])

    def mem_at(self, t: float) -> float:
        return float(self.mem_ticks(np.array([math.floor(t / TICK_SECONDS)], dtype=np.int64))[0])

    # --- exact integrals -------------------------------------------------
    def work_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """CPU work in units of the original size: the ratio times the size at each tick.

        The same as :meth:`cpu_ticks` until a resize; traffic and disk I/O follow the
        work (a server resized to half the cores sends the same bytes), and the Cloud
        API's CPU percent is ``100 × original cores × work``.
        """
        values = self.cpu_ticks(ticks)
        return values if not self.resizes else values * self._size(ticks, "cpu")

    def _cumulative(self, series: str, edges: np.ndarray) -> np.ndarray:
        """Integral of the series (``cpu``, ``mem`` or ``work``) from ``edges[0]`` to each
        edge, in ratio-seconds."""
        lo, hi = float(edges.min()), float(edges.max())
        k0 = math.floor(lo / TICK_SECONDS)
        k1 = max(k0 + 1, math.ceil(hi / TICK_SECONDS))
        ticks = np.arange(k0, k1, dtype=np.int64)
        values = {"cpu": self.cpu_ticks, "mem": self.mem_ticks,
                  "work": self.work_ticks}[series](ticks)
        cum = np.concatenate(([0.0], np.cumsum(values * TICK_SECONDS)))
        idx = np.clip(np.floor(edges / TICK_SECONDS).astype(np.int64) - k0, 0, len(values) - 1)
        at_edge = cum[idx] + values[idx] * (edges - (idx + k0) * TICK_SECONDS)
        start = cum[0] + values[0] * (lo - k0 * TICK_SECONDS)
        return at_edge - start

    def cumulative(self, series: str, edges: np.ndarray) -> np.ndarray:
        """Integral of ``cpu`` or ``mem`` from the smallest edge to each edge (ratio-seconds).

        The same computation :meth:`integrate` does for two edges, for many at once.
        """
        return self._cumulative(series, np.asarray(edges, dtype=np.float64))

    def integrate(self, series: str, start: float, end: float) -> float:
        """Exact integral of ``cpu`` or ``mem`` over [start, end] (ratio * seconds)."""
        if end <= start:
            return 0.0
        edges = np.array([start, end], dtype=np.float64)
        return float(self._cumulative(series, edges)[1])

    def bucket_means(self, series: str, edges: np.ndarray) -> np.ndarray:
        """Mean of the series over each [edges[i], edges[i+1]]."""
        cum = self._cumulative(series, edges.astype(np.float64))
        widths = np.diff(edges)
        return np.diff(cum) / np.where(widths > 0, widths, 1.0)

    def mean_cpu(self, start: float, end: float) -> float:
        return self.integrate("cpu", start, end) / (end - start)

    def mean_mem(self, start: float, end: float) -> float:
        return self.integrate("mem", start, end) / (end - start)

    # --- derived rates (affine in cpu, so means stay exact) -------------
    def net_out_bps(self, cpu: np.ndarray | float) -> np.ndarray | float:
        return self.params.net_out_base + self.params.net_out_at_full * cpu

    def net_in_bps(self, cpu: np.ndarray | float) -> np.ndarray | float:
        return self.net_out_bps(cpu) * self.params.net_in_ratio

    def disk_iops(self, cpu: np.ndarray | float) -> np.ndarray | float:
        return self.params.disk_iops_base + self.params.disk_iops_at_full * cpu

    def outgoing_bytes(self, start: float, end: float) -> float:
        """Bytes sent on the public interface over [start, end]."""
        if end <= start:
            return 0.0
        return self.params.net_out_base * (end - start) + self.params.net_out_at_full * \
            self.integrate("work", start, end)

    def ingoing_bytes(self, start: float, end: float) -> float:
        return self.outgoing_bytes(start, end) * self.params.net_in_ratio
