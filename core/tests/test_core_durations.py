"""One duration parser: Prometheus' grammar, plus what people write in YAML and the
environment; errors name the key."""

from __future__ import annotations

import pytest

from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError


@pytest.mark.parametrize("value,seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("30d", 30 * 86400), ("2w", 14 * 86400),
    ("1y", 365 * 86400), ("500ms", 0.5), ("1m30s500ms", 90.5), ("1d2h3m4s", 93784),
])
def test_prometheus_durations(value: str, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds
    assert parse_duration(value, "k", prometheus=True) == seconds


@pytest.mark.parametrize("value,seconds", [
    (300, 300), (1.5, 1.5), ("300", 300), ("0.5s", 0.5), ("1.5h", 5400), (" 5m ", 300),
    ("5 m", 300),
])
def test_what_people_write_too(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds


@pytest.mark.parametrize("value", ["300", 300, "0.5s", "1.5h", "5 m"])
def test_prometheus_mode_takes_only_what_prometheus_reads(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^k: .* is not a duration"):
        parse_duration(value, "k", prometheus=True)


def test_numbers_can_be_refused() -> None:
    with pytest.raises(ConfigError):
        parse_duration("2026", "until", numbers=False)
    assert parse_duration("30d", "until", numbers=False) == 30 * 86400


@pytest.mark.parametrize("value", ["", "soon", "-5d", "5", "1d1h1d", "1m1h", "5M", True,
                                   None, [], "30d junk"])
def test_not_a_duration_names_the_key_and_the_value(value: object) -> None:
    if value == "5":
        assert parse_duration(value, "k") == 5  # a number alone is seconds
        return
    with pytest.raises(ConfigError) as err:
        parse_duration(value, "refresh.inventory_interval")
    assert str(err.value).startswith("refresh.inventory_interval: ")
    assert "is not a duration (e.g. 30s, 5m, 1h30m, 30d)" in str(err.value)


def test_zero_and_negative() -> None:
    with pytest.raises(ConfigError, match="^k: must be positive, got '0s'$"):
        parse_duration("0s", "k")
    with pytest.raises(ConfigError, match="must be positive"):
        parse_duration(-1, "k")
    with pytest.raises(ConfigError, match="must be positive"):
        parse_duration(float("nan"), "k")
    assert parse_duration("0s", "k", allow_zero=True, prometheus=True) == 0
