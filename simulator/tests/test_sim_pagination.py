"""Pagination, filters, label selectors and errors of the simulated Cloud API."""

from __future__ import annotations

import re

import httpx
import pytest

from infrascope_sim.labelselector import LabelSelectorError, compile_selector, parse

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response.headers.get("link", ""))}


def test_pagination_chain_follows_next_page_to_null(cloud: httpx.Client) -> None:
    seen, page, pages = [], 1, 0
    while page and pages < 20:
        r = cloud.get("/servers", params={"page": page, "per_page": 3})
        assert r.status_code == 200
        meta = r.json()["meta"]["pagination"]
        assert meta["page"] == page and meta["per_page"] == 3
        assert meta["total_entries"] == 13 and meta["last_page"] == 5
        assert meta["previous_page"] == (page - 1 if page > 1 else None)
        seen += [s["name"] for s in r.json()["servers"]]
        page, pages = meta["next_page"], pages + 1
    assert pages == 5
    assert len(seen) == len(set(seen)) == 13


def test_link_header_matches_meta(cloud: httpx.Client) -> None:
    r = cloud.get("/servers", params={"page": 2, "per_page": 3, "sort": "name"})
    rels = links(r)
    assert set(rels) == {"prev", "next", "last"}
    assert "page=1" in rels["prev"] and "page=3" in rels["next"] and "page=5" in rels["last"]
    assert "sort=name" in rels["next"], "links keep the other query parameters"
    # Following the Link header gives the same page as following meta.
    nxt = cloud.get(rels["next"])
    assert nxt.json()["meta"]["pagination"]["page"] == 3
    first = cloud.get("/servers", params={"per_page": 3})
    assert set(links(first)) == {"next", "last"}
    last = cloud.get("/servers", params={"page": 5, "per_page": 3})
    assert set(links(last)) == {"prev", "last"}


def test_default_and_maximum_per_page(cloud: httpx.Client) -> None:
    r = cloud.get("/server_types")
    meta = r.json()["meta"]["pagination"]
    assert meta["per_page"] == 25 and len(r.json()["server_types"]) == 25
    r = cloud.get("/server_types", params={"per_page": 500})
    assert r.json()["meta"]["pagination"]["per_page"] == 50


def test_page_beyond_the_end_is_empty(cloud: httpx.Client) -> None:
    r = cloud.get("/servers", params={"page": 9, "per_page": 5})
    body = r.json()
    assert body["servers"] == []
    assert body["meta"]["pagination"]["next_page"] is None
    assert body["meta"]["pagination"]["last_page"] == 3


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "x"}, {"per_page": "-1"}])
def test_invalid_pagination_is_invalid_input(cloud: httpx.Client, params: dict) -> None:
    r = cloud.get("/servers", params=params)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_input"
    assert set(r.json()["error"]) == {"code", "message", "details"}


def test_projects_see_only_their_servers(served, cloud: httpx.Client) -> None:
    other = httpx.get(served.cloud + "/servers",
                      headers={"Authorization": "Bearer demo-analytics-token"})
    assert {s["name"] for s in other.json()["servers"]} == {"analytics-etl", "analytics-ch",
                                                             "report-batch"}
    assert cloud.get("/servers/41000201").status_code == 404


def test_name_status_and_sort_filters(cloud: httpx.Client) -> None:
    r = cloud.get("/servers", params={"name": "old-jenkins"})
    assert [s["id"] for s in r.json()["servers"]] == [41000108]
    r = cloud.get("/servers", params=[("status", "running"), ("status", "off")])
    assert len(r.json()["servers"]) == 13
    assert cloud.get("/servers", params={"status": "off"}).json()["servers"] == []
    assert cloud.get("/servers", params={"status": "bogus"}).status_code == 400
    names = [s["name"] for s in cloud.get("/servers", params={"sort": "name:desc",
                                                             "per_page": 50}).json()["servers"]]
    assert names == sorted(names, reverse=True)
    assert cloud.get("/servers", params={"sort": "colour"}).status_code == 400


