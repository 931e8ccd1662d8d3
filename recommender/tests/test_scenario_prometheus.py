"""Scenario: the recommender against a real Prometheus holding a crafted fleet.

A fleet of 14 servers is written into a real Prometheus by ``scenario_lib`` (read its
docstring for the mechanics): 30 days of the hourly utilisation series by backfill
(OpenMetrics written here, turned into blocks by promtool), the exporter's inventory,
cost and catalogue series and the agents' series by scrape of a loopback server of the
test, and the committed rule files (``prometheus/rules/*.rules.yml``) loaded from a copy
whose group intervals are one second instead of minutes — same expressions, so the test
need not wait four minutes for the 30-day group. The recommender then runs for real:
``pipeline.run(config)`` with a ``Config`` pointing at that Prometheus, and the
``recommender run`` / ``recommender report --format json`` console scripts as
subprocesses, with the SQLite state for accept/dismiss.

Each server is there to trigger one rule exactly, or none (prices: the simulator's
catalogue, net EUR a month in fsn1; a primary IPv4 costs 0.60, backups 20 %):

=====  ==========  ===========  ====================================================
id     name        type         intended outcome
=====  ==========  ===========  ====================================================
1001   ftp-legacy  cx33         idle, CPU never above 4 %: delete
1002   wiki        cx33 (40 GB  idle but wakes up (max 25 %): change type to cx23, the
                   disk)        smallest type that fits (in place: its disk was kept at
                                40 GB by a CPU/RAM-only upgrade)
1003   api-2       cx53 (80 GB  right-size in place to cx43 (p95 CPU 18.6 % of 16
                   disk)        cores, peak memory 32 % of 32 GiB)
1004   search-1    cx53         the same usage, but its 320 GB disk was upgraded:
                                cannot shrink in place -> migrate to a new cx43
1005   db-1        cx33         p95 CPU 91.6 %: under-provisioned -> cx43, 5 EUR more
1006   shop-web-1  cx33         busy and well sized: nothing
1007   new-api     cx33         4 days of data (coverage 13.3 %): excluded, with why
1008   cache-1     cpx42 (80    no agent, so no memory figures: right-sized on CPU to
                   GB disk)     cx43, keeping its 16 GiB, confidence lowered to medium
1011-  stg-web,    3 x cx23,    staging (label env) in one project and location:
1013   stg-api,    webshop      consolidate onto one cx33
       stg-worker
1014   stg-db      cx23,        staging but alone in its project: nothing
                   analytics
2001   build-box   EX44 49.00   dedicated, uses ~1 core and 5.4 GiB: a Cloud cx33
2002   db-big      AX102 119    dedicated, needs 128 GiB: no Cloud type is cheaper
=====  ==========  ===========  ====================================================

The expected savings below are computed by hand from those prices. A second Prometheus
holds the same fleet ten times over (other ids and projects) to show that the number
of PromQL queries does not grow with the fleet, while the recommendations do, tenfold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scenario_lib import (
    FleetServer,
    Profile,
    Scenario,
    env_without_proxy,
    replicate,
    vector,
)

from infrascope_core.prometheus import binaries_available
from infrascope_recommender import pipeline
from infrascope_recommender.config import Config, load_config
from infrascope_recommender.model import RunResult, ServerKey, cents
from infrascope_recommender.promql import PrometheusClient
from infrascope_recommender.state import Store

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="needs /usr/bin/prometheus and /usr/bin/promtool")

PROD = {"env": "production"}
STAGING = {"env": "staging"}
D = Decimal
IPV4 = D("0.60")  # primary IPv4, per month
BACKUP = D("0.20")  # backup surcharge
# catalogue prices (net, fsn1)
CX23, CX33, CX43, CX53, CPX42 = D("3.49"), D("5.99"), D("10.99"), D("20.49"), D("29.99")


def crafted_fleet() -> list[FleetServer]:
    c = "cloud"
    return [
        FleetServer(c, "1001", "ftp-legacy", "cx33", project="webshop", labels=PROD,
                    cpu=Profile(0.01, 0.2, peak=0.04), memory=Profile(0.10, 0.1),
                    services=(("systemd", "vsftpd.service"),)),
        FleetServer(c, "1002", "wiki", "cx33", project="webshop", labels=PROD, disk_gb=40,
                    backups=True, cpu=Profile(0.03, 0.3, peak=0.25),
                    memory=Profile(0.12, 0.1, peak=0.18), services=(("docker", "wiki"),)),
        FleetServer(c, "1003", "api-2", "cx53", project="webshop", labels=PROD, disk_gb=80,
                    backups=True, cpu=Profile(0.15, 0.25),
                    memory=Profile(0.25, 0.1, peak=0.32)),
        FleetServer(c, "1004", "search-1", "cx53", project="webshop", labels=PROD,
                    cpu=Profile(0.15, 0.25), memory=Profile(0.25, 0.1, peak=0.32),
                    disk_used_gb=60),
        FleetServer(c, "1005", "db-1", "cx33", project="webshop", labels=PROD,
                    cpu=Profile(0.80, 0.15, peak=0.99), memory=Profile(0.50, 0.1, peak=0.70)),
        FleetServer(c, "1006", "shop-web-1", "cx33", project="webshop", labels=PROD,
                    cpu=Profile(0.45, 0.2), memory=Profile(0.60, 0.05, peak=0.68)),
        FleetServer(c, "1007", "new-api", "cx33", project="webshop", labels=PROD, hours=96,
                    cpu=Profile(0.02, 0.2), memory=Profile(0.10, 0.1)),
        FleetServer(c, "1008", "cache-1", "cpx42", project="webshop", labels=PROD, disk_gb=80,
                    agent=False, cpu=Profile(0.08, 0.25)),
        FleetServer(c, "1011", "stg-web", "cx23", project="webshop", labels=STAGING,
                    cpu=Profile(0.06, 0.3), memory=Profile(0.25, 0.1, peak=0.30),
                    services=(("docker", "web"),)),
        FleetServer(c, "1012", "stg-api", "cx23", project="webshop", labels=STAGING,
                    cpu=Profile(0.10, 0.3), memory=Profile(0.30, 0.1, peak=0.40),
                    services=(("docker", "api"),)),
        FleetServer(c, "1013", "stg-worker", "cx23", project="webshop", labels=STAGING,
                    cpu=Profile(0.08, 0.3), memory=Profile(0.28, 0.1, peak=0.35)),
        FleetServer(c, "1014", "stg-db", "cx23", project="analytics", labels=STAGING,
                    cpu=Profile(0.08, 0.3), memory=Profile(0.28, 0.1, peak=0.35)),
        # robot.labels gives build-box a project; db-big has none
        FleetServer("dedicated", "2001", "build-box", "EX44", datacenter="FSN1-DC14",
                    labels={**PROD, "project": "builds"}, monthly_price=D("49.00"),
                    disk_used_gb=40,
                    cpu=Profile(0.06, 0.3), memory=Profile(0.07, 0.1, peak=0.085)),
        FleetServer("dedicated", "2002", "db-big", "AX102", datacenter="FSN1-DC2",
                    labels=PROD, monthly_price=D("119.00"), disk_used_gb=300,
                    cpu=Profile(0.30, 0.2), memory=Profile(0.70, 0.05, peak=0.78)),
    ]


INTENDED_TIERS = {
    "cloud/1001": "idle", "cloud/1002": "idle", "cloud/1003": "low", "cloud/1004": "low",
    "cloud/1005": "critical", "cloud/1006": "moderate", "cloud/1007": "unknown",
    "cloud/1008": "low", "cloud/1011": "low", "cloud/1012": "low", "cloud/1013": "low",
    "cloud/1014": "low", "dedicated/2001": "low", "dedicated/2002": "moderate",
}


@dataclass(frozen=True)
class Expected:
    kind: str
    action: str
    servers: tuple[str, ...]
    target: str | None
    current: Decimal  # monthly euros, unrounded
    projected: Decimal
    confidence: str = "high"

    @property
    def savings(self) -> Decimal:
        return self.current - self.projected


# Every figure by hand: type price (+ 20 % backup where on) + 0.60 primary IPv4.
EXPECTED = [
    # 1001: cx33 without backups, deleted: the whole bill goes.
    Expected("idle", "delete", ("cloud/1001",), None, CX33 + IPV4, D(0)),
    # 1002: cx33 with backups -> cx23 with backups: 7.788 -> 4.788, saves 3.00.
    Expected("idle", "change_type", ("cloud/1002",), "cx23",
             CX33 * (1 + BACKUP) + IPV4, CX23 * (1 + BACKUP) + IPV4),
    # 1003: cx53 with backups -> cx43 with backups: 25.188 -> 13.788, saves 11.40.
    Expected("rightsize", "change_type", ("cloud/1003",), "cx43",
             CX53 * (1 + BACKUP) + IPV4, CX43 * (1 + BACKUP) + IPV4),
    # 1004: cx53 -> a new cx43 (its 320 GB disk cannot shrink): 21.09 -> 11.59.
    Expected("rightsize", "migrate", ("cloud/1004",), "cx43", CX53 + IPV4, CX43 + IPV4),
    # 1005: cx33 -> cx43 costs 5.00 more: 6.59 -> 11.59.
    Expected("underprovisioned", "change_type", ("cloud/1005",), "cx43",
             CX33 + IPV4, CX43 + IPV4),
    # 1008: cpx42 -> cx43 (16 GiB kept: memory unknown): 30.59 -> 11.59, saves 19.00.
    Expected("rightsize", "change_type", ("cloud/1008",), "cx43", CPX42 + IPV4, CX43 + IPV4,
             confidence="medium"),
    # 1011-1013: three cx23 (4.09 each) onto one cx33 with one primary IPv4: 12.27 -> 6.59.
    Expected("consolidation", "merge", ("cloud/1011", "cloud/1012", "cloud/1013"), "cx33",
             3 * (CX23 + IPV4), CX33 + IPV4),
    # 2001: EX44 at 49.00 -> cx33 + a primary IPv4 (the fleet's Cloud price, 0.60): 6.59.
    Expected("dedicated_to_cloud", "migrate", ("dedicated/2001",), "cx33", D("49.00"),
             CX33 + IPV4),
]
EXPECTED_TOTAL = D("92.58")  # 6.59 + 3.00 + 11.40 + 9.50 - 5.00 + 19.00 + 5.68 + 42.41
COPIES = 10


@dataclass
class Scenarios:
    crafted: Scenario
    tenfold: Scenario
    work: Path


# The agents' series carry the time they were stamped and Prometheus sees them for 5
# minutes only; the module's tests take longer than that on a loaded machine, and a test
# that ran after the lookback lost the dedicated servers' agent sizes (78 or even 10 of the
# tenfold fleet's 80 recommendations). Each test starts with at least this much left.
AGENT_FRESH_SECONDS = 150.0


@pytest.fixture
def scenarios(started_scenarios: Scenarios) -> Scenarios:
    """The module's scenarios, their agents re-stamped when the lookback is running out."""
    for scenario in (started_scenarios.crafted, started_scenarios.tenfold):
        if scenario.agent_age() > AGENT_FRESH_SECONDS:
            scenario.restamp_agents()
    return started_scenarios


