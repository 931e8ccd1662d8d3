"""--web.config.file: exporter-toolkit TLS and basic auth, with real TLS clients.

Certificates come from the ``openssl`` CLI (a CA, a server certificate for
127.0.0.1, client certificates from that CA and from another one); every
case runs a real AgentServer on 127.0.0.1:0 and talks to it with Python's
ssl / http.client.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.registry import CollectorRegistry

from infrascope_agent import webconfig
from infrascope_agent.cli import main
from infrascope_agent.collectors import build
from infrascope_agent.registry import COLLECTORS, Registry, Settings
from infrascope_agent.web import AgentServer
from infrascope_agent.webconfig import WebConfigError, parse_web_config, parse_yaml

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI")

PASSWORD = "s3cret-scrape-pw"
WRONG = "not-the-password"


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    dir: Path

    def crt(self, name: str) -> str:
        return str(self.dir / f"{name}.crt")

    def key(self, name: str) -> str:
        return str(self.dir / f"{name}.key")


def _openssl(cwd: Path, *args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> None:
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _issue(d: Path, name: str, ca: str, san: str, eku: str) -> None:
    (d / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={eku}\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl(d, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL is None:
        pytest.skip("needs the openssl CLI")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _issue(d, "server", "ca", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    _issue(d, "client", "ca", "DNS:prometheus.example,URI:spiffe://example/prometheus,"
           "IP:::1", "clientAuth")
    _issue(d, "client2", "ca", "DNS:intruder.example", "clientAuth")
    _issue(d, "rogue", "other-ca", "DNS:prometheus.example", "clientAuth")
    _openssl(d, "pkey", "-in", "server.key", "-aes256", "-passout", "pass:pw",
             "-out", "encrypted.key")
    (d / "garbage.crt").write_text("hello, not a certificate\n")
    return Pki(d)


def _hash(password: str, cost: int = 4, prefix: str = "$2b$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return prefix + hashed[4:]


# --------------------------------------------------------------------------- helpers


def _registry() -> CollectorRegistry:
    settings = Settings()
    collectors = build(settings, {name: name in ("cpu", "meminfo") for name in COLLECTORS})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Registry(collectors, timeout=5))
    return registry


@contextlib.contextmanager
def serve(tmp_path: Path, config: str) -> Iterator[AgentServer]:
    path = tmp_path / "web-config.yml"
    path.write_text(config)
    server = AgentServer(_registry(), "127.0.0.1", 0, "/metrics", str(path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tls_config(pki: Pki, extra: str = "", client_auth: str | None = None) -> str:
    text = (f"tls_server_config:\n  cert_file: {pki.crt('server')}\n"
            f"  key_file: {pki.key('server')}\n")
    if client_auth:
        text += f"  client_auth_type: {client_auth}\n  client_ca_file: {pki.crt('ca')}\n"
    return text + extra


def client_ctx(pki: Pki, cert: str | None = None,
               max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.crt("ca"))
    if cert:
        ctx.load_cert_chain(pki.crt(cert), pki.key(cert))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def get(port: int, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
        path: str = "/metrics") -> tuple[int, http.client.HTTPMessage, bytes]:
    if ctx is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=ctx, timeout=15)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- YAML


def test_yaml_reads_what_web_configs_use() -> None:
    doc = parse_yaml(
        "---\n# comment\ntls_server_config:\n  cert_file: a.crt  # trailing comment\n"
        "  key_file: \"b.key\"\n  cipher_suites:\n  - TLS_A\n  - 'TLS_B'\n"
        "  client_allowed_sans: [a, \"b c\", ]\n  cert: |\n    -----BEGIN X-----\n    ab#c\n\n"
        "    -----END X-----\n  # comment after the block\nhttp_server_config: {}\n"
        "basic_auth_users:\n  alice: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n"
        "  'bob smith': x\nempty:\n")
    assert doc == {
        "tls_server_config": {
            "cert_file": "a.crt", "key_file": "b.key", "cipher_suites": ["TLS_A", "TLS_B"],
            "client_allowed_sans": ["a", "b c"],
            "cert": "-----BEGIN X-----\nab#c\n\n-----END X-----\n"},
        "http_server_config": {},
        "basic_auth_users": {
            "alice": "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG",
            "bob smith": "x"},
        "empty": None,
    }
    assert parse_yaml("") is None
    assert parse_yaml("# only a comment\n") is None
    assert parse_yaml('a: "x\\ty\\u00e9"\nb: \'it\'\'s\'\n') == {"a": "x\tyé", "b": "it's"}
    assert parse_yaml("f: >-\n  a\n  b\n\n  c\n") == {"f": "a b\nc"}
    # scalars stay text, as Go's yaml.v2 reads them into string fields; the schema converts
    assert parse_yaml("a: true\nb: 10\nc: ~\nd: null\n123: 'null'\ne: &x v\nf: *x\n") == {
        "a": "true", "b": "10", "c": None, "d": None, "123": "null", "e": "v", "f": "v"}


@pytest.mark.parametrize("text, message", [
    ("a: b\n  c: d\n", "line 2: mapping values are not allowed here"),
    ("a: [1, 2\n", r"line 2: .*\(while parsing a flow sequence from line 1\)"),
    ("a: 1\na: 2\n", "line 2: duplicate key 'a'"),
    ("{a: 1, a: 2}\n", "line 1: duplicate key 'a'"),
    ('a: "x\n', r"line 2: .*\(while scanning a quoted scalar from line 1\)"),
    ("a:\n\t- x\n", "line 2: found character '\\\\t'"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    ("a: !foo x\n", "line 1: could not determine a constructor for the tag '!foo'"),
])
def test_yaml_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(WebConfigError, match=message):
        parse_yaml(text)


# --------------------------------------------------------------------------- bad files


def _bad_configs(pki: Pki) -> list[tuple[str, str]]:
    srv = f"  cert_file: {pki.crt('server')}\n  key_file: {pki.key('server')}\n"
    return [
        ("foo: 1\n", "unknown key 'foo'"),
        ("tls_server_config:\n" + srv + "  bogus: 1\n", "tls_server_config: unknown key 'bogus'"),
        ("http_server_config:\n  http3: true\n", "http_server_config: unknown key 'http3'"),
        (f"tls_server_config:\n  cert_file: {pki.crt('server')}\n  key_file: /nonexistent.key\n",
         "tls_server_config.key_file: cannot read /nonexistent.key"),
        (f"tls_server_config:\n  cert_file: {pki.dir}\n  key_file: {pki.key('server')}\n",
         "tls_server_config.cert_file: cannot read"),
        (f"tls_server_config:\n  cert_file: {pki.crt('garbage')}\n  key_file: "
         f"{pki.key('server')}\n", "tls_server_config.cert_file: .*holds no PEM CERTIFICATE"),
        (f"tls_server_config:\n  cert_file: {pki.crt('server')}\n  key_file: "
         f"{pki.key('client')}\n", "tls_server_config.cert_file/key_file: cannot load"),
        (f"tls_server_config:\n  cert_file: {pki.crt('server')}\n  key_file: "
         f"{pki.dir / 'encrypted.key'}\n", "tls_server_config.key_file: the private key is "
                                           "encrypted"),
        (f"tls_server_config:\n  cert_file: {pki.crt('server')}\n",
         "tls_server_config: missing one of key or key_file"),
        ("basic_auth_users:\n  alice: notahash\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users:\n  alice: $2y$03$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"
         "\n", "basic_auth_users.alice: bcrypt cost 03"),
        ("basic_auth_users: [alice]\n", "basic_auth_users: expected a mapping"),
        ("tls_server_config:\n" + srv + "  client_auth_type: Bogus\n",
         "tls_server_config.client_auth_type: invalid 'Bogus'"),
        ("tls_server_config:\n" + srv + "  client_auth_type: RequireAndVerifyClientCert\n",
         "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file"),
        ("tls_server_config:\n" + srv + f"  client_ca_file: {pki.crt('ca')}\n",
         "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert"),
        ("tls_server_config:\n" + srv + "  client_auth_type: RequireAndVerifyClientCert\n"
         "  client_ca_file: /nonexistent-ca.crt\n",
         "tls_server_config.client_ca_file: cannot read"),
        ("tls_server_config:\n" + srv + "  client_auth_type: VerifyClientCertIfGiven\n"
         f"  client_ca_file: {pki.crt('ca')}\n  client_allowed_sans: [a]\n",
         "tls_server_config.client_allowed_sans: needs client_auth_type"),
        ("tls_server_config:\n" + srv + "  min_version: TLS14\n",
         "tls_server_config.min_version: unknown TLS version 'TLS14'"),
        ("tls_server_config:\n" + srv + "  min_version: TLS13\n  max_version: TLS12\n",
         "tls_server_config: min_version TLS13 is above max_version TLS12"),
        ("tls_server_config:\n" + srv + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
         "tls_server_config.cipher_suites: unknown cipher 'TLS_RSA_WITH_RC4_128_SHA'"),
        ("tls_server_config:\n" + srv + "  curve_preferences: [CurveP999]\n",
         "tls_server_config.curve_preferences: unknown curve"),
        ("http_server_config:\n  headers:\n    X-Foo: bar\n",
         "http_server_config.headers.X-Foo: this header can not be configured"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         "http_server_config.headers.X-Frame-Options: expected one of deny, sameorigin"),
        ("rate_limit:\n  burst: 10\n", "rate_limit: rate limiting is not supported"),
        ("tls_server_config:\n  cert_file: [a\n", "while parsing a flow sequence from line 2"),
    ]


@needs_openssl
def test_bad_config_files_are_refused_at_start_naming_the_key(pki: Pki, tmp_path: Path) -> None:
    for text, message in _bad_configs(pki):
        path = tmp_path / "web-config.yml"
        path.write_text(text)
        with pytest.raises(WebConfigError, match=message) as info:
            AgentServer(_registry(), "127.0.0.1", 0, "/metrics", str(path))
        assert str(info.value).startswith(f"{path}: "), str(info.value)
    with pytest.raises(WebConfigError, match="cannot read the web config"):
        AgentServer(_registry(), "127.0.0.1", 0, "/metrics", str(tmp_path / "missing.yml"))


def test_invalid_hash_is_not_echoed() -> None:
    secretish = "$2y$10$tooShortButSecret"
    with pytest.raises(WebConfigError) as info:
        parse_web_config(f"basic_auth_users:\n  alice: {secretish}\n")
    assert "alice" in str(info.value) and secretish not in str(info.value)


@needs_openssl
def test_cli_exits_2_on_a_bad_web_config(pki: Pki, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki.crt('server')}\n"
                    "  key_file: /nonexistent.key\n")
    code = main(["--web.listen-address", "127.0.0.1:0", "--web.config.file", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "infrascope-agent: " in err and "tls_server_config.key_file" in err


def test_empty_web_config_serves_plain_http(tmp_path: Path) -> None:
    with serve(tmp_path, "# nothing configured\n") as server:
        assert server.scheme == "http"
        status, _, body = get(server.port)
        assert status == 200 and b"node_memory_MemAvailable_bytes" in body


# --------------------------------------------------------------------------- basic auth


def test_basic_auth_over_plain_http(tmp_path: Path) -> None:
    config = (f"basic_auth_users:\n  prometheus: {_hash(PASSWORD, cost=10, prefix='$2y$')}\n"
              "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    with serve(tmp_path, config) as server:
        status, headers, body = get(server.port, auth=("prometheus", PASSWORD))
        assert status == 200
        assert b"node_cpu_seconds_total" in body and b"node_memory_MemAvailable_bytes" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        for auth in (("prometheus", WRONG), None, ("nobody", PASSWORD), ("prometheus", "")):
            status, headers, _ = get(server.port, auth=auth)
            assert status == 401, auth
            assert headers["WWW-Authenticate"] == "Basic"
            assert headers["X-Content-Type-Options"] == "nosniff"
        status, _, _ = get(server.port, auth=("prometheus", PASSWORD), path="/")
        assert status == 200


def test_malformed_authorization_headers_get_401(tmp_path: Path) -> None:
    with serve(tmp_path, f"basic_auth_users:\n  u: {_hash(PASSWORD)}\n") as server:
        for value in ("Basic", "Basic !!!", "Bearer abc",
                      "Basic " + base64.b64encode(b"no-colon").decode(),
                      "Basic " + base64.b64encode(b"u:" + b"x" * 100).decode(),
                      "Basic " + base64.b64encode(b"\xff\xfe:pw").decode()):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/metrics", headers={"Authorization": value})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            assert resp.status == 401, value


@needs_openssl
def test_basic_auth_over_tls(pki: Pki, tmp_path: Path) -> None:
    config = tls_config(pki, f"basic_auth_users:\n  prometheus: {_hash(PASSWORD)}\n")
    with serve(tmp_path, config) as server:
        assert server.scheme == "https"
        ctx = client_ctx(pki)
        status, _, body = get(server.port, ctx, ("prometheus", PASSWORD))
        assert status == 200 and b"node_memory_MemAvailable_bytes" in body
        assert get(server.port, ctx, ("prometheus", WRONG))[0] == 401
        assert get(server.port, ctx)[0] == 401


@needs_openssl
def test_concurrent_scrapes_with_auth_run_bcrypt_once(pki: Pki, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(1)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    config = tls_config(pki, f"basic_auth_users:\n  prometheus: {_hash(PASSWORD, cost=10)}\n")
    with serve(tmp_path, config) as server:
        ctx = client_ctx(pki)
        barrier = threading.Barrier(10)
        results: list[int | str] = []

        def scrape() -> None:
            barrier.wait(timeout=10)
            try:
                status, _, body = get(server.port, ctx, ("prometheus", PASSWORD))
                results.append(status if b"node_cpu_seconds_total" in body else "no metrics")
            except Exception as exc:  # noqa: BLE001 - reported below
                results.append(repr(exc))

        threads = [threading.Thread(target=scrape) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [200] * 10
        # ten scrapes with the same credentials: one bcrypt, the rest from the cache
        assert len(calls) == 1
        get(server.port, ctx, ("prometheus", WRONG))
        get(server.port, ctx, ("prometheus", WRONG))
        assert len(calls) == 3  # failures are never cached


def test_auth_cache_is_a_bounded_lru() -> None:
    cache = webconfig._AuthCache(size=2)
    # passwords long enough that a random 32-byte key cannot contain one by chance
    # (b"1" was in 1 key of 8: a red run by chance)
    passwords = (b"first-password", b"second-password", b"third-password")
    keys = [cache.key(b"u", b"h", p) for p in passwords]
    assert len(set(keys)) == 3 and all(len(k) == 32 for k in keys)
    assert cache.key(b"u", b"h", passwords[0]) == keys[0]
    assert passwords[0] not in keys[0]
    cache.add(keys[0])
    cache.add(keys[1])
    assert keys[0] in cache  # touch: keys[1] is now the oldest
    cache.add(keys[2])
    assert keys[0] in cache and keys[2] in cache and keys[1] not in cache


def test_passwords_are_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hashed = _hash(PASSWORD)
    with serve(tmp_path, f"basic_auth_users:\n  alice: {hashed}\n") as server:
        get(server.port, auth=("alice", PASSWORD))
        get(server.port, auth=("alice", WRONG))
        get(server.port, auth=("mallory", WRONG))
        (tmp_path / "web-config.yml").write_text("basic_auth_users:\n  alice: broken\n")
        _bump_mtime(tmp_path / "web-config.yml")
        assert get(server.port, auth=("alice", PASSWORD))[0] == 500
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, WRONG, hashed, token):
        assert secret not in caplog.text


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_users_are_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "web-config.yml"
    with serve(tmp_path, f"basic_auth_users:\n  alice: {_hash('one')}\n") as server:
        assert get(server.port, auth=("alice", "one"))[0] == 200
        path.write_text(f"basic_auth_users:\n  alice: {_hash('two')}\n")
        _bump_mtime(path)
        assert get(server.port, auth=("alice", "one"))[0] == 401
        assert get(server.port, auth=("alice", "two"))[0] == 200
        path.write_text("basic_auth_users:\n  alice: [\n")  # broken: fail closed
        _bump_mtime(path)
        assert get(server.port, auth=("alice", "two"))[0] == 500
        path.write_text(f"basic_auth_users:\n  alice: {_hash('three')}\n")
        _bump_mtime(path)
        assert get(server.port, auth=("alice", "three"))[0] == 200


# --------------------------------------------------------------------------- TLS


@needs_openssl
@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_require_and_verify_client_cert(pki: Pki, tmp_path: Path,
                                        tls_max: ssl.TLSVersion) -> None:
    with serve(tmp_path, tls_config(pki, client_auth="RequireAndVerifyClientCert")) as server:
        status, _, body = get(server.port, client_ctx(pki, "client", tls_max))
        assert status == 200 and b"node_memory_MemAvailable_bytes" in body
        for cert in ("rogue", None):
            # TLS 1.2 fails in the handshake; TLS 1.3 clients finish their side first and
            # see the server's alert (or the closed connection) on the first read
            with pytest.raises(ssl.SSLError if tls_max == ssl.TLSVersion.TLSv1_2 else OSError):
                get(server.port, client_ctx(pki, cert, tls_max))
        # and the server still serves good clients
        assert get(server.port, client_ctx(pki, "client", tls_max))[0] == 200


@needs_openssl
def test_verify_client_cert_if_given(pki: Pki, tmp_path: Path) -> None:
    with serve(tmp_path, tls_config(pki, client_auth="VerifyClientCertIfGiven")) as server:
        assert get(server.port, client_ctx(pki))[0] == 200
        assert get(server.port, client_ctx(pki, "client"))[0] == 200
        with pytest.raises(OSError):
            get(server.port, client_ctx(pki, "rogue"))


@needs_openssl
def test_client_allowed_sans(pki: Pki, tmp_path: Path) -> None:
    extra = "  client_allowed_sans:\n    - prometheus.example\n"
    config = tls_config(pki, client_auth="RequireAndVerifyClientCert").replace(
        "  client_ca_file", extra + "  client_ca_file")
    with serve(tmp_path, config) as server:
        assert get(server.port, client_ctx(pki, "client"))[0] == 200
        with pytest.raises(OSError):  # signed by the CA, but its SAN is not allowed
            get(server.port, client_ctx(pki, "client2"))
    assert webconfig._peer_sans({"subjectAltName": (
        ("DNS", "a.example"), ("IP Address", "0:0:0:0:0:0:0:1\n"), ("URI", "spiffe://x"),
        ("DirName", "ignored"))}) == ["a.example", "::1", "spiffe://x"]


@needs_openssl
def test_min_version_tls13_refuses_a_tls12_client(pki: Pki, tmp_path: Path) -> None:
    with serve(tmp_path, tls_config(pki, "  min_version: TLS13\n")) as server:
        with pytest.raises(ssl.SSLError):
            get(server.port, client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2))
        assert get(server.port, client_ctx(pki))[0] == 200


@needs_openssl
def test_cipher_suites_map_to_openssl(pki: Pki, tmp_path: Path) -> None:
    extra = ("  max_version: TLS12\n  cipher_suites:\n"
             "    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n    - TLS_AES_128_GCM_SHA256\n"
             "  curve_preferences: [CurveP256]\n")
    with serve(tmp_path, tls_config(pki, extra)) as server:
        ctx = client_ctx(pki)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            cipher = tls.cipher()
            assert cipher is not None
            assert cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384" and cipher[1] == "TLSv1.2"
        other = client_ctx(pki)
        other.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            get(server.port, other)


@needs_openssl
def test_plain_http_to_the_tls_port_fails_cleanly(pki: Pki, tmp_path: Path) -> None:
    with serve(tmp_path, tls_config(pki)) as server:
        # an idle connection that never starts a handshake blocks nobody
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            status, _, body = get(server.port)  # plain HTTP
            assert status == 400 and b"HTTP request to an HTTPS server" in body
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as junk:
                junk.sendall(b"\x00\x01\x02 not tls")
                try:  # closed (unread bytes make that a reset), nothing sent
                    assert junk.recv(100) == b""
                except ConnectionResetError:
                    pass
            start = time.monotonic()
            assert get(server.port, client_ctx(pki))[0] == 200
            assert time.monotonic() - start < 5
        finally:
            idle.close()
        assert get(server.port, client_ctx(pki))[0] == 200


@needs_openssl
def test_inline_cert_and_key(pki: Pki, tmp_path: Path) -> None:
    def block(path: str) -> str:
        return "".join(f"    {line}\n" for line in Path(path).read_text().splitlines())

    config = (f"tls_server_config:\n  cert: |\n{block(pki.crt('server'))}"
              f"  key: |\n{block(pki.key('server'))}"
              "  client_auth_type: RequireAndVerifyClientCert\n"
              f"  client_ca: |\n{block(pki.crt('ca'))}")
    with serve(tmp_path, config) as server:
        assert get(server.port, client_ctx(pki, "client"))[0] == 200
        with pytest.raises(OSError):
            get(server.port, client_ctx(pki, "rogue"))


@needs_openssl
def test_relative_paths_are_taken_from_the_config_folder(pki: Pki, tmp_path: Path) -> None:
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.dir / name, tmp_path / name)
    config = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    with serve(tmp_path, config) as server:
        assert get(server.port, client_ctx(pki))[0] == 200


@needs_openssl
def test_renewed_certificate_is_picked_up(pki: Pki, tmp_path: Path) -> None:
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.dir / name, tmp_path / name)
    config = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    with serve(tmp_path, config) as server:
        assert get(server.port, client_ctx(pki))[0] == 200
        # "renew" to a certificate of another CA: clients trusting only ours must now fail
        shutil.copy(pki.dir / "rogue.crt", tmp_path / "server.crt")
        shutil.copy(pki.dir / "rogue.key", tmp_path / "server.key")
        _bump_mtime(tmp_path / "server.crt")
        with pytest.raises(ssl.SSLError):
            get(server.port, client_ctx(pki))


@needs_openssl
def test_request_client_cert_without_ca_accepts_anyone(pki: Pki, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with serve(tmp_path, tls_config(pki, "  client_auth_type: RequestClientCert\n")) as server:
        assert get(server.port, client_ctx(pki))[0] == 200
    assert "RequestClientCert requests no client certificate" in caplog.text


@needs_openssl
def test_cli_serves_tls_with_basic_auth(pki: Pki, tmp_path: Path) -> None:
    """The real console entry point, as systemd runs it."""
    config = tmp_path / "web.yml"
    config.write_text(tls_config(pki, f"basic_auth_users:\n  prometheus: {_hash(PASSWORD)}\n"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "infrascope_agent", "--web.listen-address",
                             f"127.0.0.1:{port}", "--web.config.file", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = get(port, client_ctx(pki), ("prometheus", PASSWORD))
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert status == 200 and b"node_scrape_collector_success" in body
        assert get(port, client_ctx(pki))[0] == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert PASSWORD not in out + err
