#!/usr/bin/env python3
"""Cost of the 30-day rule groups: our hierarchical rules vs the naive form, on a real Prometheus.

The rules pack computes the 30-day figures in shard groups (``window_shards`` in
``prometheus/config.yaml``): ``infrascope-utilisation-30d-<j>``, one per file
``prometheus/rules/infrascope-utilisation-30d-<j>.rules.yml`` (one group
``infrascope-utilisation-30d`` with one shard). Each reads the hourly series of the
servers whose label ``shard`` (the last two digits of ``server_id``, zero-padded) it
selects, records the bare 30-day figures ``shard_source_server_id:*`` (range functions
only), joins the inventory attributes into ``source_server_id:*`` and computes the tier.
The cost by tier is a group of its own, ``infrascope-cost-by-tier`` in
``infrascope-recording.rules.yml``, reading every shard's tiers.

For each fleet size N (default 1,000 and 10,000 servers):

1. Writes 30 days of backfill as OpenMetrics (numpy, fixed-width lines) and
   turns it into TSDB blocks with promtool. Per server: the four hourly
   series the shard groups read (``source_server_id:{cpu,memory}_utilisation:
   {avg1h,max1h}``, one sample an hour, 720 each, with the labels the hourly
   rules give them: ``source``, ``server_id``, ``shard``), and for the sizes in
   ``--naive-sizes`` the 1-minute series ``source_server_id:{cpu,memory}_
   utilisation:ratio`` (the density of raw samples at a 60 s scrape: 43,200 per
   series; written with a ``shard`` label too, so the naive groups can keep the
   shard matchers); the hourly samples are the exact mean / maximum of the 60 raw
   samples of their hour. Values come from a deterministic workload (a hash of
   server and minute; a per-server level and daily cycle, all tiers occur).
   The instant-vector inputs — ``hetzner_server_info`` (job ``hetzner``, instance,
   source, server_id and the attributes), the per-server cost
   ``source_server_id:monthly_cost_euros:sum`` and a few unattached resources'
   ``hetzner_resource_monthly_cost_euros`` — get a sample every hour over the whole
   30 days plus one every 10 minutes over the last hour. In production they are
   scraped or recorded every minute for as long as the server exists, so they are
   in every block. That matters: Prometheus 2.42 pays ~7-10 µs per series per TSDB
   block for every selector of a query, over all blocks overlapping the query's
   longest range — an instant selector of ``hetzner_server_info`` in a rule that also
   reads ``[30d]`` costs about as much as the 30-day read itself. Inputs sampled only
   in the last hour (what this bench used to write) would hide that cost.
   The files are cut at multiples of 54 h and converted with
   ``--max-block-duration=72h``: one 54-hour block per file, the block size a
   Prometheus with 35 days of retention compacts to (so a 30-day window spans
   14-15 blocks, as in production), and promtool parses each file twice rather
   than the whole month once per block. Each file is deleted once converted.
2. Runs one Prometheus per form on (hard links of) those blocks with every shard
   group and the cost-by-tier group, each in a rule file of its own (as shipped:
   the shards record the same names), all evaluated every ``--interval``:
   - hierarchical: the groups exactly as generated (read from their files, only
     the interval changed);
   - naive: the shard groups with their hourly inputs replaced, by textual
     substitution that keeps the label matchers, with the 1-minute ``:ratio``
     series (``...:avg1h{shard=~".[7]"}[30d]`` -> ``...:ratio{shard=~".[7]"}[30d]``)
     and the coverage divisor 720 with 43200 — ``avg_over_time`` etc. over 30 days
     of raw samples; group names suffixed ``-naive`` (the cost-by-tier group too,
     otherwise unchanged).
   The default interval is the shard groups' own (4m as generated): Prometheus gives
   each group a fixed offset within the interval (a hash of its name and file), not an
   even spread, so some evaluations overlap others as they would in production; the
   bench counts the measured evaluations that overlapped another group's. A shorter
   ``--interval`` gives quicker results with more overlap on a 2-core machine.
   ``--query.lookback-delta=6h``: the instant inputs were last sampled when the
   files were written, minutes before the evaluations (in production they are
   scraped every minute and the default 5m applies). Range selectors, which
   carry the 30-day cost, do not depend on it; a query with only instant selectors
   reads the blocks of the last 6 h (one or two) instead of the head only.
3. Skips each group's first evaluation (warm-up) and reads the group's
   ``prometheus_rule_group_last_duration_seconds`` (label ``rule_group``) after each
   of its next ``--evaluations``; reports per group the median, and per form the
   slowest shard group's median, the sum of the shard groups' medians (the 30-day
   work of one round, every shard once), the cost-by-tier group's median, and
   Prometheus' CPU seconds per round (its CPU from when every group has had its
   warm-up to when every group has its measured evaluations, divided by the shard
   evaluations completed meanwhile / the number of shards; the cost-by-tier
   evaluations of that time are included). Prometheus' /metrics is read when a
   group's next evaluation is due to have finished, not continuously: each read
   costs it ~3 ms of CPU, which would count in the CPU per round. Checks that every
   rule is healthy; that each shard value is selected by exactly one shard group;
   that every ``source_server_id:*`` and bare ``shard_source_server_id:*`` record of
   the shard groups has N series in total over all shards, one per server; that every
   server has a tier (none ``unknown``: all have 30 days of data) and the cost by tier
   (one per tier plus ``unattached``) adds up to the bill; and, where both forms ran,
   that the hourly and the raw 30-day averages and maxima agree.

Targets: every 30-day shard group under 2 s at 10,000 servers (the slowest is
reported); the naive form at least 10x as expensive, compared on the sum over the
shard groups (the CPU-per-round ratio is printed too), on the sizes where both were
measured. The naive form at sizes not measured is printed only as a labelled
linear extrapolation. Exits 1 on a missed target or a failed check.

Run: `make bench` or `.venv/bin/python bench/rules_bench.py [--sizes 1000,10000]
[--naive-sizes 1000] [--interval 4m] [--keep]`; a smoke run: `--sizes 200
--naive-sizes 200 --evaluations 2 --interval 20s`.
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

from infrascope_cli.history import openmetrics_to_blocks
from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError
from infrascope_core.exposition import OpenMetricsWriter
from infrascope_core.prometheus import (
    PROMTOOL,
    Prometheus,
    binaries_available,
    block_stats,
    parse_samples,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = REPO_ROOT / "prometheus" / "rules"
RULES_FILE = RULES_DIR / "infrascope-recording.rules.yml"
SHARD_GLOB = "infrascope-utilisation-30d*.rules.yml"
SHARD_GROUP = re.compile(r"infrascope-utilisation-30d(?:-(\d+))?")
COST_GROUP = "infrascope-cost-by-tier"
COST_BY_TIER = "tier:monthly_cost_euros:sum"
TIER = "source_server_id:utilisation:tier30d"

MINUTE, HOUR, DAY = 60, 3600, 86_400
HOURLY_SAMPLES = 720  # 30 days of one sample an hour
RAW_SAMPLES = 43_200  # 30 days of one sample a minute
BLOCK = 54 * HOUR  # promtool --max-block-duration=72h -> 54-hour blocks
MAX_BLOCK_DURATION = "72h"  # promtool --max-block-duration: 54-hour blocks
LOOKBACK = "6h"
# Instant inputs: every hour over the 30 days (on the hourly grid) plus every 10 minutes
# over the last hour.
RECENT_STEP, RECENT_SAMPLES = 600, 6
TARGET_SECONDS, TARGET_RATIO, TARGET_SIZE = 2.0, 10.0, 10_000

RESOURCES = ("cpu", "memory")
HOURLY = {f"source_server_id:{r}_utilisation:{s}": (r, s)
          for r in RESOURCES for s in ("avg1h", "max1h")}
RAW = {f"source_server_id:{r}_utilisation:ratio": r for r in RESOURCES}
# An hourly input with its label matchers (if any) in front of a range: group 1 the
# resource, group 2 the matchers and the bracket.
HOURLY_RANGE = re.compile(r"(?<![\w:])source_server_id:(cpu|memory)_utilisation:(?:avg1h|max1h)"
                          r"((?:\{[^}]*\})?\[)")
INFO = "hetzner_server_info"
COST = "source_server_id:monthly_cost_euros:sum"
RESOURCE_COST = "hetzner_resource_monthly_cost_euros"
WRITTEN = set(HOURLY) | set(RAW) | {INFO, COST, RESOURCE_COST}
UNATTACHED = (3.57, 4.76, 11.9)  # a volume, a floating IP, a load balancer
PRICES = {"cx22": 4.59, "cx32": 7.59, "cpx31": 15.59, "ccx23": 31.49, "AX42": 49.0}
SHARD_VALUES = tuple(f"{v:02d}" for v in range(100))


class BenchError(Exception):
    """A check failed: the measurement would not mean what it says."""


# ----------------------------------------------------------------------------
# The rule groups
# ----------------------------------------------------------------------------
def load_group(path: Path = RULES_FILE, name: str = COST_GROUP) -> dict[str, Any]:
    groups = yaml.safe_load(path.read_text())["groups"]
    found = [g for g in groups if g["name"] == name]
    if len(found) != 1:
        raise BenchError(f"{path}: expected one group {name!r}, found {len(found)}")
    group: dict[str, Any] = found[0]
    return group


def load_shard_groups(rules_dir: Path = RULES_DIR) -> list[tuple[Path, dict[str, Any]]]:
    """Every group of ``infrascope-utilisation-30d*.rules.yml``, by shard number: 0, 1, ..."""
    found: list[tuple[int, Path, dict[str, Any]]] = []
    for path in sorted(rules_dir.glob(SHARD_GLOB)):
        for group in yaml.safe_load(path.read_text())["groups"]:
            m = SHARD_GROUP.fullmatch(group["name"])
            if m is None:
                raise BenchError(f"{path}: unexpected group {group['name']!r}")
            found.append((int(m.group(1) or 0), path, group))
    if not found:
        raise BenchError(f"no 30-day groups in {rules_dir}/{SHARD_GLOB}")
    found.sort(key=lambda x: x[0])
    numbers = [j for j, _, _ in found]
    if numbers != list(range(len(found))):
        raise BenchError(f"30-day shard groups numbered {numbers}, expected 0..{len(found) - 1}")
    stale = [g["name"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
             if SHARD_GROUP.fullmatch(g["name"])]
    if stale:
        raise BenchError(f"{RULES_FILE}: 30-day groups {stale} besides the shard files")
    return [(path, group) for _, path, group in found]


def metric_names(expr: str) -> set[str]:
    """Recorded (``level:metric:ops``) and exporter (``hetzner_*``) names in ``expr``."""
    return set(re.findall(r"(?<![\w:])((?:[a-z_]+:)+[a-z0-9_]+|hetzner_[a-z0-9_]+)(?![\w:])",
                          expr))


def check_inputs(groups: Sequence[dict[str, Any]]) -> None:
    """Every series the groups read is one this benchmark writes (or one of them records)."""
    records = {r["record"] for g in groups for r in g["rules"]}
    read = set().union(*(metric_names(r["expr"]) for g in groups for r in g["rules"]))
    missing = read - records - WRITTEN
    if missing:
        raise BenchError(f"groups {', '.join(g['name'] for g in groups)} read series this "
                         f"bench does not write: {sorted(missing)}; extend the bench")


def shard_of(server_id: str) -> str | None:
    """Label ``shard`` as the hourly rules set it (two ``label_replace``, anchored)."""
    shard = None
    if re.fullmatch(r"[0-9]", server_id):
        shard = "0" + server_id
    m = re.fullmatch(r".*([0-9][0-9])", server_id)
    return m.group(1) if m else shard


MATCHER = re.compile(r'(?<![\w])(shard|server_id)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def check_shards(groups: Sequence[dict[str, Any]]) -> None:
    """Each shard value (and the server ids that have it) is selected by exactly one
    shard group, and within a group every ``shard`` / ``server_id`` matcher selects the
    same shards. (Two groups recording the same series would not show in the counts.)"""
    ids = [str(i) for i in range(1000)]
    owner: dict[str, str] = {}
    for group in groups:
        text = "\n".join(r["expr"] for r in group["rules"])
        selected: set[frozenset[str]] = set()
        for label, op, value in MATCHER.findall(text):
            if op not in ("=", "=~"):
                raise BenchError(f"{group['name']}: matcher {label}{op}\"{value}\" not understood")
            regex = re.compile(re.escape(value) if op == "=" else value)
            if label == "shard":
                selected.add(frozenset(v for v in SHARD_VALUES if regex.fullmatch(v)))
            else:
                matched = {i for i in ids if regex.fullmatch(i)}
                shards = frozenset(str(shard_of(i)) for i in matched)
                if matched != {i for i in ids if shard_of(i) in shards}:
                    raise BenchError(f"{group['name']}: server_id=~\"{value}\" does not "
                                     "select whole shards")
                selected.add(shards)
        if len(selected) > 1:
            raise BenchError(f"{group['name']}: its matchers select different shards")
        for value in (next(iter(selected)) if selected else SHARD_VALUES):
            if value in owner:
                raise BenchError(f"shard {value} selected by {owner[value]} and "
                                 f"{group['name']}")
            owner[value] = group["name"]
    missing = sorted(set(SHARD_VALUES) - set(owner))
    if missing:
        raise BenchError(f"shards selected by no 30-day group: {missing}")


def with_interval(group: dict[str, Any], interval: str, name: str | None = None
                  ) -> dict[str, Any]:
    out = copy.deepcopy(group)
    out["interval"] = interval
    if name:
        out["name"] = name
    return out


def naive_group(group: dict[str, Any], interval: str) -> dict[str, Any]:
    """A shard group over raw 1-minute samples: hourly inputs -> ``:ratio`` (label
    matchers kept), 720 -> 43200."""
    out = with_interval(group, interval, group["name"] + "-naive")
    replaced = {"series": 0, "divisor": 0}
    for rule in out["rules"]:
        expr, count = HOURLY_RANGE.subn(r"source_server_id:\1_utilisation:ratio\2", rule["expr"])
        replaced["series"] += count
        expr, count = re.subn(rf"/ {HOURLY_SAMPLES}\b", f"/ {RAW_SAMPLES}", expr)
        replaced["divisor"] += count
        if set(HOURLY) & metric_names(expr):
            raise BenchError(f"{rule['record']}: hourly input left after substitution: {expr}")
        rule["expr"] = expr
    if replaced["series"] < len(HOURLY) or replaced["divisor"] != len(RESOURCES):
        raise BenchError(f"{group['name']}: naive substitution did not find what it "
                         f"expects: {replaced}")
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
    # The label sets of the series written (the same in every file).
    hourly_labels: list[dict[str, str]] = field(init=False)  # source, server_id, shard
    raw_labels: list[dict[str, str]] = field(init=False)
    info_labels: list[dict[str, str]] = field(init=False)
    cost_labels: list[dict[str, str]] = field(init=False)

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
        shards = [str(shard_of(k["server_id"])) for k in self.keys]
        self.hourly_labels = [{**k, "shard": s} for k, s in zip(self.keys, shards, strict=True)]
        self.raw_labels = [{**a, "via": "agent", "shard": s}
                           for a, s in zip(self.attrs, shards, strict=True)]
        self.info_labels = [{"job": "hetzner", "instance": "exporter:8790", **a}
                            for a in self.attrs]
        self.cost_labels = [{**a, "label_project": f"lp{i % 7}",
                             "label_env": ("prod", "stage", "dev")[i % 3]}
                            for i, a in enumerate(self.attrs)]

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
        """The instant inputs' times: the hourly grid over 30 days, and every 10 minutes
        over the last hour."""
        recent = self.end - RECENT_STEP * np.arange(RECENT_SAMPLES, dtype=np.int64)
        t = np.union1d(self.hourly(lo, hi), recent)
        return t[(t >= lo) & (t < hi)]

    def slices(self, raw: bool) -> list[tuple[int, int]]:
        """The 54-hour ranges from the first sample written to ``end``."""
        first = self.end - (MINUTE * (RAW_SAMPLES - 1) if raw else HOUR * (HOURLY_SAMPLES - 1))
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
                om.series(fleet.hourly_labels, hourly[name], hours)
        minutes = span.raw(lo, hi)
        if raw and minutes.size:
            for name, resource in RAW.items():
                om.family(name)
                for b in batches(fleet.n, minutes.size):
                    om.series(fleet.raw_labels[b], utilisation(resource, fleet.ids[b], minutes),
                              minutes)
        instants = span.instant(lo, hi)
        if instants.size:
            ones = np.ones((fleet.n, instants.size))
            om.family(INFO)
            om.series(fleet.info_labels, ones, instants)
            om.family(COST)
            om.series(fleet.cost_labels, fleet.costs[:, None] * ones, instants)
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
        made = openmetrics_to_blocks(path, own, block=MAX_BLOCK_DURATION, timeout=6 * HOUR)
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
            for lo, hi in span.slices(raw):
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
# Measuring the groups
# ----------------------------------------------------------------------------
@dataclass
class Measurement:
    form: str
    n: int
    shard_groups: list[str]
    cost_group: str
    durations: dict[str, list[float]]  # per group, the measured evaluations
    per_rule: list[tuple[str, float]]  # the slowest shard group's rules, last evaluation
    cpu_per_round: float  # Prometheus' CPU seconds per round of every shard group once
    rounds: float  # rounds the CPU figure is averaged over
    overlapping: int  # measured shard-group evaluations that overlapped another group's
    missed: float  # prometheus_rule_group_iterations_missed_total, all groups
    loadavg: str  # /proc/loadavg after the evaluations: other work on the machine
    rss_bytes: float
    counts: dict[str, int]
    crosscheck: dict[str, float] = field(default_factory=dict)

    def median(self, group: str) -> float:
        return statistics.median(self.durations[group])

    @property
    def slowest(self) -> tuple[str, float]:
        """The shard group with the largest median, and that median."""
        return max(((g, self.median(g)) for g in self.shard_groups), key=lambda x: x[1])

    @property
    def shard_sum(self) -> float:
        """The shard groups' medians summed: the 30-day work of one round."""
        return sum(self.median(g) for g in self.shard_groups)

    @property
    def cost_median(self) -> float:
        return self.median(self.cost_group)