@pytest.fixture(scope="module")
def started_scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenarios]:
    work: Path = tmp_path_factory.mktemp("scenario")
    crafted = Scenario(crafted_fleet(), work / "crafted")
    tenfold = Scenario(replicate(crafted_fleet(), COPIES), work / "tenfold")
    try:
        # both at once: most of the start-up is waiting (discovery, rule intervals)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(crafted.start), pool.submit(tenfold.start)]:
                future.result()
        yield Scenarios(crafted, tenfold, work)
    finally:
        crafted.stop()
        tenfold.stop()


def config_for(scenario: Scenario, state: Path) -> Config:
    return load_config(None, env={}, overrides={"prometheus_url": scenario.url,
                                                "state_path": str(state)})


def run_engine(scenario: Scenario, state: Path) -> tuple[RunResult, int]:
    config = config_for(scenario, state)
    client = PrometheusClient(config.prometheus)
    try:
        result = pipeline.run(config, client)
        return result, client.queries
    finally:
        client.close()


def signature(result: RunResult) -> dict[tuple[str, str, tuple[str, ...], str | None], Any]:
    return {(r.kind, r.action, tuple(sorted(str(k) for k in r.keys)), r.target_type): r
            for r in result.recommendations}


def situation(rec: Any) -> tuple[str, str, tuple[str, ...]]:
    """A recommendation of the tenfold fleet as the original's (copy r: ids + r * 100000)."""
    return rec.kind, rec.action, tuple(sorted(f"{k.source}/{int(k.server_id) % 100_000}"
                                              for k in rec.keys))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "recommender"
    command = [str(script)] if script.is_file() else [sys.executable, "-m",
                                                       "infrascope_recommender"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          env=env_without_proxy(), check=False)


