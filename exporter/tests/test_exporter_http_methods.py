"""HTTP methods on the exporter's endpoints (issue 12, point 5).

Every endpoint is read-only: GET and HEAD answer on every path, any other method on a
known path is a 405 naming the allowed methods in ``Allow`` with a short plain-text body
(not http.server's 501 HTML page), and an unknown path stays a 404.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_exporter.exporter import Exporter
from infrascope_exporter.server import ExporterHTTPServer

PATHS = ("/", "/metrics", "/sd", "/sd/cloud", "/sd/dedicated", "/healthz", "/readyz")


@pytest.fixture
def base(served, make_config):
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter, metrics=False)
    with serving(exporter) as url:
        yield url


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_methods_are_405_with_allow(base: str, method: str) -> None:
    with httpx.Client() as client:
        for path in PATHS:
            response = client.request(method, base + path, content=b'{"x": 1}')
            assert response.status_code == 405, (method, path)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert {"GET", "HEAD"} <= allowed and method not in allowed
            assert response.headers["content-type"].startswith("text/plain")
            assert "<" not in response.text and len(response.content) < 100
            assert "method" in response.text.lower()
        # the connection stays usable (or is closed cleanly): a GET right after works
        assert client.get(base + "/healthz").status_code == 200


def test_an_unknown_path_stays_404_whatever_the_method(base: str) -> None:
    assert httpx.post(base + "/nope").status_code == 404
    assert httpx.get(base + "/nope").status_code == 404


def test_options_lists_the_allowed_methods(base: str) -> None:
    response = httpx.options(base + "/metrics")
    assert response.status_code in (200, 204)
    assert {"GET", "HEAD"} <= {m.strip() for m in response.headers["allow"].split(",")}


def test_unrecognised_methods_get_a_plain_text_answer(base: str) -> None:
    response = httpx.request("BREW", base + "/metrics")
    assert response.status_code in (405, 501)
    assert not response.headers["content-type"].startswith("text/html")
    assert "<" not in response.text


@pytest.mark.parametrize("path", PATHS)
def test_head_works_on_every_get_path(base: str, path: str) -> None:
    get = httpx.get(base + path, headers={"Accept-Encoding": "identity"})
    head = httpx.head(base + path, headers={"Accept-Encoding": "identity"})
    assert get.status_code == head.status_code == 200, path
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    # /metrics: the process series are collected per request, their digits may differ
    assert abs(int(head.headers["content-length"]) - len(get.content)) <= (
        64 if path == "/metrics" else 0)


def test_listens_on_an_ipv6_address(served, make_config) -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.fail("no IPv6 loopback on this machine")
    exporter = Exporter(make_config(demo_config_data(served)))
    http = ExporterHTTPServer(exporter, "::1", 0)
    http.start()
    try:
        assert httpx.get(f"http://[::1]:{http.port}/healthz").status_code == 200
    finally:
        http.stop()
        exporter.stop()
