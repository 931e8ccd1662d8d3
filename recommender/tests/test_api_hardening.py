"""The API against hostile or careless clients (one section per fault, in the order of
the README's list).

The body limit is also tested against the real server (``recommender serve`` in a
subprocess on a loopback port): only there does "memory stays flat" mean anything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import service_fixtures as fx
from fastapi.routing import APIRoute

from infrascope_recommender.api import DEFAULT_MAX_REQUEST_BYTES, create_app
from infrascope_recommender.config import ConfigError, Secret, load_config
from infrascope_recommender.model import RECOMMENDATION_ID, recommendation_id
from infrascope_recommender.service import RecommenderService
from infrascope_recommender.state import Store

with warnings.catch_warnings():  # starlette 1.x nags about httpx vs httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MB = 2**20


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db") as s:
        yield s


@pytest.fixture
def service(store: Store) -> RecommenderService:
    service = RecommenderService(store, fx.Runner(fx.run_result()), api_token=Secret(TOKEN),
                                 push_in_background=False)
    service.regenerate()
    return service


@pytest.fixture
def client(service: RecommenderService) -> TestClient:
    return TestClient(create_app(service), raise_server_exceptions=True)


def dismiss_url(rec_id: str | None = None) -> str:
    return f"/api/recommendations/{rec_id or fx.idle().id}/dismiss"


# --- 1. request bodies are limited before parsing and before authentication -------------

def test_a_body_over_the_limit_is_413_before_authentication(client: TestClient,
                                                             store: Store) -> None:
    body = json.dumps({"reason": "x" * DEFAULT_MAX_REQUEST_BYTES}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, AUTH):
        r = client.post(dismiss_url(), content=body,
                        headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 413, (headers, r.status_code)
        assert r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        assert f"at most {DEFAULT_MAX_REQUEST_BYTES} bytes" in detail
        assert "api.max_request_bytes" in detail
        assert len(r.content) < 300
    assert store.get(fx.idle().id).status == "pending"


def test_an_absurd_content_length_is_413_unread(client: TestClient) -> None:
    for length in ("9" * 5000, str(2**64)):
        r = client.post(dismiss_url(), content=b"{}",
                        headers={"Content-Type": "application/json", "Content-Length": length})
        assert r.status_code == 413, r.text


def test_a_chunked_body_is_counted_while_it_streams(client: TestClient) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: the client sends it chunked
        yield b'{"reason": "'
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1024
        yield b'"}'

    r = client.post(dismiss_url(), content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "at most" in r.json()["detail"]


def test_a_chunked_body_within_the_limit_is_read_whole(client: TestClient,
                                                       store: Store) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    r = client.post(dismiss_url(), content=chunks(),
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422  # read whole, parsed, and refused for its length (2000)
    assert r.json()["detail"][0]["loc"] == ["body", "reason"]
    r = client.post(dismiss_url(), content=iter([b'{"reason":', b' "chunked"}']),
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert store.get(fx.idle().id).reason == "chunked"


def test_the_limit_is_configurable_and_a_body_within_it_passes(service: RecommenderService,
                                                               store: Store) -> None:
    client = TestClient(create_app(service, max_request_bytes=1024))
    r = client.post(dismiss_url(), headers=AUTH, json={"reason": "x" * 1100})
    assert r.status_code == 413 and "at most 1024 bytes" in r.json()["detail"]
    r = client.post(dismiss_url(), headers=AUTH, json={"reason": "x" * 900})
    assert r.status_code == 200, r.text
    assert store.get(fx.idle().id).reason == "x" * 900


def test_the_largest_legitimate_request_fits_the_default_limit(client: TestClient) -> None:
    # every field at its maximum length, every character escaped as a surrogate pair: the
    # largest body the models accept (bar insignificant whitespace)
    emoji = "\U0001f600"
    body = json.dumps({"reason": emoji * 1000, "by": emoji * 100,
                       "until": "2030-01-01T00:00:00+00:00"}, ensure_ascii=True).encode()
    assert len(body) > 12_000
    r = client.post(dismiss_url(), content=body,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(body) < DEFAULT_MAX_REQUEST_BYTES / 2


def test_requests_without_a_body_are_untouched(client: TestClient) -> None:
    assert client.post("/api/run", headers=AUTH).status_code == 200
    assert client.get("/api/recommendations").status_code == 200


@pytest.mark.parametrize("value", ["0", "-1", "1k", "true", "[1]", "1023", str(2**40)])
def test_api_max_request_bytes_is_validated(tmp_path: Path, value: str) -> None:
    path = tmp_path / "r.yml"
    path.write_text(f"api:\n  max_request_bytes: {value}\n")
    with pytest.raises(ConfigError, match=r"^api\.max_request_bytes: expected a number"):
        load_config(path, env={})


def test_api_max_request_bytes_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text("api:\n  max_request_bytes: 131072\n")
    assert load_config(path, env={}).api.max_request_bytes == 131072
    assert load_config(None, env={}).api.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES


# -- the real server: memory stays flat

def _vm_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match, field
    return int(match.group(1))


def _post_streamed(port: int, path: str, size: int, *, chunked: bool) -> tuple[int, bytes]:
    """POST ``size`` bytes of a JSON body, generated while sending, and read the answer.

    A raw socket: the server may answer (and close) long before the body is sent, and the
    answer must be read all the same, while a second thread is still writing.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode())
    block = 256 * 1024

    def send_body() -> None:
        first, last = b'{"reason": "', b'"}'

        def send(piece: bytes) -> None:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                         if chunked else piece)

        try:
            send(first)
            left = size - len(first) - len(last)
            while left > 0:
                send(b"x" * min(block, left))
                left -= block
            send(last)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: expected

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while length and len(rest) < int(length.group(1)):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        sender.join(30)
    status = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert status, answer[:200]
    return int(status.group(1)), rest


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """``recommender serve`` on a free loopback port: (pid, port)."""
    tmp_path = tmp_path_factory.mktemp("served")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = s.getsockname()[1]
    config = tmp_path / "recommender.yml"
    config.write_text(f"prometheus:\n  url: http://127.0.0.1:{closed}\n  retries: 0\n"
                      f"state:\n  path: {tmp_path / 'state.db'}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROMETHEUS_", "RECOMMENDER_"))}
    env["RECOMMENDER_API_TOKEN"] = TOKEN
    proc = subprocess.Popen([sys.executable, "-m", "infrascope_recommender", "serve",
                             "--config.file", str(config), "--web.listen-address",
                             f"127.0.0.1:{listen}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        port = int(match.group(1))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while "failed" not in httpx.get(f"{base}/readyz").json()["detail"]:
            assert time.monotonic() < deadline, "the first (failing) run never finished"
            time.sleep(0.1)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_body_without_a_token_leaves_the_servers_memory_flat(
        served: tuple[int, int], chunked: bool) -> None:
    pid, port = served
    path = f"/api/recommendations/{recommendation_id('idle', 'delete', [])}/dismiss"
    # warm up: every code path of a rejected write once, so imports and caches are in
    for _ in range(3):
        assert httpx.post(f"http://127.0.0.1:{port}{path}",
                          json={"reason": "x"}).status_code == 401
    rss_before = _vm_kib(pid, "VmRSS")
    status, body = _post_streamed(port, path, 100 * MB, chunked=chunked)
    rss_after = _vm_kib(pid, "VmRSS")
    peak_after = _vm_kib(pid, "VmHWM")
    print(f"server RSS {rss_before / 1024:.1f} MiB -> {rss_after / 1024:.1f} MiB, "
          f"peak {peak_after / 1024:.1f} MiB")
    assert status == 413, body[:300]
    assert "at most" in json.loads(body)["detail"]
    assert rss_after - rss_before < 4 * 1024, (rss_before, rss_after)
    assert peak_after - rss_before < 8 * 1024, (rss_before, peak_after)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


# --- 2. errors never echo input beyond a short prefix -----------------------------------

def test_a_422_does_not_echo_the_input(client: TestClient) -> None:
    big = "y" * 60_000
    for body in ({"reason": big}, {"reason": "x", "by": big}, {"reason": "x", big: 1},
                 {"reason": "x", "until": big}, {"reason": ["z" * 50_000]}):
        r = client.post(dismiss_url(), headers=AUTH, json=body)
        assert r.status_code == 422, r.text[:300]
        assert len(r.content) < 2000, len(r.content)
        for error in r.json()["detail"]:
            assert {"loc", "msg", "type"} <= set(error)
            assert len(json.dumps(error)) < 1000
    r = client.get("/api/recommendations", params={"project": big[:5000]})
    assert r.status_code == 422 and len(r.content) < 2000


def test_a_422_keeps_a_short_prefix_of_the_input(client: TestClient) -> None:
    r = client.get("/api/recommendations", params={"limit": "abc"})
    error = r.json()["detail"][0]
    assert error["loc"] == ["query", "limit"] and error["input"] == "abc"
    assert "integer" in error["msg"]
    r = client.post(dismiss_url(), headers=AUTH, json={"reason": "x" * 2001})
    error = r.json()["detail"][0]
    assert error["loc"] == ["body", "reason"] and "2000 characters" in error["msg"]
    assert error["input"].startswith("xxxx") and len(error["input"]) < 50
    r = client.post(dismiss_url(), headers={**AUTH, "Content-Type": "application/json"},
                    content=b"{reason")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("body", [b'{"reason": NaN}', b'{"reason": "x", "by": -Infinity}',
                                  b'{"reason": 1e999}'])
def test_a_422_for_nan_or_infinity_is_not_a_500(client: TestClient, body: bytes) -> None:
    # json reads NaN and Infinity; FastAPI's handler echoed them and failed to encode them
    r = client.post(dismiss_url(), content=body,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["input"] in ("nan", "-inf", "inf")


def test_recommendation_ids_have_one_shape() -> None:
    for kind in ("idle", "consolidation", "rightsize"):
        assert RECOMMENDATION_ID.fullmatch(recommendation_id(kind, "delete", []))
    assert RECOMMENDATION_ID.fullmatch(fx.idle().id)


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/accept"),
                                               ("POST", "/dismiss"), ("POST", "/reopen")])
def test_a_long_id_is_not_echoed(client: TestClient, method: str, suffix: str) -> None:
    long_id = "rec-" + "a" * 60_000  # httpx refuses URLs over 64 KiB
    r = client.request(method, f"/api/recommendations/{long_id}{suffix}", headers=AUTH,
                       json={"reason": "x"} if suffix == "/dismiss" else None)
    assert r.status_code == 404, r.text[:300]
    assert len(r.content) < 300 and "a" * 20 not in r.text
    assert "rec-" in r.json()["detail"]  # says what an id looks like


def test_a_long_server_id_is_not_echoed(client: TestClient) -> None:
    r = client.get("/api/servers/cloud/" + "9" * 60_000)
    assert r.status_code in (404, 422)
    assert len(r.content) < 1000 and "9" * 50 not in r.text
    r = client.get("/api/servers/cloud/999")
    assert r.status_code == 404 and r.json() == {"detail": "no server cloud/999 in the last run"}


# --- 3. control characters in decision texts ---------------------------------------------

BAD_TEXTS = ["DR\x00standby", "DR standby\n", "line one\nline two", "tab\tseparated",
             "carriage\rreturn", "escape \x1b[31mred", "bidi \u202eevil", "zero\u200bwidth",
             "line\u2028separator", "del\x7f"]


@pytest.mark.parametrize("text", BAD_TEXTS, ids=[repr(t) for t in BAD_TEXTS])
def test_control_characters_are_rejected_in_a_dismiss_reason(client: TestClient,
                                                             store: Store, text: str) -> None:
    r = client.post(dismiss_url(), headers=AUTH, json={"reason": text})
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"] == ["body", "reason"]
    assert "control" in error["msg"] and "U+" in error["msg"]
    assert store.get(fx.idle().id).status == "pending"
    assert store.get(fx.idle().id).reason is None


@pytest.mark.parametrize(("suffix", "field"), [("/accept", "note"), ("/accept", "by"),
                                               ("/dismiss", "by"), ("/reopen", "note")])
def test_control_characters_are_rejected_in_notes_and_names(
        client: TestClient, store: Store, suffix: str, field: str) -> None:
    rec_id = fx.idle().id
    if suffix == "/reopen":
        client.post(dismiss_url(), headers=AUTH, json={"reason": "x"})
    before = store.get(rec_id).status
    body: dict[str, Any] = {field: "a\x00b"}
    if suffix == "/dismiss":
        body["reason"] = "fine"
    r = client.post(f"/api/recommendations/{rec_id}{suffix}", headers=AUTH, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", field]
    assert store.get(rec_id).status == before


def test_plain_text_with_spaces_and_unicode_is_kept(client: TestClient, store: Store) -> None:
    text = "DR standby — Größe 10 % 👍, ask Zoë"
    r = client.post(dismiss_url(), headers=AUTH, json={"reason": f"  {text} "})
    assert r.status_code == 200, r.text
    assert store.get(fx.idle().id).reason == text


# --- 4. the interactive docs work offline ------------------------------------------------

EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not EXTERNAL.search(html), EXTERNAL.findall(html)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/") for a in assets), assets
    kinds = {"js": ("text/javascript", "application/javascript"), "css": ("text/css",),
             "png": ("image/png",)}
    for asset in assets:
        a = client.get(asset)
        assert a.status_code == 200, asset
        assert a.headers["content-type"].split(";")[0] in kinds[asset.rsplit(".", 1)[1]]
        assert len(a.content) > 500
    assert "/openapi.json" in html


def test_swagger_ui_is_a_version_that_reads_openapi_3_1(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    html = client.get("/docs").text
    bundle = re.search(r'src="([^"]+swagger-ui-bundle\.js)"', html)
    assert bundle
    js = client.get(bundle.group(1)).text
    assert "OpenAPI 3.1" in js or "openapi: 3.1" in js.lower() or "isOAS31" in js


def test_vendored_assets_keep_their_licenses() -> None:
    import infrascope_recommender

    static = Path(infrascope_recommender.__file__).parent / "static"
    for folder in ("swagger-ui", "redoc"):
        assert (static / folder / "LICENSE").is_file(), folder
        assert any((static / folder).glob("*.js")), folder


def test_the_assets_are_package_data() -> None:
    # the Dockerfile and the install script `pip install .`: a file that is not package
    # data is missing there while every test here (an editable install) still passes
    import fnmatch
    import tomllib

    from infrascope_recommender.api_docs import ASSETS, STATIC

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["infrascope_recommender"]
    files = [f"static/{relative}" for relative, _ in ASSETS.values()]
    files += [str(p.relative_to(STATIC.parent)) for p in STATIC.glob("*/LICENSE*")]
    assert len(files) > len(ASSETS)
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_unknown_assets_are_404(client: TestClient) -> None:
    assert client.get("/docs/assets/nope.js").status_code == 404
    assert client.get("/docs/assets/..%2F..%2Fapi.py").status_code == 404
    assert client.get("/docs/assets/LICENSE").status_code == 404


# --- 5. HEAD and 405 ------------------------------------------------------------------------

def _get_paths(client: TestClient) -> list[str]:
    app: Any = client.app
    paths = []
    for route in app.routes:
        if isinstance(route, APIRoute) and "GET" in route.methods and "{" not in route.path:
            paths.append(route.path)
    return paths


def test_head_answers_every_get_endpoint(client: TestClient) -> None:
    paths = _get_paths(client)
    for expected in ("/metrics", "/readyz", "/healthz", "/report", "/", "/api/summary",
                     "/api/recommendations", "/api/servers", "/api/costs", "/docs"):
        assert expected in paths
    paths += [f"/api/recommendations/{fx.idle().id}", "/api/servers/cloud/101",
              "/openapi.json"]
    for path in paths:
        get = client.get(path)
        head = client.head(path)
        assert head.status_code == get.status_code, (path, head.status_code)
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert head.content == b"", path
    assert client.head("/api/recommendations/rec-0000000000000000").status_code == 404


def test_a_100_000_character_id_through_the_real_server(served: tuple[int, int]) -> None:
    _, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET /api/recommendations/rec-{'a' * 100_000} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    assert len(answer) < 400 and b"a" * 20 not in answer


def test_head_on_metrics_through_the_real_server(served: tuple[int, int]) -> None:
    _, port = served
    r = httpx.head(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.content == b""
    assert int(r.headers["content-length"]) > 0


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/metrics", "GET, HEAD"), ("DELETE", "/api/recommendations", "GET, HEAD"),
    ("PUT", "/healthz", "GET, HEAD"), ("GET", "/api/run", "POST"),
    ("DELETE", f"/api/recommendations/{fx.idle().id}/dismiss", "POST"),
    ("HEAD", "/api/run", "POST"), ("POST", "/docs", "GET, HEAD"),
])
def test_wrong_methods_are_405_with_allow(client: TestClient, method: str, path: str,
                                          allow: str) -> None:
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    if method != "HEAD":
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"detail": "Method Not Allowed"}
