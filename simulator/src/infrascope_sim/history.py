"""The simulated agents' past: what Prometheus would have scraped from them.

``infrascope-sim agents-history`` writes, as OpenMetrics for ``promtool tsdb
create-blocks-from openmetrics``, the series a Prometheus scraping
``/agents/{source}/{id}/metrics`` (targets from ``/agents/sd``) would hold for a
past range: the same names, HELP, values (computed by the same workload model and
formulas as :func:`~infrascope_sim.agents.render_agent`, sample by sample) and the
labels the scrape adds — ``job``, ``instance`` (``{source}/{id}``, as ``/agents/sd``
sets it), ``source``, ``server_id`` and ``server_name``. Backfilled and live series
are therefore one series each.

Only the families the rules pack reads over time are written (the rest of an
agent's exposition is state — filesystems, services, ports — that the live scrape
provides):

- ``node_memory_MemTotal_bytes`` and ``node_memory_MemAvailable_bytes`` of every
  server, every ``step`` seconds (300 by default: Prometheus' 5-minute lookback
  always finds one, as in the exporter's backfill);
- ``node_cpu_seconds_total`` (every mode of every CPU, or of the first ``cpus``) of
  the servers chosen by ``cpu`` (``dedicated`` by default: a Cloud server's CPU
  history comes from the Cloud API through the exporter's backfill), every
  ``cpu_step`` seconds (150 by default, the most that still leaves two samples in
  every 5-minute ``rate()`` window). Counters restart at the simulated reboots, as
  live, and no sample falls on a boot itself. The simulator gives every CPU of a
  server the same counters, so ``cpus=1`` keeps the utilisation (a ratio of sums
  over CPUs and modes) exact at a fraction of the samples: the demo's seven
  dedicated servers have 94 CPUs, 11.6 million samples over 30 days against 0.85
  million for one CPU each. What it changes: a sum of CPU-seconds over that history
  counts one CPU;
- ``node_network_{receive,transmit}_bytes_total`` of the network interface of the same
  servers, every ``cpu_step`` seconds (the same counters as live: a Cloud server's
  traffic history comes from the Cloud API).

Servers are written from their creation on; ``exclude`` leaves some out (the demo's
real agent has no simulated past).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from infrascope_core.exposition import OpenMetricsWriter

from .agents import CPU_MODE_SHARES, REBOOT_PERIOD_SECONDS, Server, nic_name
from .fleet import CloudServer, Fleet
from .workload import TICK_SECONDS

CPU_CHOICES = ("dedicated", "cloud", "all", "none")
MEMORY_HELP = "Memory information field {}_bytes."
CPU_HELP = "Seconds the CPUs spent in each mode."
NETWORK_HELP = "Network device statistic {}_bytes."


@dataclass(frozen=True)
class HistoryResult:
    path: Path
    start: int
    end: int
    servers: int
    series: int
    samples: int
    bytes: int


def servers_of(fleet: Fleet) -> list[tuple[str, int, Server]]:
    """Every server as ``(source, id, server)``, in ``/agents/sd`` order."""
    out: list[tuple[str, int, Server]] = [("cloud", s.id, s) for s in fleet.cloud_servers]
    if fleet.robot:
        out += [("dedicated", d.number, d) for d in fleet.robot.servers]
    return out


def target_labels(source: str, server_id: int, server: Server, job: str,
                  extra: Mapping[str, str]) -> dict[str, str]:
    """The labels Prometheus puts on a scraped simulated agent's series."""
    labels = {"instance": f"{source}/{server_id}", "job": job, "server_id": str(server_id),
              "server_name": server.name, "source": source}
    if not job:
        del labels["job"]
    return {**labels, **extra}


def grid(start: float, end: float, step: int, created: float) -> npt.NDArray[np.int64]:
    """Timestamps ``k * step`` in ``(start, end]`` at or after ``created``."""
    first = max(math.floor(start / step) + 1, math.ceil(created / step))
    last = math.floor(end / step)
    return np.arange(first, last + 1, dtype=np.int64) * step


