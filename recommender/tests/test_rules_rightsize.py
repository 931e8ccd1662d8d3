"""Right-sizing: cheapest type that fits with headroom; disks never shrink."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from rules_fixtures import TYPES, catalogue, cloud, dedicated, fleet, util

from infrascope_recommender.model import Server
from infrascope_recommender.rules._common import assess, option_on, sizing_need, slowdown_factor
from infrascope_recommender.rules.rightsize import RULE
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()


def with_rightsize(**changes: object) -> Thresholds:
    return dataclasses.replace(TH, rightsize=dataclasses.replace(TH.rightsize, **changes))


def test_in_place_when_the_disk_was_kept_small() -> None:
    # a cx43 whose disk is still the cx33's 80 GB (upsized CPU/RAM only)
    s = cloud(1, "web-1", "cx43", disk_gb=80,
              utilisation=util(cpu_avg=0.1, cpu_p95=0.2, cpu_max=0.3, mem_p95=0.25,
                               mem_max=0.3))
    result = RULE.evaluate(fleet(s), TH)
    assert result.exclusions == []
    [rec] = result.recommendations
    assert (rec.kind, rec.action, rec.target_type) == ("rightsize", "change_type", "cx33")
    assert rec.current_monthly_cost == Decimal("11.49")
    assert rec.projected_monthly_cost == Decimal("6.49")
    assert rec.savings == Decimal("5.00")
    assert rec.savings_percent == Decimal("43.5")
    assert rec.commands == ["hcloud server shutdown --wait web-1",
                            "hcloud server change-type web-1 cx33",
                            "hcloud server poweron web-1"]
    assert rec.projected_cpu_utilisation is not None
    assert abs(rec.projected_cpu_utilisation - 0.2 * 8 / 4) < 1e-9
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.3 * 16 / 8) < 1e-9
    # p95 1.6 cores / 0.6 = 2.67 -> 4 cores; peak 4.8 GiB / 0.8 = 6 GiB -> 8 GiB
    assert (rec.confidence, rec.risk) == ("high", "low")
    assert rec.risk_reasons[0].figures["peak_on_target"] == "60%"
    assert any("cx33 (4 cores, 8 GiB, 80 GB disk, 5.99 €/month in fsn1) is the cheapest" in
               r.text for r in rec.reasons)


def test_disk_that_cannot_shrink_means_a_new_server_with_the_reason() -> None:
    s = cloud(2, "web-2", "cx43",  # the cx43's own 160 GB disk
              utilisation=util(cpu_avg=0.1, cpu_p95=0.2, cpu_max=0.3, mem_p95=0.25,
                               mem_max=0.3), disk_used_gb=30, image="ubuntu-22.04")
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert (rec.action, rec.target_type, rec.savings) == ("migrate", "cx33", Decimal("5.00"))
    assert rec.commands[1] == ("hcloud server create --name web-2-cx33 --type cx33 "
                               "--location fsn1 --image ubuntu-22.04")
    assert rec.commands[-1] == "hcloud server delete web-2"
    [disk] = [r for r in rec.reasons if "cannot shrink" in r.text]
    assert disk.figures == {"disk": "160 GB", "target_disk": "80 GB"}
    assert rec.risk == "medium"


def test_in_place_preferred_and_the_cheaper_migration_mentioned() -> None:
    # ccx23 with an 80 GB disk, any CPU type allowed: cx23 is cheapest but has 40 GB
    s = cloud(3, "api", "ccx23", disk_gb=80,
              utilisation=util(cpu_avg=0.05, cpu_p95=0.1, mem_p95=0.2))
    any_cpu = dataclasses.replace(TH, same_cpu_type=False)
    [rec] = RULE.evaluate(fleet(s), any_cpu).recommendations
    assert (rec.action, rec.target_type) == ("change_type", "cx33")
    assert rec.savings == Decimal("23.00")  # 29.49 -> 6.49
    [alt] = [r for r in rec.reasons if r.figures.get("alternative")]
    assert alt.figures == {"alternative": "cx23", "alternative_projected": "3.99 €"}
    assert "would save 2.50 € a month more" in alt.text


def test_same_cpu_type_by_default() -> None:
    s = cloud(4, "db", "ccx23", disk_gb=80, utilisation=util(cpu_avg=0.05, cpu_p95=0.1,
                                                             mem_p95=0.2))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert (rec.action, rec.target_type, rec.savings) == ("change_type", "ccx13",
                                                          Decimal("14.50"))


def test_same_architecture() -> None:
    s = cloud(5, "arm-1", "cax31", utilisation=util(cpu_avg=0.05, cpu_p95=0.1, mem_p95=0.1),
              disk_gb=40)
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.target_type == "cax11"  # never an x86 cx23 although it is cheaper
    assert rec.savings == Decimal("11.00")


def test_location_availability_and_deprecation() -> None:
    types = catalogue()
    types["cx33"].available.discard("nbg1")
    types["cax11"].deprecated.add("fsn1")
    figures = util(cpu_avg=0.1, cpu_p95=0.2, mem_p95=0.2, mem_max=0.3)
    # 1.6 cores / 0.6 -> 4 cores: cx33 is not orderable in nbg1 and nothing else fits
    s = cloud(6, "nbg-web", "cx43", location="nbg1", disk_gb=40, utilisation=figures)
    assert RULE.evaluate(fleet(s, types=types), TH).recommendations == []
    f = cloud(6, "fsn-web", "cx43", location="fsn1", disk_gb=40, utilisation=figures)
    assert RULE.evaluate(fleet(f, types=types), TH).recommendations[0].target_type == "cx33"
    a = cloud(7, "arm", "cax21", disk_gb=40, utilisation=util(cpu_avg=0.05, mem_p95=0.1))
    assert RULE.evaluate(fleet(a, types=types), TH).recommendations == []  # cax11 deprecated
    assert RULE.evaluate(fleet(a), TH).recommendations[0].target_type == "cax11"


def test_minimum_savings_euros_and_percent() -> None:
    s = cloud(8, "small", "cx33", disk_gb=40, utilisation=util(cpu_avg=0.05, mem_p95=0.2))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.savings == Decimal("2.50") and rec.savings_percent == Decimal("38.5")
    assert RULE.evaluate(fleet(s), with_rightsize(min_savings_euros=Decimal("2.51"))) \
        .recommendations == []
    assert RULE.evaluate(fleet(s), with_rightsize(min_savings_percent=Decimal("39"))) \
        .recommendations == []


def test_memory_not_measured_keeps_the_memory_and_lowers_confidence() -> None:
    s = cloud(9, "cpx", "cpx22", utilisation=util(cpu_avg=0.05, cpu_p95=0.1))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    # cx23 (4 GiB, 40 GB) would fit the memory but not the 80 GB disk in place: cx33
    assert (rec.action, rec.target_type, rec.savings) == ("change_type", "cx33",
                                                          Decimal("3.50"))
    assert rec.confidence == "medium"
    assert "the target keeps at least the current memory" in rec.confidence_reasons[-1].text
    assert rec.projected_memory_utilisation is None
    # without memory data a cx33 can never go below 8 GiB: no cx23
    s2 = cloud(10, "cx", "cx33", disk_gb=40, utilisation=util(cpu_avg=0.05))
    assert RULE.evaluate(fleet(s2), TH).recommendations == []


def test_busy_server_is_left_alone() -> None:
    busy = cloud(11, "busy", "cx43", disk_gb=40, utilisation=util(cpu_avg=0.4, cpu_p95=0.55,
                                                                  mem_p95=0.2))
    memory = cloud(12, "mem", "cx43", disk_gb=40, utilisation=util(cpu_avg=0.05,
                                                                   mem_p95=0.5, mem_max=0.7))
    assert RULE.evaluate(fleet(busy, memory), TH).recommendations == []


def test_risk_from_the_cpu_peak() -> None:
    s = cloud(13, "spiky", "cx43", disk_gb=40,
              utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.9, mem_p95=0.1))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.target_type == "cx23"
    assert rec.risk == "high"  # 7.2 cores at peak on 2
    assert rec.risk_reasons[0].figures["peak_cores"] == "7.2"


def test_exclusions_and_dedicated_servers_ignored() -> None:
    low = cloud(14, "fresh", "cx43", utilisation=util(cpu_avg=0.05, cpu_coverage=0.2))
    d = dedicated(1, "ded", utilisation=util(cpu_avg=0.05, mem_p95=0.1))
    result = RULE.evaluate(fleet(low, d), TH)
    assert result.recommendations == []
    assert [(e.server.name, e.rule) for e in result.exclusions] == [("fresh", "rightsize")]


def test_empty_catalogue_is_an_exclusion_not_silence() -> None:
    s = cloud(15, "web", "cx43", disk_gb=40, utilisation=util(cpu_avg=0.1, cpu_p95=0.2,
                                                              mem_p95=0.2))
    result = RULE.evaluate(fleet(s, types={}), TH)
    assert result.recommendations == []
    assert [e.reason for e in result.exclusions] == [
        "no orderable shared x86 server type in fsn1 in the catalogue "
        "(hetzner_server_type_* series missing or nothing available there)"]


# ---- the recurring daily peak (a nightly batch job) -------------------------------

def nightly_batch(peak: float | None = 0.40625) -> Server:
    """cx53 (16 cores) idling at 4 % with a job of 6.5 cores (40.625 %) most nights; its
    40 GB disk lets every smaller type be reached in place."""
    return cloud(20, "batch-1", "cx53", disk_gb=40,
                 utilisation=util(cpu_avg=0.05, cpu_p95=0.04, cpu_max=0.45, mem_p95=0.08,
                                  mem_max=0.09, cpu_daily_peak=peak))


def test_a_nightly_peak_gets_the_type_that_holds_it_and_the_slowdown_of_cheaper_ones() -> None:
    [rec] = RULE.evaluate(fleet(nightly_batch()), TH).recommendations
    # the p95 alone (0.64 cores) would pick cx23; the peak of 6.5 cores needs 6.5 / 0.9 =
    # 7.2 cores: cx43. 20.99 -> 11.49 (with the 0.50 IPv4)
    assert (rec.action, rec.target_type, rec.savings) == ("change_type", "cx43",
                                                          Decimal("9.50"))
    [why] = [r for r in rec.reasons if r.figures.get("p95_target")]
    assert why.figures == {"p95_target": "cx23", "peak_target": "cx43",
                           "daily_peak_cores": "6.5", "peak_headroom": "90%"}
    assert "would hold the p95 for 7.50 € a month less, but not the recurring daily peak" \
        in why.text
    assert any("daily peak at most 90% of them" in r.text for r in rec.reasons)
    # cpx22 (2 cores, 9.49) is left out: cx23 is cheaper and slowed no more
    assert [o.target_type for o in rec.options] == ["cx43", "cx33", "cx23"]
    cx43, cx33, cx23 = rec.options
    assert (cx43.performance_risk, cx43.slowdown, cx43.in_place) == ("low", None, True)
    assert cx43.monthly_savings == Decimal("9.50")
    assert cx43.projected_monthly_cost == Decimal("11.49")
    assert cx43.projected_peak_utilisation == 6.5 / 8
    assert cx43.projected_cpu_utilisation == 0.04 * 16 / 8
    assert cx43.text == "cx43 holds the daily peak of 6.5 cores at 81.2% of its 8 cores"
    assert (cx33.performance_risk, cx33.slowdown) == ("high", 1.625)
    assert cx33.text == "the daily peak of 6.5 cores would take ~1.6x longer on 4 cores"
    assert (cx23.performance_risk, cx23.slowdown) == ("high", 3.25)
    assert cx23.text == "the daily peak of 6.5 cores would take ~3.3x longer on 2 cores"
    assert cx23.monthly_savings == Decimal("17.00")
    assert isinstance(cx23.monthly_savings, Decimal)
    assert [o.target_type for o in RULE.evaluate(
        fleet(nightly_batch()), dataclasses.replace(TH, max_options=2)).recommendations[0]
        .options] == ["cx43", "cx33"]


def test_a_peak_within_the_cores_but_above_the_headroom_is_medium_risk() -> None:
    # 7.5 cores: fits cx43's 8 cores, not its 90 % (7.2); with a headroom of 95 % it holds
    s = nightly_batch(peak=7.5 / 16)
    assert RULE.evaluate(fleet(s), TH).recommendations == []  # no slowdown is signed
    loose = dataclasses.replace(TH, headroom=dataclasses.replace(TH.headroom, peak=0.95))
    [rec] = RULE.evaluate(fleet(s), loose).recommendations
    assert rec.target_type == "cx43" and rec.options[0].performance_risk == "low"
    need = sizing_need(s, assess(s, TH), TH, fleet(s))
    option = option_on(s, TYPES["cx43"], need, TH, Decimal("11.49"), True)
    assert (option.performance_risk, option.slowdown) == ("medium", None)
    assert option.text == "the daily peak of 7.5 cores would use 93.8% of cx43's 8 cores " \
                          "(above 90%)"


def test_a_one_off_spike_is_not_a_recurring_peak() -> None:
    # same spike in the 30-day maximum, but the daily peak is the 4 % base level
    [rec] = RULE.evaluate(fleet(nightly_batch(peak=0.04)), TH).recommendations
    assert rec.target_type == "cx23"
    assert [o.target_type for o in rec.options] == ["cx23"]
    # the busiest 5 minutes (7.2 cores) exceed cx23's 2 cores: medium, not a slowdown
    assert (rec.options[0].performance_risk, rec.options[0].slowdown) == ("medium", None)
    assert not any(r.figures.get("p95_target") for r in rec.reasons)


def test_without_a_daily_peak_nothing_changes() -> None:
    [rec] = RULE.evaluate(fleet(nightly_batch(peak=None)), TH).recommendations
    assert rec.target_type == "cx23"
    [only] = rec.options
    assert only.projected_peak_utilisation is None
    assert only.text.startswith("cx23: the recurring daily peak is not known")


def test_slowdown_factor_rounds_half_up() -> None:
    assert [slowdown_factor(x) for x in (3.25, 1.625, 2.05, 1.04)] == ["3.3", "1.6", "2.1", "1.0"]


def test_a_replica_is_sized_to_take_over_its_peer_s_load() -> None:
    """An HA pair (one spread placement group): the quiet standby is not right-sized below
    what the busy primary uses, since it takes that load over on a failover; the reasons
    say so when the target is chosen for it (issue 14, point 5)."""
    from infrascope_recommender.model import PlacementGroup

    group = PlacementGroup("77", "search-spread", "spread")
    primary = cloud(61, "search-1", "cx43", placement_group=group,
                    utilisation=util(cpu_avg=0.15, cpu_p95=0.2, mem_p95=0.3))
    standby = cloud(62, "search-2", "cx43", placement_group=group,
                    utilisation=util(cpu_avg=0.02, cpu_p95=0.03, mem_p95=0.05))
    recs = {r.servers[0].name: r for r in RULE.evaluate(fleet(primary, standby),
                                                         TH).recommendations}
    # the primary: 1.6 cores, 4.8 GiB → cx33 (4 cores, 8 GiB) holds it; the standby alone
    # (0.24 cores, 0.8 GiB) would fit a cx23, but must carry the primary's load: cx33 too
    assert recs["search-1"].target_type == "cx33"
    assert recs["search-2"].target_type == "cx33"
    assert ("on a failover search-2 takes over the load of its HA peer search-1 (spread "
            "placement group search-spread: p95 CPU 1.6 cores, peak memory 4.8 GiB): the "
            "target holds that too") in [r.text for r in recs["search-2"].reasons]
    assert not any("failover" in r.text for r in recs["search-1"].reasons)
    # placement groups that make no replicas: the standby goes to the smallest type
    off = dataclasses.replace(TH, ha=dataclasses.replace(TH.ha, placement_group_types=()))
    alone = {r.servers[0].name: r for r in RULE.evaluate(fleet(primary, standby),
                                                         off).recommendations}
    assert alone["search-2"].target_type == "cx23"
