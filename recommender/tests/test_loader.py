"""Loader: a fixed number of fleet-wide queries against a fake Prometheus of our own."""

from __future__ import annotations

import gc
import logging
import re
import socket
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from rules_fixtures import FakePrometheus, Reply, Request, canned, error, ok, sample

from infrascope_core.prometheus import Promtool
from infrascope_recommender import loader
from infrascope_recommender.config import PrometheusSettings
from infrascope_recommender.loader import (
    LoaderError,
    cost_history,
    load,
)
from infrascope_recommender.model import PlacementGroup, ServerKey, Service
from infrascope_recommender.promql import PrometheusClient, PrometheusError

GiB = 1024 ** 3
AT = 1_764_000_000.0  # 2025-11-24
SETTINGS = PrometheusSettings(backoff_seconds=0.01, retries=0)


def info(source: str, server_id: str, name: str, server_type: str, location: str,
         **extra: str) -> dict[str, Any]:
    labels = {"source": source, "server_id": server_id, "server_name": name,
              "server_type": server_type, "location": location, "datacenter": "",
              "network_zone": "eu-central", "architecture": "x86", "cpu_type": "shared",
              "hcloud_project": "webshop", "image": "", "product": "", "provider": "hetzner"}
    labels.update(extra)
    return sample(loader.INFO, "1", **labels)


def ids(source: str, server_id: str, **extra: str) -> dict[str, str]:
    return {"source": source, "server_id": server_id, "job": "hetzner", **extra}