def hardlink_blocks(blocks: Sequence[Path], data: Path) -> None:
    """A fresh data dir of hard links: each run starts with an empty head and no WAL."""
    data.mkdir(parents=True)
    for block in blocks:
        shutil.copytree(block, data / block.name, copy_function=os.link)


LAST_DURATION = "prometheus_rule_group_last_duration_seconds"
LAST_EVALUATION = "prometheus_rule_group_last_evaluation_timestamp_seconds"
FAILURES = "prometheus_rule_evaluation_failures_total"
MISSED = "prometheus_rule_group_iterations_missed_total"
PROCESS = ("process_resident_memory_bytes", "process_cpu_seconds_total")


def rule_group_samples(prom: Prometheus) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per group name (label ``rule_group`` is ``file;group``), its ``prometheus_rule_*``
    figures; and the server's ``process_*`` figures. From one read of its /metrics."""
    text = prom.metrics_text()
    groups: dict[str, dict[str, float]] = {}
    for metric in (LAST_DURATION, LAST_EVALUATION, FAILURES, MISSED):
        for labels, value in parse_samples(text, metric):
            name = labels.get("rule_group", "").rpartition(";")[2]
            groups.setdefault(name, {})
            groups[name][metric] = groups[name].get(metric, 0.0) + value
    process = {metric: value for metric in PROCESS for _, value in parse_samples(text, metric)}
    return groups, process


