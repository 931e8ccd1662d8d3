"""exporter-toolkit web configuration (``--web.config.file``): TLS and basic auth.

The file format is the one node_exporter and every exporter built on
`prometheus/exporter-toolkit` read (``docs/web-configuration.md`` there), so an
operator's existing ``web-config.yml`` works unchanged::

    tls_server_config:
      cert_file: server.crt            # relative paths: from the file's folder
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      client_allowed_sans: [prometheus.example.com]
      min_version: TLS12
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt, e.g. htpasswd -nBC 10 "" | tr -d ':\\n'

What differs from exporter-toolkit, because Python's ``ssl`` module cannot do
it (each logged as a warning at start):

* ``RequestClientCert`` / ``RequireAnyClientCert`` accept a client certificate
  *without verifying it*; Python's ``ssl`` can only accept verified ones. With a
  ``client_ca_file`` they verify against it (stricter than Go); without one,
  ``RequestClientCert`` asks for no certificate (any client is accepted, as
  with Go) and ``RequireAnyClientCert`` is refused.
* ``curve_preferences`` with several curves: only the first is used.
* ``http_server_config.http2``: HTTP/2 is not served; clients use HTTP/1.1.
* ``rate_limit`` and ``auth_excluded_paths`` (newer toolkits) are refused.

Stricter on purpose: ``VerifyClientCertIfGiven`` / ``RequireAndVerifyClientCert``
need a client CA (Go would fall back to the system's public CAs), and a file
giving both ``cert`` and ``cert_file`` (or ``key``/``key_file``,
``client_ca``/``client_ca_file``) is an error.

Like exporter-toolkit, the file and the certificate files it names are looked
at again on every connection and request (a ``stat`` each), so renewed
certificates and changed users take effect without a restart. A file that
has become invalid fails closed: TLS handshakes are refused and requests get
500 until it is fixed (switching TLS on or off needs a restart). A bad file at
start is a :class:`WebConfigError` naming the key, and the CLI exits 2.

Basic auth: passwords are checked with ``bcrypt.checkpw`` one at a time (it is
slow by design, and one core is enough to give to a guesser); a successful
check is remembered in a small LRU keyed by an HMAC of user, hash and password
(never the password itself), so Prometheus scraping every 15 s costs one
bcrypt per process. Passwords are never logged.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import bcrypt
import yaml

log = logging.getLogger("infrascope_agent.webconfig")

#: seconds a new connection may take to send its first byte and finish the TLS handshake
HANDSHAKE_TIMEOUT = 10.0
#: successful basic-auth checks remembered (exporter-toolkit keeps 100)
AUTH_CACHE_SIZE = 128


class WebConfigError(ValueError):
    pass


class ConnectionRejected(Exception):
    """A connection closed before serving it (failed TLS handshake, plain HTTP on TLS, ...)."""


class Responder(Protocol):
    """The request handler :meth:`WebGuard.authorize` answers through (``web.AgentHandler``)."""

    headers: Any

    def respond(self, status: int, body: bytes, ctype: str,
                headers: Mapping[str, str] | None = None) -> None: ...


# --------------------------------------------------------------------------- YAML


class _WebConfigLoader(yaml.SafeLoader):
    """YAML read as exporter-toolkit's yaml.v2 reads a web config into its Go structs:
    a scalar is text whatever it looks like (``true``, ``10``; the schema below converts
    it, so ``yes``/``on`` are booleans as in Go and a user named ``123`` stays ``"123"``),
    only ``~``, ``null`` and nothing are null, and a key given twice is an error (yaml.v2:
    "mapping key already defined"), never a silent last-one-wins."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_WebConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def parse_yaml(text: str) -> Any:
    """The web config's YAML as Python values (see :class:`_WebConfigLoader`); a syntax
    error is a WebConfigError naming the line."""
    try:
        return yaml.load(text, Loader=_WebConfigLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        problem, mark = exc.problem or exc.context or "invalid YAML", exc.problem_mark
        message = f"line {mark.line + 1}: {problem}" if mark is not None else problem
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} from line {exc.context_mark.line + 1})"
        raise WebConfigError(message) from None
    except yaml.YAMLError as exc:
        raise WebConfigError(f"not valid YAML: {exc}") from None


