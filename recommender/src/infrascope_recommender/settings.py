"""Declared settings: a frozen dataclass whose fields say their default, how a YAML value
is checked, and why the default is what it is.

Every number a rule compares against is one such field (``rules.<kind>.<name>`` in the
configuration file), declared with :func:`setting` in the rule's own module; the general
sections of ``rules:`` (:mod:`.thresholds`) are declared the same way. One declaration
gives the default, the validation (:func:`parse_section`: unknown keys refused, every
error naming the key) and the row of the documentation (:func:`table`).

A check is ``(value, key) -> value``: it returns the parsed value or raises
:class:`~infrascope_recommender.config.ConfigError` through :func:`fail`, naming ``key``
(e.g. ``rules.idle.cpu_avg_max: expected a ratio in (0, 1] (0.05 = 5 %), got 5``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, TypeVar

from infrascope_core.errors import ConfigError

Check = Callable[[Any, str], Any]

_T = TypeVar("_T")


def setting(default: Any, check: Check, why: str) -> Any:
    """A field of a settings dataclass: its ``default``, the ``check`` a configured value
    goes through, and ``why`` (one or two sentences of Markdown for the docs table)."""
    metadata = {"check": check, "why": why}
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def fail(key: str, message: str) -> NoReturn:
    raise ConfigError(f"{key}: {message}")


# --------------------------------------------------------------------------- checks

def ratio(value: Any, key: str) -> float:
    """A ratio in (0, 1]: ``0.05`` is 5 %."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(key, f"expected a ratio between 0 and 1, got {value!r}")
    number = float(value)
    if not (0 < number <= 1):
        fail(key, f"expected a ratio in (0, 1] (0.05 = 5 %), got {value!r}")
    return number


def byte_rate(value: Any, key: str) -> float:
    """Bytes per second, a positive number (``50000`` is 50 kB/s)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        fail(key, f"expected bytes per second, a positive number, got {value!r}")
    return float(value)


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        fail(key, f"expected true or false, got {value!r}")
    return value


def integer(minimum: int) -> Check:
    """An integer of at least ``minimum``."""
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value
    return check


def money(value: Any, key: str) -> Decimal:
    """Euros, written as a string (``"1.00"``) or a number; never negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        fail(key, f"expected an amount of euros like \"1.00\", got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        fail(key, f"expected an amount of euros like \"1.00\", got {value!r}")
    if not amount.is_finite() or amount < 0:
        fail(key, f"expected a non-negative amount of euros, got {value!r}")
    return amount


def percent(value: Any, key: str) -> Decimal:
    """A percentage 0..100 (``10`` is 10 %)."""
    amount = money(value, key)
    if amount > 100:
        fail(key, f"expected a percentage 0..100, got {value!r}")
    return amount


def text(value: Any, key: str) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        fail(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def regex(value: Any, key: str) -> str:
    """A regular expression (``""`` allowed: it matches nothing where the rule says so)."""
    if not isinstance(value, str):
        fail(key, f"expected a regular expression, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        fail(key, f"invalid regular expression {value!r}: {exc}")
    return value


def strings(value: Any, key: str) -> tuple[str, ...]:
    """A non-empty list of non-empty strings, stripped."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        fail(key, f"expected a non-empty list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def optional_text(value: Any, key: str) -> str:
    """A string, stripped; ``""`` switches off what it names."""
    if not isinstance(value, str):
        fail(key, f"expected a string (\"\" for none), got {value!r}")
    return value.strip()


def optional_strings(value: Any, key: str) -> tuple[str, ...]:
    """A list of non-empty strings, stripped; ``[]`` switches off what it names."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        fail(key, f"expected a list of strings ([] for none), got {value!r}")
    return tuple(v.strip() for v in value)


def mapping_of(check: Check) -> Check:
    """A mapping of non-empty string keys to values that pass ``check``."""
    def parse(value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            fail(key, f"expected a mapping, got {type(value).__name__}")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                fail(key, f"expected string keys, got {k!r}")
            out[k] = check(v, f"{key}.{k}")
        return out
    return parse


def section(cls: type[Any]) -> Check:
    """A nested settings dataclass (e.g. ``rules.headroom``), parsed from its defaults."""
    def parse(value: Any, key: str) -> Any:
        return parse_section(value, key, cls())
    return parse


# --------------------------------------------------------------------------- sections

def checks(cls: type[Any]) -> dict[str, Check]:
    """The check of each declared field of a settings dataclass, by name."""
    out = {}
    for f in dataclasses.fields(cls):
        check = f.metadata.get("check")
        if check is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting(default, "
                            "check, why)")
        out[f.name] = check
    return out


def parsed(data: Any, key: str, parsers: Mapping[str, Check]) -> dict[str, Any]:
    """The values a YAML mapping gives, each through its check; unknown keys are refused,
    naming the known ones."""
    if not isinstance(data, Mapping):
        fail(key, f"expected a mapping, got {type(data).__name__}")
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name not in parsers:
            fail(f"{key}.{name}", f"unknown key (known: {', '.join(sorted(parsers))})")
        changes[str(name)] = parsers[name](value, f"{key}.{name}")
    return changes


def parse_section(data: Any, key: str, default: _T) -> _T:
    """A YAML mapping -> a copy of the settings dataclass ``default`` with the values it
    gives (see :func:`parsed`). ``None`` is ``default`` itself."""
    if data is None:
        return default
    changes = parsed(data, key, checks(type(default)))
    return dataclasses.replace(default, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------- docs

def shown(value: Any) -> str:
    """A default as it is written in the configuration file (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)


def table(cls: type[Any], skip: tuple[str, ...] = (), prefix: str = "") -> str:
    """The Markdown table ``| key | default | why |`` of a settings dataclass (each key
    after ``prefix``, e.g. ``rules.ha.``)."""
    rows = ["| key | default | why |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        cell = shown(default).replace("|", "\\|")
        rows.append(f"| `{prefix}{f.name}` | `{cell}` | {f.metadata.get('why', '')} |")
    return "\n".join(rows) + "\n"