def small_fleet() -> dict[str, list[dict[str, Any]]]:
    """Two Cloud servers and a dedicated one, every family the loader reads."""
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    web, stg, ded = ("cloud", "101"), ("cloud", "104"), ("dedicated", "2391007")
    inventory = [
        info(*web, "shop-web-1", "cx33", "fsn1", image="ubuntu-24.04"),
        info(*stg, "shop-staging-web", "cx23", "fsn1"),
        info(*ded, "legacy-app", "EX44", "fsn1", datacenter="FSN1-DC14", cpu_type="dedicated",
             hcloud_project="", product="EX44", network_zone=""),
        sample(loader.STATUS, "1", **ids(*web, status="running")),
        sample(loader.STATUS, "1", **ids(*stg, status="off")),
        sample(loader.STATUS, "1", **ids(*ded, status="ready")),
        sample(loader.BACKUPS, "1", **ids(*web)),
        sample(loader.BACKUPS, "0", **ids(*stg)),
    ]
    labels = [
        sample(loader.LABELS, "1", **ids(*web, label_env="production",
                                                    label_role="web")),
        sample(loader.LABELS, "1", **ids(*stg, label_env="staging", label_x="")),
        sample(loader.LABELS, "1", **ids(*ded)),
        # the placement group comes with the labels (HA peers), in the same query
        sample(loader.PLACEMENT_GROUP, "1", **ids(*web, placement_group_id="4242",
                                                  placement_group="web-spread",
                                                  placement_group_type="spread")),
        sample(loader.PLACEMENT_GROUP, "1", **ids(*stg, placement_group_id="",
                                                  placement_group="",
                                                  placement_group_type="spread")),
    ]
    sizes = [
        sample(loader.CORES, "4", **ids(*web)),
        sample(loader.MEMORY, str(8 * GiB), **ids(*web)),
        sample(loader.DISK, "80000000000", **ids(*web)),
        sample(loader.CORES, "2", **ids(*stg)),
        sample(loader.MEMORY, str(4 * GiB), **ids(*stg)),
        sample(loader.DISK, "40000000000", **ids(*stg)),
        sample(loader.MONTHLY_COST, "7.688", **ids(*web)),
        sample(loader.BREAKDOWN, "5.99",
               **ids(*web, component="server")),
        sample(loader.BREAKDOWN, "1.198",
               **ids(*web, component="backup")),
        sample(loader.BREAKDOWN, "0.5",
               **ids(*web, component="primary_ipv4")),
        sample(loader.MONTHLY_COST, "3.99", **ids(*stg)),
        sample(loader.MONTHLY_COST, "49", **ids(*ded)),
        sample(loader.BREAKDOWN, "49",
               **ids(*ded, component="server")),
    ]
    catalogue: list[dict[str, Any]] = []
    for name, cores, mem, disk, price in [("cx23", 2, 4, 40, "3.49"), ("cx33", 4, 8, 80, "5.99")]:
        catalogue += [
            sample(loader.TYPE_INFO, "1", server_type=name, cpu_type="shared",
                   architecture="x86", category="cost_optimized", provider="hetzner"),
            sample(loader.TYPE_CORES, str(cores), server_type=name),
            sample(loader.TYPE_MEMORY, str(mem * GiB), server_type=name),
            sample(loader.TYPE_DISK, str(disk * 10 ** 9), server_type=name),
        ]
        for loc in ("fsn1", "ash"):
            catalogue += [
                sample(loader.TYPE_PRICE, price, server_type=name,
                       location=loc),
                sample(loader.TYPE_AVAILABLE, "1" if loc == "fsn1" else "0",
                       server_type=name, location=loc),
                sample(loader.TYPE_DEPRECATED, "1" if loc == "ash" else "0",
                       server_type=name, location=loc),
                sample(loader.TYPE_TRAFFIC, str((20 if loc == "fsn1" else 1) * 2**40),
                       server_type=name, location=loc),
                sample(loader.TYPE_TRAFFIC_PRICE, "1.00" if loc == "fsn1" else "1.20",
                       server_type=name, location=loc),
            ]
    pricing = [sample(loader.COST_INFO, "1", currency="EUR", price_mode="gross"),
               sample(loader.BACKUP_RATIO, "0.2", hcloud_project="webshop")]
    attrs = {"server_name": "x", "server_type": "x", "location": "fsn1",
             "hcloud_project": "webshop"}
    utilisation = []
    for key, figures in [(web, {"cpu_utilisation:avg30d": "0.21", "cpu_utilisation:max30d": "0.9",
                                "cpu_utilisation:p95_30d": "0.45",
                                "cpu_utilisation:coverage30d": "1",
                                "cpu_utilisation:daily_peak30d": "0.40625",
                                "memory_utilisation:avg30d": "0.5",
                                "memory_utilisation:max30d": "0.625",
                                "memory_utilisation:p95_30d": "0.55",
                                "memory_utilisation:coverage30d": "0.95"}),
                         (ded, {"cpu_utilisation:avg30d": "0.05",
                                "cpu_utilisation:max30d": "0.3",
                                "cpu_utilisation:p95_30d": "0.1",
                                "cpu_utilisation:coverage30d": "0.5",
                                "memory_utilisation:max30d": "0.1",
                                "memory_utilisation:p95_30d": "0.08",
                                "memory_utilisation:coverage30d": "0.5"})]:
        for name, value in figures.items():
            utilisation.append(sample(f"source_server_id:{name}", value, source=key[0],
                                      server_id=key[1], **attrs))
    # network, per direction (the coverage is the lower of the two)
    for direction, figures in (("in", ("1000", "1500", "4000", "1")),
                               ("out", ("52000", "80000", "250000", "0.9"))):
        for fig, value in zip(("avg30d", "p95_30d", "max30d", "coverage30d"), figures,
                              strict=True):
            utilisation.append(sample(f"source_server_id:network_bytes_per_second:{fig}",
                                      value, source="cloud", server_id="101",
                                      direction=direction, **attrs))
    utilisation.append(sample("source_server_id:utilisation:tier30d", "2", source="cloud",
                              server_id="101", tier="moderate", **attrs))
    via = [sample(None, "1", source="cloud", server_id="101", via="agent"),
           sample(None, "1", source="dedicated", server_id="2391007", via="agent")]
    costs = [
        sample("source_server_id:monthly_cost_euros:sum", "8.188", source="cloud",
               server_id="101", label_env="production", **attrs),
        sample(":monthly_cost_euros:sum", "61.178"),
        sample("source:monthly_cost_euros:sum", "12.178", source="cloud"),
        sample("source:monthly_cost_euros:sum", "49", source="dedicated"),
        sample("location:monthly_cost_euros:sum", "61.178", location="fsn1"),
        sample("hcloud_project:monthly_cost_euros:sum", "12.178", hcloud_project="webshop"),
        sample("hcloud_project:monthly_cost_euros:sum", "49"),
    ]
    agent_ids = {"source": "dedicated", "server_id": "2391007"}
    # core count and memory: asked of the dedicated servers' agents only
    cores = [sample(None, "8", **agent_ids)]
    memory = [sample(None, str(64 * GiB), **agent_ids)]
    disk = [sample(None, "50000000000", **agent_ids),
            sample(None, "12000000000", source="cloud", server_id="101")]
    services = [
        sample("infrascope_service_info", "1", kind="docker", service="shop-app",
               state="running", image="ghcr.io/demo/shop:2.14", compose_project="shop",
               source="cloud", server_id="101", job="infrascope-agent"),
        sample("infrascope_service_info", "1", kind="systemd", service="nginx.service",
               state="active", sub_state="running", source="cloud", server_id="101"),
    ]
    ports = [
        sample("infrascope_listen_port_info", "1", port="443", protocol="tcp", kind="systemd",
               service="nginx.service", process="nginx", source="cloud", server_id="101"),
        sample("infrascope_listen_port_info", "1", port="80", protocol="tcp", kind="systemd",
               service="nginx.service", process="nginx", source="cloud", server_id="101"),
        sample("infrascope_listen_port_info", "1", port="22", protocol="tcp", kind="process",
               service="", process="sshd", source="cloud", server_id="101"),
        sample("infrascope_listen_port_info", "1", port="22", protocol="tcp", kind="process",
               service="", process="sshd", source="cloud", server_id="999"),
    ]
    agents = [sample(None, "1", **agent_ids), sample(None, "0", source="cloud", server_id="104")]
    return {q["inventory"]: inventory, q["labels"]: labels, q["sizes_and_cost"]: sizes,
            q["catalogue"]: catalogue, q["pricing"]: pricing, q["utilisation"]: utilisation,
            q["via"]: via,
            q["costs"]: costs, q["agent_cores"]: cores, q["agent_memory"]: memory,
            q["agent_disk_used"]: disk, q["services"]: services, q["ports"]: ports,
            q["agents"]: agents}


