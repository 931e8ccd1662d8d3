"""Scenario: the 30-day figures do not depend on when the history was loaded (issue 14,
point 3).

The same fleet and workload are loaded twice through the real pipeline, ``infrascope
history load`` (OpenMetrics → promtool blocks → the rules pack's per-minute and hourly
groups evaluated by promtool against a temporary Prometheus), at two different minutes:
``--end`` five and forty minutes past an hour, each with its own work directory, so
promtool evaluates every rule file at another phase (Prometheus derives a group's phase
from a hash of its name and file path). Each data directory then serves a Prometheus of
the scenario harness (``scenario_lib``, ``load_history=``) that computes the 30-day
figures itself, and the recommender runs on it.

The workload is raw, as the pipeline gets it: the Cloud API's CPU of a Cloud server
without agent in the exporter backfill's form (one value per 5-minute bucket, stamped at
the bucket's end), and the agents' counters and memory scraped every minute, 17 s past
(a live Prometheus scrapes at its own phase). Every server runs a nightly job from
02:00 to 03:00 UTC exactly, on top of a base load.

Asserted: every complete clock hour's ``avg1h``/``max1h`` is the mean / maximum of its
twelve 5-minute buckets (numpy, from the workload model), in both loads; all eight
30-day figures of every server are identical in both loads; so are the
recommendations. On the rules before issue 14 (a trailing ``[1h]`` over the per-minute
``:ratio`` records, each a 5-minute rate at the per-minute group's phase) the job
leaked into 03:00-04:00 (by 1/12 of its height, or more for the agents' 1-minute
counters), and by how much depended on the phases: the hourly check fails there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scenario_lib import (
    HOUR,
    RULES_DIR,
    FleetServer,
    Profile,
    Scenario,
    info_labels,
)
from test_scenario_prometheus import run_engine

from infrascope_cli.main import main as cli_main
from infrascope_core.exposition import OpenMetricsWriter
from infrascope_core.prometheus import binaries_available
from infrascope_recommender.model import RunResult

pytestmark = [pytest.mark.skipif(not binaries_available(),
                                 reason="needs /usr/bin/prometheus and /usr/bin/promtool"),
              pytest.mark.timeout(900)]

DAY = 86_400
BUCKET = 300  # the exporter backfill's step, the hourly rules' grid
DAYS = 10  # of data: coverage 1/3, above the recommender's 0.25
JOB_HOURS = (2, 3)  # the nightly job, UTC: [02:00, 03:00)
SCRAPE_EVERY, SCRAPE_OFFSET = 60, 17  # the agents' history: every minute, 17 s past
LOAD_MINUTES = (5, 40)  # --end of the two loads, minutes past the hour
FIGURES = ("avg30d", "max30d", "p95_30d", "coverage30d")
TOLERANCE = 1e-6  # the OpenMetrics values carry 6 decimals


@dataclass(frozen=True)
class Load:
    """A resource's utilisation: ``base``, and ``job`` during the nightly job."""

    base: float
    job: float

    def at(self, t: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        hour = (t % DAY) // HOUR
        running = (hour >= JOB_HOURS[0]) & (hour < JOB_HOURS[1])
        return np.where(running, self.job, self.base).astype(np.float64)


@dataclass(frozen=True)
class Workload:
    server: FleetServer
    cpu: Load
    memory: Load | None  # None: no agent, no memory


def workloads() -> list[Workload]:
    def server(source: str, sid: str, name: str, stype: str, *, agent: bool,
               **extra: Any) -> FleetServer:
        # the profiles only say which resources have data (load_history writes the data)
        return FleetServer(source, sid, name, stype, project="batch" if source == "cloud"
                           else "", labels={"env": "production"}, cpu=Profile(0.1),
                           memory=Profile(0.1) if agent else None, network=None,
                           agent=agent, **extra)

    return [
        Workload(server("cloud", "3101", "batch-cloud", "cx33", agent=False),
                 Load(0.05, 0.90), None),
        Workload(server("cloud", "3102", "batch-agent", "cx33", agent=True),
                 Load(0.05, 0.80), Load(0.25, 0.50)),
        Workload(server("dedicated", "3103", "batch-dedi", "EX44", agent=True,
                        datacenter="FSN1-DC14"),
                 Load(0.03, 0.85), Load(0.10, 0.30)),
    ]


# ----------------------------------------------------------------------------
# The raw history, as the exporter backfill and a scraping Prometheus leave it
# ----------------------------------------------------------------------------
def busy_seconds(load: Load, t: npt.NDArray[np.int64], start: int) -> npt.NDArray[np.float64]:
    """Busy CPU seconds from ``start`` to each ``t``: the integral of the 5-minute levels."""
    edges = np.arange(start, int(t.max()) + BUCKET + 1, BUCKET, dtype=np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(load.at(edges[:-1]) * BUCKET)])
    return np.asarray(np.interp(t, edges, cumulative), dtype=np.float64)


