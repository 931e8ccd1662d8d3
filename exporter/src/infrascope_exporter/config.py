"""Configuration: flags, environment variables and a YAML file, one table.

Precedence: built-in default < YAML file < environment variable < flag. Every
setting has all three forms except the maps (per-product and per-server
prices, several projects), which only YAML can express. A bad value fails at
start with one message naming the key; secrets are wrapped in :class:`Secret`
so that no repr, log line or error message can show them.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CLOUD_ENDPOINT = "https://api.hetzner.cloud/v1"
DEFAULT_ROBOT_ENDPOINT = "https://robot-ws.your-server.de"
DEFAULT_LISTEN = "0.0.0.0:8790"
DEFAULT_AGENT_PORT = 8791


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
class CloudProject:
    name: str
    token: Secret
    endpoint: str = DEFAULT_CLOUD_ENDPOINT


@dataclass(frozen=True)
class RobotAccount:
    user: str
    password: Secret
    endpoint: str = DEFAULT_ROBOT_ENDPOINT


@dataclass(frozen=True)
class DedicatedPrices:
    """Monthly net prices of dedicated servers (Robot has none for owned servers)."""

    by_product: Mapping[str, Decimal] = field(default_factory=dict)
    by_server: Mapping[int, Decimal] = field(default_factory=dict)
    default_from_catalogue: bool = True


@dataclass(frozen=True)
class Config:
    projects: tuple[CloudProject, ...] = ()
    robot: RobotAccount | None = None
    price_mode: str = "net"
    vat_rate_percent: Decimal | None = None  # for dedicated gross; default: Cloud /pricing
    dedicated_prices: DedicatedPrices = field(default_factory=DedicatedPrices)
    cloud_price_overrides: Mapping[int, Decimal] = field(default_factory=dict)
    dedicated_labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    inventory_interval: float = 300.0
    pricing_interval: float = 6 * 3600.0
    metrics_interval: float = 300.0
    robot_interval: float = 600.0
    request_budget: float = 0.8
    cloud_metrics: bool = True
    http_timeout: float = 10.0
    listen_address: str = DEFAULT_LISTEN
    sd_address: str = "public_ipv4"
    agent_port: int = DEFAULT_AGENT_PORT
    render_interval: float = 10.0
    log_level: str = "info"

    def describe(self) -> dict[str, Any]:
        """A secret-free summary, for the start-up log line."""
        return {
            "projects": [p.name for p in self.projects],
            "robot": self.robot is not None,
            "price_mode": self.price_mode,
            "inventory_interval": self.inventory_interval,
            "metrics_interval": self.metrics_interval,
            "request_budget": self.request_budget,
            "listen_address": self.listen_address,
        }


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(f"{key}: {value!r} is not a duration (e.g. 300s, 5m, 6h)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{key}: must be positive")
    return seconds


def parse_money(value: Any, key: str) -> Decimal:
    if isinstance(value, float):
        raise ConfigError(f"{key}: write prices as strings (\"49.00\"), not floats")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{key}: {value!r} is not a decimal amount") from exc
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{key}: must be a non-negative amount")
    return amount


def _read_secret_file(path: str, key: str) -> Secret:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return Secret(value)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: {value!r} is not a boolean")


# (yaml path, flag, env var, kind) for every scalar setting.
SCALARS: list[tuple[str, str, str, str]] = [
    ("cloud.endpoint", "--hcloud-endpoint", "HCLOUD_ENDPOINT", "str"),
    ("cloud.project_name", "--hcloud-project-name", "HCLOUD_PROJECT_NAME", "str"),
    ("cloud.token_file", "--hcloud-token-file", "HCLOUD_TOKEN_FILE", "str"),
    ("robot.endpoint", "--robot-endpoint", "ROBOT_ENDPOINT", "str"),
    ("robot.user", "--robot-user", "ROBOT_USER", "str"),
    ("robot.password_file", "--robot-password-file", "ROBOT_PASSWORD_FILE", "str"),
    ("prices.mode", "--price-mode", "INFRASCOPE_PRICE_MODE", "str"),
    ("prices.vat_rate_percent", "--vat-rate-percent", "INFRASCOPE_VAT_RATE_PERCENT", "money"),
    ("prices.dedicated_default_from_catalogue", "--dedicated-prices-from-catalogue",
     "INFRASCOPE_DEDICATED_PRICES_FROM_CATALOGUE", "bool"),
    ("refresh.inventory_interval", "--inventory-interval", "INFRASCOPE_INVENTORY_INTERVAL",
     "duration"),
    ("refresh.pricing_interval", "--pricing-interval", "INFRASCOPE_PRICING_INTERVAL", "duration"),
    ("refresh.metrics_interval", "--metrics-interval", "INFRASCOPE_METRICS_INTERVAL", "duration"),
    ("refresh.robot_interval", "--robot-interval", "INFRASCOPE_ROBOT_INTERVAL", "duration"),
    ("refresh.render_interval", "--render-interval", "INFRASCOPE_RENDER_INTERVAL", "duration"),
    ("budget.share", "--request-budget", "INFRASCOPE_REQUEST_BUDGET", "float"),
    ("cloud.metrics", "--cloud-metrics", "INFRASCOPE_CLOUD_METRICS", "bool"),
    ("http.timeout", "--http-timeout", "INFRASCOPE_HTTP_TIMEOUT", "duration"),
    ("web.listen_address", "--web.listen-address", "INFRASCOPE_LISTEN_ADDRESS", "str"),
    ("sd.address", "--sd.address", "INFRASCOPE_SD_ADDRESS", "str"),
    ("sd.agent_port", "--sd.agent-port", "INFRASCOPE_SD_AGENT_PORT", "int"),
    ("log.level", "--log.level", "INFRASCOPE_LOG_LEVEL", "str"),
]
HELP = {
    "cloud.endpoint": "Cloud API base URL",
    "cloud.project_name": "name of the single project given by HCLOUD_TOKEN",
    "cloud.token_file": "file holding the single project's API token",
    "robot.endpoint": "Robot web service base URL",
    "robot.user": "Robot web-service user (Robot is optional)",
    "robot.password_file": "file holding the Robot password (or ROBOT_PASSWORD)",
    "prices.mode": "net or gross",
    "prices.vat_rate_percent": "VAT for gross dedicated prices (default: Cloud /pricing)",
    "prices.dedicated_default_from_catalogue": "price dedicated servers without a configured "
                                               "price at the Robot catalogue's list price",
    "refresh.inventory_interval": "how often servers and resources are listed",
    "refresh.pricing_interval": "how often /pricing and /server_types are read",
    "refresh.metrics_interval": "wanted per-server Cloud metrics interval (stretched to fit "
                                "the budget)",
    "refresh.robot_interval": "how often Robot's /server is read (>= 18s keeps under 200/h)",
    "refresh.render_interval": "most frequent re-render of /metrics",
    "budget.share": "share of each project's hourly Cloud limit the exporter may spend",
    "cloud.metrics": "poll /servers/{id}/metrics",
    "http.timeout": "timeout of one API request",
    "web.listen_address": "HOST:PORT to serve /metrics, /sd, /healthz",
    "sd.address": "agent target address: public_ipv4, public_ipv6 or private:<network>",
    "sd.agent_port": "agent port in /sd targets",
    "log.level": "debug, info, warning or error",
}


def build_parser(prog: str = "infrascope-exporter") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=True)
    parser.add_argument("--config.file", dest="config_file", default=None,
                        help="YAML configuration file (env INFRASCOPE_CONFIG)")
    for path, flag, env, kind in SCALARS:
        dest = path.replace(".", "__")
        if kind == "bool":
            parser.add_argument(flag, dest=dest, default=None,
                                action=argparse.BooleanOptionalAction,
                                help=f"{HELP[path]} (env {env}; yaml {path})")
        else:
            parser.add_argument(flag, dest=dest, default=None,
                                help=f"{HELP[path]} (env {env}; yaml {path})")
    return parser


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _convert(kind: str, value: Any, key: str) -> Any:
    if kind == "str":
        return str(value)
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {value!r} is not an integer") from exc
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {value!r} is not a number") from exc
    if kind == "bool":
        return _bool(value, key)
    if kind == "duration":
        return parse_duration(value, key)
    if kind == "money":
        return parse_money(value, key)
    raise AssertionError(kind)


_SECTION_KEYS: dict[str, set[str]] = {
    "cloud": {"endpoint", "project_name", "token_file", "projects", "metrics"},
    "robot": {"endpoint", "user", "password", "password_file", "labels"},
    "prices": {"mode", "vat_rate_percent", "dedicated_default_from_catalogue",
               "dedicated_products", "dedicated_servers", "cloud_servers"},
    "refresh": {"inventory_interval", "pricing_interval", "metrics_interval", "robot_interval",
                "render_interval"},
    "budget": {"share"},
    "http": {"timeout"},
    "web": {"listen_address"},
    "sd": {"address", "agent_port"},
    "log": {"level"},
}
_KNOWN_TOP = set(_SECTION_KEYS)


def load_config(argv: Sequence[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from flags, environment and the YAML file."""
    env = dict(os.environ if environ is None else environ)
    args = build_parser().parse_args(list(argv or []))
    data: dict[str, Any] = {}
    config_file = args.config_file or env.get("INFRASCOPE_CONFIG")
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text())
        except OSError as exc:
            raise ConfigError(f"config.file: cannot read {config_file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            # str(exc) quotes the offending line, which may hold a token: position only.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"config.file: {config_file} is not valid YAML{where}: "
                              f"{problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("config.file: the top level must be a mapping")
        unknown = set(loaded) - _KNOWN_TOP
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown configuration section "
                              f"(known: {', '.join(sorted(_KNOWN_TOP))})")
        for section, value in loaded.items():
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{section}: must be a mapping")
            allowed = _SECTION_KEYS[section]
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{section}.{key}: unknown key "
                                      f"(known in {section}: {', '.join(sorted(allowed))})")
        data = loaded

    values: dict[str, Any] = {}
    for path, flag, env_name, kind in SCALARS:
        raw, key = _get(data, path), path
        if env_name in env and env[env_name] != "":
            raw, key = env[env_name], env_name
        flag_value = getattr(args, path.replace(".", "__"))
        if flag_value is not None:
            raw, key = flag_value, flag
        if raw is not None:
            values[path] = _convert(kind, raw, key)

    projects = _projects(data, values, env)
    robot = _robot(data, values, env)
    mode = values.get("prices.mode", "net")
    if mode not in ("net", "gross"):
        raise ConfigError(f"prices.mode: {mode!r} must be 'net' or 'gross'")
    share = values.get("budget.share", 0.8)
    if not 0 < share <= 1:
        raise ConfigError("budget.share: must be in (0, 1]")
    sd_address = values.get("sd.address", "public_ipv4")
    if sd_address not in ("public_ipv4", "public_ipv6") and not sd_address.startswith("private:"):
        raise ConfigError("sd.address: must be public_ipv4, public_ipv6 or private:<network>")
    port = values.get("sd.agent_port", DEFAULT_AGENT_PORT)
    if not 0 < port < 65536:
        raise ConfigError("sd.agent_port: must be a TCP port")
    listen = values.get("web.listen_address", DEFAULT_LISTEN)
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d+$", listen):
        raise ConfigError(f"web.listen_address: {listen!r} is not HOST:PORT")
    robot_interval = values.get("refresh.robot_interval", 600.0)
    if robot_interval < 18.0:
        raise ConfigError("refresh.robot_interval: must be at least 18s (Robot allows 200 "
                          "GET /server requests an hour)")
    level = values.get("log.level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level: must be debug, info, warning or error")
    if not projects and robot is None:
        raise ConfigError("cloud.projects: nothing to export — set HCLOUD_TOKEN, "
                          "--hcloud-token-file, a projects: list, or a Robot user")
    prices = data.get("prices") or {}
    if not isinstance(prices, Mapping):
        raise ConfigError("prices: must be a mapping")
    return Config(
        projects=projects,
        robot=robot,
        price_mode=mode,
        vat_rate_percent=values.get("prices.vat_rate_percent"),
        dedicated_prices=DedicatedPrices(
            by_product=_price_map(prices.get("dedicated_products"), "prices.dedicated_products",
                                  str),
            by_server=_price_map(prices.get("dedicated_servers"), "prices.dedicated_servers", int),
            default_from_catalogue=values.get("prices.dedicated_default_from_catalogue", True),
        ),
        cloud_price_overrides=_price_map(prices.get("cloud_servers"), "prices.cloud_servers", int),
        dedicated_labels=_dedicated_labels(data),
        inventory_interval=values.get("refresh.inventory_interval", 300.0),
        pricing_interval=values.get("refresh.pricing_interval", 6 * 3600.0),
        metrics_interval=values.get("refresh.metrics_interval", 300.0),
        robot_interval=robot_interval,
        render_interval=values.get("refresh.render_interval", 10.0),
        request_budget=share,
        cloud_metrics=values.get("cloud.metrics", True),
        http_timeout=values.get("http.timeout", 10.0),
        listen_address=listen,
        sd_address=sd_address,
        agent_port=port,
        log_level=level,
    )