def run_load(responses: dict[str, list[dict[str, Any]]],
             settings: PrometheusSettings = SETTINGS) -> tuple[Any, FakePrometheus, int]:
    fake = FakePrometheus(canned(responses))
    with fake.running():
        s = PrometheusSettings(**{**settings.__dict__, "url": fake.url})
        with PrometheusClient(s) as client:
            fleet = load(client, s, at=AT)
            attempts = client.attempts
    return fleet, fake, attempts


def test_loads_every_family() -> None:
    fleet, fake, attempts = run_load(small_fleet())
    assert fleet.queries == loader.QUERY_COUNT == len(fake.requests) == attempts == 14
    assert {r.form["time"] for r in fake.requests} == {"1764000000"}
    assert fleet.loaded_at == AT and fleet.price_mode == "gross"
    assert fleet.backup_ratio == {"webshop": Decimal("0.2")}

    web = fleet.servers[ServerKey("cloud", "101")]
    assert (web.name, web.server_type, web.location, web.project, web.status) == \
        ("shop-web-1", "cx33", "fsn1", "webshop", "running")
    assert web.image == "ubuntu-24.04"
    assert web.labels == {"env": "production", "role": "web"}
    assert (web.cores, web.memory_bytes, web.disk_bytes) == (4, 8 * GiB, 80 * 10 ** 9)
    assert web.disk_used_bytes == 12 * 10 ** 9
    assert web.backups is True
    assert web.monthly_cost == Decimal("7.688")
    assert web.cost_breakdown == {"server": Decimal("5.99"), "backup": Decimal("1.198"),
                                  "primary_ipv4": Decimal("0.5")}
    assert str(web.cost_breakdown["server"]) == "5.99"  # from the string, not a float
    assert web.total_monthly_cost == Decimal("8.188")
    u = web.utilisation
    assert (u.cpu_avg, u.cpu_max, u.cpu_p95, u.cpu_coverage) == (0.21, 0.9, 0.45, 1.0)
    # the recurring daily peak comes in the same utilisation query (still 14 queries)
    assert u.cpu_daily_peak == 0.40625
    assert fleet.servers[ServerKey("dedicated", "2391007")].utilisation.cpu_daily_peak is None
    assert (u.memory_avg, u.memory_max, u.memory_p95, u.memory_coverage) == \
        (0.5, 0.625, 0.55, 0.95)
    assert (u.via, u.tier) == ("agent", "moderate")
    assert (u.network_in_avg, u.network_in_p95, u.network_in_max) == (1000, 1500, 4000)
    assert (u.network_out_avg, u.network_out_p95, u.network_out_max) == (52000, 80000, 250000)
    assert (u.network_coverage, u.network_avg) == (0.9, 53000)
    assert web.services == [
        Service("docker", "shop-app", "running", "ghcr.io/demo/shop:2.14", "shop"),
        Service("process", "sshd", "listening", ports=["tcp/22"]),
        Service("systemd", "nginx.service", "active", ports=["tcp/80", "tcp/443"]),
    ]

    assert web.placement_group == PlacementGroup("4242", "web-spread", "spread")
    assert str(web.placement_group) == "spread placement group web-spread"

    stg = fleet.servers[ServerKey("cloud", "104")]
    assert (stg.status, stg.backups, stg.labels) == ("off", False, {"env": "staging"})
    assert stg.placement_group is None  # a record without id or name is skipped
    assert stg.utilisation.cpu_p95 is None and stg.total_monthly_cost is None

    ded = fleet.servers[ServerKey("dedicated", "2391007")]
    assert (ded.datacenter, ded.cpu_type, ded.project) == ("FSN1-DC14", "dedicated", "")
    # up{job=agent}: 1 up, 0 failing, absent: no agent target
    assert (ded.agent_up, stg.agent_up, web.agent_up) == (True, False, None)
    assert (ded.cores, ded.memory_bytes, ded.disk_used_bytes) == (8, 64 * GiB, 50 * 10 ** 9)
    assert ded.monthly_cost == Decimal("49")
    assert ded.utilisation.memory_max == 0.1

    assert sorted(fleet.types) == ["cx23", "cx33"]
    cx33 = fleet.types["cx33"]
    assert (cx33.cores, cx33.memory_bytes, cx33.disk_bytes, cx33.architecture,
            cx33.cpu_type, cx33.category) == (4, 8 * GiB, 80 * 10 ** 9, "x86", "shared",
                                              "cost_optimized")
    assert cx33.prices == {"fsn1": Decimal("5.99"), "ash": Decimal("5.99")}
    assert (cx33.available, cx33.deprecated) == ({"fsn1"}, {"ash"})
    assert cx33.included_traffic == {"fsn1": 20 * 2**40, "ash": 2**40}
    assert cx33.traffic_price_per_tb == {"fsn1": Decimal("1.00"), "ash": Decimal("1.20")}

    assert fleet.costs.total == Decimal("61.178")
    assert fleet.costs.by_source == {"cloud": Decimal("12.178"), "dedicated": Decimal("49")}
    assert fleet.costs.by_location == {"fsn1": Decimal("61.178")}
    assert fleet.costs.by_project == {"webshop": Decimal("12.178"), "": Decimal("49")}


