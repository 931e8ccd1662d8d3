"""The exporter against the simulator's demo fleet: one full refresh, served over HTTP."""

from __future__ import annotations

import httpx

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_exporter.exporter import Exporter


def test_full_refresh_serves_every_server(served, make_config) -> None:
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter)
    with serving(exporter) as base:
        text = httpx.get(base + "/metrics").text
        sd = httpx.get(base + "/sd").json()
    info = [line for line in text.splitlines() if line.startswith("hetzner_server_info{")]
    assert len(info) == 23
    assert len(sd) == 23
    assert 'hetzner_api_up{api="cloud",project="webshop"} 1.0' in text
