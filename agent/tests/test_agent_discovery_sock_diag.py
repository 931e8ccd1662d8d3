"""Listeners over netlink sock_diag equal the /proc/net tables, on this real host."""

from __future__ import annotations

import socket

from infrascope_agent.collectors.ports import PortsCollector, sock_diag_listeners
from infrascope_agent.registry import Settings


def test_sock_diag_matches_proc_net_tables() -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::1", 0))
    connected = socket.create_connection(tcp.getsockname())  # not a listener: must not show
    try:
        from_netlink = set(sock_diag_listeners())
        tables = PortsCollector(Settings())
        tables.use_sock_diag = False
        from_tables = set(tables.listeners())
        assert from_netlink == from_tables
        ports = {(listener.protocol, listener.address, listener.port) for listener in from_netlink}
        assert ("tcp", "127.0.0.1", tcp.getsockname()[1]) in ports
        assert ("udp", "::1", udp6.getsockname()[1]) in ports
        assert ("tcp", "127.0.0.1", connected.getsockname()[1]) not in ports
        default = PortsCollector(Settings())
        assert set(default.listeners()) == from_tables and default.use_sock_diag is True
    finally:
        connected.close()
        tcp.close()
        udp6.close()
