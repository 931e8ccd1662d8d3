"""Durations, written the Prometheus way: ``30d``, ``1h30m``, ``5m``, ``500ms``.

One parser for every setting, flag and Prometheus answer that holds a duration. The
grammar is Prometheus' own (``model.ParseDuration``): whole numbers of the units ``y``
(365 days), ``w``, ``d``, ``h``, ``m``, ``s``, ``ms``, largest first, each at most
once. Where a person writes the value (YAML, environment, flags) two forms are taken
too, unless ``prometheus=True`` asks for exactly what Prometheus accepts (a value that
goes into a rule file): a number alone is seconds (YAML ``300``; ``"300"`` from an
environment variable, unless ``numbers=False``), a single unit may carry a fraction
(``0.5s``, ``1.5h``), and spaces between number and unit are ignored.
"""

from __future__ import annotations

import re

from .errors import ConfigError

UNITS: dict[str, float] = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0,
                           "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_COMPOUND = re.compile("".join(rf"(?:(\d+){u})?" for u in UNITS))
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)(ms|[ywdhms])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
EXAMPLES = "30s, 5m, 1h30m, 30d"


def parse_duration(value: object, key: str, *, prometheus: bool = False,
                   numbers: bool = True, allow_zero: bool = False) -> float:
    """Seconds in ``value``, a duration (see the module); positive unless ``allow_zero``.

    Raises :class:`~infrascope_core.errors.ConfigError` naming ``key`` and the value.
    """
    if isinstance(value, bool):  # YAML `yes`: a typo, not one second
        raise ConfigError(f"{key}: {value!r} is not a duration (e.g. {EXAMPLES})")
    if isinstance(value, (int, float)) and not prometheus and numbers:
        seconds = float(value)
    else:
        seconds_or_none = _parse_text(str(value).strip(), prometheus, numbers)
        if seconds_or_none is None:
            raise ConfigError(f"{key}: {value!r} is not a duration (e.g. {EXAMPLES})")
        seconds = seconds_or_none
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise ConfigError(f"{key}: must be positive, got {value!r}")
    return seconds


def _parse_text(text: str, prometheus: bool, numbers: bool) -> float | None:
    match = _COMPOUND.fullmatch(text)
    if text and match:
        return sum(int(n) * unit for n, unit in zip(match.groups(), UNITS.values(),
                                                    strict=True) if n)
    if prometheus:
        return None
    text = text.replace(" ", "")  # `5 m`: a person's spacing, not another value
    match = _FRACTION.fullmatch(text)
    if match:
        return float(match.group(1)) * UNITS[match.group(2)]
    if numbers and _NUMBER.fullmatch(text):
        return float(text)
    return None