# --------------------------------------------------------------------------- the data

def test_prometheus_holds_what_the_test_wrote(scenarios: Scenarios) -> None:
    """The rules' 30-day figures are numpy's figures of the backfilled hours; the tiers
    and the cost roll-ups are the intended ones."""
    sc = scenarios.crafted
    prom = sc.prom
    for res in ("cpu", "memory"):
        got = {stat: vector(prom, f"source_server_id:{res}_utilisation:{name}")
               for stat, name in (("avg", "avg30d"), ("max", "max30d"), ("p95", "p95_30d"),
                                  ("coverage", "coverage30d"))}
        for s in sc.servers:
            exp = s.expected().get(res)
            if exp is None:
                assert s.key not in got["avg"], f"{s.key} has no {res} data"
                continue
            for stat in ("avg", "max", "p95", "coverage"):
                labels, value = got[stat][s.key]
                assert value == pytest.approx(getattr(exp, stat), abs=1e-9), (s.key, res, stat)
                assert labels["server_name"] == s.name and labels["server_type"] == \
                    s.server_type
    # no live utilisation input: the hourly group cannot add samples to the history
    assert prom.query("source_server_id:cpu_utilisation:ratio") == []
    assert prom.query("source_server_id:memory_utilisation:ratio") == []
    tiers = {k: m["tier"] for k, (m, _) in
             vector(prom, "source_server_id:utilisation:tier30d").items()}
    assert tiers == INTENDED_TIERS
    costs = vector(prom, "source_server_id:monthly_cost_euros:sum")
    assert {k: cents(D(str(v))) for k, (_, v) in costs.items()} == {
        s.key: cents(s.monthly_cost()) for s in sc.servers}
    total = sum((s.monthly_cost() for s in sc.servers), D(0))
    assert cents(D(str(prom.scalar(":monthly_cost_euros:sum")))) == cents(total)


