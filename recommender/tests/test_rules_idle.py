"""Idle rule: delete what never ran, shrink what barely runs, exclude what is unknown."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from rules_fixtures import GiB, cloud, dedicated, fleet, util

from infrascope_recommender import engine
from infrascope_recommender.model import PlacementGroup, Reason, Server, Service, Utilisation
from infrascope_recommender.rules.idle import MOVE, RULE
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()


def test_nothing_ran_delete_after_snapshot() -> None:
    s = cloud(108, "old-jenkins", "cx42",
              utilisation=util(cpu_avg=0.01, cpu_p95=0.02, cpu_max=0.03, mem_p95=0.1),
              services=[Service("systemd", "jenkins.service", "active")])
    result = RULE.evaluate(fleet(s), TH)
    assert result.exclusions == []
    [rec] = result.recommendations
    assert (rec.kind, rec.action) == ("idle", "delete")
    assert rec.current_monthly_cost == Decimal("19.09")  # 18.59 + 0.50 IPv4
    assert rec.projected_monthly_cost == Decimal("0")
    assert rec.savings == Decimal("19.09")
    assert rec.commands == [
        "hcloud server create-image --type snapshot --description "
        "'old-jenkins before deletion (idle)' old-jenkins",
        "hcloud server delete old-jenkins",
    ]
    assert rec.confidence == "high" and rec.risk == "medium"
    assert rec.target_type is None
    texts = " | ".join(r.text for r in rec.reasons)
    assert "30-day average CPU is 1%, below 5%" in texts
    assert "p95 memory is 10%, below 30%" in texts
    assert "used only 3% CPU (below 10%)" in texts
    assert rec.reasons[0].figures == {"cpu_avg_30d": "1%", "cpu_avg_max": "5%"}
    assert any("systemd jenkins.service" in r.text for r in rec.risk_reasons)
    assert any("volumes, floating IPs and snapshots are billed separately" in p
               for p in rec.preconditions)


def test_wakes_up_moves_to_smallest_type_on_a_new_server_when_the_disk_cannot_shrink() -> None:
    s = cloud(1, "batch-1", "cx43", backups=True,
              utilisation=util(cpu_avg=0.02, cpu_p95=0.04, cpu_max=0.25, mem_p95=0.1,
                               mem_max=0.15))
    [rec] = MOVE.evaluate(fleet(s), TH).recommendations
    # 10.99 + 20 % backups + 0.50 IPv4 -> cx23: 3.49 + 0.698 + 0.50
    assert rec.current_monthly_cost == Decimal("13.688")
    assert rec.projected_monthly_cost == Decimal("4.688")
    assert rec.savings == Decimal("9.000")
    assert (rec.action, rec.target_type, rec.target_location) == ("migrate", "cx23", "fsn1")
    assert rec.commands == [
        "hcloud server create-image --type snapshot --description "
        "'batch-1 before migrating to cx23' batch-1",
        "hcloud server create --name batch-1-cx23 --type cx23 --location fsn1 "
        "--image ubuntu-24.04",
        "# move the services and data of batch-1 to batch-1-cx23 and switch traffic (DNS, "
        "or move the primary IP while both are off: hcloud primary-ip unassign / assign)",
        "hcloud server delete batch-1",
    ]
    assert any("Hetzner cannot shrink a disk" in r.text for r in rec.reasons)
    assert rec.risk == "medium"  # a migration
    assert rec.projected_cpu_utilisation is not None
    assert abs(rec.projected_cpu_utilisation - 0.04 * 8 / 2) < 1e-9
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.15 * 16 / 4) < 1e-9


def test_wakes_up_changes_type_in_place_when_the_disk_allows() -> None:
    s = cloud(2, "batch-2", "cx43", disk_gb=40,  # upsized with --keep-disk earlier
              utilisation=util(cpu_avg=0.02, cpu_p95=0.04, cpu_max=0.25, mem_p95=0.1,
                               mem_max=0.15), image="debian-12")
    [rec] = MOVE.evaluate(fleet(s), TH).recommendations
    assert (rec.action, rec.target_type) == ("change_type", "cx23")
    assert rec.savings == Decimal("7.50")  # 11.49 -> 3.99
    assert rec.commands == ["hcloud server shutdown --wait batch-2",
                            "hcloud server change-type batch-2 cx23",
                            "hcloud server poweron batch-2"]


def test_memory_in_use_is_not_idle() -> None:
    s = cloud(3, "cache", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02, mem_p95=0.5))
    assert RULE.evaluate(fleet(s), TH).recommendations == []


def test_average_at_the_threshold_is_not_idle() -> None:
    s = cloud(3, "edge", "cx33", utilisation=util(cpu_avg=0.05, cpu_max=0.06))
    assert RULE.evaluate(fleet(s), TH).recommendations == []


def test_memory_not_measured_lowers_confidence_with_the_reason() -> None:
    s = cloud(4, "quiet", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.action == "delete"
    assert rec.confidence == "medium"
    [coverage, memory] = rec.confidence_reasons
    assert coverage.text == "CPU data covers 100% of the 30 days: high confidence"
    assert memory.text.startswith("memory was not measured (no agent; the Cloud API has no "
                                  "memory figure): idle judged on CPU alone; confidence "
                                  "lowered to medium")


def test_confidence_bands_follow_coverage() -> None:
    def level(coverage: float) -> str:
        s = cloud(5, "q", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02,
                                                   cpu_coverage=coverage, mem_p95=0.1))
        [rec] = RULE.evaluate(fleet(s), TH).recommendations
        return rec.confidence
    assert [level(c) for c in (1.0, 0.9, 0.89, 0.5, 0.49, 0.25)] == \
        ["high", "high", "medium", "medium", "low", "low"]


def test_exclusions_name_the_reason() -> None:
    low = cloud(6, "new-box", "cx33", utilisation=util(cpu_avg=0.01, cpu_coverage=0.1))
    none = cloud(7, "no-data", "cx33")
    unpriced = cloud(8, "no-price", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02))
    unpriced.monthly_cost = None
    result = RULE.evaluate(fleet(low, none, unpriced), TH)
    assert result.recommendations == []
    reasons = {e.server.name: e.reason for e in result.exclusions}
    assert reasons["new-box"] == "CPU data covers 10% of the 30 days, below the minimum of 25%"
    assert reasons["no-data"].startswith("no utilisation series")
    assert reasons["no-price"].startswith("no price known")
    assert {e.rule for e in result.exclusions} == {"idle"}


def test_powered_off_without_data_is_deleted_with_low_confidence() -> None:
    s = cloud(9, "forgotten", "cx33", status="off")
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert (rec.action, rec.confidence, rec.savings) == ("delete", "low", Decimal("6.49"))
    assert "powered off now" in rec.confidence_reasons[0].text
    off = dataclasses.replace(TH, idle=dataclasses.replace(TH.idle, powered_off=False))
    result = RULE.evaluate(fleet(s), off)
    assert result.recommendations == [] and len(result.exclusions) == 1


def test_dedicated_that_never_runs_is_cancelled_in_robot() -> None:
    d = dedicated(2391005, "auction-box", "Server Auction", price="36.00",
                  utilisation=util(cpu_avg=0.005, cpu_max=0.04, mem_p95=0.05))
    [rec] = RULE.evaluate(fleet(d), TH).recommendations
    assert (rec.action, rec.savings) == ("delete", Decimal("36.00"))
    assert rec.commands == ["# back up whatever you want to keep from auction-box",
                            "# cancel server 2391005 in Robot (Server → Cancellation)"]


def test_dedicated_that_wakes_up_is_left_to_dedicated_to_cloud() -> None:
    d = dedicated(2391006, "cron-box", utilisation=util(cpu_avg=0.01, cpu_max=0.4,
                                                        mem_p95=0.05))
    assert RULE.evaluate(fleet(d), TH).recommendations == []
    assert MOVE.evaluate(fleet(d), TH).recommendations == []


def test_the_two_outcomes_are_two_rules() -> None:
    """Delete (priority 20, before consolidation) and move (45, after it) never overlap."""
    gone = cloud(1, "gone", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02))
    wakes = cloud(2, "wakes", "cx33", disk_gb=40,
                  utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.1))
    f = fleet(gone, wakes)
    assert [(r.servers[0].name, r.action) for r in RULE.evaluate(f, TH).recommendations] == \
        [("gone", "delete")]
    assert [(r.servers[0].name, r.kind, r.action)
            for r in MOVE.evaluate(f, TH).recommendations] == [("wakes", "idle", "change_type")]
    assert (RULE.name, RULE.priority, MOVE.name, MOVE.priority) == ("idle", 20, "idle_move", 45)
    off = dataclasses.replace(TH, idle=dataclasses.replace(TH.idle, powered_off=True))
    assert MOVE.evaluate(fleet(cloud(3, "off", status="off")), off).recommendations == []


def test_already_smallest_type_gives_nothing() -> None:
    s = cloud(10, "tiny", "cx23", utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.1))
    result = MOVE.evaluate(fleet(s), TH)
    assert result.recommendations == [] and result.exclusions == []


def test_move_respects_memory_and_minimum_savings() -> None:
    # peak 3.5 GiB of 8: needs 3.5 / 0.8 = 4.375 GiB -> cx23 (4 GiB) is too small
    s = cloud(11, "mid", "cx33", utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.2,
                                                  mem_max=3.5 / 8))
    assert MOVE.evaluate(fleet(s), TH).recommendations == []
    s2 = cloud(12, "mid2", "cx33", disk_gb=40,
               utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.2))
    strict = dataclasses.replace(TH, idle=dataclasses.replace(
        TH.idle, min_savings_euros=Decimal("2.51")))
    assert MOVE.evaluate(fleet(s2), strict).recommendations == []  # saves 2.50
    [rec] = MOVE.evaluate(fleet(s2), TH).recommendations
    assert rec.savings == Decimal("2.50")
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.2 * 8 * GiB / (4 * GiB)) < 1e-9


def test_disabled() -> None:
    s = cloud(13, "x", "cx33", utilisation=util(cpu_avg=0.01, cpu_max=0.02))
    off = dataclasses.replace(TH, idle=dataclasses.replace(TH.idle, enabled=False))
    result = engine.generate(fleet(s), off, rules=[RULE])  # both steps skipped
    assert result.recommendations == [] and result.exclusions == []


def test_stable_id_and_json_round_trip() -> None:
    s = cloud(108, "old-jenkins", "cx42", utilisation=util(cpu_avg=0.01, cpu_max=0.03))
    [a] = RULE.evaluate(fleet(s), TH).recommendations
    [b] = RULE.evaluate(fleet(s), TH).recommendations
    assert a.id == b.id and a.id.startswith("rec-")
    data = a.to_dict()
    assert data["monthly_savings"] == "19.09"
    assert type(a).from_dict(data).to_dict() == data


# --------------------------------------------------------------------- HA replicas

PG = {"ha_group": "pg", "env": "production"}
QUIET = util(cpu_avg=0.01, cpu_p95=0.02, cpu_max=0.03, mem_p95=0.1)


def pair(primary_load: Utilisation | None) -> tuple[Server, Server]:
    standby = cloud(21, "standby-1", "cx23", labels=PG, utilisation=QUIET)
    primary = cloud(22, "primary-1", "cx23", labels=PG, utilisation=primary_load)
    return standby, primary


def test_an_idle_standby_whose_primary_is_busy_is_kept_for_high_availability() -> None:
    standby, primary = pair(util(cpu_avg=0.45, cpu_p95=0.55, cpu_max=0.8, mem_p95=0.6))
    result = RULE.evaluate(fleet(standby, primary), TH)
    assert result.recommendations == []
    [kept] = result.exclusions
    assert (kept.server.name, kept.rule, kept.cause) == ("standby-1", "idle", "ha")
    assert kept.reason == ("idle, but its HA peer primary-1 (label ha_group=pg: 30-day average "
                           "CPU 45%) is busy: deleting standby-1 would leave primary-1 without "
                           "its replica")
    # without the replica label, the standby is an idle server like any other
    off = dataclasses.replace(TH, ha=dataclasses.replace(TH.ha, replica_label=""))
    [rec] = RULE.evaluate(fleet(standby, primary), off).recommendations
    assert (rec.servers[0].name, rec.action) == ("standby-1", "delete")


def test_busy_means_anything_but_nothing_ran() -> None:
    """The peer must pass the tests that would delete it: its memory, its CPU maximum and
    its data all count; a peer the run cannot judge is busy too."""
    cases = {
        "p95 memory 60%": util(cpu_avg=0.01, cpu_max=0.03, mem_p95=0.6),
        "30-day CPU maximum 40%: something runs on it": util(cpu_avg=0.01, cpu_max=0.4,
                                                             mem_p95=0.1),
        "30-day average traffic 2 MB/s": util(cpu_avg=0.01, cpu_max=0.03, mem_p95=0.1,
                                              net_in=500_000, net_out=1_500_000),
        "its load is unknown (CPU data covers 10% of the 30 days, below the minimum of "
        "25%)": util(cpu_avg=0.01, cpu_coverage=0.1),
    }
    for why, load in cases.items():
        standby, primary = pair(load)
        [kept] = [e for e in RULE.evaluate(fleet(standby, primary), TH).exclusions
                  if e.server.name == "standby-1"]
        assert (kept.cause, kept.reason) == ("ha", f"idle, but its HA peer primary-1 (label "
                                             f"ha_group=pg: {why}) is busy: deleting standby-1 "
                                             "would leave primary-1 without its replica"), why


def test_replicas_that_are_all_idle_are_deleted_and_say_so() -> None:
    standby, primary = pair(QUIET)
    result = RULE.evaluate(fleet(standby, primary), TH)
    assert result.exclusions == []
    assert sorted((r.servers[0].name, r.action) for r in result.recommendations) == [
        ("primary-1", "delete"), ("standby-1", "delete")]
    by_name = {r.servers[0].name: r for r in result.recommendations}
    assert Reason("its HA peer primary-1 (label ha_group=pg) is idle too: the service they "
                  "replicate does not run", {"ha_peers": "primary-1"}) in \
        by_name["standby-1"].reasons


def test_a_spread_placement_group_names_every_busy_peer() -> None:
    group = PlacementGroup("4242", "db-spread", "spread")
    a = cloud(31, "db-a", "cx33", placement_group=group,
              utilisation=util(cpu_avg=0.35, cpu_max=0.7, mem_p95=0.5))
    b = cloud(32, "db-b", "cx33", placement_group=group, utilisation=QUIET)
    c = cloud(33, "db-c", "cx33", placement_group=group,
              utilisation=util(cpu_avg=0.2, cpu_max=0.5, mem_p95=0.5))
    [kept] = RULE.evaluate(fleet(a, b, c), TH).exclusions
    assert (kept.server.name, kept.cause) == ("db-b", "ha")
    assert kept.reason == (
        "idle, but its HA peers db-a (spread placement group db-spread: 30-day average CPU "
        "35%), db-c (spread placement group db-spread: 30-day average CPU 20%) are busy: "
        "deleting db-b would leave them without their replica")


def test_a_peer_another_rule_took_counts_as_busy() -> None:
    """The engine runs under-provisioned first: it upsizes the saturated primary, which
    leaves the view idle sees; the standby still knows its peer, and stays."""
    standby, primary = pair(util(cpu_avg=0.9, cpu_p95=0.95, cpu_max=1.0, mem_p95=0.6))
    run = engine.generate(fleet(standby, primary), TH, now=0)
    assert [(r.kind, r.servers[0].name) for r in run.recommendations] == [
        ("underprovisioned", "primary-1")]
    [kept] = run.exclusions
    assert (kept.server.name, kept.rule, kept.cause) == ("standby-1", "idle", "ha")
    assert kept.reason == ("idle, but its HA peer primary-1 (label ha_group=pg: another "
                           "recommendation of this run changes it) is busy: deleting standby-1 "
                           "would leave primary-1 without its replica")


def test_a_powered_off_standby_beside_a_busy_primary_is_kept() -> None:
    standby, primary = pair(util(cpu_avg=0.45, cpu_max=0.8, mem_p95=0.6))
    standby.status, standby.utilisation = "off", Utilisation()
    [kept] = RULE.evaluate(fleet(standby, primary), TH).exclusions
    assert (kept.server.name, kept.cause) == ("standby-1", "ha")
    assert kept.reason.startswith("powered off, but its HA peer primary-1 (label ha_group=pg: "
                                  "30-day average CPU 45%) is busy")


def test_an_idle_replica_is_not_moved_below_what_its_peer_needs_on_failover() -> None:
    """A standby takes over its primary's load: it moves to a smaller type only when that
    type holds the primary's p95 CPU and peak memory too (issue 14, point 5)."""
    standby = cloud(41, "standby-2", "cx33", disk_gb=40, labels=PG,
                    utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.1))
    # the primary: p95 2.2 of 4 cores, 4.8 GiB of 8: no cx23 (2 cores, 4 GiB) takes over
    busy = cloud(42, "primary-2", "cx33", labels=PG,
                 utilisation=util(cpu_avg=0.45, cpu_p95=0.55, cpu_max=0.8, mem_p95=0.6))
    assert MOVE.evaluate(fleet(standby, busy), TH).recommendations == []
    # a primary whose load a cx23 holds (0.4 cores, 1.6 GiB): both may be smaller
    light = dataclasses.replace(busy, utilisation=util(cpu_avg=0.08, cpu_p95=0.1,
                                                       cpu_max=0.3, mem_p95=0.2))
    [rec] = [r for r in MOVE.evaluate(fleet(standby, light), TH).recommendations
             if r.servers[0].name == "standby-2"]
    assert (rec.action, rec.target_type) == ("change_type", "cx23")
    assert ("on a failover standby-2 takes over the load of its HA peer primary-2 (label "
            "ha_group=pg: p95 CPU 0.4 cores, peak memory 1.6 GiB): the target holds that too"
            ) in [r.text for r in rec.reasons]
    # without the replica label, nothing holds the standby back
    off = dataclasses.replace(TH, ha=dataclasses.replace(TH.ha, replica_label=""))
    [rec] = MOVE.evaluate(fleet(standby, busy), off).recommendations
    assert (rec.servers[0].name, rec.target_type) == ("standby-2", "cx23")