def test_dedicated_servers_take_their_project_from_robot_labels(tmp_path: Path) -> None:
    """robot.labels gives a dedicated server a project (the exporter's
    server_labels{label_project}); the rules pack's roll-up by Cloud project puts
    every dedicated server under "". The fleet, /api/costs and the recommendations all
    show the labelled project; a Cloud server keeps its Cloud project whatever its label."""
    import warnings

    import service_fixtures as fx

    from infrascope_recommender.api import create_app
    from infrascope_recommender.config import Secret
    from infrascope_recommender.engine import generate
    from infrascope_recommender.service import RecommenderService
    from infrascope_recommender.state import Store
    from infrascope_recommender.thresholds import Thresholds

    responses = small_fleet()
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    ded = ("dedicated", "2391007")
    # as the exporter renders `robot: {labels: {2391007: {project: legacy, env: production}}}`
    responses[q["labels"]] = [
        sample(loader.LABELS, "1", **ids("cloud", "101", label_env="production",
                                                    label_project="ci")),
        sample(loader.LABELS, "1", **ids("cloud", "104", label_env="staging")),
        sample(loader.LABELS, "1", **ids(*ded, label_env="production",
                                                    label_project="legacy")),
    ]
    responses[q["costs"]].append(
        sample("source_server_id:monthly_cost_euros:sum", "49", source=ded[0],
               server_id=ded[1], server_name="legacy-app", server_type="EX44",
               location="fsn1", hcloud_project="", label_project="legacy"))
    fleet, _, _ = run_load(responses)
    assert fleet.servers[ServerKey(*ded)].project == "legacy"
    assert fleet.servers[ServerKey("cloud", "101")].project == "webshop"  # not its label
    assert fleet.costs.by_project == {"webshop": Decimal("12.178"), "legacy": Decimal("49")}
    assert sum(fleet.costs.by_project.values()) == fleet.costs.total

    # Through the engine, the state and the API, as `recommender serve` shows them.
    result = generate(fleet, Thresholds(), now=AT)
    with Store(tmp_path / "state.db") as store:
        service = RecommenderService(store, fx.Runner(result), api_token=Secret("t" * 32))
        service.regenerate()
        with warnings.catch_warnings():  # starlette nags about httpx vs httpx2
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient
        client = TestClient(create_app(service))
        costs = client.get("/api/costs").json()
        assert costs["by_project"] == {"legacy": "49.00", "webshop": "12.18"}
        recs = client.get("/api/recommendations").json()["items"]
        [moved] = [r for r in recs if r["kind"] == "dedicated_to_cloud"]
        assert [s["project"] for s in moved["servers"]] == ["legacy"]
        listed = client.get("/api/servers", params={"project": "legacy"}).json()["items"]
        assert [s["name"] for s in listed] == ["legacy-app"]