# --------------------------------------------------------------------- the recommender

def test_exactly_the_expected_recommendations(scenarios: Scenarios, tmp_path: Path) -> None:
    result, queries = run_engine(scenarios.crafted, tmp_path / "state.db")
    got = signature(result)
    want = {(e.kind, e.action, e.servers, e.target): e for e in EXPECTED}
    assert sorted(got) == sorted(want)
    for key, e in want.items():
        rec = got[key]
        assert (rec.current_monthly_cost, rec.projected_monthly_cost) == \
            (e.current, e.projected), key
        data = rec.to_dict()
        assert (data["current_monthly_cost"], data["projected_monthly_cost"],
                data["monthly_savings"]) == (str(cents(e.current)), str(cents(e.projected)),
                                             str(cents(e.savings))), key
        assert rec.confidence == e.confidence, (key, rec.confidence_reasons)
        assert rec.commands, key
    assert cents(result.total_savings) == EXPECTED_TOTAL
    assert sum((cents(e.savings) for e in EXPECTED), D(0)) == EXPECTED_TOTAL
    assert len(result.fleet.servers) == 14
    assert queries == result.fleet.queries <= 20

    # every server in at most one recommendation
    keys = [k for r in result.recommendations for k in r.keys]
    assert len(keys) == len(set(keys))

    # the reasons say what the operator needs to know
    by_server = {str(r.keys[0]): r for r in result.recommendations}
    search = by_server["cloud/1004"]
    assert any("cannot shrink" in r.text for r in search.reasons), search.reasons
    assert any("hcloud server create" in c for c in search.commands)
    assert any("hcloud server delete search-1" == c for c in search.commands)
    assert "hcloud server change-type --keep-disk api-2 cx43" in by_server["cloud/1003"].commands
    assert "hcloud server delete ftp-legacy" in by_server["cloud/1001"].commands
    cache = by_server["cloud/1008"]
    assert any("memory was not measured" in r.text for r in cache.confidence_reasons)
    assert cache.projected_memory_utilisation is None
    upgrade = by_server["cloud/1005"]
    assert upgrade.savings == D("-5.00")

    # too little data: excluded, and the reason is shown
    assert [(str(x.server.key), x.rule) for x in result.exclusions] == \
        [("cloud/1007", "rightsize")]
    reason = result.exclusions[0].reason
    assert "13.3%" in reason and "25%" in reason, reason