def write_raw_history(path: Path, loads: list[Workload], address: str, start: int,
                      end: int) -> None:
    """Data from ``start`` to ``end`` (clock hours): Cloud CPU per 5-minute bucket
    stamped at its end; agents' counters and memory every minute, 17 s past."""
    buckets = np.arange(start + BUCKET, end + 1, BUCKET, dtype=np.int64)
    scrapes = np.arange(start + SCRAPE_OFFSET, end, SCRAPE_EVERY, dtype=np.int64)
    exporter = {"job": "hetzner", "instance": address}
    cloud = [w for w in loads if not w.server.agent]
    agents = [w for w in loads if w.server.agent]

    def agent_labels(s: FleetServer) -> dict[str, str]:
        return {"job": "infrascope-agent", "instance": address, "source": s.source,
                "server_id": s.server_id, "server_name": s.name}

    with OpenMetricsWriter(path) as om:
        # the inventory, as the exporter backfill writes it (the per-minute ratios join it)
        om.family("hetzner_server_info")
        om.series([{**exporter, **info_labels(w.server)} for w in loads],
                  np.ones((len(loads), buckets.size)), buckets)
        om.family("hetzner_server_cpu_cores")
        for w in cloud:
            ids = {**exporter, "source": w.server.source, "server_id": w.server.server_id}
            om.series([ids], np.full(buckets.size, w.server.type_cores), buckets)
        om.family("hetzner_server_cpu_cores_used")
        for w in cloud:
            ids = {**exporter, "source": w.server.source, "server_id": w.server.server_id}
            om.series([ids], w.cpu.at(buckets - BUCKET) * w.server.type_cores, buckets)
        om.family("node_cpu_seconds", "counter")
        for w in agents:
            busy = busy_seconds(w.cpu, scrapes, start)
            idle = (scrapes - start).astype(np.float64) - busy
            labels = agent_labels(w.server)
            om.series([{**labels, "cpu": "0", "mode": "idle"},
                       {**labels, "cpu": "0", "mode": "user"}],
                      np.vstack([idle, busy]), scrapes, name="node_cpu_seconds_total")
        for field in ("MemTotal", "MemAvailable"):
            om.family(f"node_memory_{field}_bytes")
            for w in agents:
                assert w.memory is not None
                total = float(w.server.memory_bytes)
                values = (np.full(scrapes.size, total) if field == "MemTotal"
                          else total * (1 - w.memory.at(scrapes)))
                om.series([agent_labels(w.server)], values, scrapes)


def expected_hours(load: Load, start: int, end: int) -> dict[int, tuple[float, float]]:
    """Clock hour's end -> (mean, max) of its twelve 5-minute buckets, for every hour
    whose buckets all hold data."""
    ends = np.arange(start + HOUR, end + 1, HOUR, dtype=np.int64)
    starts = ends[:, None] - HOUR + BUCKET * np.arange(12, dtype=np.int64)[None, :]
    levels = load.at(starts)
    return {int(h): (float(a), float(m))
            for h, a, m in zip(ends, levels.mean(axis=1), levels.max(axis=1), strict=True)}


def load_raw(data: Path, address: str, *, work: Path, loads: list[Workload], start: int,
             end: int, load_end: int) -> None:
    """``infrascope history load`` of the raw history into ``data``, ending ``load_end``."""
    raw = work / "raw.om"
    write_raw_history(raw, loads, address, start, end)
    argv = ["history", "load", "--no-backfill", "--openmetrics", str(raw),
            "--data-dir", str(data), "--work-dir", str(work / "history"),
            "--rules-dir", str(RULES_DIR), "--days", str(DAYS + 1), "--end", str(load_end),
            "--progress", "none"]
    assert cli_main(argv) == 0


# ----------------------------------------------------------------------------
# Two loads
# ----------------------------------------------------------------------------
@dataclass
class Loaded:
    minute: int
    hourly: dict[tuple[str, str, str], dict[int, float]]  # (server_id, resource, stat)
    phases: set[int]  # seconds past the hour the hourly samples are stamped at
    figures: dict[tuple[str, str], float]  # (server_id, record name) -> value
    result: RunResult


