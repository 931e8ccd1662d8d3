"""Cost: the demo fleet's bill, computed by hand, against the exporter's cost series.

The exporter and the simulator share one pinned clock (2026-11-18T12:00:00Z),
so the billing month is November 2026 (30 days = 720 hours) and the simulated
outgoing traffic is deterministic. No demo resource was created in November,
so every resource bills its whole month: the hourly prices (monthly / 624,
rounded up) times 720 hours exceed the monthly prices, and the cap applies.

Then pure unit tests of pricing.py's rules (module docstring there).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import ANALYTICS_TOKEN, WEBSHOP_TOKEN, demo_config_data, refresh_all
from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB, TRAFFIC_BYTES_PER_TB
from infrascope_exporter.config import load_config
from infrascope_exporter.exporter import Exporter
from infrascope_exporter.model import CloudServer, Pricing, Resource, ServerType, TypePrice
from infrascope_exporter.pricing import (
    billed_hours,
    cloud_server_cost,
    dedicated_monthly_price,
    dedicated_price,
    month_bounds,
    month_hours,
    prorated,
    resource_cost,
    server_price,
    to_cents,
    traffic_projection,
)
from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import Endpoints, running
from infrascope_sim.state import Simulator

D = Decimal
TIB = 2**40  # the traffic TB of the API's included_traffic, written out: checks the contract
CENT = D("0.01")


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


FIXED = ts("2026-11-18T12:00:00Z")
NOV_START = ts("2026-11-01T00:00:00Z")
NOV_END = ts("2026-12-01T00:00:00Z")

# ---------------------------------------------------------------------------
# The hand-computed bill of the demo fleet for November 2026, net EUR.
# ---------------------------------------------------------------------------
BACKUP = D("20") / 100  # /pricing server_backup.percentage "20"
IPV4 = D("0.60")  # primary IPv4 a month (hourly 0.0010 × 720 h = 0.72 > 0.60: the cap)
IPV6 = D("0.00")  # primary IPv6 is free
US = D("1.15")  # ash/hil price factor of the simulated catalogue
SHOP_US_EDGE_TYPE = (D("9.49") * US).quantize(CENT, ROUND_HALF_UP)  # 10.9135 → 10.91

# Every Cloud server: own type price at its location (capped: 720 h × hourly > monthly),
# + 20 % of it where backups are on, + its primary IPv4 and IPv6.
HAND_CLOUD_SERVERS: dict[int, Decimal] = {
    41000101: D("5.99") + D("5.99") * BACKUP + IPV4 + IPV6,  # shop-web-1 cx33 fsn1 = 7.788
    41000102: D("5.99") + D("5.99") * BACKUP + IPV4 + IPV6,  # shop-web-2 cx33 nbg1 = 7.788
    41000103: D("57.49") + D("57.49") * BACKUP + IPV4 + IPV6,  # shop-db-1 ccx33 fsn1 = 69.588
    41000104: D("5.99") + IPV4 + IPV6,  # shop-staging-web cx33 fsn1 = 6.59
    41000105: D("5.99") + IPV4 + IPV6,  # shop-staging-db cx33 fsn1 = 6.59
    41000106: D("3.49") + IPV4 + IPV6,  # shop-staging-worker cx23 fsn1 = 4.09
    41000107: D("9.49") + IPV4 + IPV6,  # shop-dev-1 cpx22 nbg1 = 10.09
    41000108: D("18.59") + IPV4 + IPV6,  # old-jenkins cx42 (legacy) fsn1 = 19.19
    41000109: D("7.99") + IPV4 + IPV6,  # shop-worker-1 cax21 fsn1 = 8.59
    41000110: SHOP_US_EDGE_TYPE + IPV4 + IPV6,  # shop-us-edge cpx22 ash = 10.91 + 0.60 = 11.51
    41000111: D("5.99") + IPV4 + IPV6,  # media-proxy cx33 fsn1 = 6.59
    41000112: D("5.99") + IPV4 + IPV6,  # search-1 cx33 fsn1 = 6.59
    41000113: D("5.99") + IPV4 + IPV6,  # search-2 cx33 fsn1 = 6.59
    41000201: D("28.99") + IPV4 + IPV6,  # analytics-etl ccx23 hel1 = 29.59
    41000202: D("14.49") + IPV4 + IPV6,  # analytics-ch ccx13 hel1 = 15.09
    41000203: D("20.49") + IPV4 + IPV6,  # report-batch cx53 hel1 = 21.09
}
HAND_CLOUD_SERVERS_TOTAL = D("237.354")  # 7.788×2 + 69.588 + 6.59×2 + 4.09 + 10.09 + 19.19
#                                          + 8.59 + 11.51 + 6.59×3 + 29.59 + 15.09 + 21.09

VOLUME_GB_MONTH = D("0.052")
SNAPSHOT_GB_MONTH = D("0.013")
# Resources that are not part of a server's cost: (kind, name) -> monthly amount.
HAND_RESOURCES: dict[tuple[str, str], Decimal] = {
    ("volume", "shop-db-data"): 200 * VOLUME_GB_MONTH,  # 10.40 (attached to shop-db-1)
    ("volume", "old-export"): 50 * VOLUME_GB_MONTH,  # 2.60 (unattached)
    ("volume", "etl-scratch"): 500 * VOLUME_GB_MONTH,  # 26.00 (attached to analytics-etl)
    ("primary_ip", "spare-ipv4"): IPV4,  # 0.60, unassigned
    ("floating_ip", "shop-vip"): D("3.49"),  # monthly only, assigned to shop-web-1
    ("load_balancer", "shop-lb"): D("6.49"),  # lb11 fsn1 (0.0105 × 720 = 7.56 > 6.49: cap)
    ("snapshot", "shop-db-1 before pg16 upgrade"): D("18.4") * SNAPSHOT_GB_MONTH,  # 0.2392
    ("snapshot", "legacy-mail final"): D("9.2") * SNAPSHOT_GB_MONTH,  # 0.1196
}
HAND_RESOURCES_TOTAL = D("49.9388")  # 10.40 + 2.60 + 26.00 + 0.60 + 3.49 + 6.49 + 0.2392 + 0.1196

# Dedicated servers: the monthly prices configured by demo_config_data (per server).
HAND_DEDICATED: dict[int, Decimal] = {
    2391001: D("109.00"),  # db-primary AX102 (older price than the catalogue's 119.00)
    2391002: D("109.00"),  # db-replica AX102
    2391003: D("52.00"),  # ci-runner AX42
    2391004: D("109.00"),  # backup-store SX65
    2391005: D("49.00"),  # legacy-app EX44
    2391006: D("36.00"),  # auction-box Server Auction (no catalogue price exists)
    2391007: D("94.00"),  # video-encode EX101
}
HAND_DEDICATED_TOTAL = D("558.00")  # 109 + 109 + 52 + 109 + 49 + 36 + 94

HAND_FIXED_TOTAL = D("845.2928")  # 237.354 + 49.9388 + 558.00, before traffic overage

# Traffic: outgoing bytes so far, extrapolated from the 17.5 days elapsed (420 h) to the
# month's 30 days (720 h): projected = outgoing × 720 / 420 = outgoing × 12 / 7. Included:
# 20 TiB in the EU, 1 TiB in ash; above that, the location's 1.00 per TiB (2^40 bytes).
ELAPSED_HOURS = 420  # 2026-11-01T00:00Z .. 2026-11-18T12:00Z
MONTH_HOURS = 720
INCLUDED = {"fsn1": 20 * 2**40, "nbg1": 20 * 2**40, "hel1": 20 * 2**40, "ash": 1 * 2**40}
PER_TIB = D("1.00")
LOCATIONS = {41000101: "fsn1", 41000102: "nbg1", 41000103: "fsn1", 41000104: "fsn1",
             41000105: "fsn1", 41000106: "fsn1", 41000107: "nbg1", 41000108: "fsn1",
             41000109: "fsn1", 41000110: "ash", 41000111: "fsn1", 41000112: "fsn1",
             41000113: "fsn1", 41000201: "hel1", 41000202: "hel1", 41000203: "hel1"}


def hand_traffic(outgoing: dict[int, int]) -> dict[int, tuple[int, Decimal]]:
    """server id -> (projected bytes, projected overage cost)."""
    out = {}
    for sid, sent in outgoing.items():
        projected = sent * MONTH_HOURS // ELAPSED_HOURS
        over = max(0, projected - INCLUDED[LOCATIONS[sid]])
        out[sid] = (projected, D(over) / D(2**40) * PER_TIB)
    return out


# ---------------------------------------------------------------------------
# Running the exporter against a simulator on the same pinned clock.
# ---------------------------------------------------------------------------
@dataclass
class Run:
    exporter: Exporter
    endpoints: Endpoints
    text: str

    def samples(self, name: str) -> list[Any]:
        return [s for fam in text_string_to_metric_families(self.text) for s in fam.samples
                if s.name == name]


@contextmanager
def pinned_run(tmp_path: Path, *argv: str, metrics: bool = False,
               edit: Callable[[dict[str, Any]], None] | None = None) -> Iterator[Run]:
    sim = Simulator(load_fleet("demo"), clock=lambda: FIXED)
    with running(sim) as ep:
        data = demo_config_data(ep)
        if edit is not None:
            edit(data)
        path = tmp_path / "exporter.yaml"
        path.write_text(yaml.safe_dump(data))
        config = load_config(["--config.file", str(path), *argv], environ={})
        exporter = Exporter(config, clock=lambda: FIXED)
        try:
            refresh_all(exporter, metrics=metrics)
            yield Run(exporter, ep, exporter.rendered.decode())
        finally:
            exporter.stop()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, dict[int, int]]]:
    with pinned_run(tmp_path_factory.mktemp("cost"), metrics=True) as run:
        outgoing: dict[int, int] = {}
        for token in (WEBSHOP_TOKEN, ANALYTICS_TOKEN):
            body = httpx.get(run.endpoints.cloud + "/servers", params={"per_page": 50},
                             headers={"Authorization": f"Bearer {token}"}).json()
            outgoing.update({s["id"]: s["outgoing_traffic"] for s in body["servers"]})
        yield run, outgoing


def _sum(samples: list[Any]) -> Decimal:
    return sum((D(repr(s.value)) for s in samples), D(0))


def test_hand_bill_subtotals_add_up() -> None:
    assert sum(HAND_CLOUD_SERVERS.values()) == HAND_CLOUD_SERVERS_TOTAL
    assert sum(HAND_RESOURCES.values()) == HAND_RESOURCES_TOTAL
    assert sum(HAND_DEDICATED.values()) == HAND_DEDICATED_TOTAL
    assert HAND_CLOUD_SERVERS_TOTAL + HAND_RESOURCES_TOTAL + HAND_DEDICATED_TOTAL == \
        HAND_FIXED_TOTAL
    assert SHOP_US_EDGE_TYPE == D("10.91")


def test_traffic_projection_arithmetic(demo_run: tuple[Run, dict[int, int]]) -> None:
    run, outgoing = demo_run
    assert set(outgoing) == set(HAND_CLOUD_SERVERS)
    traffic = hand_traffic(outgoing)
    projected = {int(s.labels["server_id"]): s.value
                 for s in run.samples("hetzner_server_traffic_projected_bytes")}
    overage = {int(s.labels["server_id"]): s.value
               for s in run.samples("hetzner_server_traffic_overage_projected_cost_euros")}
    sent = {int(s.labels["server_id"]): s.value
            for s in run.samples("hetzner_server_traffic_outgoing_bytes")}
    for sid, (proj, cost) in traffic.items():
        assert sent[sid] == outgoing[sid]
        assert projected[sid] == proj, sid
        assert overage[sid] == pytest.approx(float(cost), abs=1e-9), sid
    # The EU servers stay below 20 TiB (media-proxy's 5 MB/s projects to ~11.8 TiB);
    # shop-us-edge (1 TiB included in ash) goes over.
    assert all(cost == 0 for sid, (_, cost) in traffic.items() if sid != 41000110)
    edge_projected, edge_cost = traffic[41000110]
    assert edge_projected > 2**40
    assert edge_cost == D(edge_projected - 2**40) / D(2**40)  # × 1.00 per TiB
    assert D("0") < edge_cost < D("5")


def test_cost_series_sum_to_the_hand_bill(demo_run: tuple[Run, dict[int, int]]) -> None:
    run, outgoing = demo_run
    traffic_total = sum((cost for _, cost in hand_traffic(outgoing).values()), D(0))
    hand_bill = HAND_FIXED_TOTAL + traffic_total

    servers = run.samples("hetzner_server_monthly_cost_euros")
    resources = run.samples("hetzner_resource_monthly_cost_euros")
    overage = run.samples("hetzner_server_traffic_overage_projected_cost_euros")
    assert len(servers) == 23 and len(resources) == 8 and len(overage) == 16

    # Line by line first, so a mismatch names its resource.
    by_server = {(s.labels["source"], int(s.labels["server_id"])): D(repr(s.value))
                 for s in servers}
    for sid, amount in HAND_CLOUD_SERVERS.items():
        assert by_server[("cloud", sid)] == amount, sid
    for number, amount in HAND_DEDICATED.items():
        assert by_server[("dedicated", number)] == amount, number
    by_resource = {(s.labels["kind"], s.labels["resource_name"]): D(repr(s.value))
                   for s in resources}
    assert by_resource == HAND_RESOURCES

    exposed = _sum(servers) + _sum(resources) + _sum(overage)
    assert to_cents(exposed) == to_cents(hand_bill)
    assert abs(exposed - hand_bill) < D("0.000001")


def test_pricing_module_reproduces_the_hand_bill_exactly(
        demo_run: tuple[Run, dict[int, int]]) -> None:
    run, outgoing = demo_run
    exporter = run.exporter
    hand_bill = HAND_FIXED_TOTAL + sum((c for _, c in hand_traffic(outgoing).values()), D(0))
    total = D(0)
    for state in exporter.projects.values():
        assert state.pricing is not None
        assigned: dict[int, list[Resource]] = defaultdict(list)
        for r in state.resources:
            if r.kind == "primary_ip" and r.server_id is not None:
                assigned[r.server_id].append(r)
        for s in state.servers:
            cost = cloud_server_cost(s, state.pricing, assigned[s.id], FIXED)
            assert cost.monthly == HAND_CLOUD_SERVERS[s.id], s.name
            total += cost.monthly
            total += traffic_projection(s, s.server_type.prices[s.location], FIXED).overage_cost
        for r in state.resources:
            if r.kind == "primary_ip" and r.server_id is not None:
                continue  # part of its server's cost
            total += resource_cost(r, state.pricing, FIXED)
    assert exporter.robot is not None
    prices, config = exporter.config.dedicated_prices, exporter.config
    for d in exporter.robot.servers:
        price = dedicated_monthly_price(
            d, by_server=prices.by_server, by_product=prices.by_product,
            catalogue=exporter.robot.products if prices.default_from_catalogue else None,
            price_mode=config.price_mode, vat_rate_percent=config.vat_rate_percent or D(0))
        assert price == HAND_DEDICATED[d.number]
        total += price
    assert total == hand_bill


def test_breakdown_sums_to_the_server_cost(demo_run: tuple[Run, dict[int, int]]) -> None:
    run, _ = demo_run
    monthly = {(s.labels["source"], s.labels["server_id"]): s.value
               for s in run.samples("hetzner_server_monthly_cost_euros")}
    parts: dict[tuple[str, str], float] = defaultdict(float)
    components: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in run.samples("hetzner_server_monthly_cost_breakdown_euros"):
        key = (s.labels["source"], s.labels["server_id"])
        parts[key] += s.value
        components[key].add(s.labels["component"])
    assert set(parts) == set(monthly)
    for key, value in monthly.items():
        assert parts[key] == pytest.approx(value, abs=1e-9), key
    assert components[("cloud", "41000101")] == {"server", "backup", "primary_ipv4",
                                                  "primary_ipv6"}
    assert components[("dedicated", "2391001")] == {"server"}
    breakdown = {(s.labels["server_id"], s.labels["component"]): D(repr(s.value))
                 for s in run.samples("hetzner_server_monthly_cost_breakdown_euros")}
    assert breakdown[("41000103", "server")] == D("57.49")
    assert breakdown[("41000103", "backup")] == D("11.498")  # 20 % of 57.49
    assert breakdown[("41000103", "primary_ipv4")] == IPV4
    assert breakdown[("41000104", "backup")] == 0


def test_no_resource_counted_twice(demo_run: tuple[Run, dict[int, int]]) -> None:
    run, _ = demo_run
    resources = run.samples("hetzner_resource_monthly_cost_euros")
    ids = [s.labels["resource_id"] for s in resources]
    assert len(ids) == len(set(ids))
    primary_in_resources = {int(s.labels["resource_id"]) for s in resources
                            if s.labels["kind"] == "primary_ip"}
    assigned = {r.id for st in run.exporter.projects.values() for r in st.resources
                if r.kind == "primary_ip" and r.server_id is not None}
    assert len(assigned) == 32  # IPv4 + IPv6 of each of the 16 Cloud servers
    assert not primary_in_resources & assigned
    assert [s.labels["resource_name"] for s in resources
            if s.labels["kind"] == "primary_ip"] == ["spare-ipv4"]
    # Automatic backup images are paid by the surcharge, not listed as snapshots.
    assert sorted(s.labels["resource_name"] for s in resources if s.labels["kind"] == "snapshot"
                  ) == ["legacy-mail final", "shop-db-1 before pg16 upgrade"]
    # A server's cost has no volume, floating IP or load balancer component.
    components = {s.labels["component"]
                  for s in run.samples("hetzner_server_monthly_cost_breakdown_euros")}
    assert components == {"server", "backup", "primary_ipv4", "primary_ipv6"}


# ---------------------------------------------------------------------------
# Exporter-level pricing options.
# ---------------------------------------------------------------------------
def _by_id(run: Run, name: str) -> dict[str, Decimal]:
    return {s.labels["server_id"]: D(repr(s.value)) for s in run.samples(name)}


def test_gross_mode_uses_gross_amounts(tmp_path: Path) -> None:
    with pinned_run(tmp_path, "--price-mode", "gross") as run:
        cost = _by_id(run, "hetzner_server_monthly_cost_euros")
        info = run.samples("hetzner_cost_info")
    assert info[0].labels == {"currency": "EUR", "price_mode": "gross"}
    vat = D("1.19")
    # shop-staging-web: cx33 fsn1 gross 5.99 × 1.19 = 7.1281, IPv4 0.60 × 1.19 = 0.714
    assert cost["41000104"] == D("5.99") * vat + IPV4 * vat == D("7.8421")
    # shop-web-1 with backups: 7.1281 × 1.2 + 0.714 = 9.26772
    assert cost["41000101"] == D("5.99") * vat * (1 + BACKUP) + IPV4 * vat == D("9.26772")
    # Configured dedicated prices are net: gross adds the /pricing VAT rate (19 %).
    assert cost["2391001"] == D("109.00") * vat == D("129.71")


def test_cloud_price_override_scales_hourly(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["prices"]["cloud_servers"] = {41000101: "4.99"}  # an older price for shop-web-1

    with pinned_run(tmp_path, edit=edit) as run:
        monthly = _by_id(run, "hetzner_server_monthly_cost_euros")
        hourly = {s.labels["server_id"]: s.value
                  for s in run.samples("hetzner_server_hourly_cost_euros")}
    assert monthly["41000101"] == D("4.99") * (1 + BACKUP) + IPV4 == D("6.588")
    assert monthly["41000102"] == D("7.788")  # not overridden
    # hourly 0.0096 scaled by 4.99 / 5.99, × 1.2 for backups, + 0.0010 for the IPv4
    expected = D("0.0096") * D("4.99") / D("5.99") * D("1.2") + D("0.0010")
    assert hourly["41000101"] == pytest.approx(float(expected), rel=1e-12)


def test_dedicated_price_precedence_in_the_exposition(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["prices"] = {"dedicated_servers": {2391001: "100.00"},
                          "dedicated_products": {"AX102": "115.00", "EX44": "45.00"}}

    with pinned_run(tmp_path, edit=edit) as run:
        cost = _by_id(run, "hetzner_server_monthly_cost_euros")
        dedicated_known = [s for s in run.samples("hetzner_server_price_known")
                           if s.labels["source"] == "dedicated"]
        known = {s.labels["server_id"]: s.value for s in dedicated_known}
        text = run.text
    assert len(dedicated_known) == 7  # one series per server (it used to be doubled)
    assert cost["2391001"] == D("100.00")  # per server beats per product
    assert cost["2391002"] == D("115.00")  # per product beats the catalogue's 119.00
    assert cost["2391005"] == D("45.00")  # per product beats the catalogue's 49.00
    assert cost["2391003"] == D("52.00")  # AX42: catalogue list price
    assert cost["2391004"] == D("109.00")  # SX65: catalogue
    assert cost["2391007"] == D("94.00")  # EX101: catalogue
    assert "2391006" not in cost  # Server Auction: no price anywhere
    assert known == {"2391001": 1, "2391002": 1, "2391003": 1, "2391004": 1, "2391005": 1,
                     "2391006": 0, "2391007": 1}
    for line in text.splitlines():
        if 'server_id="2391006"' in line and "cost" in line:
            raise AssertionError(f"cost series for an unpriced server: {line}")


def test_dedicated_without_catalogue_is_unknown(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["prices"] = {"dedicated_products": {"AX102": "115.00"}}

    with pinned_run(tmp_path, "--no-dedicated-prices-from-catalogue", edit=edit) as run:
        cost = _by_id(run, "hetzner_server_monthly_cost_euros")
        known = _by_id(run, "hetzner_server_price_known")
    assert cost["2391001"] == cost["2391002"] == D("115.00")
    for number in ("2391003", "2391004", "2391005", "2391006", "2391007"):
        assert number not in cost
        assert known[number] == 0


# ---------------------------------------------------------------------------
# Pure unit tests of pricing.py.
# ---------------------------------------------------------------------------
CX33_FSN1 = TypePrice("fsn1", D("0.0096"), D("5.99"), 20 * 2**40, D("1.00"))
CX33 = ServerType(104, "cx33", "cost_optimized", 4, 8 * MEMORY_BYTES_PER_GB,
                  80 * DISK_BYTES_PER_GB, "shared", "x86",
                  {"fsn1": CX33_FSN1}, {})
PRICING = Pricing(
    currency="EUR", vat_rate=D("19"), backup_percentage=D("20"),
    volume_per_gb_month=D("0.052"), image_per_gb_month=D("0.013"),
    primary_ips={("ipv4", "fsn1"): (D("0.0010"), D("0.60")),
                 ("ipv6", "fsn1"): (D("0"), D("0"))},
    floating_ips={("ipv4", "fsn1"): D("3.49")},
    load_balancer_types={"lb11": {"fsn1": TypePrice("fsn1", D("0.0105"), D("6.49"), 0, D(0))}},
    server_types={"cx33": {"fsn1": CX33_FSN1}},
)


def server(created: str, *, backups: bool = False, outgoing: int | None = 0,
           included: int = 0, stype: ServerType = CX33) -> CloudServer:
    return CloudServer(
        project="p", id=1, name="s", status="running", created=ts(created), server_type=stype,
        location="fsn1", network_zone="eu-central", labels={}, backups=backups, ipv4="192.0.2.1",
        ipv4_id=11, ipv6_net=None, ipv6_id=None, private_nets=(), primary_disk_bytes=0,
        included_traffic=included, outgoing_traffic=outgoing, ingoing_traffic=None, image="")


def test_month_bounds_and_hours() -> None:
    assert month_bounds(FIXED) == (NOV_START, NOV_END)
    assert month_bounds(ts("2026-12-15T00:00:00Z")) == (ts("2026-12-01T00:00:00Z"),
                                                        ts("2027-01-01T00:00:00Z"))
    assert month_hours(FIXED) == 720
    assert month_hours(ts("2026-02-10T00:00:00Z")) == 672
    assert month_hours(ts("2026-10-31T23:59:59Z")) == 744  # UTC: no DST hour


def test_billed_hours_across_a_month_boundary() -> None:
    # Created in October: November bills from its first hour, the whole 720 h.
    assert billed_hours(ts("2026-10-31T23:30:00Z"), ts("2026-11-01T00:30:00Z")) == 720
    # Seen in October, the same resource bills October's last started hour only.
    assert billed_hours(ts("2026-10-31T23:30:00Z"), ts("2026-10-31T23:45:00Z")) == 1
    # December → January of the next year: January has 744 h.
    assert billed_hours(ts("2026-12-31T23:00:00Z"), ts("2027-01-01T00:00:01Z")) == 744
    assert billed_hours(ts("2026-12-31T23:00:00Z"), ts("2026-12-31T23:59:59Z")) == 1
    # Started hours: 143 h 40 min to the month's end counts 144.
    assert billed_hours(ts("2026-11-25T00:20:00Z"), FIXED) == 144
    assert billed_hours(ts("2026-11-25T00:00:00Z"), FIXED) == 144
    assert billed_hours(NOV_START, FIXED) == 720
    # Not yet created in this month: nothing.
    assert billed_hours(NOV_END + 3600, FIXED) == 0


def test_hourly_cap() -> None:
    late = cloud_server_cost(server("2026-11-25T00:00:00Z"), PRICING, [], FIXED)
    assert late.server == D("0.0096") * 144 == D("1.3824")  # below the monthly 5.99
    early = cloud_server_cost(server("2026-11-02T00:00:00Z"), PRICING, [], FIXED)
    assert D("0.0096") * 696 == D("6.6816")  # 29 days of hours would exceed the month
    assert early.server == D("5.99")
    # The cap applies per part: backups follow the server, the IPv4 has its own cap.
    ip = Resource("p", "primary_ip", 11, "ip", "fsn1", ts("2026-11-25T00:00:00Z"), 1,
                  ip_type="ipv4")
    both = cloud_server_cost(server("2026-11-25T00:00:00Z", backups=True), PRICING, [ip], FIXED)
    assert both.backup == D("1.3824") * D("0.2")
    assert both.primary_ipv4 == D("0.0010") * 144 == D("0.144")
    assert both.monthly == D("1.3824") * D("1.2") + D("0.144")
    assert both.hourly == D("0.0096") * D("1.2") + D("0.0010")


def test_volume_proration() -> None:
    vol = Resource("p", "volume", 7, "v", "fsn1", ts("2026-11-16T00:00:00Z"), None, D(100))
    # 15 of 30 days: 100 GB × 0.052 × 360 / 720 = 2.60
    assert resource_cost(vol, PRICING, FIXED) == D("2.60")
    whole = Resource("p", "volume", 8, "w", "fsn1", ts("2026-01-01T00:00:00Z"), None, D(100))
    assert resource_cost(whole, PRICING, FIXED) == D("5.20")
    # Started hours: created 30 min before month's end costs one hour of 720.
    last = Resource("p", "volume", 9, "l", "fsn1", ts("2026-11-30T23:30:00Z"), None, D(720))
    assert resource_cost(last, PRICING, FIXED) == D(720) * D("0.052") / 720
    assert prorated(D("3.49"), 720, FIXED) == D("3.49")
    snap = Resource("p", "snapshot", 10, "s", "", ts("2026-11-16T00:00:00Z"), None, D("18.4"))
    assert resource_cost(snap, PRICING, FIXED) == D("18.4") * D("0.013") / 2
    fip = Resource("p", "floating_ip", 12, "f", "fsn1", ts("2026-11-16T00:00:00Z"),
                   ip_type="ipv4")
    assert resource_cost(fip, PRICING, FIXED) == D("3.49") * 360 / 720
    lb = Resource("p", "load_balancer", 13, "lb", "fsn1", ts("2026-11-25T00:00:00Z"),
                  lb_type="lb11")
    assert resource_cost(lb, PRICING, FIXED) == D("0.0105") * 144


def test_price_override_scales_hourly() -> None:
    s = server("2026-11-25T00:00:00Z")
    price = server_price(s, PRICING, D("4.99"))
    assert price.monthly == D("4.99")
    assert price.hourly == D("0.0096") * D("4.99") / D("5.99")
    assert price.included_traffic == CX33_FSN1.included_traffic
    cost = cloud_server_cost(s, PRICING, [], FIXED, override_monthly=D("4.99"))
    assert cost.server == price.hourly * 144 < D("4.99")
    full = cloud_server_cost(server("2025-01-01T00:00:00Z"), PRICING, [], FIXED, D("4.99"))
    assert full.server == D("4.99")
    assert server_price(s, PRICING, None) == CX33_FSN1


def test_traffic_overage_uses_tib_and_per_tb_price() -> None:
    mid = ts("2026-11-16T00:00:00Z")  # 15 of 30 days: projection doubles
    t = traffic_projection(server("2025-01-01T00:00:00Z", outgoing=11 * TIB), CX33_FSN1, mid)
    assert TRAFFIC_BYTES_PER_TB == TIB
    assert t.projected_bytes == 22 * TIB
    assert t.included_bytes == 20 * TIB  # server reports 0: the price's included traffic
    assert t.overage_cost == D("2.00")  # 2 TiB × 1.00
    sin = TypePrice("fsn1", D("0.0096"), D("5.99"), 20 * 2**40, D("7.40"))
    assert traffic_projection(server("2025-01-01T00:00:00Z", outgoing=11 * TIB), sin,
                              mid).overage_cost == D("14.80")
    # 10.5 decimal TB project to 21 × 10^12 bytes < 20 TiB: no overage (TB here is 2^40;
    # with 10^12-byte TB this would be 1 TB over).
    dec = traffic_projection(server("2025-01-01T00:00:00Z", outgoing=105 * 10**11), CX33_FSN1,
                             mid)
    assert dec.projected_bytes == 21 * 10**12 and dec.overage_cost == 0
    # Created mid-month: extrapolated over its own lifetime (5 days seen of 20).
    young = traffic_projection(server("2026-11-11T00:00:00Z", outgoing=TIB, included=TIB),
                               CX33_FSN1, mid)
    assert young.included_bytes == TIB  # the server's own value wins
    assert young.projected_bytes == 4 * TIB
    assert young.overage_cost == D("3.00")
    assert traffic_projection(server("2025-01-01T00:00:00Z", outgoing=None), CX33_FSN1,
                              mid).overage_cost == 0


def test_dedicated_price_precedence() -> None:
    by_server = {1: D("40.00")}
    by_product = {"AX42": D("50.00")}
    catalogue = {"AX42": {"fsn1": D("52.00")}, "EX101": {"fsn1": D("94.00"),
                                                         "nbg1": D("96.00")}}
    assert dedicated_price(1, "AX42", "fsn1", by_server, by_product, catalogue) == D("40.00")
    assert dedicated_price(2, "AX42", "fsn1", by_server, by_product, catalogue) == D("50.00")
    assert dedicated_price(3, "EX101", "nbg1", by_server, by_product, catalogue) == D("96.00")
    # A location the catalogue does not list: its cheapest location.
    assert dedicated_price(3, "EX101", "hel1", by_server, by_product, catalogue) == D("94.00")
    assert dedicated_price(4, "Server Auction", "fsn1", by_server, by_product,
                           catalogue) is None
    assert dedicated_price(5, "EX101", "fsn1", by_server, by_product, None) is None
