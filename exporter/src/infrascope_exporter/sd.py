"""Prometheus HTTP service discovery for the agents on every server.

``GET /sd`` answers the http_sd format: a list of target groups, one per
server, targeting the agent at the chosen address and port. Each carries the
plain labels ``source``, ``server_id`` and ``server_name`` (kept on every
scraped series, so agent and exporter series join on ``source, server_id``)
and the ``__meta_hetzner_*`` labels Prometheus' own ``hetzner_sd_configs``
produces, so relabel configs written for it keep working. A pure function of
the exporter's :class:`~.snapshot.Snapshot`.
"""

from __future__ import annotations

import re
from typing import Any

from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB

from .model import CloudServer, DedicatedServer
from .snapshot import Snapshot

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _meta_key(key: str) -> str:
    return _INVALID.sub("_", key)


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def cloud_target(server: CloudServer, mode: str, port: int) -> str | None:
    if mode == "public_ipv4":
        return _host_port(server.ipv4, port) if server.ipv4 else None
    if mode == "public_ipv6":
        if not server.ipv6_net:
            return None
        return _host_port(server.ipv6_net.split("/")[0] + "1", port)  # ::1 of the /64
    wanted = mode.split(":", 1)[1]
    for network, ip in server.private_nets:
        if str(network) == wanted and ip:
            return _host_port(ip, port)
    return None


def cloud_group(server: CloudServer, mode: str, port: int) -> dict[str, Any] | None:
    target = cloud_target(server, mode, port)
    if target is None:
        return None
    t = server.server_type
    labels = {
        "source": "cloud",
        "server_id": str(server.id),
        "server_name": server.name,
        "__meta_hetzner_role": "hcloud",
        "__meta_hetzner_server_id": str(server.id),
        "__meta_hetzner_server_name": server.name,
        "__meta_hetzner_server_status": server.status,
        "__meta_hetzner_public_ipv4": server.ipv4 or "",
        "__meta_hetzner_public_ipv6_network": server.ipv6_net or "",
        "__meta_hetzner_hcloud_location": server.location,
        "__meta_hetzner_hcloud_location_network_zone": server.network_zone,
        "__meta_hetzner_hcloud_server_type": t.name,
        "__meta_hetzner_hcloud_cpu_cores": str(t.cores),
        "__meta_hetzner_hcloud_cpu_type": t.cpu_type,
        "__meta_hetzner_hcloud_memory_size_gb": f"{t.memory_bytes / MEMORY_BYTES_PER_GB:g}",
        "__meta_hetzner_hcloud_disk_size_gb": str(server.primary_disk_bytes // DISK_BYTES_PER_GB),
        "__meta_hetzner_hcloud_image_name": server.image,
        "__meta_hetzner_hcloud_project": server.project,
    }
    for network, ip in server.private_nets:
        labels[f"__meta_hetzner_hcloud_private_ipv4_{_meta_key(str(network))}"] = ip
    for key, value in server.labels.items():
        labels[f"__meta_hetzner_hcloud_label_{_meta_key(key)}"] = value
        labels[f"__meta_hetzner_hcloud_labelpresent_{_meta_key(key)}"] = "true"
    return {"targets": [target], "labels": labels}


def dedicated_group(server: DedicatedServer, mode: str, port: int,
                    extra_labels: dict[str, str]) -> dict[str, Any] | None:
    if mode == "public_ipv6" and server.ipv6_net:
        target = _host_port(server.ipv6_net.split("/")[0] + "2", port)
    elif server.ip and mode != "public_ipv6":
        target = _host_port(server.ip, port)
    else:
        return None
    labels = {
        "source": "dedicated",
        "server_id": str(server.number),
        "server_name": server.name,
        "__meta_hetzner_role": "robot",
        "__meta_hetzner_server_id": str(server.number),
        "__meta_hetzner_server_name": server.name,
        "__meta_hetzner_server_status": server.status,
        "__meta_hetzner_public_ipv4": server.ip or "",
        "__meta_hetzner_public_ipv6_network": server.ipv6_net or "",
        "__meta_hetzner_robot_datacenter": server.dc.lower(),
        "__meta_hetzner_robot_product": server.product,
        "__meta_hetzner_robot_cancelled": str(server.cancelled).lower(),
    }
    for key, value in extra_labels.items():
        labels[f"__meta_hetzner_robot_label_{_meta_key(key)}"] = value
    return {"targets": [target], "labels": labels}


def sd_groups(snapshot: Snapshot, source: str | None = None) -> list[dict[str, Any]]:
    """The target groups of every server (of ``source`` only, if given), Cloud first."""
    cfg = snapshot.settings
    groups: list[dict[str, Any]] = []
    if source in (None, "cloud"):
        for p in snapshot.projects:
            for s in p.servers:
                group = cloud_group(s, cfg.sd_address, cfg.agent_port)
                if group:
                    groups.append(group)
    if source in (None, "dedicated") and snapshot.robot is not None:
        for d in snapshot.robot.servers:
            group = dedicated_group(d, cfg.sd_address, cfg.agent_port,
                                    dict(cfg.dedicated_labels.get(d.number, {})))
            if group:
                groups.append(group)
    return groups
