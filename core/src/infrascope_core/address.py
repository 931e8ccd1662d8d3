"""``[HOST]:PORT`` addresses: the one rule for every address a component listens on or
a configuration names.

HOST is empty (every interface), a dotted-quad IPv4 address, an IPv6 address in
brackets or a DNS name; PORT is 1-65535 (0 — the system picks a free port — only where
the caller allows it, e.g. for tests).
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class AddressError(ValueError):
    """Not a ``[HOST]:PORT`` address; the message says which part is wrong (without the
    setting's name: the caller adds it)."""


def parse_host_port(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """``[HOST]:PORT`` -> (host, port); an IPv6 host comes back without its brackets."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise AddressError(f"expected [HOST]:PORT, got {text!r}")
    low = 0 if port_zero else 1
    if not (port.isascii() and port.isdigit()) or not low <= int(port) <= 65535:
        raise AddressError(f"port {port!r} is not a number from {low} to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise AddressError(f"{host} is not an IPv6 address") from None
        return host[1:-1], int(port)
    if host:
        labels = host.rstrip(".").split(".")
        if all(label.isascii() and label.isdigit() for label in labels):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise AddressError(f"{host!r} is not an IPv4 address") from None
        elif len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise AddressError(f"{host!r} is neither an IP address nor a host name (an IPv6 "
                               f"address goes in brackets: [::1]:{port})")
    return host, int(port)