def _projects(data: Mapping[str, Any], values: Mapping[str, Any],
              env: Mapping[str, str]) -> tuple[CloudProject, ...]:
    endpoint = values.get("cloud.endpoint", DEFAULT_CLOUD_ENDPOINT).rstrip("/")
    listed = _get(data, "cloud.projects")
    projects: list[CloudProject] = []
    if listed is not None:
        if not isinstance(listed, list):
            raise ConfigError("cloud.projects: must be a list")
        for i, entry in enumerate(listed):
            key = f"cloud.projects[{i}]"
            if not isinstance(entry, Mapping) or not entry.get("name"):
                raise ConfigError(f"{key}.name: every project needs a name")
            if entry.get("token") and entry.get("token_file"):
                raise ConfigError(f"{key}: give token or token_file, not both")
            if entry.get("token_file"):
                token = _read_secret_file(str(entry["token_file"]), f"{key}.token_file")
            elif entry.get("token"):
                token = Secret(str(entry["token"]))
            else:
                raise ConfigError(f"{key}.token: missing (or token_file)")
            projects.append(CloudProject(str(entry["name"]), token,
                                         str(entry.get("endpoint", endpoint)).rstrip("/")))
    single: Secret | None = None
    if values.get("cloud.token_file"):
        single = _read_secret_file(values["cloud.token_file"], "cloud.token_file")
    elif env.get("HCLOUD_TOKEN"):
        single = Secret(env["HCLOUD_TOKEN"])
    if single is not None:
        projects.append(CloudProject(values.get("cloud.project_name", "default"), single,
                                     endpoint))
    names = [p.name for p in projects]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"cloud.projects: duplicate project name {sorted(dupes)[0]!r}")
    return tuple(projects)


