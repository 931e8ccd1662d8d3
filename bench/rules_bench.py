#!/usr/bin/env python3
"""Cost of the 30-day rule group: our hierarchical rules vs the naive form, on a real Prometheus.

For each fleet size N (default 1,000 and 10,000 servers):

1. Writes 30 days of backfill as OpenMetrics (numpy, fixed-width lines) and
   turns it into TSDB blocks with promtool. Per server: the four hourly
   series the group reads (``source_server_id:{cpu,memory}_utilisation:
   {avg1h,max1h}``, one sample an hour, 720 each), and for the sizes in
   ``--naive-sizes`` the 1-minute series ``source_server_id:{cpu,memory}_
   utilisation:ratio`` (the density of raw samples at a 60 s scrape: 43,200 per
   series); the hourly samples are the exact mean / maximum of the 60 raw
   samples of their hour. Values come from a deterministic workload (a hash of
   server and minute; a per-server level and daily cycle, all tiers occur).
   The instant-vector inputs — ``hetzner_server_info``, the per-server cost
   ``source_server_id:monthly_cost_euros:sum`` and a few unattached resources'
   ``hetzner_resource_monthly_cost_euros`` — get a sample every 10 minutes over
   the last hour only.
   The files are cut at multiples of 54 h and converted with
   ``--max-block-duration=72h``: one 54-hour block per file, the block size a
   Prometheus with 35 days of retention compacts to (so a 30-day window spans
   14-15 blocks, as in production), and promtool parses each file twice rather
   than the whole month once per block. Each file is deleted once converted.
2. Runs Prometheus on (hard links of) those blocks with a rule file holding
   only the group under test, evaluated every ``--interval``:
   - hierarchical: ``infrascope-utilisation-30d`` exactly as generated in
     ``prometheus/rules/infrascope-recording.rules.yml`` (read from that file,
     only the interval changed);
   - naive: the same group with its hourly inputs replaced, by textual
     substitution, with the 1-minute ``:ratio`` series and the coverage
     divisor 720 with 43200 — ``avg_over_time`` etc. over 30 days of raw samples.
   ``--query.lookback-delta=6h``: the instant inputs were last sampled when the
   files were written, minutes before the evaluations (in production they are
   scraped every minute and the default 5m applies). Range selectors, which
   carry the 30-day cost, do not depend on it.
3. Skips the first evaluation (warm-up) and reads
   ``prometheus_rule_group_last_duration_seconds`` after each of the next
   ``--evaluations``; reports their median. Checks that every rule is healthy
   and produced N series (the tier cost: one per tier plus ``unattached``,
   adding up to the bill), and, where both forms ran, that the hourly and the
   raw 30-day averages and maxima agree.

Targets: the hierarchical group under 2 s at 10,000 servers; the naive form at
least 10x as expensive, on the sizes where both were measured. The naive form
at sizes not measured is printed only as a labelled linear extrapolation.
Exits 1 on a missed target or a failed check.

Run: `make bench` or `.venv/bin/python bench/rules_bench.py [--sizes 1000,10000]
[--naive-sizes 1000] [--keep]`; a smoke run: `--sizes 200 --naive-sizes 200`.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from infrascope_sim.prom import (
    PROMTOOL,
    OpenMetricsWriter,
    Prometheus,
    binaries_available,
    block_stats,
    parse_samples,
    promtool_blocks,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "prometheus" / "rules" / "infrascope-recording.rules.yml"
GROUP = "infrascope-utilisation-30d"

MINUTE, HOUR, DAY = 60, 3600, 86_400
HOURLY_SAMPLES = 720  # 30 days of one sample an hour
RAW_SAMPLES = 43_200  # 30 days of one sample a minute
BLOCK = 54 * HOUR  # promtool --max-block-duration=72h -> 54-hour blocks
BLOCK_FLAG = "--max-block-duration=72h"
LOOKBACK = "6h"
INSTANT_STEP, INSTANT_SAMPLES = 600, 6  # instant inputs: every 10 min over the last hour
TARGET_SECONDS, TARGET_RATIO, TARGET_SIZE = 2.0, 10.0, 10_000

RESOURCES = ("cpu", "memory")
HOURLY = {f"source_server_id:{r}_utilisation:{s}": (r, s)
          for r in RESOURCES for s in ("avg1h", "max1h")}
RAW = {f"source_server_id:{r}_utilisation:ratio": r for r in RESOURCES}
INFO = "hetzner_server_info"
COST = "source_server_id:monthly_cost_euros:sum"
RESOURCE_COST = "hetzner_resource_monthly_cost_euros"
WRITTEN = set(HOURLY) | set(RAW) | {INFO, COST, RESOURCE_COST}
UNATTACHED = (3.57, 4.76, 11.9)  # a volume, a floating IP, a load balancer
PRICES = {"cx22": 4.59, "cx32": 7.59, "cpx31": 15.59, "ccx23": 31.49, "AX42": 49.0}


class BenchError(Exception):
    """A check failed: the measurement would not mean what it says."""


# ----------------------------------------------------------------------------
# The rule groups
# ----------------------------------------------------------------------------
def load_group(path: Path = RULES_FILE, name: str = GROUP) -> dict[str, Any]:
    groups = yaml.safe_load(path.read_text())["groups"]
    found = [g for g in groups if g["name"] == name]
    if len(found) != 1:
        raise BenchError(f"{path}: expected one group {name!r}, found {len(found)}")
    group: dict[str, Any] = found[0]
    return group


def metric_names(expr: str) -> set[str]:
    """Recorded (``level:metric:ops``) and exporter (``hetzner_*``) names in ``expr``."""
    return set(re.findall(r"(?<![\w:])((?:[a-z_]+:)+[a-z0-9_]+|hetzner_[a-z0-9_]+)(?![\w:])",
                          expr))


def check_inputs(group: dict[str, Any]) -> None:
    """Every series the group reads is one this benchmark writes (or the group records)."""
    records = {r["record"] for r in group["rules"]}
    read = set().union(*(metric_names(r["expr"]) for r in group["rules"]))
    missing = read - records - WRITTEN
    if missing:
        raise BenchError(f"group {group['name']} reads series this bench does not write: "
                         f"{sorted(missing)}; extend the bench")


def with_interval(group: dict[str, Any], interval: str, name: str | None = None
                  ) -> dict[str, Any]:
    out = copy.deepcopy(group)
    out["interval"] = interval
    if name:
        out["name"] = name
    return out


def naive_group(group: dict[str, Any], interval: str) -> dict[str, Any]:
    """The group over raw 1-minute samples: hourly inputs -> ``:ratio``, 720 -> 43200."""
    out = with_interval(group, interval, group["name"] + "-naive")
    replaced = {"series": 0, "divisor": 0}
    for rule in out["rules"]:
        expr = rule["expr"]
        for hourly, (resource, _) in HOURLY.items():
            replaced["series"] += expr.count(hourly + "[")
            expr = expr.replace(hourly + "[", f"source_server_id:{resource}_utilisation:ratio[")
        replaced["divisor"] += len(re.findall(rf"/ {HOURLY_SAMPLES}\b", expr))
        expr = re.sub(rf"/ {HOURLY_SAMPLES}\b", f"/ {RAW_SAMPLES}", expr)
        if set(HOURLY) & metric_names(expr):
            raise BenchError(f"{rule['record']}: hourly input left after substitution: {expr}")
        rule["expr"] = expr
    if replaced["series"] < len(HOURLY) or replaced["divisor"] != len(RESOURCES):
        raise BenchError(f"naive substitution did not find what it expects: {replaced}")
    return out


# ----------------------------------------------------------------------------
# The fleet and its workload
# ----------------------------------------------------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arrays, wrapping)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(x ^ (x >> np.uint64(31)))


def _uniform(key: np.ndarray) -> np.ndarray:
    return (_mix(key) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _key(*parts: np.ndarray | int) -> np.ndarray:
    arrays = np.broadcast_arrays(*(np.asarray(p, dtype=np.uint64) for p in parts))
    out = np.zeros(arrays[0].shape, np.uint64)
    with np.errstate(over="ignore"):
        for i, a in enumerate(arrays):
            out = _mix(out * np.uint64(0x9E3779B97F4A7C15) + a + np.uint64(i + 1))
    return out


def utilisation(resource: str, servers: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Deterministic utilisation in [0, 1] of ``servers`` (int ids) at ``times``
    (seconds on the minute grid): shape (servers, times), rounded to 1e-6 as written."""
    kind = RESOURCES.index(resource)
    s = servers.astype(np.uint64)[:, None]
    u1, u2, u3 = (_uniform(_key(s, kind, 1 << 40 | j)) for j in (1, 2, 3))
    angle = 2 * np.pi * (times.astype(np.float64) % DAY) / DAY
    phase = 2 * np.pi * u3
    daily = np.sin(angle)[None, :] * np.cos(phase) + np.cos(angle)[None, :] * np.sin(phase)
    noise = 2 * _uniform(_key(s, kind, (times // MINUTE).astype(np.uint64)[None, :])) - 1
    if resource == "cpu":
        base = 0.01 + 0.8 * u1**2
        v = base * (1 + (0.2 + 0.6 * u2) * daily) + (0.02 + 0.1 * base) * noise
    else:
        base = 0.1 + 0.85 * u1
        v = base + 0.05 * u2 * daily + 0.02 * noise
    return np.round(np.clip(v, 0.0, 1.0), 6)


@dataclass
class Fleet:
    n: int
    ids: np.ndarray = field(init=False)
    keys: list[dict[str, str]] = field(init=False)  # source, server_id
    attrs: list[dict[str, str]] = field(init=False)  # + the attributes
    costs: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ids = np.arange(1, self.n + 1, dtype=np.int64)
        self.keys, self.attrs, costs = [], [], []
        types = ("cx22", "cx32", "cpx31", "ccx23")
        for i in range(self.n):
            dedicated = i % 10 == 9
            key = {"source": "dedicated" if dedicated else "cloud", "server_id": str(i + 1)}
            server_type = "AX42" if dedicated else types[i % 4]
            self.keys.append(key)
            self.attrs.append({**key, "server_name": f"s{i + 1}", "server_type": server_type,
                               "location": ("fsn1", "nbg1", "hel1")[i % 3],
                               "hcloud_project": "" if dedicated else f"p{i % 5}"})
            costs.append(PRICES[server_type])
        self.costs = np.asarray(costs)

    @property
    def bill(self) -> float:
        return float(self.costs.sum()) + sum(UNATTACHED)


@dataclass
class Span:
    """The sample times of one N: everything ends at ``end`` (a minute, just before now)."""
    end: int

    def hourly(self, lo: int, hi: int) -> np.ndarray:
        t = self.end - HOUR * np.arange(HOURLY_SAMPLES - 1, -1, -1, dtype=np.int64)
        return t[(t >= lo) & (t < hi)]

    def raw(self, lo: int, hi: int) -> np.ndarray:
        first = self.end - MINUTE * (RAW_SAMPLES - 1)  # lo, hi and end are whole minutes
        return np.arange(max(lo, first), min(hi, self.end + 1), MINUTE, dtype=np.int64)

    def instant(self, lo: int, hi: int) -> np.ndarray:
        t = self.end - INSTANT_STEP * np.arange(INSTANT_SAMPLES - 1, -1, -1, dtype=np.int64)
        return t[(t >= lo) & (t < hi)]

    @property
    def slices(self) -> list[tuple[int, int]]:
        first = self.end - MINUTE * (RAW_SAMPLES - 1)
        return [(k * BLOCK, (k + 1) * BLOCK) for k in range(first // BLOCK, self.end // BLOCK + 1)]


def batches(n: int, per_row: int, budget: int = 4_000_000) -> list[slice]:
    step = max(1, budget // max(1, per_row))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def write_slice(path: Path, fleet: Fleet, span: Span, lo: int, hi: int, raw: bool
                ) -> tuple[int, int]:
    """One 54-hour OpenMetrics file; returns (samples, bytes)."""
    hours = span.hourly(lo, hi)
    with OpenMetricsWriter(path) as om:
        if hours.size:
            minutes = (hours[:, None] - MINUTE * np.arange(59, -1, -1)[None, :]).ravel()
            hourly: dict[str, np.ndarray] = {}
            for resource in RESOURCES:
                avg = np.empty((fleet.n, hours.size))
                top = np.empty((fleet.n, hours.size))
                for b in batches(fleet.n, minutes.size):
                    v = utilisation(resource, fleet.ids[b], minutes).reshape(-1, hours.size, 60)
                    avg[b], top[b] = v.mean(axis=2), v.max(axis=2)
                hourly[f"source_server_id:{resource}_utilisation:avg1h"] = avg
                hourly[f"source_server_id:{resource}_utilisation:max1h"] = top
            for name in HOURLY:
                om.family(name)
                om.series(fleet.keys, hourly[name], hours)
        minutes = span.raw(lo, hi)
        if raw and minutes.size:
            for name, resource in RAW.items():
                om.family(name)
                labels = [{**a, "via": "agent"} for a in fleet.attrs]
                for b in batches(fleet.n, minutes.size):
                    om.series(labels[b], utilisation(resource, fleet.ids[b], minutes), minutes)
        instants = span.instant(lo, hi)
        if instants.size:
            ones = np.ones((fleet.n, instants.size))
            om.family(INFO)
            om.series([{"job": "hetzner", "instance": "exporter:8790", **a} for a in fleet.attrs],
                      ones, instants)
            om.family(COST)
            om.series([{**a, "label_project": f"lp{i % 7}",
                        "label_env": ("prod", "stage", "dev")[i % 3]}
                       for i, a in enumerate(fleet.attrs)],
                      fleet.costs[:, None] * ones, instants)
            om.family(RESOURCE_COST)
            om.series([{"job": "hetzner", "instance": "exporter:8790", "hcloud_project": "p0",
                        "kind": "volume", "resource_id": str(j + 1), "location": "fsn1"}
                       for j in range(len(UNATTACHED))],
                      np.asarray(UNATTACHED)[:, None] * np.ones((1, instants.size)), instants)
    return om.samples, om.bytes


@dataclass
class Backfill:
    blocks: list[Path]
    samples: int
    bytes: int
    write_s: float  # generating and writing the files (main thread)
    promtool_s: float  # promtool run time, summed over the files
    wall_s: float  # the whole conversion, writing and promtool overlapped


def backfill(fleet: Fleet, span: Span, out: Path, raw: bool, workers: int) -> Backfill:
    """Write the files one 54-hour slice at a time and convert them, ``workers``
    promtool processes overlapping the writing of the next file."""
    blocks_dir = out / "blocks"
    blocks_dir.mkdir(parents=True)
    started = time.monotonic()
    samples = size = 0
    write_s = 0.0
    pending: list[tuple[Future[tuple[list[Path], float]], Path, int]] = []
    results: list[tuple[list[Path], float, int]] = []

    def convert(path: Path) -> tuple[list[Path], float]:
        t0 = time.monotonic()
        own = out / (path.stem + ".blocks")  # promtool processes in parallel: one dir each
        made = promtool_blocks(path, own, BLOCK_FLAG, timeout=6 * HOUR)
        seconds = time.monotonic() - t0
        path.unlink()
        blocks = [b.rename(blocks_dir / b.name) for b in made]
        shutil.rmtree(own)
        return blocks, seconds

    def collect() -> None:
        future, _, count = pending.pop(0)
        blocks, seconds = future.result()
        results.append((blocks, seconds, count))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for lo, hi in span.slices:
                while len(pending) >= workers:
                    collect()
                path = out / f"slice-{lo}.om"
                t0 = time.monotonic()
                count, nbytes = write_slice(path, fleet, span, lo, hi, raw)
                write_s += time.monotonic() - t0
                samples += count
                size += nbytes
                pending.append((pool.submit(convert, path), path, count))
            while pending:
                collect()
        finally:
            for future, _, _ in pending:
                future.cancel()
    promtool_s = 0.0
    blocks: list[Path] = []
    for made, seconds, count in results:
        promtool_s += seconds
        if len(made) != 1:
            raise BenchError(f"expected one block per 54-hour file, promtool made {len(made)}")
        got = block_stats(made[0])["stats"]["numSamples"]
        if got != count:
            raise BenchError(f"{made[0].name}: {got} samples in the block, {count} written")
        blocks += made
    return Backfill(sorted(blocks), samples, size, write_s, promtool_s,
                    time.monotonic() - started)


# ----------------------------------------------------------------------------
# Measuring a group
# ----------------------------------------------------------------------------
@dataclass
class Measurement:
    form: str
    n: int
    durations: list[float]
    per_rule: list[tuple[str, float]]
    cpu_per_evaluation: float  # Prometheus' CPU seconds over the measured evaluations / count
    loadavg: str  # /proc/loadavg after the evaluations: other work on the machine
    rss_bytes: float
    counts: dict[str, int]
    crosscheck: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.durations)


def hardlink_blocks(blocks: Sequence[Path], data: Path) -> None:
    """A fresh data dir of hard links: each run starts with an empty head and no WAL."""
    data.mkdir(parents=True)
    for block in blocks:
        shutil.copytree(block, data / block.name, copy_function=os.link)


def rule_group_samples(prom: Prometheus, name: str) -> dict[str, float]:
    """The group's ``prometheus_rule_*`` figures and the server's RSS, from its /metrics."""
    text = prom.metrics_text()
    out: dict[str, float] = {}
    for metric in ("prometheus_rule_group_last_duration_seconds",
                   "prometheus_rule_group_last_evaluation_timestamp_seconds",
                   "prometheus_rule_evaluation_failures_total",
                   "process_resident_memory_bytes", "process_cpu_seconds_total"):
        for labels, value in parse_samples(text, metric):
            if metric.startswith("process_") or labels.get("rule_group", "").endswith(
                    ";" + name):
                out[metric] = value
    return out


def measure(form: str, group: dict[str, Any], fleet: Fleet, blocks: Sequence[Path],
            work: Path, args: argparse.Namespace,
            extra: Callable[[Prometheus], dict[str, float]] | None = None) -> Measurement:
    run = work / form
    run.mkdir()
    hardlink_blocks(blocks, run / "data")
    rules = run / "group.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False, width=1000))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        raise BenchError(f"promtool check rules {rules}: {check.stdout}{check.stderr}")
    prom = Prometheus(run / "data", rule_files=[rules], workdir=run, ready_timeout=300,
                      evaluation_interval=args.interval, request_timeout=600,
                      flags=[f"--query.lookback-delta={LOOKBACK}"])
    name = group["name"]
    with prom:
        durations: list[float] = []
        last_ts = None
        seen = 0
        deadline = time.monotonic() + args.timeout
        sample: dict[str, float] = {}
        cpu_start = 0.0
        while len(durations) < args.evaluations:
            if time.monotonic() > deadline:
                raise BenchError(f"{form} N={fleet.n}: {seen} evaluations in {args.timeout} s")
            if not prom.running():
                raise BenchError(f"prometheus exited: {prom.logs()}")
            sample = rule_group_samples(prom, name)
            ts = sample.get("prometheus_rule_group_last_evaluation_timestamp_seconds", 0.0)
            if ts > 0 and ts != last_ts:
                last_ts = ts
                seen += 1
                if seen == 1:
                    cpu_start = sample["process_cpu_seconds_total"]
                if seen > 1:  # the first evaluation warms up caches: not counted
                    durations.append(sample["prometheus_rule_group_last_duration_seconds"])
                    print(f"  {form} N={fleet.n}: evaluation {seen}: "
                          f"{durations[-1]:.3f} s", flush=True)
            time.sleep(0.25)
        cpu = (sample["process_cpu_seconds_total"] - cpu_start) / len(durations)
        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if sample.get("prometheus_rule_evaluation_failures_total", 0.0) != 0:
            raise BenchError(f"{form}: rule evaluation failures: {prom.logs()}")
        # The rules' own evaluation times of the last evaluation, and their health.
        (api_group,) = [g for g in prom.rule_groups() if g["name"] == name]
        for rule in api_group["rules"]:
            if rule["health"] != "ok":
                raise BenchError(f"{form}: {rule['name']} is {rule['health']}: "
                                 f"{rule.get('lastError')}")
        per_rule = sorted(((r["name"], float(r["evaluationTime"])) for r in api_group["rules"]),
                          key=lambda x: -x[1])
        counts = verify_outputs(prom, group, fleet, form)
        crosscheck = extra(prom) if extra else {}
    return Measurement(form, fleet.n, durations, per_rule, cpu, loadavg,
                       sample.get("process_resident_memory_bytes", 0.0), counts, crosscheck)


def verify_outputs(prom: Prometheus, group: dict[str, Any], fleet: Fleet, form: str
                   ) -> dict[str, int]:
    """Every per-server rule produced one series per server; the tier cost adds up."""
    counts: dict[str, int] = {}
    for rule in group["rules"]:
        record = rule["record"]
        result = prom.query(f"count({record})")
        counts[record] = int(float(result[0]["value"][1])) if result else 0
        if record.startswith("source_server_id:") and counts[record] != fleet.n:
            raise BenchError(f"{form}: {record} has {counts[record]} series, not {fleet.n}")
    tiers = prom.query("count by (tier) (source_server_id:utilisation:tier30d)")
    counts["tiers"] = len(tiers)
    by_tier = prom.query("tier:monthly_cost_euros:sum")
    if len(by_tier) != len(tiers) + 1:  # + unattached
        raise BenchError(f"{form}: tier:monthly_cost_euros:sum has {len(by_tier)} series, "
                         f"expected {len(tiers) + 1}")
    total = sum(float(r["value"][1]) for r in by_tier)
    if not math.isclose(total, fleet.bill, rel_tol=1e-9):
        raise BenchError(f"{form}: cost by tier adds up to {total}, the bill is {fleet.bill}")
    print(f"  {form} N={fleet.n}: every rule healthy, {fleet.n} series per server rule; "
          "tiers " + ", ".join(f"{r['metric'].get('tier')}={r['value'][1]}"
                               for r in sorted(tiers, key=lambda r: r["metric"].get("tier"))),
          flush=True)
    return counts


def crosscheck(span: Span) -> Callable[[Prometheus], dict[str, float]]:
    """At the last sample, 30 days hold exactly all data: hourly and raw figures agree."""
    def run(prom: Prometheus) -> dict[str, float]:
        out: dict[str, float] = {}
        for resource in RESOURCES:
            for fn, stat in (("avg_over_time", "avg1h"), ("max_over_time", "max1h")):
                hourly = f"{fn}(source_server_id:{resource}_utilisation:{stat}[30d])"
                raw = (f"max by (source, server_id) ({fn}("
                       f"source_server_id:{resource}_utilisation:ratio[30d]))")
                diff = prom.query(f"max(abs({hourly} - on (source, server_id) {raw}))",
                                  at=span.end, timeout=600)
                pairs = prom.query(f"count({hourly} - on (source, server_id) {raw})",
                                   at=span.end, timeout=600)
                out[f"{resource} {fn}"] = float(diff[0]["value"][1]) if diff else math.inf
                out[f"{resource} {fn} pairs"] = float(pairs[0]["value"][1]) if pairs else 0
        return out
    return run


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
def sizes(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from e
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def estimated_slice_bytes(n: int, raw: bool) -> int:
    """OpenMetrics bytes of one 54-hour file (about 80 bytes an hourly line, 150 a raw one)."""
    hours = BLOCK // HOUR
    return 4 * n * hours * 80 + (2 * n * hours * 60 * 150 if raw else 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10_000],
                        help="fleet sizes (default 1000,10000)")
    parser.add_argument("--naive-sizes", type=sizes, default=[1000],
                        help="sizes at which the naive form is measured too (default 1000; "
                             "each needs 43,200 raw samples per series: ~13 GB of "
                             "OpenMetrics per 1,000 servers, written and converted in "
                             "54-hour pieces)")
    parser.add_argument("--evaluations", type=int, default=5,
                        help="evaluations measured per group, after one warm-up (default 5)")
    parser.add_argument("--interval", default="15s", help="group interval (default 15s)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds to wait for the evaluations of one run (default 3600)")
    parser.add_argument("--workers", type=int, default=2,
                        help="promtool processes in parallel (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (blocks, rule files, Prometheus logs; the "
                             "OpenMetrics files are deleted as soon as they are converted)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="parent of the work directory (default: the system's temp dir)")
    args = parser.parse_args(argv)
    if not set(args.naive_sizes) <= set(args.sizes):
        parser.error("every --naive-sizes value must be in --sizes")
    if not binaries_available():
        print("rules bench: prometheus/promtool not installed (apt-get install prometheus)",
              file=sys.stderr)
        return 1

    group = load_group()
    check_inputs(group)
    hierarchical = with_interval(group, args.interval)
    naive = naive_group(group, args.interval)
    windows = sum(r["expr"].count("[30d]") for r in group["rules"])
    print(f"rules bench: group {GROUP} from {RULES_FILE.relative_to(REPO_ROOT)} "
          f"({len(group['rules'])} rules), interval {args.interval} here (4m shipped); "
          f"sizes {args.sizes}, naive at {args.naive_sizes}; "
          f"{os.cpu_count()} CPUs", flush=True)

    work = Path(tempfile.mkdtemp(prefix="infrascope-rules-bench-", dir=args.workdir))
    results: dict[int, dict[str, Any]] = {}
    ok = True
    try:
        for n in args.sizes:
            raw = n in args.naive_sizes
            free = shutil.disk_usage(work).free
            need = (args.workers + 1) * estimated_slice_bytes(n, raw)
            if need > free:
                raise BenchError(f"N={n}: needs ~{human_bytes(need)} of disk at once, "
                                 f"{human_bytes(free)} free")
            fleet = Fleet(n)
            span = Span(end=int(time.time()) // MINUTE * MINUTE - MINUTE)
            out = work / f"n{n}"
            out.mkdir()
            print(f"N={n}: writing and converting 30 days "
                  f"({'hourly + raw' if raw else 'hourly'} series) ...", flush=True)
            bf = backfill(fleet, span, out, raw, args.workers)
            blocks_bytes = sum(f.stat().st_size for b in bf.blocks for f in b.rglob("*")
                               if f.is_file())
            print(f"N={n}: OpenMetrics {human_bytes(bf.bytes)}, {bf.samples:,} samples in "
                  f"{len(bf.blocks)} files -> {len(bf.blocks)} blocks of {BLOCK // HOUR} h "
                  f"({human_bytes(blocks_bytes)}); writing {bf.write_s:.0f} s, promtool "
                  f"{bf.promtool_s:.0f} s (summed; {args.workers} in parallel), "
                  f"wall {bf.wall_s:.0f} s", flush=True)
            row: dict[str, Any] = {"backfill": bf, "blocks_bytes": blocks_bytes}
            row["hierarchical"] = measure("hierarchical", hierarchical, fleet, bf.blocks,
                                          out, args)
            if raw:
                row["naive"] = measure("naive", naive, fleet, bf.blocks, out, args,
                                       extra=crosscheck(span))
            results[n] = row
            for form in ("hierarchical", "naive"):
                m = row.get(form)
                if m is None:
                    continue
                top = ", ".join(f"{name.split(':', 1)[1]} {sec:.3f}"
                                for name, sec in m.per_rule)
                print(f"N={n} {form}: median {m.median:.3f} s over {len(m.durations)} "
                      f"evaluations (min {min(m.durations):.3f}, max {max(m.durations):.3f}); "
                      f"Prometheus CPU {m.cpu_per_evaluation:.3f} s per evaluation; load "
                      f"average after: {m.loadavg}; Prometheus RSS {human_bytes(m.rss_bytes)}; "
                      f"rules, slowest first (last evaluation, s): {top}", flush=True)
            if "naive" in row:
                cc = row["naive"].crosscheck
                worst = max(v for k, v in cc.items() if not k.endswith("pairs"))
                pairs = min(v for k, v in cc.items() if k.endswith("pairs"))
                agree = worst <= 1e-5 and pairs == n
                ok &= agree
                print(f"N={n} cross-check at the last sample: hourly vs raw 30-day avg and "
                      f"max, {pairs:.0f} servers, largest difference {worst:.2e} "
                      f"-> {'OK' if agree else 'MISMATCH'}", flush=True)
    except BenchError as e:
        print(f"rules bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"rules bench: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("| servers | OpenMetrics | samples | promtool (summed) | range samples read per "
          "evaluation: hierarchical / naive | hierarchical: median wall (CPU) | naive: median "
          "wall (CPU) | ratio wall (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for n, row in results.items():
        bf, h = row["backfill"], row["hierarchical"]
        nv = row.get("naive")
        read = windows * n  # 30-day range selectors, over one series per server each
        print(f"| {n:,} | {human_bytes(bf.bytes)} | {bf.samples:,} | {bf.promtool_s:.0f} s | "
              f"{read * HOURLY_SAMPLES / 1e6:.1f} M / {read * RAW_SAMPLES / 1e6:.0f} M | "
              f"{h.median:.3f} s ({h.cpu_per_evaluation:.2f} s) | "
              + (f"{nv.median:.1f} s ({nv.cpu_per_evaluation:.1f} s) | "
                 f"{nv.median / h.median:.1f}x "
                 f"({nv.cpu_per_evaluation / h.cpu_per_evaluation:.1f}x) |" if nv else "– | – |"))
    measured_naive = {n: r["naive"].median / n for n, r in results.items() if "naive" in r}
    if measured_naive:
        base_n = max(measured_naive)
        for n, row in results.items():
            if "naive" not in row:
                guess = measured_naive[base_n] * n
                print(f"naive at {n:,}: NOT MEASURED; linear extrapolation of {base_n:,}: "
                      f"~{guess:.0f} s (~{guess / row['hierarchical'].median:.0f}x)")

    print()
    if TARGET_SIZE in results:
        h = results[TARGET_SIZE]["hierarchical"].median
        met = h < TARGET_SECONDS
        ok &= met
        print(f"target: hierarchical group at {TARGET_SIZE:,} servers < {TARGET_SECONDS:g} s: "
              f"{h:.3f} s -> {'OK' if met else 'MISSED'}")
    else:
        print(f"target: hierarchical group at {TARGET_SIZE:,} servers < {TARGET_SECONDS:g} s: "
              f"not checked ({TARGET_SIZE:,} not in --sizes)")
    for n, row in results.items():
        if "naive" in row:
            ratio = row["naive"].median / row["hierarchical"].median
            met = ratio >= TARGET_RATIO
            ok &= met
            print(f"target: naive / hierarchical at {n:,} servers >= {TARGET_RATIO:g}: "
                  f"{ratio:.1f} -> {'OK' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
