"""Scenario: HA replicas against a real Prometheus — never merged, never deleted beside a
busy peer (issue 14, point 5).

The harness of ``test_scenario_prometheus.py`` (``scenario_lib``: 30 days backfilled, the
exporter's series by scrape, the committed rule files) holds a fleet of five Cloud
servers in one project and location (webshop, fsn1; prices net EUR a month: cx23 3.49, a
primary IPv4 0.60):

=====  ==========  =====  ==================================================  ===================
id     name        type   setup                                               outcome
=====  ==========  =====  ==================================================  ===================
3001   stg-a       cx23   staging, spread placement group ``stg-spread``      merged with stg-c
3002   stg-b       cx23   staging, ``stg-spread``, busier than stg-a          left out: stg-a's
                                                                              replica
3003   stg-c       cx23   staging                                             merged with stg-a
3011   standby-1   cx23   production, ``ha_group=pg``, nothing runs (CPU      kept (exclusion
                          never above 4 %)                                    ``ha``)
3012   primary-1   cx23   production, ``ha_group=pg``, busy (45 % CPU)        nothing
=====  ==========  =====  ==================================================  ===================

Without HA safety (today's main) the three staging servers merge onto one cx33 (12.27 →
6.59) — stg-a and stg-b, kept on different hosts by their spread group, end up on one
machine — and standby-1 is deleted as idle. Here stg-b (the more demanding of the pair)
is left out, stg-a and stg-c fit one cx23 (8.18 → 4.09), and standby-1 stays, excluded
with cause ``ha`` and a reason naming primary-1.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from scenario_lib import FleetServer, PlacementGroup, Profile, Scenario, vector

from infrascope_core.prometheus import binaries_available
from infrascope_recommender import pipeline
from infrascope_recommender.config import load_config
from infrascope_recommender.model import Recommendation, RunResult, ServerKey
from infrascope_recommender.promql import PrometheusClient

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="needs /usr/bin/prometheus and /usr/bin/promtool")

D = Decimal
CX23, IPV4 = D("3.49"), D("0.60")
STAGING = {"env": "staging"}
REPLICAS = {"env": "production", "ha_group": "pg"}
SPREAD = PlacementGroup("5001", "stg-spread", "spread")


def ha_fleet() -> list[FleetServer]:
    c = "cloud"
    return [
        FleetServer(c, "3001", "stg-a", "cx23", project="webshop", labels=STAGING,
                    placement_group=SPREAD, cpu=Profile(0.06, 0.3),
                    memory=Profile(0.25, 0.1, peak=0.30)),
        FleetServer(c, "3002", "stg-b", "cx23", project="webshop", labels=STAGING,
                    placement_group=SPREAD, cpu=Profile(0.10, 0.3),
                    memory=Profile(0.30, 0.1, peak=0.40)),
        FleetServer(c, "3003", "stg-c", "cx23", project="webshop", labels=STAGING,
                    cpu=Profile(0.08, 0.3), memory=Profile(0.28, 0.1, peak=0.35)),
        FleetServer(c, "3011", "standby-1", "cx23", project="webshop", labels=REPLICAS,
                    cpu=Profile(0.01, 0.2, peak=0.04), memory=Profile(0.10, 0.1)),
        FleetServer(c, "3012", "primary-1", "cx23", project="webshop", labels=REPLICAS,
                    cpu=Profile(0.45, 0.2), memory=Profile(0.60, 0.05, peak=0.68)),
    ]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with Scenario(ha_fleet(), tmp_path_factory.mktemp("scenario-ha")) as started:
        yield started


@pytest.fixture(scope="module")
def result(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    state = tmp_path_factory.mktemp("state") / "state.db"
    config = load_config(None, env={}, overrides={"prometheus_url": scenario.url,
                                                  "state_path": str(state)})
    client = PrometheusClient(config.prometheus)
    try:
        return pipeline.run(config, client)
    finally:
        client.close()


def names(rec: Recommendation) -> set[str]:
    return {s.name for s in rec.servers}


def test_spread_placement_group_pair_is_never_merged(result: RunResult) -> None:
    merges = [r for r in result.recommendations if r.kind == "consolidation"]
    assert merges, [(r.kind, sorted(names(r))) for r in result.recommendations]
    assert not [r for r in merges if {"stg-a", "stg-b"} <= names(r)], \
        [sorted(names(r)) for r in merges]
    [merge] = merges
    assert (names(merge), merge.action, merge.target_type) == ({"stg-a", "stg-c"}, "merge",
                                                               "cx23")
    # two cx23 with a primary IPv4 each onto one: 8.18 -> 4.09
    assert (merge.current_monthly_cost, merge.projected_monthly_cost) == (
        2 * (CX23 + IPV4), CX23 + IPV4)
    assert ("stg-b left out: in spread placement group stg-spread with stg-a — merging "
            "replicas removes the HA") in [r.text for r in merge.reasons]
    assert any(p.startswith("stg-a is a replica of stg-b (spread placement group "
                            "stg-spread): keep ") for p in merge.preconditions)


def test_idle_standby_of_a_busy_primary_is_not_deleted(result: RunResult) -> None:
    assert [r for r in result.recommendations if "standby-1" in names(r)] == []
    [kept] = [e for e in result.exclusions if e.server.name == "standby-1"]
    assert (kept.rule, kept.cause) == ("idle", "ha")
    assert kept.reason.startswith("idle, but its HA peer primary-1 (label ha_group=pg: "
                                  "30-day average CPU "), kept.reason
    assert kept.reason.endswith("is busy: deleting standby-1 would leave primary-1 without "
                                "its replica"), kept.reason
    # nothing else was made of the fleet: the merge, and the standby kept
    assert [(r.kind, sorted(names(r))) for r in result.recommendations] == [
        ("consolidation", ["stg-a", "stg-c"])]
    assert [(e.server.name, e.cause) for e in result.exclusions] == [("standby-1", "ha")]


def test_placement_groups_reach_the_recommender(scenario: Scenario,
                                                result: RunResult) -> None:
    """From the exporter's series through the rules pack's provider-neutral layer to the
    loader, in the query it already made (14 in all)."""
    recorded = vector(scenario.prom, "source_server_id:server_placement_group_info:normalised")
    assert {k: (m["placement_group_id"], m["placement_group"], m["placement_group_type"],
                m["provider"]) for k, (m, _) in recorded.items()} == {
        "cloud/3001": ("5001", "stg-spread", "spread", "hetzner"),
        "cloud/3002": ("5001", "stg-spread", "spread", "hetzner")}
    servers = result.fleet.servers
    pg = servers[ServerKey("cloud", "3001")].placement_group
    assert pg is not None and (pg.id, pg.name, pg.type) == ("5001", "stg-spread", "spread")
    assert servers[ServerKey("cloud", "3003")].placement_group is None
    assert servers[ServerKey("cloud", "3011")].labels == {"env": "production",
                                                           "ha_group": "pg"}
    assert result.fleet.queries == 14
