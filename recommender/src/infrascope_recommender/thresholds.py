"""Rule thresholds and headroom (YAML ``rules:``), with documented defaults.

Every number a rule compares against lives here, in one frozen dataclass tree, so a
deployment can tune it in its configuration file and a test can build any variant with
:func:`dataclasses.replace`. ``recommender/docs/rules.md`` explains every default.

Ratios are ``0..1`` (``0.05`` = 5 %), money is :class:`~decimal.Decimal` euros per
month, percentages are percent (``10`` = 10 %).

YAML layout (every key optional; unknown keys are refused)::

    rules:
      min_coverage: 0.25            # below: the server is excluded, with the reason
      confidence: {high: 0.9, medium: 0.5}
      headroom: {cpu: 0.6, memory: 0.8, disk: 0.8}
      same_cpu_type: true
      idle: {enabled: true, cpu_avg_max: 0.05, memory_p95_max: 0.30, delete_cpu_max: 0.10,
             powered_off: true, min_savings_euros: "1.00"}
      consolidation: {enabled: true, env_label: env,
                      env_values: [staging, stage, dev, development, test],
                      name_pattern: "...", name_patterns: {project: "regex"},
                      min_servers: 2, min_savings_euros: "1.00"}
      rightsize: {enabled: true, cpu_p95_max: 0.5, memory_max: 0.6,
                  min_savings_euros: "1.00", min_savings_percent: 10}
      underprovisioned: {enabled: true, cpu_p95_min: 0.85, memory_p95_min: 0.90}
      dedicated_to_cloud: {enabled: true, locations: {fsn1: fsn1, nbg1: nbg1, hel1: hel1},
                           cpu_types: [shared, dedicated], image: ubuntu-24.04,
                           primary_ipv4_euros: "0.50", min_savings_euros: "5.00",
                           min_savings_percent: 10}

A bad value raises :class:`infrascope_recommender.config.ConfigError` naming the key,
e.g. ``rules.idle.cpu_avg_max: expected a ratio in (0, 1], got 5`` (defined in
``errors``: ``config`` imports this module).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, TypeVar

from .errors import ConfigError

#: Default name pattern of non-production servers (case-insensitive): ``staging``,
#: ``stage``, ``stg``, ``dev``, ``development``, ``test``, ``testing`` or ``qa`` as a
#: word of the server name (words are separated by ``-``, ``_``, ``.`` or digits).
DEFAULT_NONPROD_NAME_PATTERN = (
    r"(?i)(^|[-_.0-9])(staging|stage|stg|dev|development|test|testing|qa)([-_.0-9]|$)"
)


@dataclass(frozen=True)
class ConfidenceBands:
    """Share of the 30 days with data (the lower of CPU and memory coverage)."""

    high: float = 0.9  # >= 27 of 30 days: the figures describe the whole month
    medium: float = 0.5  # >= 15 days: half a month; below (but >= min_coverage): low


@dataclass(frozen=True)
class Headroom:
    """Ceilings on a target server after a change (ratios of the target's capacity)."""

    cpu: float = 0.6  # 30-day p95 CPU demand <= 60 % of the target's cores
    memory: float = 0.8  # 30-day peak memory <= 80 % of the target's memory
    disk: float = 0.8  # used disk <= 80 % of a new server's disk (migrations only)


@dataclass(frozen=True)
class IdleThresholds:
    enabled: bool = True
    cpu_avg_max: float = 0.05  # 30-day average CPU below this: idle
    memory_p95_max: float = 0.30  # and, where memory is known, p95 memory below this
    delete_cpu_max: float = 0.10  # 30-day CPU maximum below this too: nothing ran: delete
    powered_off: bool = True  # a server that is off and has no data: delete (low confidence)
    min_savings_euros: Decimal = Decimal("1.00")  # for "move to the smallest type"


@dataclass(frozen=True)
class ConsolidationThresholds:
    enabled: bool = True
    env_label: str = "env"  # Hetzner label whose value marks non-production servers
    env_values: tuple[str, ...] = ("staging", "stage", "dev", "development", "test")
    name_pattern: str = DEFAULT_NONPROD_NAME_PATTERN  # "" disables name matching
    name_patterns: Mapping[str, str] = field(default_factory=dict)  # per hcloud project
    min_servers: int = 2
    min_savings_euros: Decimal = Decimal("1.00")


@dataclass(frozen=True)
class RightsizeThresholds:
    enabled: bool = True
    cpu_p95_max: float = 0.5  # only servers whose p95 CPU is below half their cores
    memory_max: float = 0.6  # and whose peak memory (where known) is below 60 %
    min_savings_euros: Decimal = Decimal("1.00")  # both minimums must be met
    min_savings_percent: Decimal = Decimal("10")


@dataclass(frozen=True)
class UnderprovisionedThresholds:
    """Matches the rules pack's ``critical`` tier (prometheus/config.yaml ``tiers:``)."""

    enabled: bool = True
    cpu_p95_min: float = 0.85
    memory_p95_min: float = 0.90


@dataclass(frozen=True)
class DedicatedToCloudThresholds:
    enabled: bool = True
    # datacenter prefix of a dedicated server (FSN1-DC14 -> fsn1) -> Cloud location
    locations: Mapping[str, str] = field(
        default_factory=lambda: {"fsn1": "fsn1", "nbg1": "nbg1", "hel1": "hel1"})
    cpu_types: tuple[str, ...] = ("shared", "dedicated")  # Cloud cpu_type allowed
    image: str = "ubuntu-24.04"
    primary_ipv4_euros: Decimal = Decimal("0.50")  # when no Cloud server shows the price
    min_savings_euros: Decimal = Decimal("5.00")  # both minimums must be met
    min_savings_percent: Decimal = Decimal("10")


@dataclass(frozen=True)
class Thresholds:
    min_coverage: float = 0.25  # the rules pack's tiers.min_coverage
    confidence: ConfidenceBands = field(default_factory=ConfidenceBands)
    headroom: Headroom = field(default_factory=Headroom)
    same_cpu_type: bool = True  # in-place changes keep shared/dedicated vCPUs
    idle: IdleThresholds = field(default_factory=IdleThresholds)
    consolidation: ConsolidationThresholds = field(default_factory=ConsolidationThresholds)
    rightsize: RightsizeThresholds = field(default_factory=RightsizeThresholds)
    underprovisioned: UnderprovisionedThresholds = field(
        default_factory=UnderprovisionedThresholds)
    dedicated_to_cloud: DedicatedToCloudThresholds = field(
        default_factory=DedicatedToCloudThresholds)


# --------------------------------------------------------------------------- parsing

def _fail(key: str, message: str) -> NoReturn:
    raise ConfigError(f"{key}: {message}")


def _ratio(value: Any, key: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"expected a ratio between 0 and 1, got {value!r}")
    number = float(value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number <= 1):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        _fail(key, f"expected a ratio in {bounds} (0.05 = 5 %), got {value!r}")
    return number


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        _fail(key, f"expected true or false, got {value!r}")
    return value


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _money(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        _fail(key, f"expected an amount of euros like \"1.00\", got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        _fail(key, f"expected an amount of euros like \"1.00\", got {value!r}")
    if not amount.is_finite() or amount < 0:
        _fail(key, f"expected a non-negative amount of euros, got {value!r}")
    return amount


def _percent(value: Any, key: str) -> Decimal:
    amount = _money(value, key)
    if amount > 100:
        _fail(key, f"expected a percentage 0..100, got {value!r}")
    return amount


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _regex(value: Any, key: str) -> str:
    if not isinstance(value, str):
        _fail(key, f"expected a regular expression, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        _fail(key, f"invalid regular expression {value!r}: {exc}")
    return value


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        _fail(key, f"expected a non-empty list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _str_map(value: Any, key: str, check: Callable[[Any, str], str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        _fail(key, f"expected a mapping, got {type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            _fail(key, f"expected string keys, got {k!r}")
        out[k] = check(v, f"{key}.{k}")
    return out


_T = TypeVar("_T")


def _section(data: Any, key: str, default: _T,
             parsers: Mapping[str, Callable[[Any, str], Any]]) -> _T:
    """Parse a mapping into a replaced copy of ``default``; unknown keys are refused."""
    if data is None:
        return default
    if not isinstance(data, Mapping):
        _fail(key, f"expected a mapping, got {type(data).__name__}")
    known = sorted(parsers)
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name not in parsers:
            _fail(f"{key}.{name}", f"unknown key (known: {', '.join(known)})")
        changes[str(name)] = parsers[name](value, f"{key}.{name}")
    return dataclasses.replace(default, **changes)  # type: ignore[type-var]


def parse_thresholds(data: Mapping[str, Any] | None) -> Thresholds:
    """The ``rules:`` mapping of the configuration file -> :class:`Thresholds`.

    Raises ``ConfigError("rules.<key>: ...")`` on an unknown key or a bad value.
    """
    def ratio(v: Any, k: str) -> float:
        return _ratio(v, k)

    defaults = Thresholds()
    top = _section(data or {}, "rules", defaults, {
        "min_coverage": ratio,
        "confidence": lambda v, k: _section(v, k, defaults.confidence,
                                            {"high": ratio, "medium": ratio}),
        "headroom": lambda v, k: _section(v, k, defaults.headroom,
                                          {"cpu": ratio, "memory": ratio, "disk": ratio}),
        "same_cpu_type": _bool,
        "idle": lambda v, k: _section(v, k, defaults.idle, {
            "enabled": _bool, "cpu_avg_max": ratio, "memory_p95_max": ratio,
            "delete_cpu_max": ratio, "powered_off": _bool, "min_savings_euros": _money}),
        "consolidation": lambda v, k: _section(v, k, defaults.consolidation, {
            "enabled": _bool, "env_label": _text,
            "env_values": _strings, "name_pattern": _regex,
            "name_patterns": lambda v2, k2: _str_map(v2, k2, _regex),
            "min_servers": lambda v2, k2: _int(v2, k2, 2),
            "min_savings_euros": _money}),
        "rightsize": lambda v, k: _section(v, k, defaults.rightsize, {
            "enabled": _bool, "cpu_p95_max": ratio, "memory_max": ratio,
            "min_savings_euros": _money, "min_savings_percent": _percent}),
        "underprovisioned": lambda v, k: _section(v, k, defaults.underprovisioned, {
            "enabled": _bool, "cpu_p95_min": ratio, "memory_p95_min": ratio}),
        "dedicated_to_cloud": lambda v, k: _section(v, k, defaults.dedicated_to_cloud, {
            "enabled": _bool,
            "locations": lambda v2, k2: {p.lower(): loc.lower() for p, loc in
                                         _str_map(v2, k2, _text).items()},
            "cpu_types": _strings, "image": _text, "primary_ipv4_euros": _money,
            "min_savings_euros": _money, "min_savings_percent": _percent}),
    })
    _check(top)
    return top


def _check(t: Thresholds) -> None:
    """Relations between values (each error names the key that has to change)."""
    if t.confidence.medium > t.confidence.high:
        _fail("rules.confidence.medium",
              f"must not exceed rules.confidence.high ({t.confidence.high})")
    if t.min_coverage > t.confidence.medium:
        _fail("rules.min_coverage",
              f"must not exceed rules.confidence.medium ({t.confidence.medium})")
    if t.idle.delete_cpu_max < t.idle.cpu_avg_max:
        _fail("rules.idle.delete_cpu_max",
              f"must be at least rules.idle.cpu_avg_max ({t.idle.cpu_avg_max}): "
              "a maximum below the average is impossible")
    for cpu_type in t.dedicated_to_cloud.cpu_types:
        if cpu_type not in ("shared", "dedicated"):
            _fail("rules.dedicated_to_cloud.cpu_types",
                  f"expected shared and/or dedicated, got {cpu_type!r}")
    if t.rightsize.cpu_p95_max >= t.underprovisioned.cpu_p95_min:
        _fail("rules.rightsize.cpu_p95_max",
              f"must be below rules.underprovisioned.cpu_p95_min "
              f"({t.underprovisioned.cpu_p95_min})")
