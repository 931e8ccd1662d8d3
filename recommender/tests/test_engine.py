"""Engine: precedence, one recommendation per server, exclusions, ordering, run()."""

from __future__ import annotations

import dataclasses
import socket
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rules_fixtures import FakePrometheus, canned, cloud, dedicated, fleet, sample, util

from infrascope_recommender import engine, loader, pipeline
from infrascope_recommender.config import Config, PrometheusSettings
from infrascope_recommender.model import (
    Fleet,
    Recommendation,
    RuleResult,
    Server,
    ServerRef,
)
from infrascope_recommender.promql import PrometheusClient, PrometheusError
from infrascope_recommender.rules import discover, steps
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()
STAGING = {"env": "staging"}


def demo() -> list[Server]:
    return [
        cloud(201, "analytics-ch", "cx23", labels={"env": "production"},
              utilisation=util(cpu_avg=0.8, cpu_p95=0.9, cpu_max=1.0, mem_p95=0.5)),
        cloud(108, "old-jenkins", "cx42", labels={"env": "production"},
              utilisation=util(cpu_avg=0.01, cpu_max=0.03, mem_p95=0.1)),
        cloud(104, "shop-staging-web", "cx33", labels=STAGING, disk_used_gb=10,
              utilisation=util(cpu_avg=0.03, cpu_p95=0.05, cpu_max=0.2, mem_p95=0.18)),
        cloud(105, "shop-staging-db", "cx33", labels=STAGING, disk_used_gb=20,
              utilisation=util(cpu_avg=0.04, cpu_max=0.1, mem_p95=0.22)),
        cloud(106, "shop-staging-worker", "cx23", labels=STAGING, disk_used_gb=5,
              utilisation=util(cpu_avg=0.03, cpu_max=0.1, mem_p95=0.20)),
        cloud(107, "shop-staging-idle", "cx23", labels=STAGING, disk_used_gb=5,
              utilisation=util(cpu_avg=0.001, cpu_max=0.01, mem_p95=0.05)),
        cloud(109, "shop-staging-hot", "cx23", labels=STAGING, disk_used_gb=5,
              utilisation=util(cpu_avg=0.9, cpu_p95=0.95, mem_p95=0.3)),
        cloud(110, "batch", "cx43", backups=True, labels={"env": "production"},
              utilisation=util(cpu_avg=0.02, cpu_p95=0.04, cpu_max=0.25, mem_p95=0.1,
                               mem_max=0.15)),
        cloud(101, "shop-web-1", "cx43", disk_gb=80, labels={"env": "production"},
              utilisation=util(cpu_avg=0.1, cpu_p95=0.2, cpu_max=0.3, mem_p95=0.25,
                               mem_max=0.3)),
        cloud(111, "busy", "cx33", labels={"env": "production"},
              utilisation=util(cpu_avg=0.5, cpu_p95=0.7, mem_p95=0.6)),
        cloud(112, "fresh", "cx33", labels={"env": "production"},
              utilisation=util(cpu_avg=0.01, cpu_coverage=0.1)),
        dedicated(2391007, "legacy-app", "EX44", price="49.00", cores=8, memory_gib=64,
                  disk_used_gb=50, utilisation=util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.3,
                                                    mem_p95=0.08, mem_max=0.1)),
        dedicated(2391001, "db-primary", "AX102", price="109.00", cores=None,
                  memory_gib=None, disk_used_gb=None),
    ]


