"""PrometheusClient against real loopback HTTP(S) servers of the test's own."""

from __future__ import annotations

import base64
import gzip
import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rules_fixtures import FakePrometheus, Reply, Request, error, ok, sample

from infrascope_core.service import free_port
from infrascope_recommender.config import PrometheusSettings, Secret, TLSSettings
from infrascope_recommender.promql import (
    PrometheusClient,
    PrometheusError,
    QueryCancelled,
    display_url,
)

TOKEN = "tok-3f9a-very-secret"
VECTOR = [sample("up", "1", job="hetzner", instance="exporter:8790")]


def settings(url: str, **kwargs: Any) -> PrometheusSettings:
    kwargs.setdefault("backoff_seconds", 0.01)
    kwargs.setdefault("timeout_seconds", 5.0)
    return PrometheusSettings(url=url, **kwargs)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def scripted(*replies: Reply) -> FakePrometheus:
    """Answer the n-th request with the n-th reply (the last one repeats)."""
    queue = list(replies)

    def handler(request: Request) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return FakePrometheus(handler)


def test_instant_query_posts_form_and_returns_the_vector() -> None:
    with scripted(ok(VECTOR)).running() as fake, \
            PrometheusClient(settings(fake.url)) as client:
        result = client.query('up{job="hetzner"}', at=1_760_000_000.5)
    assert result == VECTOR
    assert client.queries == 1 and client.attempts == 1
    [request] = fake.requests
    assert request.method == "POST" and request.path == "/api/v1/query"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form["query"] == 'up{job="hetzner"}'
    assert request.form["time"] == "1760000000.5"
    assert request.form["timeout"] == "5"


def test_range_query_and_base_path() -> None:
    matrix = [{"metric": {}, "values": [[1, "2"], [2, "3"]]}]
    with scripted(ok(matrix, "matrix")).running() as fake, \
            PrometheusClient(settings(fake.url + "/prometheus/")) as client:
        assert client.query_range("x", 100.0, 200.0, 10.0) == matrix
    [request] = fake.requests
    assert request.path == "/prometheus/api/v1/query_range"
    assert (request.form["start"], request.form["end"], request.form["step"]) == \
        ("100", "200", "10")


def test_scalar_result_is_one_unlabelled_sample() -> None:
    with scripted(ok([1, "42"], "scalar")).running() as fake, \
            PrometheusClient(settings(fake.url)) as client:
        assert client.query("42") == [{"metric": {}, "value": [1, "42"]}]


def test_bearer_token_and_extra_headers_are_sent() -> None:
    with scripted(ok([])).running() as fake, PrometheusClient(settings(
            fake.url, bearer_token=Secret(TOKEN),
            headers={"X-Scope-OrgID": "tenant-1"})) as client:
        client.query("up")
    headers = fake.requests[0].headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Scope-OrgID"] == "tenant-1"


@pytest.mark.parametrize(("compression", "encoding"), [(False, "identity"), (True, "gzip")])
def test_compression_is_asked_for_only_when_configured(compression: bool,
                                                      encoding: str) -> None:
    """Off by default: gzip costs Prometheus more CPU than a fast link saves."""
    def handler(request: Request) -> Reply:
        status, headers, body = ok(VECTOR)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return status, {**headers, "Content-Encoding": "gzip"}, gzip.compress(body)
        return status, headers, body

    with FakePrometheus(handler).running() as fake, \
            PrometheusClient(settings(fake.url, compression=compression)) as client:
        assert client.query("up") == VECTOR
    assert fake.requests[0].headers["Accept-Encoding"] == encoding
    assert PrometheusSettings().compression is False


def test_basic_auth_is_sent() -> None:
    with scripted(ok([])).running() as fake, PrometheusClient(settings(
            fake.url, basic_auth_user="reader",
            basic_auth_password=Secret("pw-1"))) as client:
        client.query("up")
    expected = "Basic " + base64.b64encode(b"reader:pw-1").decode()
    assert fake.requests[0].headers["Authorization"] == expected


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_status_is_retried_then_succeeds(status: int) -> None:
    sleeps = Sleeps()
    with scripted((status, {}, b"busy"), ok(VECTOR)).running() as fake, \
            PrometheusClient(settings(fake.url, backoff_seconds=0.2), sleep=sleeps) as client:
        assert client.query("up") == VECTOR
    assert len(fake.requests) == 2
    assert client.queries == 1 and client.attempts == 2
    assert len(sleeps.delays) == 1 and 0.2 <= sleeps.delays[0] <= 0.22  # base + <=10 % jitter


