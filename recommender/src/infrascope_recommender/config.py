"""Configuration: one YAML file (``--config``), a few flags and environment variables.

Precedence: built-in default < YAML file < environment variable < flag. A bad value
fails at start with one :class:`ConfigError` naming the key: unknown keys at every depth,
a value of the wrong type (a list where a path belongs), a listen address whose host or
port cannot exist, a token file of more than one line or with whitespace in the token.
Secrets (bearer tokens, passwords) are read from files or the environment and wrapped in
:class:`Secret`, so no repr, log line or error message can show them — errors name the
file, never its content. A secret file that group or others may read is not an error
but a warning (:attr:`Config.warnings`, naming the fix), printed by ``check-config`` and
logged at start.

The rule thresholds live under ``rules:`` and are parsed by
:func:`infrascope_recommender.thresholds.parse_thresholds` (documented there and in the
README); everything else is here.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infrascope_core import address

from .errors import ConfigError
from .thresholds import Thresholds, parse_thresholds

DEFAULT_PROMETHEUS_URL = "http://localhost:9090"
DEFAULT_LISTEN = "127.0.0.1:8792"
DEFAULT_STATE_PATH = "recommender.db"
DEFAULT_INTERVAL = 24 * 3600.0
# The largest legitimate request (a dismissal with every text at its maximum length, each
# character JSON-escaped) is under 30 KiB; anything larger is answered 413 unread.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024


class Secret:
    """A string that never shows itself: repr/str give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class TLSSettings:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PrometheusSettings:
    """Where the PromQL comes from (Prometheus, Thanos, Mimir, VictoriaMetrics)."""

    url: str = DEFAULT_PROMETHEUS_URL  # base URL; /api/v1/query is appended
    bearer_token: Secret | None = None
    basic_auth_user: str | None = None
    basic_auth_password: Secret | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Scope-OrgID
    tls: TLSSettings = field(default_factory=TLSSettings)
    timeout_seconds: float = 30.0
    retries: int = 3  # extra attempts after the first, for connection errors / 5xx / 429
    backoff_seconds: float = 0.5  # first retry delay; doubles each retry
    # Ask for gzip-compressed answers. A 10,000-server load is ~40 MB of JSON: compressing
    # it costs Prometheus more CPU than sending it over loopback or a LAN takes; worth it
    # across a slow link (another region, a hosted Mimir/Thanos).
    compression: bool = False
    exporter_job: str = "hetzner"
    agent_job: str = "infrascope-agent"


@dataclass(frozen=True)
class ApiSettings:
    listen: str = DEFAULT_LISTEN
    token: Secret | None = None  # bearer token the write endpoints require
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # larger bodies: 413, never read


@dataclass(frozen=True)
class GrafanaSettings:
    """Optional push of recommendations as Grafana annotations."""

    url: str
    token: Secret
    dashboard_uid: str | None = None  # None: organisation-wide annotations
    tags: tuple[str, ...] = ("infrascope", "recommendation")


@dataclass(frozen=True)
class Config:
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    state_path: Path = Path(DEFAULT_STATE_PATH)
    api: ApiSettings = field(default_factory=ApiSettings)
    interval_seconds: float = DEFAULT_INTERVAL  # periodic regeneration in `serve`
    grafana: GrafanaSettings | None = None
    dashboard_url: str | None = None  # Grafana server board URL, for links in reports
    warnings: tuple[str, ...] = ()  # e.g. a secret file readable by others; never fatal


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_KEYS: dict[str, set[str]] = {
    "": {"prometheus", "rules", "state", "api", "schedule", "grafana", "dashboard_url"},
    "prometheus": {"url", "bearer_token_file", "basic_auth", "headers", "tls", "timeout",
                   "retries", "backoff", "compression", "exporter_job", "agent_job"},
    "prometheus.basic_auth": {"username", "password_file"},
    "prometheus.tls": {"ca_file", "cert_file", "key_file", "insecure_skip_verify"},
    "state": {"path"},
    "api": {"listen", "token_file", "max_request_bytes"},
    "schedule": {"interval"},
    "grafana": {"url", "token_file", "dashboard_uid", "tags"},
}