def overlaps(evaluations: Sequence[tuple[str, float, float]], measured: set[int]) -> int:
    """How many of the ``measured`` evaluations (indices into ``evaluations``: group,
    start, duration) ran while another group's evaluation ran."""
    count = 0
    for i in measured:
        group, start, duration = evaluations[i]
        if any(other != group and s < start + duration and start < s + d
               for other, s, d in evaluations):
            count += 1
    return count


def measure(form: str, groups: Sequence[dict[str, Any]], fleet: Fleet,
            blocks: Sequence[Path], work: Path, args: argparse.Namespace,
            extra: Callable[[Prometheus], dict[str, float]] | None = None) -> Measurement:
    """``groups``: the shard groups, then the cost-by-tier group; one rule file each."""
    run = work / form
    run.mkdir()
    hardlink_blocks(blocks, run / "data")
    rules_dir = run / "rules"
    rules_dir.mkdir()
    files = []
    for group in groups:
        path = rules_dir / f"{group['name']}.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False, width=1000))
        files.append(path)
    check = subprocess.run([PROMTOOL, "check", "rules", *map(str, files)], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        raise BenchError(f"promtool check rules {rules_dir}: {check.stdout}{check.stderr}")
    names = [g["name"] for g in groups]
    shard_names, cost_name = names[:-1], names[-1]
    prom = Prometheus(run / "data", rule_files=files, workdir=run, ready_timeout=300,
                      evaluation_interval=args.interval, request_timeout=600,
                      flags=[f"--query.lookback-delta={LOOKBACK}"])
    with prom:
        durations: dict[str, list[float]] = {name: [] for name in names}
        seen = dict.fromkeys(names, 0)
        last_ts: dict[str, float] = {}
        evaluations: list[tuple[str, float, float]] = []  # every one seen: group, start, s
        measured: set[int] = set()  # indices of the measured shard-group evaluations
        cpu_start: float | None = None
        window_evaluations = 0  # shard-group evaluations completed in the CPU window
        deadline = time.monotonic() + args.timeout
        interval = duration_seconds(args.interval)
        # When each group's next evaluation should have finished (Unix time): /metrics is
        # read then rather than all the time, each read costing Prometheus ~3 ms of CPU.
        due = dict.fromkeys(names, 0.0)
        stats: dict[str, dict[str, float]] = {}
        process: dict[str, float] = {}
        while any(len(durations[name]) < args.evaluations for name in names):
            if time.monotonic() > deadline:
                raise BenchError(f"{form} N={fleet.n}: evaluations seen in {args.timeout} s: "
                                 f"{seen}")
            if not prom.running():
                raise BenchError(f"prometheus exited: {prom.logs()}")
            stats, process = rule_group_samples(prom)
            for name in names:
                sample = stats.get(name, {})
                ts = sample.get(LAST_EVALUATION, 0.0)
                if ts <= 0 or ts == last_ts.get(name):
                    continue
                last_ts[name] = ts
                seen[name] += 1
                evaluations.append((name, ts, sample[LAST_DURATION]))
                due[name] = ts + interval + sample[LAST_DURATION]
                if cpu_start is not None and name in shard_names:
                    window_evaluations += 1
                # The first evaluation warms up caches: not counted.
                if seen[name] > 1 and len(durations[name]) < args.evaluations:
                    durations[name].append(sample[LAST_DURATION])
                    if name in shard_names:
                        measured.add(len(evaluations) - 1)
                    print(f"  {form} N={fleet.n}: {name} evaluation {seen[name]}: "
                          f"{durations[name][-1]:.3f} s", flush=True)
            if cpu_start is None and all(seen[name] >= 1 for name in names):
                cpu_start = process["process_cpu_seconds_total"]
            time.sleep(min(5.0, max(0.25, min(due.values()) + 0.05 - time.time())))
        assert cpu_start is not None
        rounds = window_evaluations / len(shard_names)
        cpu = (process["process_cpu_seconds_total"] - cpu_start) / max(rounds, 1e-9)
        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        failures = {name: s.get(FAILURES, 0.0) for name, s in stats.items()
                    if s.get(FAILURES, 0.0)}
        if failures:
            raise BenchError(f"{form}: rule evaluation failures {failures}: {prom.logs()}")
        # The rules' own evaluation times of the last evaluation, and their health.
        api = {g["name"]: g for g in prom.rule_groups()}
        for name in names:
            for rule in api[name]["rules"]:
                if rule["health"] != "ok":
                    raise BenchError(f"{form}: {name}: {rule['name']} is {rule['health']}: "
                                     f"{rule.get('lastError')}")
        slowest = max(shard_names, key=lambda g: statistics.median(durations[g]))
        per_rule = sorted(((r["name"], float(r["evaluationTime"]))
                           for r in api[slowest]["rules"]), key=lambda x: -x[1])
        counts = verify_outputs(prom, groups[:-1], fleet, form)
        crosscheck = extra(prom) if extra else {}
    return Measurement(form, fleet.n, shard_names, cost_name, durations, per_rule, cpu, rounds,
                       overlaps(evaluations, measured),
                       sum(s.get(MISSED, 0.0) for s in stats.values()), loadavg,
                       process.get("process_resident_memory_bytes", 0.0), counts, crosscheck)


def count(prom: Prometheus, expr: str) -> int:
    result = prom.query(f"count({expr})")
    return int(float(result[0]["value"][1])) if result else 0


def verify_outputs(prom: Prometheus, shard_groups: Sequence[dict[str, Any]], fleet: Fleet,
                   form: str) -> dict[str, int]:
    """Every per-server record of the shard groups has one series per server over all
    shards; every server has a tier; the cost by tier adds up to the bill."""
    counts: dict[str, int] = {}
    records = dict.fromkeys(r["record"] for g in shard_groups for r in g["rules"])
    for record in records:
        counts[record] = count(prom, record)
        if record.startswith(("source_server_id:", "shard_source_server_id:")):
            servers = count(prom, f"count by (source, server_id) ({record})")
            if counts[record] != fleet.n or servers != fleet.n:
                raise BenchError(f"{form}: {record} has {counts[record]} series for {servers} "
                                 f"servers over all shards, not {fleet.n}")
    tiers = prom.query(f"count by (tier) ({TIER})")
    counts["tiers"] = len(tiers)
    by_name = {r["metric"].get("tier", ""): int(float(r["value"][1])) for r in tiers}
    if "unknown" in by_name or sum(by_name.values()) != fleet.n:
        raise BenchError(f"{form}: tiers {by_name}: every one of {fleet.n} servers has "
                         "30 days of data, none should be unknown")
    by_tier = prom.query(COST_BY_TIER)
    if len(by_tier) != len(tiers) + 1:  # + unattached
        raise BenchError(f"{form}: {COST_BY_TIER} has {len(by_tier)} series, "
                         f"expected {len(tiers) + 1}")
    total = sum(float(r["value"][1]) for r in by_tier)
    if not math.isclose(total, fleet.bill, rel_tol=1e-9):
        raise BenchError(f"{form}: cost by tier adds up to {total}, the bill is {fleet.bill}")
    print(f"  {form} N={fleet.n}: every rule healthy; {len(records)} records of the "
          f"{len(shard_groups)} shard groups, each {fleet.n} series over all shards; tiers "
          + ", ".join(f"{t}={c}" for t, c in sorted(by_name.items()))
          + f"; cost by tier = the bill {fleet.bill:.2f}", flush=True)
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
    """OpenMetrics bytes of one 54-hour file, the largest (the last: 5 more instant
    samples). Line lengths at 5-digit ids, rounded up: an hourly line ~110 bytes, an
    info line ~190, a per-server cost line ~210, a raw line ~195."""
    hours = BLOCK // HOUR
    instants = hours + RECENT_SAMPLES - 1
    return (4 * n * hours * 110 + n * instants * (190 + 210)
            + (2 * n * hours * 60 * 195 if raw else 0))


def short(record: str) -> str:
    """``cpu_utilisation:avg30d``; ``shard cpu_utilisation:avg30d`` for the bare figure."""
    level, _, rest = record.partition(":")
    return ("shard " if level.startswith("shard_") else "") + rest


def interval_text(text: str) -> str:
    """A Prometheus duration (``1m``, ``4m``): it goes into the rule files as it is."""
    try:
        duration_seconds(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def duration_seconds(text: str) -> float:
    return parse_duration(text, "--interval", prometheus=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10_000],
                        help="fleet sizes (default 1000,10000)")
    parser.add_argument("--naive-sizes", type=sizes, default=[1000],
                        help="sizes at which the naive form is measured too (default 1000; "
                             "each needs 43,200 raw samples per series: ~17 GB of "
                             "OpenMetrics per 1,000 servers, written and converted in "
                             "54-hour pieces)")
    parser.add_argument("--evaluations", type=int, default=3,
                        help="evaluations measured per group, after one warm-up (default 3)")
    parser.add_argument("--interval", default=None, type=interval_text,
                        help="interval of every group (default: the shard groups' own, as "
                             "generated — 4m — so the groups overlap as much as they do in "
                             "production; a shorter one gives quicker results)")
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
    if args.evaluations < 1:
        parser.error("--evaluations must be at least 1")
    if not binaries_available():
        print("rules bench: prometheus/promtool not installed (apt-get install prometheus)",
              file=sys.stderr)
        return 1

    try:
        shard_files = load_shard_groups()
        shard_groups = [g for _, g in shard_files]
        cost_group = load_group(RULES_FILE, COST_GROUP)
        if args.interval is None:
            args.interval = interval_text(str(shard_groups[0].get("interval", "1m")))
        if COST_BY_TIER not in {r["record"] for r in cost_group["rules"]}:
            raise BenchError(f"{COST_GROUP} does not record {COST_BY_TIER}")
        check_inputs([*shard_groups, cost_group])
        check_shards(shard_groups)
        hierarchical = [with_interval(g, args.interval) for g in [*shard_groups, cost_group]]
        naive = ([naive_group(g, args.interval) for g in shard_groups]
                 + [with_interval(cost_group, args.interval, cost_group["name"] + "-naive")])
    except BenchError as e:
        print(f"rules bench: FAILED: {e}", file=sys.stderr)
        return 1
    shards = len(shard_groups)
    # 30-day range selectors per server (each group reads them over its own servers).
    windows = sum(r["expr"].count("[30d]") for g in shard_groups for r in g["rules"]) / shards
    names = [p.name for p, _ in shard_files]
    files = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    print(f"rules bench: {shards} shard groups ({files}; "
          f"{len(shard_groups[0]['rules'])} rules each) and {COST_GROUP} from "
          f"{RULES_FILE.name}; interval {args.interval} here "
          f"({shard_groups[0].get('interval', '?')} shipped); sizes {args.sizes}, naive at "
          f"{args.naive_sizes}; {os.cpu_count()} CPUs", flush=True)

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
                  f"({'hourly + raw' if raw else 'hourly'} series, inventory and cost) ...",
                  flush=True)
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
                slowest, top = m.slowest
                medians = ", ".join(f"{j} {m.median(g):.3f}"
                                    for j, g in enumerate(m.shard_groups))
                rules = ", ".join(f"{short(name)} {sec:.3f}" for name, sec in m.per_rule)
                print(f"N={n} {form}: shard groups' medians over {args.evaluations} "
                      f"evaluations (s): {medians}; slowest {slowest} {top:.3f} s, sum "
                      f"{m.shard_sum:.3f} s; {m.cost_group} {m.cost_median:.3f} s; "
                      f"Prometheus CPU {m.cpu_per_round:.3f} s per round (over "
                      f"{m.rounds:.1f} rounds); {m.overlapping} of "
                      f"{len(m.shard_groups) * args.evaluations} measured shard evaluations "
                      f"overlapped another group's; iterations missed {m.missed:.0f}; load "
                      f"average after: {m.loadavg}; Prometheus RSS {human_bytes(m.rss_bytes)}; "
                      f"rules of {slowest}, slowest first (last evaluation, s): {rules}",
                      flush=True)
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
    print(f"| servers | OpenMetrics | samples | promtool (summed) | 30-day samples read per "
          f"round: hierarchical / naive | hierarchical: slowest of {shards} shard groups | "
          f"hierarchical: sum over shard groups (CPU per round) | hierarchical: cost by tier "
          f"| naive: slowest shard group | naive: sum (CPU per round) | naive / hierarchical: "
          f"sum (CPU per round) | RSS hierarchical / naive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, row in results.items():
        bf, h = row["backfill"], row["hierarchical"]
        nv = row.get("naive")
        read = windows * n  # 30-day range selectors, over one series per server each
        print(f"| {n:,} | {human_bytes(bf.bytes)} | {bf.samples:,} | {bf.promtool_s:.0f} s | "
              f"{read * HOURLY_SAMPLES / 1e6:.1f} M / {read * RAW_SAMPLES / 1e6:.0f} M | "
              f"{h.slowest[1]:.3f} s | {h.shard_sum:.3f} s ({h.cpu_per_round:.2f} s) | "
              f"{h.cost_median:.3f} s | "
              + (f"{nv.slowest[1]:.2f} s | {nv.shard_sum:.1f} s ({nv.cpu_per_round:.1f} s) | "
                 f"{nv.shard_sum / h.shard_sum:.1f}x "
                 f"({nv.cpu_per_round / h.cpu_per_round:.1f}x) | "
                 f"{human_bytes(h.rss_bytes)} / {human_bytes(nv.rss_bytes)} |"
                 if nv else f"– | – | – | {human_bytes(h.rss_bytes)} / – |"))
    measured_naive = {n: r["naive"].shard_sum / n for n, r in results.items() if "naive" in r}
    if measured_naive:
        base_n = max(measured_naive)
        for n, row in results.items():
            if "naive" not in row:
                guess = measured_naive[base_n] * n
                print(f"naive at {n:,}: NOT MEASURED; linear extrapolation of {base_n:,}: "
                      f"~{guess:.0f} s summed over the shard groups "
                      f"(~{guess / row['hierarchical'].shard_sum:.0f}x)")

    print()
    if TARGET_SIZE in results:
        slowest, h = results[TARGET_SIZE]["hierarchical"].slowest
        met = h < TARGET_SECONDS
        ok &= met
        print(f"target: every 30-day shard group at {TARGET_SIZE:,} servers < "
              f"{TARGET_SECONDS:g} s: slowest {slowest} {h:.3f} s -> "
              f"{'OK' if met else 'MISSED'}")
    else:
        print(f"target: every 30-day shard group at {TARGET_SIZE:,} servers < "
              f"{TARGET_SECONDS:g} s: not checked ({TARGET_SIZE:,} not in --sizes)")
    for n, row in results.items():
        if "naive" in row:
            h, nv = row["hierarchical"], row["naive"]
            ratio = nv.shard_sum / h.shard_sum
            met = ratio >= TARGET_RATIO
            ok &= met
            print(f"target: naive / hierarchical at {n:,} servers >= {TARGET_RATIO:g}, summed "
                  f"over the shard groups: {ratio:.1f} -> {'OK' if met else 'MISSED'} (CPU per "
                  f"round: {nv.cpu_per_round / h.cpu_per_round:.1f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