def test_cloud_sizes_come_from_the_exporter_or_the_catalogue() -> None:
    """Agents are asked for the core count and memory of dedicated servers only; a Cloud
    server the exporter gave no sizes gets its type's from the catalogue (not the disk:
    the primary disk may have been kept larger than the type's)."""
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    assert 'source="dedicated"' in q["agent_cores"] and 'mode="idle"' in q["agent_cores"]
    assert 'source="dedicated"' in q["agent_memory"]
    responses = small_fleet()
    responses[q["sizes_and_cost"]] = [
        s for s in responses[q["sizes_and_cost"]]
        if not (s["metric"]["server_id"] == "101" and s["metric"]["__name__"] in (
            loader.CORES, loader.MEMORY,
            loader.DISK))]
    # a Cloud agent's figures, were any to arrive, would not be taken
    responses[q["agent_cores"]].append(sample(None, "16", source="cloud", server_id="104"))
    fleet, _, _ = run_load(responses)
    web = fleet.servers[ServerKey("cloud", "101")]
    assert (web.cores, web.memory_bytes, web.disk_bytes) == (4, 8 * GiB, None)  # cx33
    stg = fleet.servers[ServerKey("cloud", "104")]
    assert (stg.cores, stg.memory_bytes) == (2, 4 * GiB)  # the exporter's
    ded = fleet.servers[ServerKey("dedicated", "2391007")]
    assert (ded.cores, ded.memory_bytes) == (8, 64 * GiB)  # the agent's


def test_garbage_collection_is_paused_during_the_load_and_restored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = loader._inventory

    def spy(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args)

    monkeypatch.setattr(loader, "_inventory", spy)
    assert gc.isenabled()
    run_load(small_fleet())
    assert seen == [False] and gc.isenabled()
    gc.disable()  # a caller's choice is kept
    try:
        run_load(small_fleet())
        assert not gc.isenabled()
    finally:
        gc.enable()
    responses = small_fleet()
    responses[loader.queries(SETTINGS)[0].expr] = []  # no inventory: LoaderError
    with pytest.raises(LoaderError):
        run_load(responses)
    assert gc.isenabled()


def synthetic(n: int) -> dict[str, list[dict[str, Any]]]:
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    out: dict[str, list[dict[str, Any]]] = {expr: [] for expr in q.values()}
    for i in range(n):
        sid = str(41_000_000 + i)
        out[q["inventory"]].append(info("cloud", sid, f"web-{i}", "cx23", "fsn1"))
        out[q["sizes_and_cost"]] += [
            sample(loader.CORES, "2", **ids("cloud", sid)),
            sample(loader.MONTHLY_COST, "3.99", **ids("cloud", sid))]
        out[q["utilisation"]].append(sample("source_server_id:cpu_utilisation:p95_30d", "0.1",
                                            source="cloud", server_id=sid))
    return out


def test_query_count_does_not_grow_with_the_fleet() -> None:
    small, fake_small, _ = run_load(synthetic(3))
    big, fake_big, _ = run_load(synthetic(300))
    assert len(small.servers) == 3 and len(big.servers) == 300
    assert small.queries == big.queries == loader.QUERY_COUNT
    # The same queries (sent side by side, so in no fixed order), each once.
    sent_small = sorted(r.form["query"] for r in fake_small.requests)
    assert sent_small == sorted(r.form["query"] for r in fake_big.requests)
    assert sent_small == sorted(q.expr for q in loader.queries(PrometheusSettings()))
    assert loader.QUERY_COUNT + 1 <= 20  # with the cost history


