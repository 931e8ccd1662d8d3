"""Scenario: peak-aware sizing against a real Prometheus (issue 14, point 2).

A nightly batch server idles at 4 % of its 16 cores but runs a one-hour job at 6.5
cores most nights. The 95th percentile of its hourly averages does not see the job (27
hours of 720, under the 5 %), so sizing on the p95 alone would put it on 2 cores, where
the job would take about 3.3 times as long. The rules pack's recurring daily peak
(``source_server_id:cpu_utilisation:daily_peak30d``: each UTC day's busiest hour,
reached on at least half the days) sees it; the recommender then picks the cheapest type
that holds the peak within ``headroom.peak`` (90 %) of its cores and lists the cheaper
types as options with how much they would slow the job.

A second server has a single spike of the same height on one day: not recurring, so it
still moves to the smallest type (told apart). Its 30-day average, 4.05 %, is under the
idle rule's 5 %, and the spike wakes it (the maximum is above 10 %): the idle rule's type
change, which sizes the target the same way.

The history is written by ``scenario_lib`` (hourly samples by backfill, the committed
rule files with one-second intervals); prices are the simulator's catalogue, net EUR a
month in fsn1, a primary IPv4 0.60:

=====  =========  ====  ===============================================================
id     name       type  usage; intended outcome
=====  =========  ====  ===============================================================
3001   batch-1    cx53  4 %, a job 02:00-03:00 UTC at 6.5 cores on 27 of 30 days; its
                        40 GB disk lets every smaller type be reached in place: cx43
                        (8 cores: 6.5 <= 7.2), options cx43, cx33 (~1.6x), cx23 (~3.3x)
3002   spike-1    cx53  the same, but the job ran on one day only: idle, change type to
                        cx23, one option
=====  =========  ====  ===============================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from scenario_lib import DailyJob, FleetServer, Profile, Scenario, vector
from test_scenario_prometheus import run_engine, signature

from infrascope_core.prometheus import binaries_available
from infrascope_recommender.model import RunResult

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="needs /usr/bin/prometheus and /usr/bin/promtool")

D = Decimal
IPV4 = D("0.60")
# catalogue prices (net, fsn1)
CX23, CX33, CX43, CX53 = D("3.49"), D("5.99"), D("10.99"), D("20.49")
JOB = 6.5 / 16  # 0.40625 of the cx53's 16 cores
BASE = 0.04


def fleet() -> list[FleetServer]:
    def batch(server_id: str, name: str, days: int) -> FleetServer:
        return FleetServer(
            "cloud", server_id, name, "cx53", project="batch", labels={"env": "production"},
            disk_gb=40, cpu=Profile(BASE, 0.0, job=DailyJob(2, JOB, days=days, peak=0.45)),
            # 2.88 GiB at most: memory fits even a cx23 (4 GiB x 80 % = 3.2 GiB)
            memory=Profile(0.07, 0.0, peak=0.09))
    return [batch("3001", "batch-1", 27), batch("3002", "spike-1", 1)]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with Scenario(fleet(), tmp_path_factory.mktemp("recurring-peak")) as sc:
        yield sc


@pytest.fixture(scope="module")
def result(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_engine(scenario, tmp_path_factory.mktemp("state") / "state.db")[0]


def test_the_rules_tell_a_recurring_peak_from_a_one_off_spike(scenario: Scenario) -> None:
    peak = vector(scenario.prom, "source_server_id:cpu_utilisation:daily_peak30d")
    p95 = vector(scenario.prom, "source_server_id:cpu_utilisation:p95_30d")
    top = vector(scenario.prom, "source_server_id:cpu_utilisation:max30d")
    # the job's 27 hours are under the p95's 36: both servers' p95 is the base level, and
    # both reached 45 % in their busiest 5 minutes
    for key in ("cloud/3001", "cloud/3002"):
        assert p95[key][1] == pytest.approx(BASE, abs=1e-9)
        assert top[key][1] == pytest.approx(0.45, abs=1e-9)
    assert peak["cloud/3001"][1] == pytest.approx(JOB, abs=1e-9)  # 27 of 30 nights
    assert peak["cloud/3002"][1] == pytest.approx(BASE, abs=1e-9)  # one night only
    assert peak["cloud/3001"][0]["server_name"] == "batch-1"


def test_a_nightly_batch_server_gets_the_peak_holding_type_first_and_the_slowdown_of_cheaper_ones(
        result: RunResult) -> None:
    got = signature(result)
    assert set(got) == {("rightsize", "change_type", ("cloud/3001",), "cx43"),
                        ("idle", "change_type", ("cloud/3002",), "cx23")}
    rec = got[("rightsize", "change_type", ("cloud/3001",), "cx43")]
    # cx53 21.09 (20.49 + 0.60) -> cx43 11.59 (10.99 + 0.60): saves 9.50
    assert (rec.current_monthly_cost, rec.projected_monthly_cost) == (CX53 + IPV4, CX43 + IPV4)
    assert rec.savings == D("9.50")
    assert [o.target_type for o in rec.options] == ["cx43", "cx33", "cx23"]
    cx43, cx33, cx23 = rec.options
    assert (cx43.performance_risk, cx43.slowdown, cx43.monthly_savings) == ("low", None,
                                                                           D("9.50"))
    assert cx43.projected_peak_utilisation == pytest.approx(6.5 / 8)
    # cx33 5.99 + 0.60 = 6.59: saves 14.50; cx23 3.49 + 0.60 = 4.09: saves 17.00
    assert (cx33.performance_risk, cx33.monthly_savings) == ("high", D("14.50"))
    assert "~1.6x longer on 4 cores" in cx33.text
    assert (cx23.performance_risk, cx23.monthly_savings) == ("high", D("17.00"))
    assert cx23.slowdown == pytest.approx(3.25)
    assert "the daily peak of 6.5 cores would take ~3.3x longer on 2 cores" in cx23.text
    [why] = [r for r in rec.reasons if r.figures.get("p95_target")]
    assert (why.figures["p95_target"], why.figures["peak_target"]) == ("cx23", "cx43")
    assert rec.projected_memory_utilisation == pytest.approx(0.09 * 32 / 16)  # GiB on both


def test_a_one_off_spike_still_moves_to_the_smallest_type(result: RunResult) -> None:
    rec = signature(result)[("idle", "change_type", ("cloud/3002",), "cx23")]
    assert (rec.current_monthly_cost, rec.projected_monthly_cost) == (CX53 + IPV4, CX23 + IPV4)
    [only] = rec.options
    assert only.target_type == "cx23" and only.slowdown is None
    # the spike (7.2 cores for 5 minutes) is more than 2 cores: a risk, not a slowdown
    assert only.performance_risk == "medium"
    assert not any(r.figures.get("p95_target") for r in rec.reasons)
