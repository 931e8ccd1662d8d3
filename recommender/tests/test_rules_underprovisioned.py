"""Under-provisioned: the next type up, with the extra cost."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from rules_fixtures import cloud, dedicated, fleet, util

from infrascope_recommender import engine
from infrascope_recommender.rules.underprovisioned import RULE
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()


def test_cpu_critical_gets_the_next_type_up_with_keep_disk() -> None:
    s = cloud(1, "analytics-ch", "cx23", utilisation=util(cpu_avg=0.8, cpu_p95=0.9,
                                                          cpu_max=1.0))
    result = RULE.evaluate(fleet(s), TH)
    assert result.exclusions == []
    [rec] = result.recommendations
    assert (rec.kind, rec.action, rec.target_type) == ("underprovisioned", "change_type", "cx33")
    # 1.8 cores at p95 / 0.6 = 3 cores -> cx33 (4)
    assert rec.current_monthly_cost == Decimal("3.99")
    assert rec.projected_monthly_cost == Decimal("6.49")
    assert rec.savings == Decimal("-2.50")
    assert rec.commands == ["hcloud server shutdown --wait analytics-ch",
                            "hcloud server change-type --keep-disk analytics-ch cx33",
                            "hcloud server poweron analytics-ch"]
    assert any(p.startswith("--keep-disk keeps the 40 GB disk (instead of growing it to "
                            "cx33's 80 GB), so the server can move back to a smaller type")
               for p in rec.preconditions)
    assert rec.risk == "low"
    assert rec.projected_cpu_utilisation is not None
    assert abs(rec.projected_cpu_utilisation - 0.45) < 1e-9
    assert "a saturated server hides part of its demand" in rec.reasons[0].text
    assert rec.reasons[-1].text == "costs 2.50 € a month more"


def test_backups_scale_with_the_new_price() -> None:
    s = cloud(2, "busy", "cx23", backups=True, utilisation=util(cpu_avg=0.8, cpu_p95=0.85))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.current_monthly_cost == Decimal("4.688")  # 3.49 * 1.2 + 0.50
    assert rec.projected_monthly_cost == Decimal("7.688")  # 5.99 * 1.2 + 0.50
    assert rec.savings == Decimal("-3.000")


def test_project_backup_ratio_is_used() -> None:
    s = cloud(2, "busy", "cx23", backups=True, utilisation=util(cpu_avg=0.8, cpu_p95=0.9))
    [rec] = RULE.evaluate(fleet(s, backup_ratio={"webshop": Decimal("0.25")}),
                          TH).recommendations
    assert rec.projected_monthly_cost == Decimal("7.9875")  # 5.99 * 1.25 + 0.50


def test_memory_critical_gets_more_memory() -> None:
    s = cloud(3, "db", "ccx13", utilisation=util(cpu_avg=0.2, cpu_p95=0.3, mem_p95=0.95,
                                                 mem_max=0.97))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    # peak 7.76 GiB / 0.8 = 9.7 GiB -> ccx23 (16 GiB), the same dedicated CPU type
    assert rec.target_type == "ccx23"
    assert rec.savings == Decimal("-14.50")
    assert rec.projected_memory_utilisation is not None
    assert abs(rec.projected_memory_utilisation - 0.97 * 8 / 16) < 1e-9


def test_threshold_is_inclusive_and_below_is_nothing() -> None:
    at = cloud(4, "at", "cx23", utilisation=util(cpu_avg=0.5, cpu_p95=0.85))
    below = cloud(5, "below", "cx23", utilisation=util(cpu_avg=0.5, cpu_p95=0.8499))
    mem_below = cloud(6, "mem", "cx23", utilisation=util(cpu_avg=0.1, mem_p95=0.89))
    recs = RULE.evaluate(fleet(at, below, mem_below), TH).recommendations
    assert [r.servers[0].name for r in recs] == ["at"]


def test_no_headroom_possible_takes_the_largest_step() -> None:
    s = cloud(7, "cruncher", "cx43", utilisation=util(cpu_avg=0.9, cpu_p95=0.95))
    tight = dataclasses.replace(TH, headroom=dataclasses.replace(TH.headroom, cpu=0.4))
    [rec] = RULE.evaluate(fleet(s), tight).recommendations
    assert rec.target_type == "cx53"
    assert "is the largest step available" in rec.reasons[1].text
    assert rec.savings == Decimal("-9.50")


def test_no_larger_type_is_an_exclusion() -> None:
    s = cloud(8, "biggest", "cx53", utilisation=util(cpu_avg=0.9, cpu_p95=0.95))
    result = RULE.evaluate(fleet(s), TH)
    assert result.recommendations == []
    [exc] = result.exclusions
    assert exc.reason == "no larger orderable x86 type in fsn1 than cx53"


def test_no_data_and_dedicated() -> None:
    none = cloud(9, "blind", "cx23")
    d = dedicated(1, "ded", utilisation=util(cpu_avg=0.9, cpu_p95=0.95, mem_p95=0.5))
    result = RULE.evaluate(fleet(none, d), TH)
    assert result.recommendations == []
    assert [e.server.name for e in result.exclusions] == ["blind"]


def test_memory_alone_judges_a_server_without_cpu_coverage() -> None:
    s = cloud(10, "memonly", "cx23", utilisation=util(cpu_avg=0.5, cpu_coverage=0.1,
                                                      mem_p95=0.95, mem_coverage=0.95))
    [rec] = RULE.evaluate(fleet(s), TH).recommendations
    assert rec.target_type == "cx33" and rec.confidence == "high"
    assert rec.confidence_reasons[0].figures == {"memory_coverage": "95%"}


def test_disabled() -> None:
    s = cloud(11, "x", "cx23", utilisation=util(cpu_avg=0.9, cpu_p95=0.95))
    off = dataclasses.replace(TH, underprovisioned=dataclasses.replace(
        TH.underprovisioned, enabled=False))
    assert engine.generate(fleet(s), off, rules=[RULE]).recommendations == []
