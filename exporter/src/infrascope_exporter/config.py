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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from infrascope_core import address
from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError
from infrascope_core.secrets import Secret, check_secret, read_secret_file, readable_by_others

DEFAULT_CLOUD_ENDPOINT = "https://api.hetzner.cloud/v1"
DEFAULT_ROBOT_ENDPOINT = "https://robot-ws.your-server.de"
DEFAULT_LISTEN = "0.0.0.0:8790"
DEFAULT_AGENT_PORT = 8791


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
    # Problems worth a word that do not stop the exporter (secret files readable by
    # others): check-config prints them, the exporter logs them at start.
    warnings: tuple[str, ...] = field(default=(), compare=False)

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


def _string(value: Any, key: str, *, numbers: bool = True) -> str:
    """A YAML scalar as a string; lists, mappings, booleans and null are errors
    (``numbers``: an unquoted number is taken as its text)."""
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    hint = " (quote it)" if isinstance(value, (int, float, bool)) else ""
    raise ConfigError(f"{key}: must be a string{hint}, not {_yaml_type(value)}")


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def parse_host_port(value: str, key: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port) by the one rule of :mod:`infrascope_core.address`
    (port 0 allowed: the system picks one, for tests), for every address the exporter
    listens on."""
    try:
        return address.parse_host_port(value, port_zero=True)
    except address.AddressError as exc:
        raise ConfigError(f"{key}: {value!r}: {exc}") from None


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: {value!r} is not a boolean")


# (yaml path, flag, env var, kind) for every scalar setting. Flags are Prometheus'
# ``--section.flag-name``: the YAML path with ``-`` for ``_`` (see flag_for).
_SETTINGS: list[tuple[str, str, str]] = [
    ("cloud.endpoint", "HCLOUD_ENDPOINT", "str"),
    ("cloud.project_name", "HCLOUD_PROJECT_NAME", "str"),
    ("cloud.token_file", "HCLOUD_TOKEN_FILE", "str"),
    ("robot.endpoint", "ROBOT_ENDPOINT", "str"),
    ("robot.user", "ROBOT_USER", "str"),
    ("robot.password_file", "ROBOT_PASSWORD_FILE", "str"),
    ("prices.mode", "INFRASCOPE_PRICE_MODE", "str"),
    ("prices.vat_rate_percent", "INFRASCOPE_VAT_RATE_PERCENT", "money"),
    ("prices.dedicated_default_from_catalogue", "INFRASCOPE_DEDICATED_PRICES_FROM_CATALOGUE",
     "bool"),
    ("refresh.inventory_interval", "INFRASCOPE_INVENTORY_INTERVAL", "duration"),
    ("refresh.pricing_interval", "INFRASCOPE_PRICING_INTERVAL", "duration"),
    ("refresh.metrics_interval", "INFRASCOPE_METRICS_INTERVAL", "duration"),
    ("refresh.robot_interval", "INFRASCOPE_ROBOT_INTERVAL", "duration"),
    ("refresh.render_interval", "INFRASCOPE_RENDER_INTERVAL", "duration"),
    ("budget.share", "INFRASCOPE_REQUEST_BUDGET", "float"),
    ("cloud.metrics", "INFRASCOPE_CLOUD_METRICS", "bool"),
    ("http.timeout", "INFRASCOPE_HTTP_TIMEOUT", "duration"),
    ("web.listen_address", "INFRASCOPE_LISTEN_ADDRESS", "str"),
    ("sd.address", "INFRASCOPE_SD_ADDRESS", "str"),
    ("sd.agent_port", "INFRASCOPE_SD_AGENT_PORT", "int"),
    ("log.level", "INFRASCOPE_LOG_LEVEL", "str"),
]


def flag_for(path: str) -> str:
    """A YAML path as a flag: ``refresh.inventory_interval``, ``--refresh.inventory-interval``."""
    return "--" + path.replace("_", "-")


SCALARS: list[tuple[str, str, str, str]] = [(path, flag_for(path), env, kind)
                                            for path, env, kind in _SETTINGS]
# The spellings of the first releases, kept as aliases: scripts and units that use them
# keep working (the README lists them beside the flags).
FLAG_ALIASES: dict[str, str] = {
    "cloud.endpoint": "--hcloud-endpoint",
    "cloud.project_name": "--hcloud-project-name",
    "cloud.token_file": "--hcloud-token-file",
    "robot.endpoint": "--robot-endpoint",
    "robot.user": "--robot-user",
    "robot.password_file": "--robot-password-file",
    "prices.mode": "--price-mode",
    "prices.vat_rate_percent": "--vat-rate-percent",
    "prices.dedicated_default_from_catalogue": "--dedicated-prices-from-catalogue",
    "refresh.inventory_interval": "--inventory-interval",
    "refresh.pricing_interval": "--pricing-interval",
    "refresh.metrics_interval": "--metrics-interval",
    "refresh.robot_interval": "--robot-interval",
    "refresh.render_interval": "--render-interval",
    "budget.share": "--request-budget",
    "cloud.metrics": "--cloud-metrics",
    "http.timeout": "--http-timeout",
}
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


class _Store(argparse.Action):
    """Store the value and remember the spelling used, so an error names the flag as typed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        _remember(namespace, self.dest, option_string)


