#!/usr/bin/env python3
"""`recommender run` against a real Prometheus holding a 10,000-server fleet.

1. Generates a fleet (deterministic: the same fleet on every run): 95 % Cloud servers
   of 13 types in fsn1/nbg1/hel1/ash across 40 projects (a fifth of them labelled
   staging or dev), 5 % dedicated servers; 85 % of the Cloud servers and every
   dedicated one run an agent; utilisation levels from idle to critical, 3 % with only
   a few days of data. The 100-server reference is the first 100 servers of it.
2. Loads it into Prometheus with the scenario harness of the recommender's tests
   (``recommender/tests/scenario_lib.py``, read its docstring): 30 days of the four
   hourly series the 30-day rules read, backfilled (4 x 720 x 10,000 = 28.8 M samples,
   one OpenMetrics file per aligned 54-hour block, two promtool processes), the
   exporter's and the agents' series scraped from pre-rendered expositions (one agent
   target with ``honor_labels``), the committed rule files with short group intervals
   until every recorded series exists. Then Prometheus is reloaded (SIGHUP) with the
   committed group intervals and a 60 s scrape interval, as in production, so the
   measured runs do not compete with a 30-day group evaluated every few seconds.
3. Measures, for 100 and for 10,000 servers:
   - ``recommender run --prometheus-url URL --state-path FILE`` as a subprocess (the
     console script, interpreter start-up, imports, queries, rules and the SQLite
     write included): wall time of each of ``--runs`` runs;
   - in process: ``loader.load`` (the PromQL queries and building the fleet) and
     ``engine.generate`` (the rules) separately, and the PromQL queries counted by the
     client.

Targets: the slowest 10,000-server CLI run under 10 s; the number of PromQL queries
the same for 100 and 10,000 servers and at most 20. Prints ratios against the
100-server reference measured in the same run; exits 1 on a missed target.

Comparing two versions: ``--compare OTHER/.venv/bin/recommender`` alternates each run
with one of another checkout's console script against the same Prometheus (this
checkout's rule files; the other must read series they record) and prints the ratio of
the medians: runs minutes or days apart differ more than most changes do (Prometheus'
rule groups take 20-45 s of CPU a minute at 10,000 servers, on 2 cores).

Run: `make bench` or `.venv/bin/python bench/recommender_bench.py [--servers 10000]
[--reference 100] [--runs 3] [--keep DIR] [--compare RECOMMENDER]`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "recommender" / "tests"))

from scenario_lib import (  # noqa: E402 - the harness lives with the tests
    LOOKBACK_SECONDS,
    FleetServer,
    Profile,
    Scenario,
    env_without_proxy,
    rule_files,
)

from infrascope_recommender import engine, loader  # noqa: E402
from infrascope_recommender.config import load_config  # noqa: E402
from infrascope_recommender.model import Fleet  # noqa: E402
from infrascope_recommender.promql import PrometheusClient  # noqa: E402
from infrascope_recommender.state import Store  # noqa: E402

TARGET_SECONDS = 10.0
TARGET_QUERIES = 20
CLOUD_TYPES = ("cx23", "cx33", "cx43", "cx53", "cpx22", "cpx32", "cpx42", "ccx13", "ccx23",
               "cax11", "cax21", "cx22", "cpx31")
EU_ONLY = ("cx", "cax")
DEDICATED = (("EX44", "49.00"), ("AX42", "52.00"), ("AX52", "72.00"), ("AX102", "119.00"))


def generated_fleet(n: int, seed: int = 6) -> list[FleetServer]:
    """``n`` servers; the first ``k`` of ``generated_fleet(n)`` are ``generated_fleet(k)``."""
    rng = np.random.default_rng(seed)
    size = max(n, 1)
    u = rng.random((size, 12))
    out: list[FleetServer] = []
    for i in range(n):
        r = u[i]
        project = f"project-{i % 40}"
        env = "staging" if r[0] < 0.15 else "dev" if r[0] < 0.2 else "production"
        labels = {"env": env, "team": f"team-{i % 7}"}
        hours = int(48 + r[1] * 100) if r[1] < 0.03 else 720
        if r[2] < 0.15:
            cpu_level = 0.005 + 0.035 * r[3]
        elif r[2] < 0.65:
            cpu_level = 0.05 + 0.2 * r[3]
        elif r[2] < 0.9:
            cpu_level = 0.25 + 0.35 * r[3]
        else:
            cpu_level = 0.6 + 0.3 * r[3]
        cpu = Profile(round(cpu_level, 4), round(0.1 + 0.3 * r[4], 3))
        memory = Profile(round(0.1 + 0.75 * r[5], 4), round(0.05 + 0.1 * r[6], 3))
        if i % 20 == 19:
            product, price = DEDICATED[int(r[7] * len(DEDICATED))]
            dc = 1 + int(r[8] * 30)
            location = ("fsn1", "nbg1", "hel1")[i % 3]
            out.append(FleetServer(
                "dedicated", str(3_000_000 + i), f"dedi-{i}", product, location=location,
                datacenter=f"{location.upper()}-DC{dc}", labels=labels,
                monthly_price=Decimal(price), cpu=cpu, memory=memory, hours=hours,
                disk_used_gb=round(20 + 400 * r[9], 1),
                services=(("systemd", "nginx.service"), ("docker", f"app-{i % 11}"))))
            continue
        server_type = CLOUD_TYPES[int(r[7] * len(CLOUD_TYPES))]
        eu_only = server_type.startswith(EU_ONLY) and not server_type.startswith("cpx")
        locations = ("fsn1", "nbg1", "hel1") if eu_only else ("fsn1", "nbg1", "hel1", "ash")
        agent = r[8] < 0.85
        out.append(FleetServer(
            "cloud", str(50_000_000 + i), f"{env[:3]}-{server_type}-{i}", server_type,
            location=locations[i % len(locations)], project=project, labels=labels,
            cpu=cpu, memory=memory if agent else None, hours=hours, agent=agent,
            backups=r[9] < 0.3, disk_gb=40 if r[10] < 0.2 else None,
            disk_used_gb=round(5 + 30 * r[11], 1),
            services=(("docker", f"svc-{i % 13}"),) if agent else ()))
    return out


@dataclass
class Measured:
    servers: int
    cli_seconds: list[float] = field(default_factory=list)
    # of each CLI run, the part inside the run (queries + rules) as the run records it
    engine_seconds: list[float] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)
    query_seconds: list[float] = field(default_factory=list)  # part of load: HTTP + JSON
    generate_seconds: list[float] = field(default_factory=list)
    queries: set[int] = field(default_factory=set)
    recommendations: int = 0
    exclusions: int = 0
    savings: Decimal = Decimal(0)
    setup: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    # ``--compare``: the other recommender's runs, alternated with these against the same
    # Prometheus (wall time of each; its recommendations must be the same number)
    compare_seconds: list[float] = field(default_factory=list)


class TimedClient(PrometheusClient):
    """The recommender's client, adding up the time its queries take (the request,
    Prometheus' evaluation, reading and decoding the JSON)."""

    seconds = 0.0

    def query(self, expr: str, at: float | None = None, *,
              cancel: threading.Event | None = None) -> list[dict[str, Any]]:
        t = time.perf_counter()
        try:
            return super().query(expr, at, cancel=cancel)
        finally:
            self.seconds += time.perf_counter() - t