def test_one_recommendation_per_server_in_precedence_order() -> None:
    result = engine.generate(fleet(*demo()), TH, now=1_760_000_000.0)
    got = [(r.kind, r.action, sorted(s.name for s in r.servers), r.savings)
           for r in result.recommendations]
    assert got == [
        ("dedicated_to_cloud", "migrate", ["legacy-app"], Decimal("42.51")),
        ("idle", "delete", ["old-jenkins"], Decimal("19.09")),
        ("consolidation", "merge", ["shop-staging-db", "shop-staging-web",
                                    "shop-staging-worker"], Decimal("10.48")),
        ("idle", "migrate", ["batch"], Decimal("9.000")),  # also a rightsize: idle_move first
        ("rightsize", "change_type", ["shop-web-1"], Decimal("5.00")),
        ("idle", "delete", ["shop-staging-idle"], Decimal("3.99")),  # not merged
        *sorted([("underprovisioned", "change_type", ["analytics-ch"], Decimal("-2.50")),
                 ("underprovisioned", "change_type", ["shop-staging-hot"],
                  Decimal("-2.50"))],
                key=lambda item: next(r.id for r in result.recommendations
                                      if r.servers[0].name == item[2][0])),
    ]
    keys = [k for r in result.recommendations for k in r.keys]
    assert len(keys) == len(set(keys))
    assert result.total_savings == Decimal("85.07")
    assert result.started_at == 1_760_000_000.0 and result.duration_seconds >= 0
    assert [(e.server.name, e.rule) for e in result.exclusions] == [
        ("fresh", "rightsize"), ("db-primary", "dedicated_to_cloud")]
    assert result.exclusions[1].reason.startswith("needs 30 days of the agent's figures")
    assert result.fleet.servers.keys() == fleet(*demo()).servers.keys()


def test_ids_and_output_are_stable_across_runs() -> None:
    a = engine.generate(fleet(*demo()), TH)
    b = engine.generate(fleet(*reversed(demo())), TH)
    assert [r.to_dict() for r in a.recommendations] == [r.to_dict() for r in b.recommendations]
    assert [r.id for r in a.recommendations] == [r.id for r in b.recommendations]


class Claim:
    """A test rule: recommends deleting the named servers (one recommendation each)."""

    def __init__(self, name: str, priority: int, *groups: list[str]) -> None:
        self.name, self.priority, self.groups = name, priority, groups

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        by_name = {s.name: s for s in fleet.servers.values()}
        out = RuleResult()
        for group in self.groups:
            if all(n in by_name for n in group):
                out.recommendations.append(Recommendation(
                    kind="idle", action="delete",
                    servers=[ServerRef.of(by_name[n]) for n in group],
                    current_monthly_cost=Decimal(len(group)),
                    projected_monthly_cost=Decimal(0)))
        return out


def test_earlier_rules_claim_servers_and_later_rules_do_not_see_them() -> None:
    servers = demo()
    first = Claim("first", 1, ["shop-staging-web"])
    result = engine.generate(fleet(*servers), TH, rules=[*steps(), first])
    [merge] = [r for r in result.recommendations if r.kind == "consolidation"]
    assert sorted(s.name for s in merge.servers) == ["shop-staging-db", "shop-staging-worker"]
    assert "shop-staging-web" in [s.name for r in result.recommendations
                                  if r.savings == 1 for s in r.servers]


def test_overlapping_recommendations_of_one_rule_keep_the_larger_savings() -> None:
    greedy = Claim("greedy", 1, ["busy"], ["busy", "fresh"])
    result = engine.generate(fleet(*demo()), TH, rules=[greedy])
    assert [sorted(s.name for s in r.servers) for r in result.recommendations] == \
        [["busy", "fresh"]]


def test_registry_finds_every_rule_in_priority_order() -> None:
    assert [(r.name, r.priority) for r in steps()] == [
        ("underprovisioned", 10), ("idle", 20), ("consolidation", 30),
        ("dedicated_to_cloud", 40), ("idle_move", 45), ("rightsize", 50)]