def test_job_names_come_from_the_settings() -> None:
    custom = PrometheusSettings(exporter_job="hz-prod", agent_job='node"x')
    exprs = {q.name: q.expr for q in loader.queries(custom)}
    # the provider-neutral series are the rules pack's: it selects the exporter's job
    for name in ("inventory", "labels", "sizes_and_cost", "catalogue", "pricing"):
        assert "job=" not in exprs[name] and ":normalised" in exprs[name], name
    for name in ("agent_cores", "agent_memory", "agent_disk_used", "services", "ports"):
        assert 'job="node\\"x"' in exprs[name], name
    assert not any('"hetzner"' in e or "infrascope-agent" in e for e in exprs.values())


def test_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = Promtool()
    assert promtool.available(), "needs promtool (Debian package prometheus)"
    rules = {"groups": [{"name": "loader", "rules": [
        {"record": f"check:{q.name}", "expr": q.expr} for q in loader.queries(SETTINGS)]
        + [{"record": "check:history", "expr": "max(:monthly_cost_euros:avg1d)"}]}]}
    path = tmp_path / "loader.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = promtool.check_rules(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_malformed_records_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    responses = small_fleet()
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    responses[q["inventory"]] += [
        sample(loader.INFO, "1", source="cloud", server_name="no-id", provider="hetzner"),
        sample(loader.INFO, "1", source="moon", server_id="7", server_name="x",
               provider="hetzner"),
        sample(loader.INFO, "1", source="cloud", server_id="8", server_name="y",
               provider="moonbase"),
        {"metric": "garbage", "value": None},
    ]
    responses[q["sizes_and_cost"]] += [
        sample(loader.MONTHLY_COST, "NaN", **ids("cloud", "104")),
        sample(loader.CORES, "many", **ids("cloud", "104")),
        sample(loader.BREAKDOWN, "1", **ids("cloud", "104")),
    ]
    responses[q["labels"]].append(  # a second group of a server (moved between groups)
        sample(loader.PLACEMENT_GROUP, "1", **ids("cloud", "101", placement_group_id="9999",
                                                  placement_group="zz-old-spread",
                                                  placement_group_type="spread")))
    responses[q["catalogue"]].append(
        sample(loader.TYPE_INFO, "1", server_type="cx99", architecture="x86"))
    responses[q["utilisation"]].append(
        sample("source_server_id:cpu_utilisation:p95_30d", "+Inf", source="cloud",
               server_id="104"))
    caplog.set_level(logging.WARNING)
    fleet, _, _ = run_load(responses)
    assert sorted(str(k) for k in fleet.servers) == ["cloud/101", "cloud/104",
                                                     "dedicated/2391007"]
    stg = fleet.servers[ServerKey("cloud", "104")]
    assert stg.monthly_cost == Decimal("3.99")  # the NaN duplicate was skipped
    assert stg.cores == 2 and stg.cost_breakdown == {}
    assert "cx99" not in fleet.types
    web = fleet.servers[ServerKey("cloud", "101")]
    assert web.placement_group is not None and web.placement_group.name == "web-spread"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "a second placement group for cloud/101 (kept the first)" in text
    for series in [loader.INFO, loader.MONTHLY_COST, loader.CORES, loader.BREAKDOWN,
                   loader.TYPE_INFO, "source_server_id:cpu_utilisation:p95_30d",
                   loader.PLACEMENT_GROUP]:
        assert f"skipping a {series} record" in text, series
    assert "unknown provider 'moonbase'" in text


def test_no_inventory_is_an_error_naming_url_and_job() -> None:
    fake = FakePrometheus(canned({}))
    fake.handler = lambda request: ok([])
    with fake.running():
        s = PrometheusSettings(url=fake.url, exporter_job="hz")
        with PrometheusClient(s) as client, pytest.raises(LoaderError) as info:
            load(client, s)
    assert str(info.value) == (
        f"no source_server_id:server_info:normalised series at {fake.url} — is the exporter "
        'scraped with job="hz", and is the InfraScope rules pack loaded (its provider groups '
        "record the inventory: the first evaluation comes up to a minute after Prometheus "
        "starts)?")
    assert isinstance(info.value, PrometheusError)
    # the queries go out side by side; the ones still queued when the empty inventory is
    # seen are cancelled, none is retried
    assert 1 <= len(fake.requests) <= loader.QUERY_COUNT


