"""Scenario: traffic in the idle judgement (issue 14, point 1), on a real Prometheus.

Three Cloud servers of one type, the same quiet CPU (2 % on average, 6 % at the busiest
5 minutes) and memory (10 %) — on CPU and memory alone, all three are idle and nothing
ran on them (below the idle rule's 5 % average and 10 % maximum):

- ``proxy-1`` sends 5 MB/s and receives 1 MB/s on average (a reverse proxy: about 11.8
  TB out a month): busy, so never idle. It is still right-sized on CPU and memory
  (cx33 -> cx23 in place: its disk was kept at 40 GB), with its traffic named;
- ``ftp-quiet`` moves 4 kB/s (updates, NTP, the agent's scrapes): idle, deleted, the
  reason says its traffic is below the threshold;
- ``no-net`` has no network figures: idle on CPU and memory, deleted with the
  confidence lowered one level, and the reason says traffic was not measured.

The history is the harness' hourly series (``scenario_lib``), network per direction
(``source_server_id:network_bytes_per_second:{avg1h,max1h}``); the rules pack computes
the 30-day figures, the recommender reads them with its real loader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario_lib import FleetServer, Profile, Scenario, Traffic
from test_scenario_prometheus import run_engine

from infrascope_core.prometheus import binaries_available
from infrascope_recommender.model import Recommendation, RunResult

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="needs /usr/bin/prometheus and /usr/bin/promtool")


def fleet() -> list[FleetServer]:
    def quiet(sid: str, name: str, **kw: object) -> FleetServer:
        return FleetServer("cloud", sid, name, "cx33", project="edge",
                           labels={"env": "production"},
                           cpu=Profile(0.02, 0.2, peak=0.06), memory=Profile(0.10, 0.1),
                           **kw)  # type: ignore[arg-type]

    return [
        quiet("4101", "proxy-1", disk_gb=40,
              network=Traffic(inbound=1_000_000, outbound=5_000_000),
              services=(("systemd", "nginx.service"),)),
        quiet("4102", "ftp-quiet", network=Traffic(inbound=1_500, outbound=2_500)),
        quiet("4103", "no-net", network=None),
    ]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunResult]:
    work: Path = tmp_path_factory.mktemp("traffic")
    with Scenario(fleet(), work / "prometheus") as scenario:
        found, _ = run_engine(scenario, work / "state.sqlite")
        yield found


def of(result: RunResult, name: str) -> list[Recommendation]:
    return [r for r in result.recommendations if name in {s.name for s in r.servers}]


def test_a_busy_proxy_at_2_percent_cpu_is_not_idle(result: RunResult) -> None:
    recs = of(result, "proxy-1")
    assert [r.kind for r in recs] == ["rightsize"], [(r.kind, r.action) for r in recs]
    rec = recs[0]
    assert (rec.action, rec.target_type) == ("change_type", "cx23")
    traffic = [r.text for r in rec.reasons if r.text.startswith("network:")]
    assert traffic == ["network: 5 MB/s out and 1 MB/s in on average over 30 days "
                       "(11.8 TB out a month)"], [r.text for r in rec.reasons]


def test_a_quiet_server_is_deleted_and_its_traffic_named(result: RunResult) -> None:
    (rec,) = of(result, "ftp-quiet")
    assert (rec.kind, rec.action, rec.confidence) == ("idle", "delete", "high")
    assert any(r.text.startswith("30-day average traffic is 4 kB/s (in 1.5 kB/s, out "
                                 "2.5 kB/s;") and r.text.endswith("below 50 kB/s")
               for r in rec.reasons), [r.text for r in rec.reasons]


def test_without_traffic_figures_idle_is_less_sure(result: RunResult) -> None:
    (rec,) = of(result, "no-net")
    assert (rec.kind, rec.action, rec.confidence) == ("idle", "delete", "medium")
    assert any("network traffic is not measured" in r.text
               for r in rec.confidence_reasons), [r.text for r in rec.confidence_reasons]