def test_backoff_doubles_and_gives_up_naming_the_status() -> None:
    sleeps = Sleeps()
    with scripted((503, {}, b"overloaded, try later")).running() as fake, \
            PrometheusClient(settings(fake.url, retries=3, backoff_seconds=0.1),
                             sleep=sleeps) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up")
    assert len(fake.requests) == 4 and client.attempts == 4 and client.queries == 1
    assert [round(d, 1) for d in sleeps.delays] == [0.1, 0.2, 0.4]
    assert all(base <= d <= base * 1.1 for d, base in zip(sleeps.delays, [0.1, 0.2, 0.4],
                                                          strict=True))
    message = str(info.value)
    assert message == (f"Prometheus at {fake.url}/api/v1/query: HTTP 503: overloaded, try later"
                       " (after 4 attempts over 0.0 s)")  # the sleeps were not real
    assert info.value.status == 503


def test_retry_after_is_honoured_with_a_cap() -> None:
    sleeps = Sleeps()
    with scripted((429, {"Retry-After": "2"}, b""), ok([])).running() as fake, \
            PrometheusClient(settings(fake.url, backoff_seconds=0.1), sleep=sleeps) as client:
        client.query("up")
    assert 2.0 <= sleeps.delays[0] <= 2.2
    sleeps.delays.clear()
    with scripted((429, {"Retry-After": "3600"}, b""), ok([])).running() as fake, \
            PrometheusClient(settings(fake.url, backoff_seconds=0.1), sleep=sleeps) as client:
        client.query("up")
    assert 30.0 <= sleeps.delays[0] <= 33.0


@pytest.mark.parametrize("status", [400, 422])
def test_bad_query_is_not_retried(status: int) -> None:
    sleeps = Sleeps()
    reply = error(status, "bad_data", 'invalid parameter "query": 1:4: parse error')
    with scripted(reply, ok([])).running() as fake, \
            PrometheusClient(settings(fake.url), sleep=sleeps) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up{")
    assert len(fake.requests) == 1 and sleeps.delays == []
    assert str(info.value) == (
        f"Prometheus at {fake.url}/api/v1/query: HTTP {status}, status=error "
        'errorType=bad_data: invalid parameter "query": 1:4: parse error (query: up{)')


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_not_retried(status: int) -> None:
    with scripted((status, {}, b"unauthorized"), ok([])).running() as fake, \
            PrometheusClient(settings(fake.url, bearer_token=Secret(TOKEN))) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up")
    assert len(fake.requests) == 1
    assert str(info.value) == (f"Prometheus at {fake.url}/api/v1/query: "
                               f"credentials rejected (HTTP {status})")


def test_status_error_in_a_200_response() -> None:
    body = (200, {}, b'{"status":"error","errorType":"execution","error":"too many samples"}')
    with scripted(body).running() as fake, PrometheusClient(settings(fake.url)) as client:
        with pytest.raises(PrometheusError, match="status=error errorType=execution: "
                                                  "too many samples"):
            client.query("up")


@pytest.mark.parametrize("payload", [b"<html>not json</html>", b'{"status": "success"}',
                                     b"[1, 2]", b'{"status":"success","data":{"result":[1]}}'])
def test_malformed_json(payload: bytes) -> None:
    with scripted((200, {}, payload)).running() as fake, \
            PrometheusClient(settings(fake.url)) as client:
        with pytest.raises(PrometheusError, match="malformed JSON") as info:
            client.query("up")
    assert str(info.value).startswith(f"Prometheus at {fake.url}/api/v1/query: ")
    assert len(fake.requests) == 1  # not retried


def test_unreachable_port_is_retried_then_names_url_and_failure() -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}"
    with PrometheusClient(settings(url, retries=2, bearer_token=Secret(TOKEN)),
                          sleep=sleeps) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up")
    assert str(info.value) == (f"Prometheus at {url}/api/v1/query unreachable after 3 "
                               "attempts over 0.0 s: connection refused")
    assert client.attempts == 3 and len(sleeps.delays) == 2
    assert TOKEN not in str(info.value)


def test_retries_are_quiet_debug_lines_and_one_summary(
        caplog: pytest.LogCaptureFixture) -> None:
    """One DEBUG line per failed attempt, nothing at WARNING: the error is the summary."""
    caplog.set_level(logging.DEBUG, logger="infrascope_recommender")
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with PrometheusClient(settings(url, retries=3, backoff_seconds=0.05)) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up")
    elapsed = time.monotonic() - started
    ours = [r for r in caplog.records if r.name.startswith("infrascope_recommender")]
    assert [r.levelno for r in ours] == [logging.DEBUG] * 4
    assert [r.getMessage() for r in ours] == [
        f"Prometheus at {url}/api/v1/query: attempt {n} of 4 failed: connection refused; "
        + ("retrying" if n < 4 else "giving up") for n in range(1, 5)]
    m = re.fullmatch(rf"Prometheus at {re.escape(url)}/api/v1/query unreachable after 4 "
                     r"attempts over (\d+\.\d) s: connection refused", str(info.value))
    assert m is not None, str(info.value)
    # the time from the first attempt to giving up: the backoff (0.05 + 0.1 + 0.2 s, plus
    # up to 10 % jitter) and the attempts, within what the caller measured around it
    assert 0.3 <= float(m.group(1)) <= elapsed + 0.05