def test_prometheus_errors_propagate() -> None:
    responses = small_fleet()
    failing = next(q.expr for q in loader.queries(SETTINGS) if q.name == "utilisation")

    def handler(request: Request) -> Reply:
        if request.form.get("query") == failing:
            return error(422, "execution", "query processing would load too many samples")
        return canned(responses)(request)

    fake = FakePrometheus(handler)
    with fake.running():
        s = PrometheusSettings(url=fake.url, retries=0)
        with PrometheusClient(s) as client, pytest.raises(PrometheusError,
                                                          match="too many samples"):
            load(client, s)


def test_unreachable_prometheus_is_one_quiet_failure(caplog: pytest.LogCaptureFixture) -> None:
    """All queries go out side by side; when the first gives up, the others stop with it:
    one summary error in about one query's retry time, failed attempts only at DEBUG."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again below
    caplog.set_level(logging.DEBUG, logger="infrascope_recommender")
    s = PrometheusSettings(url=url, retries=3, backoff_seconds=0.2)
    started = time.monotonic()
    with PrometheusClient(s) as client, pytest.raises(PrometheusError) as info:
        load(client, s, at=AT)
    elapsed = time.monotonic() - started
    assert type(info.value) is PrometheusError  # the real failure, not an abandoned query
    assert re.fullmatch(rf"Prometheus at {re.escape(url)}/api/v1/query unreachable after 4 "
                        r"attempts over 1\.[4-9] s: connection refused", str(info.value))
    # one query's retries: 0.2 + 0.4 + 0.8 s (+ jitter), not a second wave of queries
    assert elapsed < 2.2
    assert client.attempts <= 4 * loader.PARALLEL_QUERIES
    ours = [r for r in caplog.records if r.name.startswith("infrascope_recommender")]
    assert ours and all(r.levelno == logging.DEBUG for r in ours)
    assert len(ours) == client.attempts  # one line per failed attempt


def test_missing_recorded_series(caplog: pytest.LogCaptureFixture) -> None:
    responses = small_fleet()
    q = {x.name: x.expr for x in loader.queries(SETTINGS)}
    for name in ("utilisation", "via", "costs"):
        responses[q[name]] = []
    caplog.set_level(logging.WARNING)
    fleet, _, _ = run_load(responses)
    web = fleet.servers[ServerKey("cloud", "101")]
    assert web.utilisation.cpu_p95 is None and web.utilisation.via is None
    assert fleet.costs.total == Decimal("7.688") + Decimal("3.99") + Decimal("49")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "are the InfraScope recording rules loaded?" in text
    assert "no :monthly_cost_euros:sum" in text


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_cost_history_takes_the_last_value_of_each_month() -> None:
    points = [[_ts("2025-08-31T10:00:00"), "80"],   # before the 3-month window
              [_ts("2025-09-29T10:00:00"), "99.5"],
              [_ts("2025-09-30T10:00:00"), "100.25"],
              [_ts("2025-10-31T10:00:00"), "110.1"],
              [_ts("2025-11-24T10:00:00"), "120"],
              [_ts("2025-11-23T10:00:00"), "NaN"]]
    seen: list[Request] = []

    def handler(request: Request) -> Reply:
        seen.append(request)
        return ok([{"metric": {}, "values": points}], "matrix")

    fake = FakePrometheus(handler)
    at = _ts("2025-11-24T10:00:00")
    with fake.running():
        s = PrometheusSettings(url=fake.url)
        with PrometheusClient(s) as client:
            history = cost_history(client, s, months=3, at=at)
    assert history == [("2025-09", Decimal("100.25")), ("2025-10", Decimal("110.1")),
                       ("2025-11", Decimal("120"))]
    [request] = seen
    assert request.path == "/api/v1/query_range"
    assert request.form["query"] == "max(:monthly_cost_euros:avg1d)"
    assert request.form["step"] == "86400" and request.form["end"] == str(int(at))
    start = float(request.form["start"])
    assert start <= _ts("2025-09-01T00:00:00") < start + 86400
    with PrometheusClient(s) as client, pytest.raises(ValueError):
        cost_history(client, s, months=0)


def test_docs_list_every_query() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text()
    for q in loader.queries(PrometheusSettings()):
        assert f"| {q.name} | `{q.expr.replace('|', chr(92) + '|')}` |" in doc, q.name
    assert f"**{loader.QUERY_COUNT}\nper run" in doc
