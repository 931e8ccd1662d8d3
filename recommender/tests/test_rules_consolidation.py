"""Consolidation: non-production servers merged onto one cheaper server."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from rules_fixtures import cloud, fleet, util

from infrascope_recommender.model import PlacementGroup, Server, ServerKey, Service
from infrascope_recommender.rules.consolidation import RULE, nonprod_reason
from infrascope_recommender.thresholds import HighAvailability, Thresholds

TH = Thresholds()
STAGING = {"env": "staging"}


def staging_trio() -> list[Server]:
    web = cloud(104, "shop-staging-web", "cx33", labels=STAGING, disk_used_gb=10,
                utilisation=util(cpu_avg=0.03, cpu_p95=0.05, cpu_max=0.2, mem_p95=0.18))
    db = cloud(105, "shop-staging-db", "cx33", labels=STAGING, disk_used_gb=20,
               utilisation=util(cpu_avg=0.04, cpu_max=0.1, mem_p95=0.22))
    worker = cloud(106, "shop-staging-worker", "cx23", labels=STAGING, disk_used_gb=5,
                   utilisation=util(cpu_avg=0.03, cpu_max=0.1, mem_p95=0.20))
    return [web, db, worker]


def test_staging_servers_merge_onto_one() -> None:
    servers = staging_trio()
    servers[0].services = [Service("docker", "shop-app", "running", ports=["tcp/8080"])]
    servers[1].services = [Service("systemd", "postgresql@16-main.service", "active",
                                        ports=["tcp/5432"])]
    result = RULE.evaluate(fleet(*servers), TH)
    assert result.exclusions == []
    [rec] = result.recommendations
    assert (rec.kind, rec.action, rec.target_type, rec.target_location) == \
        ("consolidation", "merge", "cx33", "fsn1")
    # 6.49 + 6.49 + 3.99 -> one cx33 (5.99) with one primary IPv4 (0.50)
    assert rec.current_monthly_cost == Decimal("16.97")
    assert rec.projected_monthly_cost == Decimal("6.49")
    assert rec.savings == Decimal("10.48")
    # memory 1.44 + 1.76 + 0.8 = 4.0 GiB peak -> 5 GiB with headroom: cx23 is too small
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.5) < 1e-9
    assert rec.projected_cpu_utilisation is not None
    assert abs(rec.projected_cpu_utilisation - (0.2 + 0.16 + 0.06) / 4) < 1e-9
    # Shown by name: the same merge reads the same whatever the figures (the order of
    # demand only decides which server is left out first).
    assert [s.name for s in rec.servers] == ["shop-staging-db", "shop-staging-web",
                                             "shop-staging-worker"]
    assert rec.commands == [
        "hcloud server create --name staging-consolidated-fsn1 --type cx33 --location fsn1 "
        "--image ubuntu-24.04",
        "# move the services and data of shop-staging-db to staging-consolidated-fsn1",
        "# move the services and data of shop-staging-web to staging-consolidated-fsn1",
        "# move the services and data of shop-staging-worker to staging-consolidated-fsn1",
        "hcloud server create-image --type snapshot --description "
        "'shop-staging-db before consolidation onto staging-consolidated-fsn1' shop-staging-db",
        "hcloud server delete shop-staging-db",
        "hcloud server create-image --type snapshot --description "
        "'shop-staging-web before consolidation onto staging-consolidated-fsn1' shop-staging-web",
        "hcloud server delete shop-staging-web",
        "hcloud server create-image --type snapshot --description "
        "'shop-staging-worker before consolidation onto staging-consolidated-fsn1' "
        "shop-staging-worker",
        "hcloud server delete shop-staging-worker",
    ]
    assert rec.risk == "medium" and rec.confidence == "high"
    services = [r for r in rec.risk_reasons if r.text.startswith("services to move")]
    assert services[0].text == ("services to move: shop-staging-db: systemd "
                                "postgresql@16-main.service (tcp/5432); shop-staging-web: "
                                "docker shop-app (tcp/8080)")
    assert any(r.text == "shop-staging-db: label env=staging" for r in rec.reasons)


def test_the_same_merge_reads_the_same_whatever_the_figures() -> None:
    """The p95 figures of a run differ a little from the next one's; a merge of the same
    servers keeps its order, commands and id."""
    first = RULE.evaluate(fleet(*staging_trio()), TH).recommendations[0]
    servers = staging_trio()
    servers[1].utilisation.cpu_p95, servers[2].utilisation.cpu_p95 = \
        servers[2].utilisation.cpu_p95, servers[1].utilisation.cpu_p95  # demand order flips
    second = RULE.evaluate(fleet(*servers), TH).recommendations[0]
    assert [s.name for s in second.servers] == [s.name for s in first.servers]
    assert second.commands == first.commands and second.id == first.id


def test_port_conflicts_are_named() -> None:
    a, b = staging_trio()[:2]
    for s in (a, b):
        s.services = [Service("systemd", "nginx.service", "active",
                                   ports=["tcp/80", "tcp/443"])]
    [rec] = RULE.evaluate(fleet(a, b), TH).recommendations
    [conflict] = [r for r in rec.risk_reasons if r.figures.get("conflicts")]
    assert conflict.figures["conflicts"] == ("tcp/443 on shop-staging-db and shop-staging-web, "
                                             "tcp/80 on shop-staging-db and shop-staging-web")


def test_name_pattern_and_label_precedence() -> None:
    th = TH
    def s(name: str, labels: dict[str, str] | None = None, project: str = "webshop") -> Server:
        return cloud(1, name, labels=labels, project=project)
    assert nonprod_reason(s("shop-dev-1"), th) is not None
    assert nonprod_reason(s("api-test"), th) is not None
    assert nonprod_reason(s("staging"), th) is not None
    assert nonprod_reason(s("qa2-web"), th) is not None
    assert nonprod_reason(s("latest-build"), th) is None
    assert nonprod_reason(s("devops-tools"), th) is None
    assert nonprod_reason(s("staging-x", {"env": "production"}), th) is None
    assert nonprod_reason(s("web", {"env": "Dev"}), th) == "label env=Dev"
    custom = dataclasses.replace(th, consolidation=dataclasses.replace(
        th.consolidation, name_pattern="", name_patterns={"ci": r"^runner-"}))
    assert nonprod_reason(s("shop-dev-1"), custom) is None
    assert nonprod_reason(s("runner-3", project="ci"), custom) == "name matches '^runner-'"
    assert nonprod_reason(s("runner-3", project="webshop"), custom) is None


def test_groups_are_per_project_location_and_architecture() -> None:
    a = cloud(1, "dev-a", "cx23", utilisation=util(cpu_avg=0.01, mem_p95=0.1))
    b = cloud(2, "dev-b", "cx23", location="nbg1", utilisation=util(cpu_avg=0.01, mem_p95=0.1))
    c = cloud(3, "dev-c", "cx23", project="other", utilisation=util(cpu_avg=0.01, mem_p95=0.1))
    d = cloud(4, "dev-d", "cax11", utilisation=util(cpu_avg=0.01, mem_p95=0.1))
    assert RULE.evaluate(fleet(a, b, c, d), TH).recommendations == []


def test_the_most_demanding_server_is_left_out_when_all_do_not_fit() -> None:
    servers = staging_trio()
    big = cloud(107, "shop-staging-search", "cx53", labels=STAGING,
                utilisation=util(cpu_avg=0.5, cpu_p95=0.9, mem_p95=0.6))
    [rec] = RULE.evaluate(fleet(*servers, big), TH).recommendations
    assert "shop-staging-search" not in [s.name for s in rec.servers]
    assert rec.savings == Decimal("10.48")


def test_not_cheaper_gives_nothing() -> None:
    a = cloud(1, "dev-a", "cx23", utilisation=util(cpu_avg=0.1, mem_p95=0.9))
    b = cloud(2, "dev-b", "cx23", utilisation=util(cpu_avg=0.1, mem_p95=0.9))
    # 7.2 GiB peak / 0.8 = 9 GiB -> cx43 (11.49) costs more than 2 x 3.99
    assert RULE.evaluate(fleet(a, b), TH).recommendations == []
    c = cloud(3, "dev-c", "cx23", utilisation=util(cpu_avg=0.1, mem_p95=0.7))
    d = cloud(4, "dev-d", "cx23", utilisation=util(cpu_avg=0.1, mem_p95=0.7))
    [rec] = RULE.evaluate(fleet(c, d), TH).recommendations
    assert (rec.target_type, rec.savings) == ("cx33", Decimal("1.49"))
    strict = dataclasses.replace(TH, consolidation=dataclasses.replace(
        TH.consolidation, min_savings_euros=Decimal("1.50")))
    assert RULE.evaluate(fleet(c, d), strict).recommendations == []


def test_unmeasured_memory_is_counted_in_full_and_lowers_confidence() -> None:
    a = cloud(1, "dev-a", "cx23", utilisation=util(cpu_avg=0.02))
    b = cloud(2, "dev-b", "cx23", utilisation=util(cpu_avg=0.02, mem_p95=0.1))
    [rec] = RULE.evaluate(fleet(a, b), TH).recommendations
    # 4 GiB in full + 0.4 GiB / 0.8 -> 4.5 GiB -> cx33; disks unmeasured: 80 GB -> cx33 ok
    assert rec.target_type == "cx33"
    assert rec.confidence == "medium"
    assert rec.projected_memory_utilisation is None
    assert any("memory of dev-a was not measured" in r.text for r in rec.confidence_reasons)
    assert any("whole primary disks were counted" in p for p in rec.preconditions)


def test_backups_and_minimum_group_size() -> None:
    a = cloud(1, "dev-a", "cx23", backups=True, disk_used_gb=5,
              utilisation=util(cpu_avg=0.02, mem_p95=0.1))
    b = cloud(2, "dev-b", "cx23", disk_used_gb=5, utilisation=util(cpu_avg=0.02, mem_p95=0.1))
    [rec] = RULE.evaluate(fleet(a, b), TH).recommendations
    # current 3.49 * 1.2 + 0.5 + 3.99 = 8.678; cx23 with backups 3.49 * 1.2 + 0.5 = 4.688
    assert (rec.target_type, rec.current_monthly_cost, rec.projected_monthly_cost) == \
        ("cx23", Decimal("8.678"), Decimal("4.688"))
    three = dataclasses.replace(TH, consolidation=dataclasses.replace(
        TH.consolidation, min_servers=3))
    assert RULE.evaluate(fleet(a, b), three).recommendations == []
    # with unmeasured disks both 40 GB disks count in full: a cx33 (80 GB) saves only 0.99
    a.disk_used_bytes = b.disk_used_bytes = None
    assert RULE.evaluate(fleet(a, b), TH).recommendations == []


def test_exclusions_for_non_production_servers_without_data() -> None:
    a, b, c = staging_trio()
    c.utilisation = util(cpu_avg=0.03, cpu_coverage=0.2)
    prod = cloud(9, "shop-web-1", "cx33", labels={"env": "production"})
    result = RULE.evaluate(fleet(a, b, c, prod), TH)
    [rec] = result.recommendations
    assert [s.name for s in rec.servers] == ["shop-staging-db", "shop-staging-web"]
    assert [(e.server.name, e.reason) for e in result.exclusions] == [
        ("shop-staging-worker", "CPU data covers 20% of the 30 days, below the minimum of 25%")]


def test_unknown_services_say_why_server_by_server() -> None:
    """A merge names each server whose services it cannot list, and why: no agent, an
    agent that is down, or an agent that found none — not "unknown (no agent)" for an
    agent that reported memory but no services."""
    web, db, worker = staging_trio()
    web.services = [Service("docker", "shop-app", "running", ports=["tcp/8080"])]
    web.agent_up = True
    db.agent_up = True  # reports memory, lists no service
    worker.agent_up = None  # no agent target at all
    [rec] = RULE.evaluate(fleet(web, db, worker), TH).recommendations
    texts = [r.text for r in rec.risk_reasons]
    assert ("services not known on shop-staging-db (its agent found no container and no "
            "systemd service listening on a port); shop-staging-worker (no agent): "
            "inventory them before moving") in texts
    assert not any("unknown (no agent)" in t for t in texts)
    db.agent_up = False
    [rec] = RULE.evaluate(fleet(web, db, worker), TH).recommendations
    assert any("shop-staging-db (its agent is down)" in r.text for r in rec.risk_reasons)
    for s in (db, worker):
        s.services = [Service("systemd", "cron.service", "active", ports=["tcp/9"])]
    [rec] = RULE.evaluate(fleet(web, db, worker), TH).recommendations
    assert not any(r.text.startswith("services not known") for r in rec.risk_reasons)


# --------------------------------------------------------------------- HA replicas

SPREAD = PlacementGroup("4242", "staging-spread", "spread")
HA_WHY = ("shop-staging-web left out: in spread placement group staging-spread with "
          "shop-staging-db — merging replicas removes the HA")


def test_two_servers_of_a_spread_placement_group_are_never_merged_together() -> None:
    web, db, worker = staging_trio()
    web.placement_group = db.placement_group = SPREAD
    [rec] = RULE.evaluate(fleet(web, db, worker), TH).recommendations
    # web needs more (0.2 cores at p95) than db (0.16): web is left out, db stays
    assert [s.name for s in rec.servers] == ["shop-staging-db", "shop-staging-worker"]
    # 6.49 + 3.99 -> one cx23 (3.49 + 0.50): 2.56 GiB peak / 0.8 fits its 4 GiB
    assert (rec.target_type, rec.current_monthly_cost, rec.projected_monthly_cost) == \
        ("cx23", Decimal("10.48"), Decimal("3.99"))
    [why] = [r for r in rec.reasons if "left out" in r.text]
    assert why.text == HA_WHY
    assert why.figures == {"server": "shop-staging-web", "peer": "shop-staging-db",
                           "ha": "spread placement group staging-spread"}
    # db's replica stays outside the merge: the new server must not share its host
    assert ("shop-staging-db is a replica of shop-staging-web (spread placement group "
            "staging-spread): keep staging-consolidated-fsn1 on other hosts than them "
            "(create it in the same placement group)") in rec.preconditions


def test_a_replica_pair_alone_is_never_merged() -> None:
    _, db, _ = staging_trio()
    other = dataclasses.replace(db, key=ServerKey("cloud", "107"), name="shop-staging-db-2",
                                labels=dict(STAGING))
    [rec] = RULE.evaluate(fleet(db, other), TH).recommendations  # not replicas: merged
    assert len(rec.servers) == 2
    db.placement_group = other.placement_group = SPREAD
    assert RULE.evaluate(fleet(db, other), TH).recommendations == []
    db.placement_group = other.placement_group = None
    db.labels["ha_group"] = other.labels["ha_group"] = "pg"
    result = RULE.evaluate(fleet(db, other), TH)
    assert (result.recommendations, result.exclusions) == ([], [])


def test_servers_sharing_the_replica_label_are_replicas_too() -> None:
    web, db, worker = staging_trio()
    web.labels["ha_group"] = db.labels["ha_group"] = "staging-db"
    [rec] = RULE.evaluate(fleet(web, db, worker), TH).recommendations
    assert [s.name for s in rec.servers] == ["shop-staging-db", "shop-staging-worker"]
    assert ("shop-staging-web left out: in label ha_group=staging-db with shop-staging-db "
            "— merging replicas removes the HA") in [r.text for r in rec.reasons]
    # another label, once configured (a Hetzner key sanitised as the exporter does)
    web.labels["replica_of"] = db.labels["replica_of"] = "x"
    web.labels.pop("ha_group")
    db.labels.pop("ha_group")
    assert len(RULE.evaluate(fleet(web, db, worker), TH).recommendations[0].servers) == 3
    other = dataclasses.replace(TH, ha=dataclasses.replace(TH.ha, replica_label="replica-of"))
    [rec] = RULE.evaluate(fleet(web, db, worker), other).recommendations
    assert "shop-staging-web" not in [s.name for s in rec.servers]


def test_what_makes_replicas_is_configurable() -> None:
    web, db, worker = staging_trio()
    web.placement_group = db.placement_group = SPREAD
    web.labels["ha_group"] = db.labels["ha_group"] = "pg"
    off = dataclasses.replace(TH, ha=HighAvailability(replica_label="",
                                                      placement_group_types=()))
    [rec] = RULE.evaluate(fleet(web, db, worker), off).recommendations
    assert len(rec.servers) == 3 and not any("left out" in r.text for r in rec.reasons)
    # a placement group of a type that is not configured makes no replicas
    web.labels.pop("ha_group")
    db.labels.pop("ha_group")
    web.placement_group = db.placement_group = PlacementGroup("7", "batch", "cluster")
    assert len(RULE.evaluate(fleet(web, db, worker), TH).recommendations[0].servers) == 3


def test_a_replica_taken_by_an_earlier_rule_is_still_a_replica() -> None:
    """The engine gives consolidation the fleet without the servers earlier rules took;
    the merge still knows the replica outside it (from the whole inventory)."""
    web, db, worker = staging_trio()
    web.placement_group = db.placement_group = SPREAD
    db.services = [Service("systemd", "postgresql@16-main.service", "active",
                           ports=["tcp/5432"])]
    whole = fleet(web, db, worker)
    view = dataclasses.replace(whole, servers={k: s for k, s in whole.servers.items()
                                               if s is not web})
    assert view.inventory is whole.inventory
    [rec] = RULE.evaluate(view, TH).recommendations
    assert [s.name for s in rec.servers] == ["shop-staging-db", "shop-staging-worker"]
    assert not any("left out" in r.text for r in rec.reasons)  # web was not in the group
    assert any(p.startswith("shop-staging-db is a replica of shop-staging-web")
               for p in rec.preconditions)


def test_the_members_daily_peaks_are_summed() -> None:
    # Each member's nightly job is 1.2 cores (of its 4 or 2); summed, as if they all ran
    # at the same hour, 3.6 cores: exactly 90 % of cx33's 4, so cx33 still holds them.
    # The worker's job at 1.6 cores makes 4.0: above 90 % of cx33, so cx43.
    servers = staging_trio()
    for s, peak in zip(servers, (0.3, 0.3, 0.6), strict=True):
        s.utilisation.cpu_daily_peak = peak
    [rec] = RULE.evaluate(fleet(*servers), TH).recommendations
    assert rec.target_type == "cx33"
    servers[2].utilisation.cpu_daily_peak = 0.8  # 1.6 cores: 4.0 in all
    [rec] = RULE.evaluate(fleet(*servers), TH).recommendations
    assert rec.target_type == "cx43"