def test_dedicated_servers_are_costed_under_their_labelled_project(
        scenarios: Scenarios, tmp_path: Path) -> None:
    """The rules pack rolls cost up by Cloud project (dedicated servers: ""); the fleet,
    its cost by project and the recommendations name a dedicated server's `project` label."""
    result, _ = run_engine(scenarios.crafted, tmp_path / "state.db")
    fleet = result.fleet
    build_box = fleet.servers[ServerKey("dedicated", "2001")]
    db_big = fleet.servers[ServerKey("dedicated", "2002")]
    assert (build_box.project, db_big.project) == ("builds", "")
    by_project = {k: cents(v) for k, v in fleet.costs.by_project.items()}
    assert by_project["builds"] == D("49.00")
    assert by_project[""] == D("119.00")  # unlabelled: no project
    cloud = {s.project for s in scenarios.crafted.servers if s.cloud}
    assert set(by_project) == cloud | {"builds", ""}
    assert cents(sum(fleet.costs.by_project.values(), D(0))) == cents(fleet.costs.total)
    [moved] = [r for r in result.recommendations if r.kind == "dedicated_to_cloud"]
    assert [s.project for s in moved.servers] == ["builds"]
    assert moved.to_dict()["servers"][0]["project"] == "builds"


def test_query_count_does_not_grow_with_the_fleet(scenarios: Scenarios,
                                                  tmp_path: Path) -> None:
    small, small_queries = run_engine(scenarios.crafted, tmp_path / "a.db")
    big, big_queries = run_engine(scenarios.tenfold, tmp_path / "b.db")
    assert len(big.fleet.servers) == COPIES * len(small.fleet.servers) == 140
    assert small_queries == big_queries == small.fleet.queries == big.fleet.queries
    assert big_queries <= 20
    # ten copies of the same situations: ten times the recommendations and savings
    got = Counter((r.kind, r.action) for r in big.recommendations)
    want = Counter((e.kind, e.action) for e in EXPECTED for _ in range(COPIES))
    why = [(str(x.server.key), x.rule, x.reason) for x in big.exclusions]
    assert got == want, f"missing {dict(want - got)}, extra {dict(got - want)}; {why}"
    assert len(big.recommendations) == COPIES * len(EXPECTED)
    base = {situation(r): r for r in small.recommendations}
    off = [(r.kind, [str(k) for k in r.keys], r.target_type, r.savings, r.reasons)
           for r in big.recommendations
           if situation(r) not in base or base[situation(r)].savings != r.savings
           or base[situation(r)].target_type != r.target_type]
    assert off == [], f"copies judged otherwise than the original: {off}"
    assert cents(big.total_savings) == COPIES * EXPECTED_TOTAL