# --------------------------------------------------------------------------- the schema

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
            "client_ca_file", "cipher_suites", "curve_preferences", "min_version",
            "max_version", "prefer_server_cipher_suites", "client_allowed_sans")
HTTP_KEYS = ("http2", "headers")
UNSUPPORTED_TOP_KEYS = {
    "rate_limit": "rate limiting is not supported by infrascope-agent",
    "auth_excluded_paths": "excluding paths from authentication is not supported by "
                           "infrascope-agent",
}

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_CLIENT_AUTH_ALIASES = {"": "NoClientCert", "RequireClientCert": "RequireAnyClientCert"}

#: Go's crypto/tls names (tls.CipherSuites(), what exporter-toolkit accepts) -> OpenSSL's
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
#: TLS 1.3 suites: accepted and, as in Go, not configurable
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}

#: http_server_config.headers exporter-toolkit allows, with their allowed values (None: any)
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str | None = None
    key_file: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = field(default=None, repr=False)
    client_ca_file: str | None = None
    client_ca_pem: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] | None = None

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    http2: bool = True
    warnings: tuple[str, ...] = ()


def _mapping(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in known:
            raise WebConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else "a single value"


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a string, got {_kind(value)}")
    return value or None


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: expected a list of strings")
    return list(value)


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise WebConfigError(f"{where}: expected true or false, got {value!r}")


def parse_web_config(text: str, base_dir: str = ".") -> WebConfig:
    """Validate a web config's text; relative file names are taken from ``base_dir``.

    Checks the structure and values only; :func:`build_ssl_context` reads the files.
    """
    doc = parse_yaml(text)
    if doc is None:
        return WebConfig()
    if not isinstance(doc, dict):
        raise WebConfigError(f"expected a mapping with {', '.join(TOP_KEYS)}, got {_kind(doc)}")
    for key in doc:
        if key in UNSUPPORTED_TOP_KEYS:
            raise WebConfigError(f"{key}: {UNSUPPORTED_TOP_KEYS[key]}")
    _mapping(doc, "web config", TOP_KEYS)
    warnings: list[str] = []
    tls = _parse_tls(doc.get("tls_server_config"), base_dir, warnings)

    http = _mapping(doc.get("http_server_config"), "http_server_config", HTTP_KEYS)
    http2 = _bool(http.get("http2"), "http_server_config.http2", True)
    if http.get("http2") is not None and http2:
        warnings.append("http_server_config.http2: HTTP/2 is not supported, clients use HTTP/1.1")
    headers: dict[str, str] = {}
    raw_headers = http.get("headers")
    if raw_headers is not None and not isinstance(raw_headers, dict):
        raise WebConfigError("http_server_config.headers: expected a mapping")
    for name, value in (raw_headers or {}).items():
        where = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            raise WebConfigError(f"{where}: this header can not be configured (allowed: "
                                 f"{', '.join(HEADERS)})")
        value = _string(value, where) or ""
        allowed = HEADERS[name]
        if allowed is not None and value not in allowed:
            raise WebConfigError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
        if any(c in value for c in "\r\n"):
            raise WebConfigError(f"{where}: line breaks are not allowed")
        if value:
            headers[name] = value

    users: dict[str, bytes] = {}
    raw_users = doc.get("basic_auth_users")
    if raw_users is not None and not isinstance(raw_users, dict):
        raise WebConfigError("basic_auth_users: expected a mapping of user name to bcrypt hash")
    for user, hashed in (raw_users or {}).items():
        where = f"basic_auth_users.{user}"
        if not isinstance(hashed, str) or not hashed:
            raise WebConfigError(f"{where}: expected a bcrypt hash")
        m = _BCRYPT_HASH.fullmatch(hashed)
        if m is None:
            # The hash is a secret too: say what is wrong with it, never echo it.
            raise WebConfigError(f"{where}: not a bcrypt hash ($2a$, $2b$ or $2y$, a two-digit "
                                 "cost, 53 characters of salt and hash)")
        if not 4 <= int(m.group(1)) <= 31:
            raise WebConfigError(f"{where}: bcrypt cost {m.group(1)} is outside 04..31")
        users[user] = hashed.encode("ascii")
    return WebConfig(tls=tls, users=users, headers=headers, http2=http2,
                     warnings=tuple(warnings))


def _parse_tls(value: Any, base_dir: str, warnings: list[str]) -> TLSSettings | None:
    where = "tls_server_config"
    raw = _mapping(value, where, TLS_KEYS)
    s = {k: _string(raw.get(k), f"{where}.{k}") for k in
         ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
          "client_ca_file", "min_version", "max_version")}
    # exporter-toolkit: TLS is on as soon as one of these is set
    if not any(s[k] for k in ("cert", "key", "client_ca", "cert_file", "key_file",
                              "client_ca_file", "client_auth_type")):
        return None
    for inline, path in (("cert", "cert_file"), ("key", "key_file"),
                         ("client_ca", "client_ca_file")):
        if s[inline] and s[path]:
            raise WebConfigError(f"{where}: give {inline} or {path}, not both")
    if not (s["cert"] or s["cert_file"]):
        raise WebConfigError(f"{where}: missing one of cert or cert_file")
    if not (s["key"] or s["key_file"]):
        raise WebConfigError(f"{where}: missing one of key or key_file")

    def path_of(key: str) -> str | None:
        p = s[key]
        return os.path.join(base_dir, p) if p else None

    def version(key: str, default: ssl.TLSVersion) -> ssl.TLSVersion:
        name = s[key]
        if name is None:
            return default
        if name not in TLS_VERSIONS:
            raise WebConfigError(f"{where}.{key}: unknown TLS version {name!r} "
                                 f"(one of {', '.join(TLS_VERSIONS)})")
        return TLS_VERSIONS[name]

    min_version = version("min_version", ssl.TLSVersion.TLSv1_2)
    max_version = version("max_version", ssl.TLSVersion.TLSv1_3)
    if min_version > max_version:
        raise WebConfigError(f"{where}: min_version {s['min_version']} is above max_version "
                             f"{s['max_version'] or 'TLS13'}")

    auth = s["client_auth_type"] or ""
    auth = _CLIENT_AUTH_ALIASES.get(auth, auth)
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(f"{where}.client_auth_type: invalid {auth!r} "
                             f"(one of {', '.join(CLIENT_AUTH_TYPES)})")
    has_ca = bool(s["client_ca_file"] or s["client_ca"])
    if has_ca and auth == "NoClientCert":
        raise WebConfigError(f"{where}: client_ca_file is set but client_auth_type is "
                             "NoClientCert (client CAs configured without a client auth policy)")
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        raise WebConfigError(f"{where}.client_auth_type: {auth} needs client_ca_file "
                             "(or client_ca) to verify client certificates against")
    if auth == "RequireAnyClientCert" and not has_ca:
        raise WebConfigError(f"{where}.client_auth_type: RequireAnyClientCert (accept any "
                             "client certificate unverified) cannot be done with Python's ssl; "
                             "use RequireAndVerifyClientCert with client_ca_file")
    if auth == "RequireAnyClientCert":
        warnings.append(f"{where}.client_auth_type: RequireAnyClientCert verifies client "
                        "certificates against client_ca_file here (Go accepts any)")
    if auth == "RequestClientCert":
        warnings.append(f"{where}.client_auth_type: RequestClientCert "
                        + ("verifies a client certificate that is sent against client_ca_file"
                           if has_ca else "requests no client certificate (any client is "
                           "accepted either way)"))

    sans = _strings(raw.get("client_allowed_sans"), f"{where}.client_allowed_sans")
    if sans is not None and auth not in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
        raise WebConfigError(f"{where}.client_allowed_sans: needs client_auth_type "
                             "RequireAnyClientCert or RequireAndVerifyClientCert")

    ciphers: list[str] = []
    tls12_named = False
    for name in _strings(raw.get("cipher_suites"), f"{where}.cipher_suites") or []:
        if name in TLS13_SUITES:
            continue
        if name not in CIPHER_SUITES:
            raise WebConfigError(f"{where}.cipher_suites: unknown cipher {name!r} (one of "
                                 f"{', '.join(list(CIPHER_SUITES) + list(TLS13_SUITES))})")
        tls12_named = True
        if CIPHER_SUITES[name] not in ciphers:
            ciphers.append(CIPHER_SUITES[name])
    if raw.get("cipher_suites") and not tls12_named:
        warnings.append(f"{where}.cipher_suites: only TLS 1.3 suites listed; those are not "
                        "configurable (as in Go), TLS 1.2 uses the defaults")

    curves: list[str] = []
    for name in _strings(raw.get("curve_preferences"), f"{where}.curve_preferences") or []:
        if name not in CURVES:
            raise WebConfigError(f"{where}.curve_preferences: unknown curve {name!r} "
                                 f"(one of {', '.join(CURVES)})")
        curves.append(name)
    if len(curves) > 1:
        warnings.append(f"{where}.curve_preferences: Python's ssl takes one curve; only "
                        f"{curves[0]} is used")

    return TLSSettings(
        cert_file=path_of("cert_file"), key_file=path_of("key_file"), cert_pem=s["cert"],
        key_pem=s["key"], client_ca_file=path_of("client_ca_file"), client_ca_pem=s["client_ca"],
        client_auth_type=auth, min_version=min_version, max_version=max_version,
        cipher_suites=tuple(ciphers), curve_preferences=tuple(curves),
        prefer_server_cipher_suites=_bool(raw.get("prefer_server_cipher_suites"),
                                          f"{where}.prefer_server_cipher_suites", True),
        client_allowed_sans=tuple(sans) if sans is not None else None)