def recommender_cli() -> list[str]:
    script = Path(sys.executable).parent / "recommender"
    return [str(script)] if script.is_file() else [sys.executable, "-m",
                                                     "infrascope_recommender"]


def cli_run(command: list[str], url: str, state: Path, n: int) -> tuple[float, Any]:
    """One ``recommender run`` as a subprocess: its wall time and the run it recorded."""
    t = time.perf_counter()
    proc = subprocess.run([*command, "run", "--prometheus-url", url, "--state-path", str(state)],
                          capture_output=True, text=True, env=env_without_proxy(), check=False,
                          timeout=600)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} run exited {proc.returncode}: {proc.stderr[-2000:]}")
    with Store(state) as store:
        run = store.last_run()
    if run is None or not run.success or run.queries is None or run.servers != n:
        raise RuntimeError(f"{command[0]} run recorded {run}")
    return seconds, run


def measure(n: int, runs: int, work: Path, compare: Path | None = None) -> Measured:
    servers = generated_fleet(n)
    big = n >= 1000
    scenario = Scenario(servers, work, rule_interval="5s" if big else "1s",
                        scrape_interval="10s" if big else "1s", single_agent_target=True,
                        workers=2, split_backfill=True)
    out = Measured(n)
    t0 = time.monotonic()
    print(f"{n} servers: backfilling and starting Prometheus ...", flush=True)
    scenario.progress = lambda missing: print(
        f"  waiting for the rules: {len(missing)} counts not reached yet", flush=True)
    scenario.start(ready_timeout=900)
    try:
        out.setup = dict(scenario.timings)
        out.setup["total"] = time.monotonic() - t0
        out.samples = scenario.backfill.samples if scenario.backfill else 0
        print(f"{n} servers: ready after {time.monotonic() - t0:.0f} s; reloading with the "
              "committed intervals and waiting for every group to evaluate ...", flush=True)
        production_intervals(scenario)
        # The agents' CPU counters are a snapshot, visible for 5 minutes: renew it unless
        # it has 150 s left (the measurements take well under that).
        if scenario.agent_age() > LOOKBACK_SECONDS - 150:
            scenario.restamp_agents()
        url = scenario.url
        generated: set[int] = set()
        for i in range(runs):
            seconds, run = cli_run(recommender_cli(), url, work / f"state-{i}.db", n)
            out.cli_seconds.append(seconds)
            out.queries.add(run.queries)
            out.engine_seconds.append(run.duration_seconds)
            generated.add(run.generated)
            if compare is not None:
                # right after, against the same Prometheus: what the machine and
                # Prometheus' background work do to one run, they do to the other
                seconds, run = cli_run([str(compare)], url, work / f"compare-{i}.db", n)
                out.compare_seconds.append(seconds)
                generated.add(run.generated)
        config = load_config(None, env={}, overrides={"prometheus_url": url,
                                                      "state_path": str(work / "x.db")})
        for _ in range(runs):
            client = TimedClient(config.prometheus)
            try:
                t = time.perf_counter()
                fleet = loader.load(client, config.prometheus)
                t_load = time.perf_counter() - t
                out.query_seconds.append(client.seconds)
                t = time.perf_counter()
                result = engine.generate(fleet, config.thresholds)
                t_gen = time.perf_counter() - t
            finally:
                client.close()
            out.load_seconds.append(t_load)
            out.generate_seconds.append(t_gen)
            out.queries.add(client.queries)
            check_complete(fleet, n)
            out.recommendations = len(result.recommendations)
            out.exclusions = len(result.exclusions)
            out.savings = result.total_savings
            generated.add(out.recommendations)
        if len(generated) != 1:
            raise RuntimeError(f"runs disagree on the number of recommendations: {generated}")
        if scenario.agent_age() >= LOOKBACK_SECONDS:
            raise RuntimeError("the measurements outlasted the agents' snapshot: "
                               "the last runs saw no agent CPU counters")
    finally:
        scenario.stop()
    return out