def test_a_cancelled_batch_stops_retrying() -> None:
    """With a shared ``cancel`` event set (another query of the batch gave up), a query
    makes no further attempt and waits for no backoff."""
    url = f"http://127.0.0.1:{free_port()}"
    cancel = threading.Event()
    with PrometheusClient(settings(url, retries=5, backoff_seconds=10)) as client:
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(QueryCancelled):
            client.query("up", cancel=cancel)
        assert time.monotonic() - started < 2.0  # not the 10 s backoff
        assert client.attempts == 1
        with pytest.raises(QueryCancelled):  # set before the first attempt: none is made
            client.query("up", cancel=cancel)
        assert client.attempts == 1


def test_timeout_is_bounded() -> None:
    release = threading.Event()

    def slow(request: Request) -> Reply:
        release.wait(5)
        return ok([])

    fake = FakePrometheus(slow)
    with fake.running():
        started = time.monotonic()
        with PrometheusClient(settings(fake.url, timeout_seconds=0.3, retries=1)) as client:
            with pytest.raises(PrometheusError) as info:
                client.query("up")
        elapsed = time.monotonic() - started
        release.set()
    assert re.fullmatch(rf"Prometheus at {re.escape(fake.url)}/api/v1/query unreachable after "
                        r"2 attempts over 0\.[6-9] s: timed out after 0\.3s", str(info.value))
    assert elapsed < 2.0
    assert client.attempts == 2


def test_secrets_never_appear_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url_with_userinfo_port = free_port()
    failures: list[str] = []
    for reply in [(503, {}, b"x"), (401, {}, b"x"), error(400, "bad_data", "nope"),
                  (200, {}, b"garbage")]:
        with scripted(reply).running() as fake, PrometheusClient(settings(
                fake.url, retries=1, bearer_token=Secret(TOKEN))) as client:
            with pytest.raises(PrometheusError) as info:
                client.query("up")
            failures.append(str(info.value))
    url = f"http://user:{TOKEN}@127.0.0.1:{url_with_userinfo_port}"
    with PrometheusClient(settings(url, retries=1, basic_auth_user="u",
                                   basic_auth_password=Secret(TOKEN))) as client:
        with pytest.raises(PrometheusError) as info:
            client.query("up")
        failures.append(str(info.value))
    assert f"127.0.0.1:{url_with_userinfo_port}/api/v1/query" in failures[-1]
    for text in failures + [r.getMessage() for r in caplog.records]:
        assert TOKEN not in text


def test_display_url_strips_userinfo() -> None:
    assert display_url("https://a:b@prom.example:9090/x") == "https://prom.example:9090/x"
    assert display_url("http://prom:9090") == "http://prom:9090"


def test_warnings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = (200, {}, b'{"status":"success","warnings":["partial response"],'
                     b'"data":{"resultType":"vector","result":[]}}')
    with scripted(body).running() as fake, PrometheusClient(settings(fake.url)) as client:
        assert client.query("up") == []
    assert any("partial response" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- TLS

def _openssl(cwd: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl CLI"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san, eku in [("server", "IP:127.0.0.1", "serverAuth"),
                           ("client", "DNS:client", "clientAuth")]:
        (d / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={eku}\nsubjectAltName={san}\n")
        _openssl(d, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                 f"/CN={name}")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile",
                 f"{name}.ext")
    return d


class _TLSHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        cn = dict(x[0] for x in peer["subject"])["commonName"] if peer else ""
        _, _, payload = ok([sample("client", "1", cn=cn)])
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def https_url(pki: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TLSHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_tls_ca_file_and_client_certificate(pki: Path, https_url: str) -> None:
    tls = TLSSettings(ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"),
                      key_file=str(pki / "client.key"))
    with PrometheusClient(settings(https_url, tls=tls)) as client:
        [result] = client.query("up")
    assert result["metric"]["cn"] == "client"


def test_tls_unknown_ca_fails_and_insecure_skips_verification(https_url: str) -> None:
    with PrometheusClient(settings(https_url, retries=0)) as client:
        with pytest.raises(PrometheusError, match="CERTIFICATE_VERIFY_FAILED") as info:
            client.query("up")
    assert str(info.value).startswith(f"Prometheus at {https_url}/api/v1/query: ")
    insecure = TLSSettings(insecure_skip_verify=True)
    with PrometheusClient(settings(https_url, tls=insecure)) as client:
        [result] = client.query("up")
    assert result["metric"]["cn"] == ""
