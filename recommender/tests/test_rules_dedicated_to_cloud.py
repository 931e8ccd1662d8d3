"""Dedicated -> Cloud: a dedicated server whose measured usage fits a cheaper Cloud type."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from rules_fixtures import TYPES, cloud, dedicated, fleet, util

from infrascope_recommender.model import Server, Service
from infrascope_recommender.rules.dedicated_to_cloud import RULE, cloud_name
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()


def legacy_app(**kwargs: Any) -> Server:
    defaults: dict[str, Any] = dict(
        price="49.00", cores=8, memory_gib=64, disk_used_gb=50,
        utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.3, mem_p95=0.08, mem_max=0.1))
    defaults.update(kwargs)
    return dedicated(2391007, "legacy-app", "EX44", **defaults)


def with_d2c(**changes: object) -> Thresholds:
    return dataclasses.replace(TH, dedicated_to_cloud=dataclasses.replace(
        TH.dedicated_to_cloud, **changes))


def test_fits_a_cheaper_cloud_type() -> None:
    d = legacy_app(services=[Service("systemd", "legacy.service", "active")])
    result = RULE.evaluate(fleet(d), TH)
    assert result.exclusions == []
    [rec] = result.recommendations
    assert (rec.kind, rec.action) == ("dedicated_to_cloud", "migrate")
    # p95 0.8 cores -> 2 cores; peak 6.4 GiB / 0.8 = 8 GiB; 50 GB / 0.8 = 62.5 GB -> cx33
    assert (rec.target_type, rec.target_location) == ("cx33", "fsn1")
    assert rec.current_monthly_cost == Decimal("49.00")
    assert rec.projected_monthly_cost == Decimal("6.49")  # 5.99 + default IPv4 0.50
    assert rec.savings == Decimal("42.51")
    assert rec.commands == [
        "hcloud server create --name legacy-app --type cx33 --location fsn1 "
        "--image ubuntu-24.04",
        "# move the services and data of legacy-app (Robot server 2391007) to legacy-app, "
        "then switch DNS",
        "# cancel server 2391007 in Robot (Server → Cancellation)",
    ]
    assert rec.risk == "medium" and rec.confidence == "high"
    assert any("shared vCPUs" in r.text for r in rec.risk_reasons)
    assert any("systemd legacy.service" in r.text for r in rec.risk_reasons)
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.8) < 1e-9


def test_ipv4_price_seen_in_the_fleet_is_used() -> None:
    d = legacy_app()
    c = cloud(1, "web", "cx33", ipv4="0.60", labels={"env": "production"})
    [rec] = RULE.evaluate(fleet(d, c), TH).recommendations
    assert rec.projected_monthly_cost == Decimal("6.59")


def test_needs_agent_figures() -> None:
    d = legacy_app(disk_used_gb=None, utilisation=util(cpu_avg=0.05, cpu_p95=0.1))
    [exc] = RULE.evaluate(fleet(d), TH).exclusions
    assert exc.rule == "dedicated_to_cloud"
    assert exc.reason == (
        "needs 30 days of the agent's figures to size a Cloud server: memory was not "
        "measured (no agent; the Cloud API has no memory figure); no disk usage "
        "(node_filesystem_*)")
    assert exc.cause == "data"
    blind = legacy_app(utilisation=util())
    [exc] = RULE.evaluate(fleet(blind), TH).exclusions
    assert exc.reason == (
        "needs 30 days of the agent's figures to size a Cloud server: no utilisation data: "
        "no agent reports for it, and Robot has no CPU metrics (install the agent); memory "
        "was not measured (no agent; the Cloud API has no memory figure)")
    assert exc.cause == "data"


def test_an_agent_without_30_days_of_history_is_not_called_missing() -> None:
    """The demo's `this-machine`: its real agent is up (up{job=agent} == 1, cores and
    memory from it), but no hour of the 30 days is recorded yet. The exclusion says
    that, not "no agent"; an agent that is down is named as down."""
    fresh = legacy_app(utilisation=util(), disk_used_gb=20)
    fresh.agent_up = True
    [exc] = RULE.evaluate(fleet(fresh), TH).exclusions
    assert exc.reason == (
        "needs 30 days of the agent's figures to size a Cloud server: no 30 days of history "
        "yet: its agent reports CPU now, but no hour of the last 30 days is recorded yet "
        "(judged from 25% of the 30 days on; backfill the history to judge it now); memory "
        "has no 30 days of history yet (its agent reports it now)")
    assert "no agent" not in exc.reason and exc.cause == "data"
    # the rules pack's live ratio says the agent reports, even before `up` is read
    live = legacy_app(utilisation=util(via="agent"))
    [exc] = RULE.evaluate(fleet(live), TH).exclusions
    assert "no 30 days of history yet: its agent reports CPU now" in exc.reason
    down = legacy_app(utilisation=util())
    down.agent_up = False
    [exc] = RULE.evaluate(fleet(down), TH).exclusions
    assert ("no utilisation data: its agent is down (its scrape fails) and Robot has no "
            "CPU metrics in the last 30 days") in exc.reason
    assert "memory was not measured (its agent is down;" in exc.reason


def test_location_mapping() -> None:
    d = legacy_app(datacenter="NBG1-DC3")
    [rec] = RULE.evaluate(fleet(d), TH).recommendations
    assert rec.target_location == "nbg1"
    hel = with_d2c(locations={"nbg1": "hel1"})
    [rec] = RULE.evaluate(fleet(d), hel).recommendations
    assert rec.target_location == "hel1"
    unknown = legacy_app(datacenter="XYZ1-DC1")
    [exc] = RULE.evaluate(fleet(unknown), TH).exclusions
    assert exc.reason == ("no Cloud location mapped for datacenter 'XYZ1-DC1' "
                          "(rules.dedicated_to_cloud.locations)")


def test_cpu_types_setting() -> None:
    d = legacy_app()
    [rec] = RULE.evaluate(fleet(d), with_d2c(cpu_types=("dedicated",))).recommendations
    assert rec.target_type == "ccx13"  # 2 dedicated vCPUs, 8 GiB, 80 GB
    assert rec.savings == Decimal("34.01")  # 49.00 - 14.49 - 0.50
    assert not any("shared vCPUs" in r.text for r in rec.risk_reasons)


def test_not_enough_savings() -> None:
    d = legacy_app(price="7.00")
    result = RULE.evaluate(fleet(d), TH)
    assert result.recommendations == [] and result.exclusions == []


def test_too_big_for_any_cloud_type() -> None:
    d = legacy_app(cores=64, utilisation=util(cpu_avg=0.5, cpu_p95=0.6, mem_p95=0.1))
    [exc] = RULE.evaluate(fleet(d), TH).exclusions
    assert exc.reason.startswith("no Cloud type in fsn1 holds 38.4 cores at p95")
    assert exc.cause == "target"  # judged: nothing to move to, not a lack of data


def test_unpriced_dedicated_server() -> None:
    d = legacy_app(price=None)
    [exc] = RULE.evaluate(fleet(d), TH).exclusions
    assert exc.reason.startswith("no price known")
    assert exc.cause == "inventory"


def test_cloud_name() -> None:
    assert cloud_name(dedicated(1, "DB Primary_01")) == "db-primary-01"
    assert cloud_name(dedicated(7, "§§")) == "dedicated-7"


def test_traffic_above_what_the_target_includes_is_counted_in_the_savings() -> None:
    """A dedicated box sending 30 TB a month (Robot includes it) onto a Cloud type that
    includes 20 TB: the 10 TB above cost 1.00 € each, a month."""
    tb = 2**40
    types = {name: dataclasses.replace(t, included_traffic={"fsn1": 20 * tb},
                                       traffic_price_per_tb={"fsn1": Decimal("1.00")})
             for name, t in TYPES.items()}
    out = 30 * tb / (30 * 86_400)  # bytes/s that make 30 TB in 30 days
    d = legacy_app(utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.3, mem_p95=0.08,
                                    mem_max=0.1, net_in=1000.0, net_out=out))
    [rec] = RULE.evaluate(fleet(d, types=types), TH).recommendations
    assert rec.target_type == "cx33"
    assert rec.projected_monthly_cost.quantize(Decimal("0.01")) == Decimal("16.49")  # +10.00
    assert any(r.text == "cx33 includes 20 TB of outgoing traffic in fsn1; 30 TB a month go "
                         "out: 10.00 € more overage a month, counted in the savings"
               for r in rec.reasons), [r.text for r in rec.reasons]
    # within what it includes: nothing changes
    d = legacy_app(utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.3, mem_p95=0.08,
                                    mem_max=0.1, net_in=1000.0, net_out=out / 2))
    [rec] = RULE.evaluate(fleet(d, types=types), TH).recommendations
    assert rec.projected_monthly_cost == Decimal("6.49")


def test_the_cloud_type_holds_the_recurring_daily_peak() -> None:
    # p95 0.8 cores and 6.4 GiB peak memory fit cx33 (4 cores); a nightly job of 4 of the
    # 8 cores needs 4 / 0.9 = 4.4 cores: cx43
    d = legacy_app(utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.6, mem_p95=0.08,
                                    mem_max=0.1, cpu_daily_peak=0.5))
    [rec] = RULE.evaluate(fleet(d), TH).recommendations
    assert rec.target_type == "cx43"
    assert rec.projected_monthly_cost == Decimal("11.49")