def boots(server: Server, ts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Boot time at each timestamp (:func:`~infrascope_sim.agents.boot_time`, vectorised)."""
    cycles = np.floor((ts - server.created) / REBOOT_PERIOD_SECONDS)
    return np.asarray(np.where(ts <= server.created, server.created,
                               server.created + np.maximum(cycles, 0) * REBOOT_PERIOD_SECONDS),
                      dtype=np.float64)


def memory_values(server: Server, ts: npt.NDArray[np.int64]) -> tuple[int, npt.NDArray[np.int64]]:
    """``MemTotal`` and ``MemAvailable`` at each timestamp, as the live agent renders them."""
    total = (int(server.memory_bytes * 0.97) // 4096) * 4096
    mem = server.workload.mem_ticks(np.floor(ts / TICK_SECONDS).astype(np.int64))
    return total, (total * (1.0 - mem)).astype(np.int64)


def busy_seconds(server: Server, ts: npt.NDArray[np.int64],
                 boot: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """CPU-busy seconds per CPU since the boot before each timestamp.

    Integrated from each boot exactly as the live agent does (same ticks, same
    cumulative sum from the boot), so every value equals the live one at that time.
    """
    out = np.empty(ts.size, dtype=np.float64)
    for b in np.unique(boot):
        idx = np.flatnonzero(boot == b)
        edges = np.concatenate(([b], ts[idx].astype(np.float64)))
        out[idx] = server.workload.cumulative("cpu", edges)[1:]
    return out


def cpu_rows(server: Server, cpus: int | None = None) -> list[tuple[str, str, float | None]]:
    """``(cpu, mode, share)`` per series in live order (the first ``cpus`` CPUs, or
    all); share ``None`` is idle."""
    shares = dict(CPU_MODE_SHARES)
    if not isinstance(server, CloudServer):  # no hypervisor, no steal
        shares["user"] += shares.pop("steal")
    rows: list[tuple[str, str, float | None]] = []
    for cpu in range(server.cores if cpus is None else min(cpus, server.cores)):
        rows.append((str(cpu), "idle", None))
        rows += [(str(cpu), mode, share) for mode, share in shares.items()]
    return rows


def wants_cpu(source: str, cpu: str) -> bool:
    return cpu == "all" or cpu == source


def write_history(fleet: Fleet, output: Path, start: float, end: float, *,
                  step: int = 300, cpu_step: int = 150, cpu: str = "dedicated",
                  cpus: int | None = None,
                  job: str = "infrascope-agent", extra_labels: Mapping[str, str] | None = None,
                  exclude: Iterable[str] = ()) -> HistoryResult:
    """Write the simulated agents' series over ``(start, end]`` to ``output``.

    ``exclude`` holds ``source/id`` keys of servers to leave out. The file is
    written as ``output.tmp`` and renamed when complete.
    """
    if cpu not in CPU_CHOICES:
        raise ValueError(f"cpu: expected one of {', '.join(CPU_CHOICES)}, got {cpu!r}")
    if step <= 0 or cpu_step <= 0:
        raise ValueError("step and cpu_step must be positive")
    if cpus is not None and cpus < 1:
        raise ValueError("cpus must be at least 1")
    if end <= start:
        raise ValueError("the range is empty: end must be after start")
    skip = set(exclude)
    servers = [(src, sid, s) for src, sid, s in servers_of(fleet) if f"{src}/{sid}" not in skip]
    extra = dict(extra_labels or {})
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    series = 0
    try:
        with OpenMetricsWriter(tmp, decimals=2) as w:
            mem = {(src, sid): (grid(start, end, step, s.created), s) for src, sid, s in servers}
            totals: dict[tuple[str, int], tuple[int, npt.NDArray[np.int64]]] = {
                key: memory_values(s, ts) for key, (ts, s) in mem.items()}
            for field in ("MemTotal", "MemAvailable"):
                w.family(f"node_memory_{field}_bytes", "gauge", MEMORY_HELP.format(field))
                for (src, sid), (ts, s) in mem.items():
                    if ts.size == 0:
                        continue
                    total, avail = totals[(src, sid)]
                    values = np.full(ts.size, total, np.int64) if field == "MemTotal" else avail
                    w.series([target_labels(src, sid, s, job, extra)], values, ts)
                    series += 1
            w.family("node_cpu_seconds", "counter", CPU_HELP)
            counted = []  # (labels, ts, boot, busy) of the servers with counters
            for src, sid, s in servers:
                if not wants_cpu(src, cpu):
                    continue
                ts = grid(start, end, cpu_step, s.created)
                if ts.size == 0:
                    continue
                boot = boots(s, ts)
                # Nobody scrapes a host in the second it boots: there every counter is 0,
                # and a window holding that sample and the last one before the reboot
                # would see no increase at all (0/0 in a ratio of rates).
                up = ts > boot
                ts, boot = ts[up], boot[up]
                if ts.size == 0:
                    continue
                busy = busy_seconds(s, ts, boot)
                idle = (ts - boot) - busy
                rows = cpu_rows(s, cpus)
                base = target_labels(src, sid, s, job, extra)
                counted.append((s, base, ts, boot, busy))
                labels = [{"cpu": c, "mode": m, **base} for c, m, _ in rows]
                values = np.empty((len(rows), ts.size), dtype=np.float64)
                for i, (_, _, share) in enumerate(rows):
                    values[i] = idle if share is None else busy * share
                w.series(labels, values, ts, name="node_cpu_seconds_total")
                series += len(rows)
            for direction in ("receive", "transmit"):
                w.family(f"node_network_{direction}_bytes", "counter",
                         NETWORK_HELP.format(direction))
                for s, base, ts, boot, busy in counted:
                    # the live agent's counters: Workload.outgoing_bytes / ingoing_bytes
                    p = s.workload.params
                    sent = p.net_out_base * (ts - boot) + p.net_out_at_full * busy
                    values = np.floor(sent * (p.net_in_ratio if direction == "receive" else 1))
                    w.series([{**base, "device": nic_name(s)}], values, ts,
                             name=f"node_network_{direction}_bytes_total")
                    series += 1
            samples, size = w.samples, w.bytes
        tmp.replace(output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return HistoryResult(path=output, start=int(start), end=int(end), servers=len(servers),
                         series=series, samples=samples, bytes=size)


def parse_exclude(values: Sequence[str]) -> list[str]:
    """Validate ``source/id`` keys."""
    out = []
    for v in values:
        source, _, sid = v.partition("/")
        if source not in ("cloud", "dedicated") or not sid.isdigit():
            raise ValueError(f"--exclude: expected cloud/ID or dedicated/NUMBER, got {v!r}")
        out.append(f"{source}/{int(sid)}")
    return out


__all__ = ["HistoryResult", "write_history", "servers_of", "target_labels", "parse_exclude",
           "CPU_CHOICES"]