# --------------------------------------------------------------------------- TLS


def _read_pem(path: str, key: str, marker: str, what: str) -> bytes:
    where = f"tls_server_config.{key}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise WebConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if marker.encode() not in data:
        raise WebConfigError(f"{where}: {path} holds no PEM {what}")
    return data


@contextlib.contextmanager
def _pem_file(data: str | bytes) -> Iterator[str]:
    """A path to ``data`` for ssl's file-only loaders; in memory where Linux allows."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        fd = os.memfd_create("infrascope-agent-pem", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            if os.path.exists(f"/proc/self/fd/{fd}"):
                os.write(fd, raw)
                yield f"/proc/self/fd/{fd}"
                return
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="infrascope-agent-") as tmp:
        path = os.path.join(tmp, "pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        yield path


def _encrypted_key() -> bytes:
    raise WebConfigError("tls_server_config.key_file: the private key is encrypted; "
                         "exporter-toolkit expects an unencrypted PEM key")


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The server-side context for ``tls``; reads (and so validates) every file it names."""
    where = "tls_server_config"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = tls.min_version
        ctx.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as exc:
        raise WebConfigError(f"{where}.min_version/max_version: {exc}") from None

    if tls.cert_file:
        cert = _read_pem(tls.cert_file, "cert_file", "-----BEGIN CERTIFICATE-----",
                         "CERTIFICATE")
    else:
        cert = (tls.cert_pem or "").encode()
        if b"-----BEGIN CERTIFICATE-----" not in cert:
            raise WebConfigError(f"{where}.cert: holds no PEM CERTIFICATE")
    if tls.key_file:
        key = _read_pem(tls.key_file, "key_file", "PRIVATE KEY-----", "PRIVATE KEY")
    else:
        key = (tls.key_pem or "").encode()
        if b"PRIVATE KEY-----" not in key:
            raise WebConfigError(f"{where}.key: holds no PEM PRIVATE KEY")
    cert_key = "cert_file" if tls.cert_file else "cert"
    key_key = "key_file" if tls.key_file else "key"
    try:
        with _pem_file(cert) as cert_path, _pem_file(key) as key_path:
            ctx.load_cert_chain(cert_path, key_path, password=_encrypted_key)
    except ssl.SSLError as exc:
        raise WebConfigError(f"{where}.{cert_key}/{key_key}: cannot load the certificate and "
                             f"key ({tls.cert_file or 'inline'}, {tls.key_file or 'inline'}): "
                             f"{exc.reason or exc}") from None

    if tls.client_ca_file or tls.client_ca_pem:
        ca_key = "client_ca_file" if tls.client_ca_file else "client_ca"
        if tls.client_ca_file:
            ca = _read_pem(tls.client_ca_file, ca_key, "-----BEGIN CERTIFICATE-----",
                           "CERTIFICATE")
        else:
            ca = (tls.client_ca_pem or "").encode()
            if b"-----BEGIN CERTIFICATE-----" not in ca:
                raise WebConfigError(f"{where}.client_ca: holds no PEM CERTIFICATE")
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise WebConfigError(f"{where}.{ca_key}: cannot load the client CA "
                                 f"({tls.client_ca_file or 'inline'}): {exc}") from None
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        # without a CA Python cannot take a certificate unverified: ask for none
        "RequestClientCert": ssl.CERT_OPTIONAL if tls.client_ca_file or tls.client_ca_pem
        else ssl.CERT_NONE,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]

    if tls.cipher_suites:
        try:
            ctx.set_ciphers(":".join(tls.cipher_suites))
        except ssl.SSLError:
            raise WebConfigError(f"{where}.cipher_suites: none of them is available in "
                                 f"{ssl.OPENSSL_VERSION}") from None
        have = {c["name"] for c in ctx.get_ciphers()}
        missing = [c for c in tls.cipher_suites if c not in have]
        if missing:
            raise WebConfigError(f"{where}.cipher_suites: not available in "
                                 f"{ssl.OPENSSL_VERSION}: {', '.join(missing)}")
    if tls.curve_preferences:
        try:
            ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
        except (ValueError, ssl.SSLError) as exc:
            raise WebConfigError(f"{where}.curve_preferences: {exc}") from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _peer_sans(cert: Mapping[str, Any]) -> list[str]:
    out = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI"):
            out.append(value)
        elif kind == "IP Address":
            out.append(_normal_ip(value.strip()))
    return out


