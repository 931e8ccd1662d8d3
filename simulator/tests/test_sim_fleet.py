"""Fleet files, the built-in demo fleet, generated fleets and the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml

from infrascope_sim.catalogue import SERVER_TYPES, pricing_document
from infrascope_sim.fleet import FleetError, load_fleet, load_fleet_data

SIM = [sys.executable, "-m", "infrascope_sim"]


def test_demo_fleet_is_what_the_issue_describes(demo_fleet) -> None:
    cloud = demo_fleet.cloud_servers
    dedicated = demo_fleet.robot.servers
    assert len(cloud) == 16 and len(dedicated) == 7
    assert len(demo_fleet.projects) == 2
    for s in cloud:
        assert {"env", "project"} <= set(s.labels), s.name
    assert {s.labels["env"] for s in cloud} == {"production", "staging", "dev"}
    assert all(d.monthly_price_net is not None for d in dedicated)
    assert any(d.product == "Server Auction" for d in dedicated)
    by_name = {s.name: s for s in cloud}
    assert by_name["old-jenkins"].workload.profile == "idle"
    assert by_name["shop-db-1"].primary_disk_size < by_name["shop-db-1"].server_type.disk_gb
    current = {s.server_type.name for s in cloud if not s.server_type.legacy}
    assert {"cx33", "ccx33", "cax21", "cpx22"} <= current
    # the stories of issue 14: a busy proxy, a nightly batch box, an HA pair
    proxy = by_name["media-proxy"].workload
    assert proxy.params.cpu_peak <= 0.02 and proxy.outgoing_bytes(0, 30 * 86_400) > 10**13
    batch = by_name["report-batch"]
    assert (batch.workload.params.pattern, batch.workload.params.job_hours) == ("nightly", 1)
    assert batch.workload.params.cpu_peak * batch.server_type.cores > 6
    groups = {g.id: g for p in demo_fleet.projects for g in p.placement_groups}
    pair = [by_name["search-1"], by_name["search-2"]]
    assert pair[0].placement_group == pair[1].placement_group is not None
    assert groups[pair[0].placement_group].type == "spread"


def test_prices_are_decimal_strings_and_hourly_is_capped_by_monthly() -> None:
    doc = pricing_document()["pricing"]
    assert doc["currency"] == "EUR" and doc["server_backup"]["percentage"] == "20"
    for t in doc["server_types"]:
        for p in t["prices"]:
            monthly = Decimal(p["price_monthly"]["net"])
            hourly = Decimal(p["price_hourly"]["net"])
            assert p["price_monthly"]["net"].split(".")[1].__len__() == 10
            # Hetzner bills min(hours * hourly, monthly): the cap is reached within a month.
            assert hourly * 672 >= monthly >= hourly * 600
            assert Decimal(p["price_monthly"]["gross"]) == (monthly * Decimal("1.19")).quantize(
                Decimal("0.0000000001"))
    cx23 = SERVER_TYPES["cx23"]
    assert set(cx23.locations) == {"fsn1", "nbg1", "hel1"}
    assert SERVER_TYPES["cpx22"].monthly_net("ash") > SERVER_TYPES["cpx22"].monthly_net("fsn1")


@pytest.mark.parametrize("data,message", [
    ({"cloud": {"projects": [{"name": "p"}]}}, "cloud.projects[0]: missing required key 'token'"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [{"name": "a"}]}]}},
     "cloud.projects[0].servers[0]: missing required key 'type'"),
    ({"cloud": {"projects": [{"name": "p", "token": "t",
                              "servers": [{"name": "a", "type": "cx99"}]}]}},
     "servers[0].type: unknown server type 'cx99'"),
    ({"cloud": {"projects": [{"name": "p", "token": "t",
                              "servers": [{"name": "a", "type": "cx23", "location": "ash"}]}]}},
     "cx23 is not offered in ash"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"name": "a", "type": "cx23", "workload": {"profile": "nope"}}]}]}},
     "unknown workload profile 'nope'"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"name": "a", "type": "cx23", "workload": {"cpu_max": 1}}]}]}},
     "unknown workload keys ['cpu_max']"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"name": "a", "type": "cx23", "labels": {"hetzner.cloud/x": "1"}}]}]}},
     "invalid label key"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"name": "a", "type": "cx23"}, {"name": "a", "type": "cx23"}]}]}},
     "duplicate server name 'a'"),
    ({"robot": {"user": "u", "password": "p", "servers": [{"name": "x", "product": "ZZ1"}]}},
     "product 'ZZ1' is not in the catalogue"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "servers": [
        {"name": "a", "type": "cx23", "placement_group": "db-spread"}]}]}},
     "servers[0].placement_group: no placement group named 'db-spread' in project p"),
    ({"cloud": {"projects": [
        {"name": "p", "token": "t", "placement_groups": [{"name": "db-spread"}]},
        {"name": "q", "token": "u", "servers": [
            {"name": "a", "type": "cx23", "placement_group": "db-spread"}]}]}},
     "cloud.projects[1].servers[0].placement_group: no placement group named 'db-spread' "
     "in project q"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "placement_groups": [
        {"name": "g", "type": "cluster"}]}]}},
     "placement_groups[0].type: 'cluster' is not a placement group type (spread)"),
    ({"cloud": {"projects": [{"name": "p", "token": "t", "placement_groups": [
        {"name": "g"}, {"name": "g"}]}]}},
     "placement_groups[1].name: duplicate placement group name 'g'"),
    ({"cloud": {"projects": [{"name": "p", "token": "t",
                              "placement_groups": [{"type": "spread"}]}]}},
     "cloud.projects[0].placement_groups[0]: missing required key 'name'"),
])
def test_bad_fleet_files_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(FleetError) as err:
        load_fleet_data(data)
    assert message in str(err.value)


def test_placement_groups_of_a_fleet_file() -> None:
    fleet = load_fleet_data({"cloud": {"projects": [{
        "name": "p", "token": "t",
        "placement_groups": [{"name": "db-spread", "labels": {"role": "db"}},
                             {"name": "spare", "id": 77, "type": "spread"}],
        "servers": [{"name": "db-a", "type": "cx23", "placement_group": "db-spread"},
                    {"name": "web", "type": "cx23"},
                    {"name": "db-b", "type": "cx23", "placement_group": "db-spread"}],
    }]}})
    [project] = fleet.projects
    db, spare = project.placement_groups
    assert (db.name, db.type, db.labels, spare.id) == ("db-spread", "spread", {"role": "db"}, 77)
    servers = {s.name: s for s in project.servers}
    assert db.server_ids == [servers["db-a"].id, servers["db-b"].id] and spare.server_ids == []
    assert servers["db-a"].placement_group == servers["db-b"].placement_group == db.id
    assert servers["web"].placement_group is None
    assert project.placement_group(db.id) is db and project.placement_group(None) is None


def test_generated_fleet_is_deterministic_and_sized() -> None:
    a, b = load_fleet("generated:1000"), load_fleet("generated:1000:4")
    assert len(a.cloud_servers) == 900 and len(a.robot.servers) == 100
    assert len(b.projects) == 4 and len(b.cloud_servers) == 900
    again = load_fleet("generated:1000")
    assert [s.workload.seed for s in a.cloud_servers] == \
        [s.workload.seed for s in again.cloud_servers]
    with pytest.raises(FleetError):
        load_fleet("generated:x")
    with pytest.raises(FleetError):
        load_fleet("/no/such/file.yaml")


def test_fleet_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"cloud": {"projects": [
        {"name": "p", "token": "t", "servers": [{"name": "a", "type": "cax11"}]}]}}))
    fleet = load_fleet(str(path))
    assert fleet.name == "mine" and fleet.cloud_servers[0].server_type.architecture == "arm"
    out = subprocess.run(SIM + ["fleet", "--fleet", str(path), "--format", "json"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert '"name": "a"' in out.stdout


def test_cli_rejects_bad_input_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cloud: {projects: [{name: p}]}\n")
    r = subprocess.run(SIM + ["serve", "--fleet", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "missing required key 'token'" in r.stderr
    r = subprocess.run(SIM + ["serve", "--fault", "kind=explode"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "unknown fault kind" in r.stderr


def test_cli_serves_and_stops() -> None:
    proc = subprocess.Popen(SIM + ["serve", "--fleet", "demo", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        deadline = time.monotonic() + 30
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "HCLOUD_ENDPOINT=" in line:
                endpoint = line.split("HCLOUD_ENDPOINT=")[1].split()[0]
        assert endpoint, proc.stderr.read() if proc.poll() is not None else "no endpoint"
        r = httpx.get(endpoint + "/servers", headers={"Authorization": "Bearer demo-webshop-token"})
        assert r.status_code == 200 and len(r.json()["servers"]) == 13
        landing = httpx.get(endpoint.removesuffix("/v1") + "/")
        assert "simulator" in landing.text and "demo-webshop-token" not in landing.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode in (0, -15)
