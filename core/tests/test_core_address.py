"""[HOST]:PORT: one rule for every listen address."""

from __future__ import annotations

import pytest

from infrascope_core.address import AddressError, parse_host_port


@pytest.mark.parametrize(("text", "want"), [
    ("127.0.0.1:8790", ("127.0.0.1", 8790)), (":8790", ("", 8790)),
    ("[::1]:65535", ("::1", 65535)), ("localhost:1", ("localhost", 1)),
    ("exporter.example.:8790", ("exporter.example.", 8790))])
def test_valid_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_host_port(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("999.1.1.1:99999", "port '99999' is not a number from 1 to 65535"),
    ("999.1.1.1:8790", "'999.1.1.1' is not an IPv4 address"),
    ("127.0.0.1:0", "port '0' is not a number from 1 to 65535"),
    ("127.0.0.1", "expected [HOST]:PORT"), ("[::zz]:1", "[::zz] is not an IPv6 address"),
    ("::1:8790", "neither an IP address nor a host name"),
    ("host name:1", "neither an IP address nor a host name"),
    ("127.0.0.1:٣", "not a number")])
def test_invalid_addresses_say_which_part(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_host_port(text)


def test_port_zero_only_where_allowed() -> None:
    assert parse_host_port("127.0.0.1:0", port_zero=True) == ("127.0.0.1", 0)