def _normal_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


# --------------------------------------------------------------------------- runtime


def load_web_config(path: str) -> tuple[WebConfig, ssl.SSLContext | None]:
    """Read, validate and (for TLS) build the context; errors name the file and the key."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read the web config: "
                             f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"{path}: the web config is not UTF-8 text") from None
    try:
        config = parse_web_config(text, os.path.dirname(os.path.abspath(path)))
        ctx = build_ssl_context(config.tls) if config.tls is not None else None
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None
    return config, ctx


_Fingerprint = tuple[tuple[str, int, int, int] | tuple[str], ...]


def _fingerprint(paths: tuple[str, ...]) -> _Fingerprint:
    out: list[tuple[str, int, int, int] | tuple[str]] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((p,))
    return tuple(out)


class _AuthCache:
    """LRU of successful (user, hash, password) checks, keyed by an HMAC of the three."""

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self.size = size
        self.secret = secrets.token_bytes(32)
        self.entries: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.lock = threading.Lock()

    def key(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        msg = b":".join(x.hex().encode() for x in (user, hashed, password))
        return hmac.new(self.secret, msg, hashlib.sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return True
            return False

    def add(self, key: bytes) -> None:
        with self.lock:
            self.entries[key] = None
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


# bcrypt of a random string nobody knows: checked for unknown users so that a
# missing user takes as long to reject as a wrong password (no user enumeration)
_DUMMY_HASH = b"$2b$10$xX/GPdu6AEE0S9OwQNthjeg16kBI57Ar9ClKXOn7xrV.B2edX2ZKq"


class WebGuard:
    """The loaded web config at run time: TLS per connection, basic auth per request."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.bcrypt_lock = threading.Lock()
        self.cache = _AuthCache()
        config, ctx = load_web_config(path)
        self.config = config
        self.ctx = ctx
        self.tls_enabled = ctx is not None
        self.error: WebConfigError | None = None
        self.fingerprint = _fingerprint(self._files(config))
        for warning in config.warnings:
            log.warning("web config: %s", warning)
        log.info("web config %s: TLS %s, basic auth %s", path,
                 "on" if self.tls_enabled else "off",
                 f"on ({len(config.users)} users)" if config.users else "off")

    def _files(self, config: WebConfig) -> tuple[str, ...]:
        return (self.path,) + (config.tls.files() if config.tls else ())

    def current(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The config in force, reloaded if the file or a file it names changed.

        Raises WebConfigError while the file on disk is invalid (fail closed).
        """
        fingerprint = _fingerprint(self._files(self.config))
        if fingerprint != self.fingerprint:
            with self.lock:
                fingerprint = _fingerprint(self._files(self.config))
                if fingerprint != self.fingerprint:
                    self._reload(fingerprint)
        if self.error is not None:
            raise self.error
        return self.config, self.ctx

    def _reload(self, fingerprint: _Fingerprint) -> None:
        try:
            config, ctx = load_web_config(self.path)
            if (ctx is not None) != self.tls_enabled:
                raise WebConfigError(f"{self.path}: TLS cannot be switched "
                                     f"{'on' if ctx is not None else 'off'} without a restart")
        except WebConfigError as exc:
            self.error = exc
            self.fingerprint = fingerprint
            log.error("web config reload failed, refusing connections until it is fixed: %s",
                      exc)
            return
        self.config, self.ctx, self.error = config, ctx, None
        self.cache.clear()
        # the files named may have changed with the config
        self.fingerprint = _fingerprint(self._files(config))
        for warning in config.warnings:
            log.warning("web config: %s", warning)
        log.info("web config %s reloaded", self.path)

    # -- TLS, in the connection's handler thread -----------------------------------------

    def accept(self, sock: socket.socket, client: Any) -> socket.socket:
        """Handshake ``sock`` (fresh from accept()); raises ConnectionRejected, closed."""
        peer = _peer(client)
        try:
            _, ctx = self.current()
        except WebConfigError as exc:
            _close(sock)
            raise ConnectionRejected(f"{peer}: web config invalid: {exc}") from None
        assert ctx is not None
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError as exc:
            _close(sock)
            raise ConnectionRejected(f"{peer}: no TLS handshake: {exc}") from None
        if first != b"\x16":  # not a TLS handshake record
            if first[:1].isalpha():
                _refuse_plain_http(sock)
            _close(sock)
            raise ConnectionRejected(f"{peer}: plain HTTP (or not TLS) on the TLS port"
                                     if first else f"{peer}: closed before the TLS handshake")
        tls_sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            tls_sock.do_handshake()
            self._check_sans(tls_sock, peer)
        except (OSError, ConnectionRejected) as exc:
            _close(tls_sock)
            if isinstance(exc, ConnectionRejected):
                raise
            reason = getattr(exc, "reason", None) or exc
            log.info("TLS handshake with %s failed: %s", peer, reason)
            raise ConnectionRejected(f"{peer}: TLS handshake failed: {reason}") from None
        tls_sock.settimeout(None)
        return tls_sock

    def _check_sans(self, tls_sock: ssl.SSLSocket, peer: str) -> None:
        config = self.config
        allowed = config.tls.client_allowed_sans if config.tls else None
        if allowed is None:
            return
        cert = tls_sock.getpeercert() or {}
        sans = _peer_sans(cert)
        allowed_n = {_normal_ip(a) for a in allowed}
        if not any(s in allowed_n for s in sans):
            log.info("client certificate from %s rejected: none of its SANs %s is in "
                     "client_allowed_sans", peer, sans)
            raise ConnectionRejected(f"{peer}: client certificate SAN not allowed")

    # -- basic auth, per request ----------------------------------------------------------

    def authorize(self, handler: Responder) -> bool:
        try:
            config, _ = self.current()
        except WebConfigError:
            handler.respond(500, b"Internal Server Error\n", "text/plain; charset=utf-8")
            return False
        if not config.users:
            return True
        creds = _basic_credentials(handler.headers.get("Authorization"))
        if creds is not None and self.check(config, *creds):
            return True
        handler.respond(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                        {"WWW-Authenticate": "Basic"})
        return False

    def check(self, config: WebConfig, user: bytes, password: bytes) -> bool:
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            return False
        hashed = config.users.get(name)
        known = hashed is not None
        hashed = hashed or _DUMMY_HASH
        key = self.cache.key(user, hashed, password)
        if key in self.cache:
            return known
        with self.bcrypt_lock:  # one bcrypt at a time: it is CPU-heavy by design
            if key in self.cache:
                return known
            try:
                ok = bcrypt.checkpw(password, hashed)
            except ValueError:  # e.g. a password over bcrypt's 72 bytes
                ok = False
            if ok and known:
                self.cache.add(key)
        return ok and known

    def headers(self) -> Mapping[str, str]:
        return self.config.headers


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None


def _peer(client: Any) -> str:
    if isinstance(client, tuple) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    return str(client)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _refuse_plain_http(sock: socket.socket) -> None:
    """Answer a plain-HTTP request on the TLS port the way Go's net/http does."""
    with contextlib.suppress(OSError):
        sock.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
        sock.shutdown(socket.SHUT_WR)
        # read what the client sent so that closing does not reset the connection before
        # it has read the answer; bounded in time and size
        sock.settimeout(1.0)
        for _ in range(16):
            if not sock.recv(4096):
                break


__all__ = ["WebConfig", "WebConfigError", "WebGuard", "TLSSettings", "build_ssl_context",
           "load_web_config", "parse_web_config", "parse_yaml"]