def test_ids_are_stable_and_decisions_survive_regeneration(scenarios: Scenarios,
                                                           tmp_path: Path) -> None:
    sc = scenarios.crafted
    state = tmp_path / "state.db"
    base = ["--prometheus-url", sc.url, "--state", str(state)]

    first = cli("run", *base)
    assert first.returncode == 0, first.stderr
    with Store(state) as store:
        ids_first = {i.id: i.recommendation for i in store.list()}
        totals = store.summary().by_status["pending"]
    assert len(ids_first) == len(EXPECTED)
    assert (totals.count, totals.monthly_savings) == (len(EXPECTED), EXPECTED_TOTAL)

    # in process, twice: the same ids
    again, _ = run_engine(sc, tmp_path / "unused.db")
    twice, _ = run_engine(sc, tmp_path / "unused.db")
    assert {r.id for r in again.recommendations} == {r.id for r in twice.recommendations} \
        == set(ids_first)

    by_kind = {rec.kind + ":" + str(rec.keys[0]): rec_id for rec_id, rec in ids_first.items()}
    accepted = by_kind["rightsize:cloud/1003"]
    dismissed = by_kind["dedicated_to_cloud:dedicated/2001"]
    with Store(state) as store:
        store.accept(accepted, by="ops", note="next maintenance window")
        store.dismiss(dismissed, "the build box needs its 14 cores for release builds",
                      by="ops")

    second = cli("run", *base)
    assert second.returncode == 0, second.stderr
    with Store(state) as store:
        items = {i.id: i for i in store.list()}
        runs = store.runs()
        summary = store.summary()
    # 92.58 minus api-2's 11.40 (accepted) and build-box's 42.41 (dismissed)
    assert (summary.by_status["pending"].count, summary.pending_savings) == (6, D("38.77"))
    assert (summary.by_status["accepted"].monthly_savings,
            summary.by_status["dismissed"].monthly_savings) == (D("11.40"), D("42.41"))
    assert set(items) == set(ids_first)  # same ids after regeneration
    assert items[accepted].status == "accepted" and items[accepted].decided_by == "ops"
    assert items[dismissed].status == "dismissed"
    assert items[dismissed].reason == "the build box needs its 14 cores for release builds"
    assert {i.status for k, i in items.items() if k not in (accepted, dismissed)} == \
        {"pending"}
    assert len(runs) == 2 and all(r.success for r in runs)
    queries = [r.queries for r in runs]
    assert queries[0] is not None and queries[0] <= 20 and queries == [queries[0]] * 2

    # the JSON report (a fresh run, with the decisions of the state file)
    report = cli("report", "--format", "json", *base)
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    statuses = {r["id"]: r["status"] for r in doc["recommendations"]}
    assert statuses[accepted] == "accepted" and statuses[dismissed] == "dismissed"
    assert set(statuses) == set(ids_first)
    pending = [r for r in doc["recommendations"] if r["status"] == "pending"]
    pending_total = sum((D(r["monthly_savings"]) for r in pending), D(0))
    assert pending_total == EXPECTED_TOTAL - D("11.40") - D("42.41") == D("38.77")
    assert doc["totals"]["pending_monthly_savings"] == "38.77"
    assert doc["totals"]["servers"] == 14
    by_id = {r["id"]: r for r in doc["recommendations"]}
    merge = next(r for r in doc["recommendations"] if r["kind"] == "consolidation")
    assert (merge["current_monthly_cost"], merge["projected_monthly_cost"],
            merge["monthly_savings"], merge["target_type"]) == ("12.27", "6.59", "5.68", "cx33")
    assert by_id[accepted]["monthly_savings"] == "11.40"
    assert [(e["server"]["server_id"], e["rule"]) for e in doc["exclusions"]] == \
        [("1007", "rightsize")]


def test_memory_sizes_reach_the_recommender(scenarios: Scenarios, tmp_path: Path) -> None:
    """The agent's figures (cores and memory of a dedicated server, used disk) and the
    exporter's (primary disk after a rescale) arrive as written."""
    result, _ = run_engine(scenarios.crafted, tmp_path / "state.db")
    servers = {str(k): s for k, s in result.fleet.servers.items()}
    build = servers["dedicated/2001"]
    assert (build.cores, build.memory_bytes) == (14, 64 * 2**30)
    assert build.disk_used_bytes == 40 * 10**9
    assert servers["cloud/1002"].disk_bytes == 40 * 10**9
    assert servers["cloud/1004"].disk_bytes == 320 * 10**9
    assert servers["cloud/1008"].utilisation.memory_avg is None
    assert servers["cloud/1002"].backups is True
    assert servers["cloud/1011"].labels == {"env": "staging"}
