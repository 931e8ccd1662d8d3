"""A 10,000-server generated fleet lists completely (timing lives in bench/)."""

from __future__ import annotations

import httpx

from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import running
from infrascope_sim.state import Simulator


def test_ten_thousand_servers_list_completely() -> None:
    fleet = load_fleet("generated:10000")
    with running(Simulator(fleet)) as ep, httpx.Client(
            base_url=ep.cloud, timeout=30,
            headers={"Authorization": "Bearer generated-token-0"}) as client:
        ids, page, pages = [], 1, 0
        while page and pages < 1000:
            body = client.get("/servers", params={"page": page, "per_page": 50}).json()
            ids += [s["id"] for s in body["servers"]]
            page, pages = body["meta"]["pagination"]["next_page"], pages + 1
        robot = httpx.get(ep.robot + "/server", auth=("#ws+generated", "generated-robot-password"),
                          timeout=30).json()
    assert pages == 180
    assert len(ids) == len(set(ids)) == 9000
    assert {s.id for s in fleet.cloud_servers} == set(ids)
    assert len(robot) == 1000