class _StoreBool(argparse.BooleanOptionalAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _remember(namespace, self.dest, option_string)


def _remember(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    if option_string:
        spellings = vars(namespace).setdefault("flag_spellings", {})
        spellings[dest] = option_string


def build_parser(prog: str = "infrascope-exporter") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=True)
    parser.add_argument("--config.file", dest="config_file", default=None,
                        help="YAML configuration file (env INFRASCOPE_CONFIG)")
    for path, flag, env, kind in SCALARS:
        dest = path.replace(".", "__")
        flags = [flag] + ([FLAG_ALIASES[path]] if path in FLAG_ALIASES else [])
        text = f"{HELP[path]} (env {env}; yaml {path})"
        if kind == "bool":
            parser.add_argument(*flags, dest=dest, default=None, action=_StoreBool, help=text)
        else:
            parser.add_argument(*flags, dest=dest, default=None, action=_Store, help=text,
                                metavar=path.rsplit(".", 1)[1].upper())
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
        return _string(value, key)
    if isinstance(value, (list, Mapping)) or (isinstance(value, bool) and kind != "bool"):
        raise ConfigError(f"{key}: must be a single value, not {_yaml_type(value)}")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: {value!r} is not an integer")
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
        for section in loaded:
            if not isinstance(section, str):
                raise ConfigError(f"{section}: unknown configuration section "
                                  f"(known: {', '.join(sorted(_KNOWN_TOP))})")
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
                if not isinstance(key, str) or key not in allowed:
                    raise ConfigError(f"{section}.{key}: unknown key "
                                      f"(known in {section}: {', '.join(sorted(allowed))})")
        data = loaded

    values: dict[str, Any] = {}
    named: dict[str, str] = {}  # setting -> where it came from, for error messages
    for path, flag, env_name, kind in SCALARS:
        raw, key = _get(data, path), path
        if env_name in env and env[env_name] != "":
            raw, key = env[env_name], env_name
        dest = path.replace(".", "__")
        flag_value = getattr(args, dest)
        if flag_value is not None:
            raw, key = flag_value, vars(args).get("flag_spellings", {}).get(dest, flag)
        if raw is not None:
            values[path] = _convert(kind, raw, key)
            named[path] = key

    warnings: list[str] = []
    projects = _projects(data, values, env, warnings)
    robot = _robot(data, values, env, warnings)
    if config_file and _has_inline_secret(data):
        try:
            mode = os.stat(config_file).st_mode
        except OSError:
            mode = 0
        warning = readable_by_others(config_file, mode, "config.file")
        if warning:
            warnings.append(warning)
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
    parse_host_port(listen, named.get("web.listen_address", "web.listen_address"))
    robot_interval = values.get("refresh.robot_interval", 600.0)
    if robot_interval < 18.0:
        raise ConfigError("refresh.robot_interval: must be at least 18s (Robot allows 200 "
                          "GET /server requests an hour)")
    level = values.get("log.level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level: must be debug, info, warning or error")
    if not projects and robot is None:
        raise ConfigError("cloud.projects: nothing to export — set HCLOUD_TOKEN, "
                          "--cloud.token-file, a projects: list, or a Robot user")
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
        warnings=tuple(warnings),
    )