def test_a_new_rule_is_one_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "extra_rules"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helper.py").write_text("X = 1\n")
    (pkg / "noop.py").write_text(
        "from infrascope_recommender.model import RuleResult\n"
        "from infrascope_recommender.rules import Rule, RuleSettings\n"
        "RULE = Rule(kind='noop', label='No-op', description='Nothing.', priority=99,\n"
        "            settings=RuleSettings, evaluate=lambda fleet, th: RuleResult())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [r.name for r in discover("extra_rules")] == ["noop"]
    (pkg / "broken.py").write_text("VALUE = 1\n")
    sys.modules.pop("extra_rules", None)
    with pytest.raises(TypeError, match="extra_rules.broken has no RULE"):
        discover("extra_rules")


def test_disabled_rules_produce_nothing() -> None:
    off = dataclasses.replace(
        TH, idle=dataclasses.replace(TH.idle, enabled=False),
        consolidation=dataclasses.replace(TH.consolidation, enabled=False),
        rightsize=dataclasses.replace(TH.rightsize, enabled=False),
        underprovisioned=dataclasses.replace(TH.underprovisioned, enabled=False),
        dedicated_to_cloud=dataclasses.replace(TH.dedicated_to_cloud, enabled=False))
    result = engine.generate(fleet(*demo()), off)
    assert result.recommendations == [] and result.exclusions == []


# ------------------------------------------------------------------------------- run()

def one_idle_server() -> dict[str, list[dict[str, Any]]]:
    q = {x.name: x.expr for x in loader.queries(PrometheusSettings())}
    out: dict[str, list[dict[str, Any]]] = {expr: [] for expr in q.values()}
    ids = {"source": "cloud", "server_id": "108"}
    out[q["inventory"]] = [sample(loader.INFO, "1", server_name="old-jenkins",
                                  server_type="cx42", location="fsn1", architecture="x86",
                                  cpu_type="shared", hcloud_project="ci", provider="hetzner",
                                  **ids)]
    out[q["sizes_and_cost"]] = [
        sample(loader.CORES, "8", **ids),
        sample(loader.MEMORY, str(16 * 1024 ** 3), **ids),
        sample(loader.MONTHLY_COST, "19.09", **ids)]
    figures = {"cpu_utilisation:avg30d": "0.01", "cpu_utilisation:max30d": "0.03",
               "cpu_utilisation:p95_30d": "0.02", "cpu_utilisation:coverage30d": "1",
               "memory_utilisation:max30d": "0.1", "memory_utilisation:p95_30d": "0.1",
               "memory_utilisation:coverage30d": "1"}
    out[q["utilisation"]] = [sample(f"source_server_id:{k}", v, **ids)
                             for k, v in figures.items()]
    return out


def test_run_loads_and_generates_with_a_given_client() -> None:
    fake = FakePrometheus(canned(one_idle_server()))
    with fake.running():
        config = Config(prometheus=PrometheusSettings(url=fake.url))
        with PrometheusClient(config.prometheus) as client:
            result = pipeline.run(config, client)
            assert client.queries == loader.QUERY_COUNT
            inventory = loader.queries(config.prometheus)[0].expr
            assert len(client.query(inventory)) == 1  # still open: the caller's to close
    [rec] = result.recommendations
    assert (rec.kind, rec.action, rec.savings) == ("idle", "delete", Decimal("19.09"))
    assert result.fleet.queries == loader.QUERY_COUNT
    assert result.started_at == result.fleet.loaded_at
    assert result.duration_seconds > 0


def test_run_creates_and_closes_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    original = PrometheusClient.close

    def close(self: PrometheusClient) -> None:
        closed.append(True)
        original(self)

    monkeypatch.setattr(PrometheusClient, "close", close)
    fake = FakePrometheus(canned(one_idle_server()))
    with fake.running():
        result = pipeline.run(Config(prometheus=PrometheusSettings(url=fake.url)))
    assert len(result.recommendations) == 1 and closed == [True]


def test_run_raises_when_prometheus_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Config(prometheus=PrometheusSettings(url=f"http://127.0.0.1:{port}", retries=0))
    with pytest.raises(PrometheusError, match="connection refused"):
        pipeline.run(config)
