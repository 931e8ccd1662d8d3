"""Series shared by the discovery collectors (docker, systemd, ports).

``infrascope_service_info`` and the usage families are emitted by both the
docker and the systemd collector; the registry merges same-named families, so
both must build them here with the same type and help text.

Only names, states, images and the two compose labels ever become label
values: never command lines, environment variables or other container labels
(any of which can carry a secret).
"""

from __future__ import annotations

import threading

from prometheus_client.core import Metric

from .cgroups import Usage
from .registry import add, family

SERVICE_INFO = "infrascope_service_info"
SERVICE_CPU = "infrascope_service_cpu_seconds"  # exposed with the _total suffix
SERVICE_MEMORY = "infrascope_service_memory_bytes"
LISTEN_PORT_INFO = "infrascope_listen_port_info"


def service_families() -> tuple[Metric, Metric, Metric]:
    info = family(SERVICE_INFO, "gauge",
                  "A service found on the host (systemd unit or container).")
    cpu = family(SERVICE_CPU, "counter",
                 "CPU seconds used by the service's cgroup (systemd unit or container).")
    memory = family(SERVICE_MEMORY, "gauge",
                    "Working-set memory of the service's cgroup: usage minus inactive file "
                    "cache, in bytes.")
    return info, cpu, memory


def listen_port_family() -> Metric:
    return family(LISTEN_PORT_INFO, "gauge", "A listening socket and the service that owns it.")


def add_usage(cpu: Metric, memory: Metric, kind: str, service: str, usage: Usage) -> None:
    labels = {"kind": kind, "service": service}
    if usage.cpu_seconds is not None:
        add(cpu, labels, usage.cpu_seconds, "_total")
    if usage.memory_bytes is not None:
        add(memory, labels, usage.memory_bytes)


class ContainerNames:
    """Container id -> name, as last listed by the docker collector.

    The ports collector names the container owning a socket with it; until the
    docker collector has listed the containers once (or when Docker is
    unreachable) the 12-character short id is used, as ``docker ps`` shows it.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def replace(self, names: dict[str, str]) -> None:
        with self._lock:
            self._names = dict(names)

    def name(self, container_id: str) -> str:
        with self._lock:
            return self._names.get(container_id) or container_id[:12]


CONTAINER_NAMES = ContainerNames()

__all__ = ["CONTAINER_NAMES", "LISTEN_PORT_INFO", "SERVICE_CPU", "SERVICE_INFO",
           "SERVICE_MEMORY", "ContainerNames", "add_usage", "listen_port_family",
           "service_families"]