def parse_duration(value: Any, key: str) -> float:
    """``30s``, ``5m``, ``24h``, ``1d`` or a number of seconds; positive."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like 30s or 24h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ConfigError(f"{key}: expected a duration like 30s or 24h, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{key}: must be positive, got {value!r}")
    return seconds


def _text(value: Any, key: str) -> str:
    """A non-empty string (a number where a name or path belongs is a typo, a list too)."""
    if not isinstance(value, str) or not value.strip():
        got = "an empty string" if isinstance(value, str) else type(value).__name__
        raise ConfigError(f"{key}: expected a non-empty string, got {got}")
    return value


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {type(value).__name__}")
    return value


def _check_token(token: str, key: str, where: str) -> None:
    """A token is one line without whitespace; the message names ``where``, not the token."""
    if "\n" in token or "\r" in token:
        raise ConfigError(f"{key}: {where} holds {_lines(token)} lines; a token is one line")
    if any(c.isspace() for c in token):
        raise ConfigError(f"{key}: the token in {where} contains whitespace")
    if any(not c.isprintable() for c in token):
        raise ConfigError(f"{key}: the token in {where} contains control characters")


def _lines(text: str) -> int:
    """Lines of a file's content without its final line end (empty lines count)."""
    return len(re.split(r"\r\n|\r|\n", text))


def _strip_line_end(text: str) -> str:
    """One trailing line end is how editors save a file; anything else is content."""
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            return text[:-len(end)]
    return text