def read_load(scenario: Scenario, minute: int, state: Path) -> Loaded:
    prom = scenario.prom
    hourly: dict[tuple[str, str, str], dict[int, float]] = {}
    phases: set[int] = set()
    for resource in ("cpu", "memory"):
        for stat in ("avg1h", "max1h"):
            name = f"source_server_id:{resource}_utilisation:{stat}"
            for series in prom.query(f"{name}[{DAYS + 2}d]"):
                samples = hourly.setdefault(
                    (series["metric"]["server_id"], resource, stat), {})
                for ts, value in series["values"]:
                    stamp = int(float(ts))
                    samples[stamp - stamp % HOUR] = float(value)  # the clock hour's end
                    phases.add(stamp % HOUR)
    regex = "|".join(FIGURES)
    figures = {(r["metric"]["server_id"], r["metric"]["__name__"]): float(r["value"][1])
               for r in prom.query(
                   f'{{__name__=~"source_server_id:(cpu|memory)_utilisation:({regex})"}}')}
    result, _ = run_engine(scenario, state)
    return Loaded(minute, hourly, phases, figures, result)


@dataclass
class Runs:
    loads: list[Workload]
    start: int
    end: int
    runs: list[Loaded]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    loads = workloads()
    now = int(time.time())
    h0 = now - now % HOUR - 4 * HOUR  # both loads end past h0, at least 3 h ago
    end = h0 - 2 * HOUR  # the data's last hour ends here: both loads evaluate the hour after
    start = end - DAYS * DAY
    out = []
    for minute in LOAD_MINUTES:
        work = tmp_path_factory.mktemp(f"load-at-{minute:02d}")
        scenario = Scenario([w.server for w in loads], work, load_history=partial(
            load_raw, work=work, loads=loads, start=start, end=end,
            load_end=h0 + minute * 60))
        try:
            scenario.start(ready_timeout=300)
            out.append(read_load(scenario, minute, work / "state.sqlite"))
        finally:
            scenario.stop()
    yield Runs(loads, start, end, out)


def test_every_clock_hour_holds_its_own_buckets_in_both_loads(runs: Runs) -> None:
    for run in runs.runs:
        for w in runs.loads:
            resources = {"cpu": w.cpu, **({"memory": w.memory} if w.memory else {})}
            for resource, load in resources.items():
                want = expected_hours(load, runs.start, runs.end)
                for k, stat in enumerate(("avg1h", "max1h")):
                    got = run.hourly[(w.server.server_id, resource, stat)]
                    wrong = {h: (got.get(h), v[k]) for h, v in want.items()
                             if got.get(h) is None or abs(got[h] - v[k]) > TOLERANCE}
                    assert not wrong, (
                        f"load at :{run.minute:02d}, {w.server.name} {resource} {stat}: "
                        f"{len(wrong)} of {len(want)} hours off (got, want), e.g. "
                        f"{sorted(wrong.items())[:3]}")
                    # nothing of the data before or after it
                    assert min(got) >= runs.start + HOUR and max(got) <= runs.end + HOUR


def test_the_30_day_figures_are_identical_whenever_the_history_was_loaded(
        runs: Runs) -> None:
    a, b = runs.runs
    servers = {w.server.server_id for w in runs.loads}
    with_memory = {w.server.server_id for w in runs.loads if w.memory is not None}
    want = {(sid, f"source_server_id:{res}_utilisation:{fig}") for sid in servers
            for res in ("cpu", "memory") for fig in FIGURES
            if res == "cpu" or sid in with_memory}
    assert set(a.figures) == want and set(b.figures) == want
    # exactly: the same hourly values, summed in the same order (stamped at other
    # seconds past the hour: the rule files' phases differ between the loads)
    assert a.figures == b.figures, (sorted(a.phases), sorted(b.phases))
    # the nightly job is 10 of the 240 hours: the p95 is the base load, not the job's edge
    for w in runs.loads:
        p95 = a.figures[(w.server.server_id, "source_server_id:cpu_utilisation:p95_30d")]
        assert p95 == pytest.approx(w.cpu.base, abs=TOLERANCE), w.server.name


def test_the_recommendations_are_identical_whenever_the_history_was_loaded(
        runs: Runs) -> None:
    a, b = (sorted((r.to_dict() for r in run.result.recommendations),
                   key=lambda d: str(d["id"])) for run in runs.runs)
    assert a == b
    assert [(e.server, e.rule, e.reason) for e in runs.runs[0].result.exclusions] == [
        (e.server, e.rule, e.reason) for e in runs.runs[1].result.exclusions]