def check_complete(fleet: Fleet, n: int) -> None:
    """Every server loaded with its 30-day figures; every agent's cores seen."""
    if len(fleet.servers) != n:
        raise RuntimeError(f"the loader found {len(fleet.servers)} servers, not {n}")
    no_tier = [k for k, s in fleet.servers.items() if s.utilisation.tier is None]
    no_cores = [k for k, s in fleet.servers.items() if s.cores is None]
    if no_tier or no_cores:
        raise RuntimeError(f"incomplete load: {len(no_tier)} servers without a tier, "
                           f"{len(no_cores)} without a core count")


def production_intervals(scenario: Scenario) -> None:
    """Reload Prometheus with the committed rule intervals and a 60 s scrape interval;
    check the recorded series are still there."""
    prom = scenario.prom
    rule_files(scenario.workdir / "rules", None)  # the hourly group stays out: backfilled
    text = prom.config_file.read_text()
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text = text.replace(f"{key}: {scenario.scrape_interval}", f"{key}: 60s")
    prom.config_file.write_text(text)
    before = prom.metric("prometheus_config_last_reload_success_timestamp_seconds")[0][1]
    reloaded = datetime.now(UTC)
    assert prom.pid is not None
    os.kill(prom.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while prom.metric("prometheus_config_last_reload_success_timestamp_seconds")[0][1] \
            == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus did not reload: {prom.logs()}")
        time.sleep(0.2)
    if prom.metric("prometheus_config_last_reload_successful")[0][1] != 1:
        raise RuntimeError(f"Prometheus reload failed: {prom.logs()}")
    # A recorded sample carries the time its evaluation started: when an evaluation
    # took long, the last ones may leave the 5-minute lookback before the reloaded
    # group (4 min interval) writes new ones. Wait until every group has evaluated
    # since the reload, then until every series is there.
    deadline = time.monotonic() + 900
    while True:
        last = {g["name"]: rfc3339(g["lastEvaluation"]) for g in prom.rule_groups()}
        if all(when > reloaded for when in last.values()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"rule groups not evaluated since the reload: {last}")
        time.sleep(2)
    scenario.wait_ready(timeout=900)


def rfc3339(text: str) -> datetime:
    """Prometheus' timestamps have nanoseconds; datetime takes microseconds."""
    m = re.match(r"^([0-9-]+T[0-9:]+)(\.[0-9]{1,6})?[0-9]*Z$", text)
    if m is None:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    return datetime.fromisoformat(m.group(1) + (m.group(2) or "") + "+00:00")


def fmt(seconds: list[float]) -> str:
    return (f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s "
            f"({', '.join(f'{s:.2f}' for s in seconds)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--reference", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this directory and keep it (default: a temporary one)")
    parser.add_argument("--compare", type=Path, default=None, metavar="RECOMMENDER",
                        help="another `recommender` console script (e.g. another checkout's "
                             ".venv/bin/recommender): its runs alternate with these against "
                             "the same Prometheus and the ratio of the medians is printed")
    args = parser.parse_args()
    if args.compare is not None and not os.access(args.compare, os.X_OK):
        parser.error(f"--compare {args.compare}: not an executable file")
    work = args.keep or Path(tempfile.mkdtemp(prefix="recommender-bench-"))
    try:
        results = []
        for n in (args.reference, args.servers):
            m = measure(n, args.runs, work / f"n{n}", args.compare)
            results.append(m)
            s = m.setup
            print(f"{n} servers: backfill {m.samples:,} samples in {s['backfill']:.1f} s, "
                  f"expositions {s['render']:.1f} s, Prometheus start {s['prometheus_start']:.1f}"
                  f" s, rules ready after {s['rules_ready']:.1f} s; "
                  f"{m.recommendations} recommendations, {m.exclusions} exclusions, "
                  f"{m.savings:.2f} EUR/month", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ref, big = results
    ok = True
    cli_ref, cli_big = max(ref.cli_seconds), max(big.cli_seconds)
    met = cli_big < TARGET_SECONDS
    ok &= met
    print(f"`recommender run` (subprocess), {ref.servers} servers: {fmt(ref.cli_seconds)}")
    for m in (ref, big):
        print(f"  of which load + rules as the {m.servers}-server runs recorded them: "
              f"{fmt(m.engine_seconds)} (the rest: interpreter start-up, imports, the "
              "SQLite state)")
    print(f"`recommender run` (subprocess), {big.servers} servers: {fmt(big.cli_seconds)}; "
          f"ratio of the slowest runs {cli_big / cli_ref:.1f} "
          f"(servers x{big.servers / ref.servers:.0f}); target < {TARGET_SECONDS:g} s -> "
          f"{'OK' if met else 'MISSED'}")
    for m in results if args.compare is not None else ():
        print(f"  compared, {m.servers} servers, {args.compare}: {fmt(m.compare_seconds)}; "
              f"ratio of the medians (this / compared) "
              f"{statistics.median(m.cli_seconds) / statistics.median(m.compare_seconds):.2f}")
    for name, a, b in (("loader.load (queries + building the fleet)", ref.load_seconds,
                        big.load_seconds),
                       ("  the queries summed (HTTP, Prometheus, JSON; 4 run side by side)",
                        ref.query_seconds, big.query_seconds),
                       ("engine.generate (the rules)", ref.generate_seconds,
                        big.generate_seconds)):
        print(f"in process, {name}: {ref.servers} servers median "
              f"{statistics.median(a):.3f} s, {big.servers} servers median "
              f"{statistics.median(b):.3f} s (ratio "
              f"{statistics.median(b) / max(statistics.median(a), 1e-9):.1f})")
    same = len(ref.queries) == 1 and ref.queries == big.queries
    few = max(ref.queries | big.queries) <= TARGET_QUERIES
    ok &= same and few
    print(f"PromQL queries per run: {sorted(ref.queries)} for {ref.servers} servers, "
          f"{sorted(big.queries)} for {big.servers} (ratio "
          f"{max(big.queries) / max(ref.queries):.2f}); target: equal and <= "
          f"{TARGET_QUERIES} -> {'OK' if same and few else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