def _robot(data: Mapping[str, Any], values: Mapping[str, Any],
           env: Mapping[str, str]) -> RobotAccount | None:
    user = values.get("robot.user")
    if not user:
        return None
    password: Secret | None = None
    if values.get("robot.password_file"):
        password = _read_secret_file(values["robot.password_file"], "robot.password_file")
    elif env.get("ROBOT_PASSWORD"):
        password = Secret(env["ROBOT_PASSWORD"])
    elif _get(data, "robot.password"):
        password = Secret(str(_get(data, "robot.password")))
    if password is None:
        raise ConfigError("robot.password: a Robot user needs a password "
                          "(ROBOT_PASSWORD, --robot-password-file or robot.password_file)")
    return RobotAccount(user, password,
                        values.get("robot.endpoint", DEFAULT_ROBOT_ENDPOINT).rstrip("/"))


def _price_map(raw: Any, key: str, key_type: type) -> dict[Any, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: must be a mapping of id to monthly net price")
    out: dict[Any, Decimal] = {}
    for k, v in raw.items():
        try:
            typed = key_type(k)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}.{k}: not a valid key") from exc
        out[typed] = parse_money(v, f"{key}.{k}")
    return out


def _dedicated_labels(data: Mapping[str, Any]) -> dict[int, dict[str, str]]:
    raw = _get(data, "robot.labels")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("robot.labels: must map server numbers to label maps")
    out: dict[int, dict[str, str]] = {}
    for number, labels in raw.items():
        try:
            key = int(number)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"robot.labels.{number}: not a server number") from exc
        if not isinstance(labels, Mapping):
            raise ConfigError(f"robot.labels.{number}: must be a label map")
        out[key] = {str(k): str(v) for k, v in labels.items()}
    return out