def test_a_replica_whose_peer_cannot_be_judged_keeps_the_peer_s_size() -> None:
    standby = cloud(43, "standby-3", "cx33", disk_gb=40, labels=PG,
                    utilisation=util(cpu_avg=0.02, cpu_max=0.3, mem_p95=0.1))
    unknown = cloud(44, "primary-3", "cx33", labels=PG,
                    utilisation=util(cpu_avg=0.3, cpu_coverage=0.1))
    assert MOVE.evaluate(fleet(standby, unknown), TH).recommendations == []
    small = cloud(45, "primary-4", "cx23", labels={**PG, "ha_group": "q"},
                  utilisation=util(cpu_avg=0.3, cpu_coverage=0.1))
    other = dataclasses.replace(standby, key=dataclasses.replace(standby.key, server_id="46"),
                                name="standby-4", labels={**PG, "ha_group": "q"})
    [rec] = MOVE.evaluate(fleet(other, small), TH).recommendations
    assert rec.target_type == "cx23"
    assert any(r.text.startswith("its HA peer primary-4 (label ha_group=q) cannot be judged")
               for r in rec.reasons)


def test_a_reason_names_a_few_peers_and_counts_the_rest() -> None:
    """A replica label set on many servers (by mistake, say) keeps the reason readable."""
    busy = util(cpu_avg=0.45, cpu_max=0.8, mem_p95=0.6)
    standby = cloud(50, "standby", "cx23", labels=PG, utilisation=QUIET)
    others = [cloud(51 + i, f"node-{i}", "cx23", labels=PG, utilisation=busy) for i in range(8)]
    [kept] = [e for e in RULE.evaluate(fleet(standby, *others), TH).exclusions
              if e.server.name == "standby"]
    assert kept.reason == (
        "idle, but its HA peers " + ", ".join(
            f"node-{i} (label ha_group=pg: 30-day average CPU 45%)" for i in range(5))
        + " and 3 more are busy: deleting standby would leave them without their replica")


