"""Configuration: one YAML file (``--config``), a few flags and environment variables.

Precedence: built-in default < YAML file < environment variable < flag. A bad value
fails at start with one :class:`ConfigError` naming the key. Secrets (bearer tokens,
passwords) are read from files or the environment and wrapped in :class:`Secret`, so
no repr, log line or error message can show them.

The rule thresholds live under ``rules:`` and are parsed by
:func:`infrascope_recommender.thresholds.parse_thresholds` (documented there and in the
README); everything else is here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .thresholds import Thresholds, parse_thresholds

DEFAULT_PROMETHEUS_URL = "http://localhost:9090"
DEFAULT_LISTEN = "127.0.0.1:8792"
DEFAULT_STATE_PATH = "recommender.db"
DEFAULT_INTERVAL = 24 * 3600.0
# The largest legitimate request (a dismissal with every text at its maximum length, each
# character JSON-escaped) is under 30 KiB; anything larger is answered 413 unread.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


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


def _read_secret(path: Any, key: str) -> Secret:
    try:
        text = Path(str(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{key}: {path} is empty")
    return Secret(text)


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name.rsplit(".", 1)[-1]) if data else None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - _KEYS[name]
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}: unknown key "
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
    data: Mapping[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"--config: {path} must hold a mapping at the top level")
        unknown = set(raw) - _KEYS[""]
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown key "
                              f"(known: {', '.join(sorted(_KEYS['']))})")
        data = raw

    prom = _section(data, "prometheus")
    basic = _section(prom, "prometheus.basic_auth")
    tls = _section(prom, "prometheus.tls")
    url = overrides.get("prometheus_url") or env.get("PROMETHEUS_URL") or prom.get(
        "url", DEFAULT_PROMETHEUS_URL)
    bearer: Secret | None = None
    if env.get("PROMETHEUS_BEARER_TOKEN"):
        bearer = Secret(env["PROMETHEUS_BEARER_TOKEN"])
    elif env.get("PROMETHEUS_BEARER_TOKEN_FILE"):
        bearer = _read_secret(env["PROMETHEUS_BEARER_TOKEN_FILE"], "PROMETHEUS_BEARER_TOKEN_FILE")
    elif prom.get("bearer_token_file"):
        bearer = _read_secret(prom["bearer_token_file"], "prometheus.bearer_token_file")
    basic_user = basic.get("username")
    basic_password = (_read_secret(basic["password_file"], "prometheus.basic_auth.password_file")
                      if basic.get("password_file") else None)
    if basic_user is not None and basic_password is None:
        raise ConfigError("prometheus.basic_auth.password_file: required with username")
    if bearer is not None and basic_user is not None:
        raise ConfigError("prometheus.basic_auth: use either a bearer token or basic auth")
    headers = prom.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (str, int)) for k, v in headers.items()):
        raise ConfigError("prometheus.headers: expected a mapping of header name to value")
    retries = prom.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ConfigError(f"prometheus.retries: expected an integer 0..10, got {retries!r}")
    compression = prom.get("compression", False)
    if not isinstance(compression, bool):
        raise ConfigError(f"prometheus.compression: expected true or false, got {compression!r}")
    for tls_key in ("ca_file", "cert_file", "key_file"):
        if tls.get(tls_key) and not Path(str(tls[tls_key])).is_file():
            raise ConfigError(f"prometheus.tls.{tls_key}: no such file: {tls[tls_key]}")
    prometheus = PrometheusSettings(
        url=_url(url, "prometheus.url"),
        bearer_token=bearer,
        basic_auth_user=str(basic_user) if basic_user is not None else None,
        basic_auth_password=basic_password,
        headers={str(k): str(v) for k, v in headers.items()},
        tls=TLSSettings(ca_file=tls.get("ca_file"), cert_file=tls.get("cert_file"),
                        key_file=tls.get("key_file"),
                        insecure_skip_verify=bool(tls.get("insecure_skip_verify", False))),
        timeout_seconds=parse_duration(prom.get("timeout", "30s"), "prometheus.timeout"),
        retries=retries,
        backoff_seconds=parse_duration(prom.get("backoff", "0.5s"), "prometheus.backoff"),
        compression=compression,
        exporter_job=str(prom.get("exporter_job", "hetzner")),
        agent_job=str(prom.get("agent_job", "infrascope-agent")),
    )

    rules = data.get("rules") or {}
    if not isinstance(rules, Mapping):
        raise ConfigError("rules: expected a mapping")
    thresholds = parse_thresholds(rules)  # raises ConfigError naming rules.<key>

    state = _section(data, "state")
    state_path = Path(str(overrides.get("state_path") or env.get("RECOMMENDER_STATE_PATH")
                          or state.get("path", DEFAULT_STATE_PATH)))

    api = _section(data, "api")
    listen = str(overrides.get("listen") or env.get("RECOMMENDER_LISTEN_ADDRESS")
                 or api.get("listen", DEFAULT_LISTEN))
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$", listen):
        raise ConfigError(f"api.listen: expected [HOST]:PORT, got {listen!r}")
    api_token: Secret | None = None
    if env.get("RECOMMENDER_API_TOKEN"):
        api_token = Secret(env["RECOMMENDER_API_TOKEN"])
    elif env.get("RECOMMENDER_API_TOKEN_FILE"):
        api_token = _read_secret(env["RECOMMENDER_API_TOKEN_FILE"], "RECOMMENDER_API_TOKEN_FILE")
    elif api.get("token_file"):
        api_token = _read_secret(api["token_file"], "api.token_file")

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
        if not grafana_data.get("url") or not grafana_data.get("token_file"):
            raise ConfigError("grafana: url and token_file are both required")
        tags = grafana_data.get("tags", ["infrascope", "recommendation"])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError("grafana.tags: expected a list of strings")
        grafana = GrafanaSettings(url=_url(grafana_data["url"], "grafana.url"),
                                  token=_read_secret(grafana_data["token_file"],
                                                     "grafana.token_file"),
                                  dashboard_uid=grafana_data.get("dashboard_uid"),
                                  tags=tuple(tags))
    dashboard_url = data.get("dashboard_url")
    return Config(prometheus=prometheus, thresholds=thresholds, state_path=state_path,
                  api=ApiSettings(listen=listen, token=api_token,
                                  max_request_bytes=max_request_bytes),
                  interval_seconds=interval,
                  grafana=grafana,
                  dashboard_url=_url(dashboard_url, "dashboard_url") if dashboard_url else None)