def _has_inline_secret(data: Mapping[str, Any]) -> bool:
    listed = _get(data, "cloud.projects")
    return bool(_get(data, "robot.password")) or (isinstance(listed, list) and any(
        isinstance(entry, Mapping) and entry.get("token") for entry in listed))


_PROJECT_KEYS = ("name", "token", "token_file", "endpoint")


def _projects(data: Mapping[str, Any], values: Mapping[str, Any],
              env: Mapping[str, str], warnings: list[str]) -> tuple[CloudProject, ...]:
    endpoint = values.get("cloud.endpoint", DEFAULT_CLOUD_ENDPOINT).rstrip("/")
    listed = _get(data, "cloud.projects")
    projects: list[CloudProject] = []
    if listed is not None:
        if not isinstance(listed, list):
            raise ConfigError("cloud.projects: must be a list")
        for i, entry in enumerate(listed):
            key = f"cloud.projects[{i}]"
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{key}: must be a mapping (name, token or token_file, "
                                  f"endpoint), not {_yaml_type(entry)}")
            for k in entry:
                if k not in _PROJECT_KEYS:
                    raise ConfigError(f"{key}.{k}: unknown key "
                                      f"(known in a project: {', '.join(_PROJECT_KEYS)})")
            if not entry.get("name"):
                raise ConfigError(f"{key}.name: every project needs a name")
            name = _string(entry["name"], f"{key}.name")
            if entry.get("token") and entry.get("token_file"):
                raise ConfigError(f"{key}: give token or token_file, not both")
            if entry.get("token_file"):
                token = read_secret_file(_string(entry["token_file"], f"{key}.token_file"),
                                         f"{key}.token_file", warnings)
            elif entry.get("token") is not None and entry.get("token") != "":
                value = _string(entry["token"], f"{key}.token", numbers=False)
                token = Secret(check_secret(value, f"{key}.token"))
            else:
                raise ConfigError(f"{key}.token: missing (or token_file)")
            project_endpoint = _string(entry.get("endpoint", endpoint), f"{key}.endpoint")
            projects.append(CloudProject(name, token, project_endpoint.rstrip("/")))
    single: Secret | None = None
    if values.get("cloud.token_file"):
        single = read_secret_file(values["cloud.token_file"], "cloud.token_file", warnings)
    elif env.get("HCLOUD_TOKEN"):
        single = Secret(check_secret(env["HCLOUD_TOKEN"], "HCLOUD_TOKEN"))
    if single is not None:
        projects.append(CloudProject(values.get("cloud.project_name", "default"), single,
                                     endpoint))
    names = [p.name for p in projects]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"cloud.projects: duplicate project name {sorted(dupes)[0]!r}")
    return tuple(projects)


def _robot(data: Mapping[str, Any], values: Mapping[str, Any],
           env: Mapping[str, str], warnings: list[str]) -> RobotAccount | None:
    user = values.get("robot.user")
    if not user:
        return None
    password: Secret | None = None
    if values.get("robot.password_file"):
        # Robot passwords are chosen by people: inner spaces are allowed, lines are not.
        password = read_secret_file(values["robot.password_file"], "robot.password_file",
                                    warnings, spaces=True)
    elif env.get("ROBOT_PASSWORD"):
        password = Secret(check_secret(env["ROBOT_PASSWORD"], "ROBOT_PASSWORD", spaces=True))
    elif _get(data, "robot.password") is not None:
        value = _string(_get(data, "robot.password"), "robot.password", numbers=False)
        password = Secret(check_secret(value, "robot.password", spaces=True))
    if password is None:
        raise ConfigError("robot.password: a Robot user needs a password "
                          "(ROBOT_PASSWORD, --robot.password-file or robot.password_file)")
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
        out[key] = {_string(k, f"robot.labels.{number}.{k}"):
                    _string(v, f"robot.labels.{number}.{k}") for k, v in labels.items()}
    return out