# ---- traffic (issue 14, point 1) -----------------------------------------------------

def test_a_server_that_moves_data_is_never_idle() -> None:
    """2 % CPU, nothing in memory, but 5 MB/s out: a proxy, not an idle box."""
    busy = cloud(7, "proxy-1", "cx33",
                 utilisation=util(cpu_avg=0.02, cpu_p95=0.03, cpu_max=0.06, mem_p95=0.1,
                                  net_in=1_000_000, net_out=5_000_000))
    for step in (RULE, MOVE):
        result = step.evaluate(fleet(busy), TH)
        assert result.recommendations == [] and result.exclusions == []


def test_the_traffic_threshold_is_in_plus_out_and_configurable() -> None:
    s = cloud(8, "quiet-1", "cx33", utilisation=util(
        cpu_avg=0.01, cpu_p95=0.02, cpu_max=0.03, mem_p95=0.1, net_in=20_000, net_out=20_000))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations  # 40 kB/s < 50 kB/s
    assert any(r.text == "30-day average traffic is 40 kB/s (in 20 kB/s, out 20 kB/s; "
                         "48.3 GB out a month), below 50 kB/s" for r in rec.reasons)
    stricter = dataclasses.replace(TH, idle=dataclasses.replace(TH.idle, network_avg_max=40_000))
    assert RULE.evaluate(fleet(s), stricter).recommendations == []


def test_without_traffic_figures_the_confidence_drops_one_level() -> None:
    s = cloud(9, "unmeasured", "cx33", utilisation=util(
        cpu_avg=0.01, cpu_p95=0.02, cpu_max=0.03, mem_p95=0.1, net_in=None))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert (rec.action, rec.confidence) == ("delete", "medium")
    assert any("network traffic is not measured" in r.text for r in rec.confidence_reasons)