class _Secrets:
    """Reads the secret files of one configuration and collects the warnings about them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def read(self, path: Any, key: str, token: bool = True) -> Secret:
        """The file's one line. ``token``: no whitespace either (bearer and API tokens);
        a password may hold spaces but not a second line."""
        name = _text(path, key)
        try:
            with open(name, encoding="utf-8") as f:
                mode = os.fstat(f.fileno()).st_mode
                text = _strip_line_end(f.read())
        except UnicodeDecodeError:
            raise ConfigError(f"{key}: {name} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {name}: {exc.strerror}") from None
        if not text.strip():
            raise ConfigError(f"{key}: {name} is empty")
        if token:
            _check_token(text, key, name)
        elif "\n" in text or "\r" in text:
            raise ConfigError(f"{key}: {name} holds {_lines(text)} lines; "
                              f"a password is one line")
        if stat.S_IMODE(mode) & 0o077:
            self.warnings.append(
                f"{key}: {name} is accessible to group or others (mode "
                f"{stat.S_IMODE(mode):04o}); a secret file should be readable by the "
                f"recommender's user alone: chmod 600 {name}")
        return Secret(text)

    def env(self, env: Mapping[str, str], name: str) -> Secret:
        """A token given in the environment variable ``name`` itself."""
        _check_token(env[name], name, f"${name}")
        return Secret(env[name])


def _listen_address(value: Any, key: str) -> str:
    """``[HOST]:PORT`` by the one rule of :mod:`infrascope_core.address` (PORT 1-65535)."""
    text = _text(value, key) if not isinstance(value, int) else str(value)
    try:
        address.parse_host_port(text)
    except address.AddressError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return text


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name.rsplit(".", 1)[-1]) if data else None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - _KEYS[name]
    if unknown:
        raise ConfigError(f"{name}.{sorted(map(str, unknown))[0]}: unknown key "
                          f"(known: {', '.join(sorted(_KEYS[name]))})")
    return value


def _url(value: Any, key: str) -> str:
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", text):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return text


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the YAML file (optional), then the environment, then ``overrides``.

    Environment: ``PROMETHEUS_URL``, ``PROMETHEUS_BEARER_TOKEN`` (or
    ``PROMETHEUS_BEARER_TOKEN_FILE``), ``RECOMMENDER_STATE_PATH``,
    ``RECOMMENDER_LISTEN_ADDRESS``, ``RECOMMENDER_API_TOKEN`` (or ``_FILE``).
    ``overrides`` holds flag values: ``prometheus_url``, ``state_path``, ``listen``,
    ``interval``.
    """
    env = os.environ if env is None else env
    overrides = overrides or {}
    secrets = _Secrets()
    data: Mapping[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--config.file: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--config.file: {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            # YAML's own message quotes the offending line, which may hold a header value
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"--config.file: {path} is not valid YAML{where}: "
                              f"{problem}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"--config.file: {path} must hold a mapping at the top level")
        unknown = set(raw) - _KEYS[""]
        if unknown:
            raise ConfigError(f"{sorted(map(str, unknown))[0]}: unknown key "
                              f"(known: {', '.join(sorted(_KEYS['']))})")
        data = raw

    prom = _section(data, "prometheus")
    basic = _section(prom, "prometheus.basic_auth")
    tls = _section(prom, "prometheus.tls")
    url = overrides.get("prometheus_url") or env.get("PROMETHEUS_URL") or _text(
        prom.get("url", DEFAULT_PROMETHEUS_URL), "prometheus.url")
    bearer: Secret | None = None
    if env.get("PROMETHEUS_BEARER_TOKEN"):
        bearer = secrets.env(env, "PROMETHEUS_BEARER_TOKEN")
    elif env.get("PROMETHEUS_BEARER_TOKEN_FILE"):
        bearer = secrets.read(env["PROMETHEUS_BEARER_TOKEN_FILE"],
                              "PROMETHEUS_BEARER_TOKEN_FILE")
    elif prom.get("bearer_token_file") is not None:
        bearer = secrets.read(prom["bearer_token_file"], "prometheus.bearer_token_file")
    basic_user = (_text(basic["username"], "prometheus.basic_auth.username")
                  if basic.get("username") is not None else None)
    basic_password = (secrets.read(basic["password_file"], "prometheus.basic_auth.password_file",
                                   token=False)
                      if basic.get("password_file") is not None else None)
    if basic_user is not None and basic_password is None:
        raise ConfigError("prometheus.basic_auth.password_file: required with username")
    if basic_password is not None and basic_user is None:
        raise ConfigError("prometheus.basic_auth.username: required with password_file")
    if bearer is not None and basic_user is not None:
        raise ConfigError("prometheus.basic_auth: use either a bearer token or basic auth")
    headers = prom.get("headers")
    headers = {} if headers is None else headers
    if not isinstance(headers, Mapping):
        raise ConfigError("prometheus.headers: expected a mapping of header name to value")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(f"prometheus.headers: {str(name)[:40]!r} is not a header name")
        if isinstance(value, bool) or not isinstance(value, (str, int)) or any(
                c in str(value) for c in "\r\n\0"):
            # never echoed: a header value may be a credential
            raise ConfigError(f"prometheus.headers.{name}: expected one line of text")
    retries = prom.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ConfigError(f"prometheus.retries: expected an integer 0..10, got {retries!r}")
    compression = prom.get("compression", False)
    if not isinstance(compression, bool):
        raise ConfigError(f"prometheus.compression: expected true or false, got {compression!r}")
    tls_files: dict[str, str | None] = {}
    for tls_key in ("ca_file", "cert_file", "key_file"):
        value = tls.get(tls_key)
        tls_files[tls_key] = None if value is None else _text(value, f"prometheus.tls.{tls_key}")
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"prometheus.tls.{tls_key}: no such file: {value}")
    if (tls_files["cert_file"] is None) != (tls_files["key_file"] is None):
        raise ConfigError("prometheus.tls: cert_file and key_file go together")
    prometheus = PrometheusSettings(
        url=_url(url, "prometheus.url"),
        bearer_token=bearer,
        basic_auth_user=basic_user,
        basic_auth_password=basic_password,
        headers={str(k): str(v) for k, v in headers.items()},
        tls=TLSSettings(ca_file=tls_files["ca_file"], cert_file=tls_files["cert_file"],
                        key_file=tls_files["key_file"],
                        insecure_skip_verify=_flag(tls.get("insecure_skip_verify", False),
                                                   "prometheus.tls.insecure_skip_verify")),
        timeout_seconds=parse_duration(prom.get("timeout", "30s"), "prometheus.timeout"),
        retries=retries,
        backoff_seconds=parse_duration(prom.get("backoff", "0.5s"), "prometheus.backoff"),
        compression=compression,
        exporter_job=_text(prom.get("exporter_job", "hetzner"), "prometheus.exporter_job"),
        agent_job=_text(prom.get("agent_job", "infrascope-agent"), "prometheus.agent_job"),
    )

    rules = data.get("rules")
    rules = {} if rules is None else rules
    if not isinstance(rules, Mapping):
        raise ConfigError("rules: expected a mapping")
    thresholds = parse_thresholds(rules)  # raises ConfigError naming rules.<key>

    state = _section(data, "state")
    state_path = Path(str(overrides.get("state_path") or env.get("RECOMMENDER_STATE_PATH")
                          or _text(state.get("path", DEFAULT_STATE_PATH), "state.path")))

    api = _section(data, "api")
    listen = _listen_address(overrides.get("listen") or env.get("RECOMMENDER_LISTEN_ADDRESS")
                             or api.get("listen", DEFAULT_LISTEN), "api.listen")
    api_token: Secret | None = None
    if env.get("RECOMMENDER_API_TOKEN"):
        api_token = secrets.env(env, "RECOMMENDER_API_TOKEN")
    elif env.get("RECOMMENDER_API_TOKEN_FILE"):
        api_token = secrets.read(env["RECOMMENDER_API_TOKEN_FILE"], "RECOMMENDER_API_TOKEN_FILE")
    elif api.get("token_file") is not None:
        api_token = secrets.read(api["token_file"], "api.token_file")

    max_request_bytes = api.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) \
            or not 1024 <= max_request_bytes <= 64 * 2**20:
        raise ConfigError("api.max_request_bytes: expected a number of bytes from 1024 to "
                          f"67108864 (64 MiB), got {max_request_bytes!r}")

    schedule = _section(data, "schedule")
    interval = parse_duration(overrides.get("interval") or schedule.get("interval", "24h"),
                              "schedule.interval")

    grafana_data = _section(data, "grafana")
    grafana: GrafanaSettings | None = None
    if grafana_data:
        if grafana_data.get("url") is None or grafana_data.get("token_file") is None:
            raise ConfigError("grafana: url and token_file are both required")
        tags = grafana_data.get("tags", ["infrascope", "recommendation"])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ConfigError("grafana.tags: expected a list of strings")
        uid = grafana_data.get("dashboard_uid")
        grafana = GrafanaSettings(url=_url(_text(grafana_data["url"], "grafana.url"),
                                           "grafana.url"),
                                  token=secrets.read(grafana_data["token_file"],
                                                     "grafana.token_file"),
                                  dashboard_uid=None if uid is None
                                  else _text(uid, "grafana.dashboard_uid"),
                                  tags=tuple(tags))
    dashboard_url = data.get("dashboard_url")
    return Config(prometheus=prometheus, thresholds=thresholds, state_path=state_path,
                  api=ApiSettings(listen=listen, token=api_token,
                                  max_request_bytes=max_request_bytes),
                  interval_seconds=interval,
                  grafana=grafana,
                  dashboard_url=None if dashboard_url is None
                  else _url(_text(dashboard_url, "dashboard_url"), "dashboard_url"),
                  warnings=tuple(secrets.warnings))