@pytest.mark.parametrize("selector,expected", [
    ("env=staging", {"shop-staging-web", "shop-staging-db", "shop-staging-worker"}),
    ("env==staging,role=db", {"shop-staging-db"}),
    ("env!=production", {"shop-staging-web", "shop-staging-db", "shop-staging-worker",
                         "shop-dev-1"}),
    ("owner", {"shop-dev-1"}),
    ("!role", {"shop-dev-1", "old-jenkins"}),
    ("role in (db,edge)", {"shop-db-1", "shop-staging-db", "shop-us-edge"}),
    ("env=production,role notin (web,worker)", {"shop-db-1", "old-jenkins", "shop-us-edge",
                                                "media-proxy", "search-1", "search-2"}),
    ("project in (ci), env in (production,staging)", {"old-jenkins"}),
])
def test_label_selectors_over_http(cloud: httpx.Client, selector: str, expected: set) -> None:
    r = cloud.get("/servers", params={"label_selector": selector, "per_page": 50})
    assert r.status_code == 200, r.text
    assert {s["name"] for s in r.json()["servers"]} == expected


def test_bad_label_selector_is_invalid_input(cloud: httpx.Client) -> None:
    r = cloud.get("/servers", params={"label_selector": "env in (a,b"})
    assert r.status_code == 400
    assert r.json()["error"]["details"]["fields"][0]["name"] == "label_selector"


def test_label_selector_parser_units() -> None:
    labels = {"env": "prod", "tier": "web", "hetzner.cloud/x": "1"}
    assert compile_selector("env=prod")(labels)
    assert not compile_selector("env=dev")(labels)
    assert compile_selector("missing!=x")(labels)  # absent keys match !=
    assert not compile_selector("missing in (x)")(labels)
    assert compile_selector("missing notin (x)")(labels)
    assert compile_selector("hetzner.cloud/x")(labels)
    assert compile_selector(" env = prod , tier in ( web , api ) ")(labels)
    assert [t.op for t in parse("a,!b,c==1,d!=2,e in (x),f notin (y,z)")] == \
        ["present", "absent", "eq", "ne", "in", "notin"]
    for bad in ["", "a,,b", "a=(b)", "in (a)", "a in a,b", "a in (b))", "=x"]:
        with pytest.raises(LabelSelectorError):
            parse(bad)


def test_unknown_resource_and_id_errors(cloud: httpx.Client) -> None:
    r = cloud.get("/servers/1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert cloud.get("/servers/abc").json()["error"]["code"] == "invalid_input"
    assert cloud.get("/nothing-here").json()["error"]["code"] == "not_found"


def test_servers_have_location_not_datacenter(cloud: httpx.Client) -> None:
    for s in cloud.get("/servers", params={"per_page": 50}).json()["servers"]:
        assert "datacenter" not in s
        assert set(s["location"]) >= {"id", "name", "description", "country", "city",
                                      "latitude", "longitude", "network_zone"}
        assert s["server_type"]["prices"][0]["price_monthly"]["net"].count(".") == 1
        assert isinstance(s["outgoing_traffic"], int) and s["outgoing_traffic"] > 0
        assert s["included_traffic"] > 0


def test_resource_lists(cloud: httpx.Client) -> None:
    vols = cloud.get("/volumes").json()["volumes"]
    assert {v["name"] for v in vols} == {"shop-db-data", "old-export"}
    assert next(v for v in vols if v["name"] == "old-export")["server"] is None
    ips = cloud.get("/primary_ips", params={"per_page": 50}).json()["primary_ips"]
    assert sum(1 for i in ips if i["assignee_id"] is None) == 1
    assert len(ips) == 2 * 13 + 1
    fips = cloud.get("/floating_ips").json()["floating_ips"]
    assert fips[0]["server"] == 41000101
    lbs = cloud.get("/load_balancers").json()["load_balancers"]
    assert [t["server"]["id"] for t in lbs[0]["targets"]] == [41000101, 41000102]
    snaps = cloud.get("/images", params={"type": "snapshot"}).json()["images"]
    assert {i["image_size"] for i in snaps} == {18.4, 9.2}
    backups = cloud.get("/images", params={"type": "backup", "per_page": 50}).json()["images"]
    assert {i["bound_to"] for i in backups} == {41000101, 41000102, 41000103}
    system = cloud.get("/images", params={"type": "system"}).json()["images"]
    assert system and all(i["image_size"] is None for i in system)
