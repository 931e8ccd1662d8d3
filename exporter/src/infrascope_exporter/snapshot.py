"""Everything one rendering reads, as one frozen value.

:meth:`infrascope_exporter.exporter.Exporter.snapshot` copies the exporter's last
good data, its self-health figures and the configuration bits that shape the
series into a :class:`Snapshot` under its lock, once per rendering; the
renderers (:func:`infrascope_exporter.exposition.render`,
:func:`infrascope_exporter.sd.sd_groups`) are pure functions of it: no lock, no
exporter object, no I/O, testable with a hand-made snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TypeVar

from .model import (
    CloudServer,
    DedicatedProduct,
    DedicatedServer,
    MetricsSample,
    Pricing,
    Resource,
    ServerType,
)

Labels = Mapping[str, str]
K = TypeVar("K")
V = TypeVar("V")


def frozen_map(data: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only view of a copy of ``data``."""
    return MappingProxyType(dict(data))


@dataclass(frozen=True)
class Settings:
    """The configuration that shapes the series (prices, labels, /sd targets)."""

    price_mode: str = "net"
    vat_rate_percent: Decimal | None = None
    """For configured dedicated prices in gross mode; None: the Cloud account's rate."""
    dedicated_by_server: Mapping[int, Decimal] = field(default_factory=dict)
    dedicated_by_product: Mapping[str, Decimal] = field(default_factory=dict)
    dedicated_from_catalogue: bool = True
    cloud_price_overrides: Mapping[int, Decimal] = field(default_factory=dict)
    dedicated_labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    apis: tuple[tuple[str, str], ...] = ()
    """The configured APIs as (api, project): every Cloud project, then Robot."""
    sd_address: str = "public_ipv4"
    agent_port: int = 0
    build_labels: Labels = field(default_factory=dict)
    """Labels of ``infrascope_exporter_build_info``."""


@dataclass(frozen=True)
class ProjectSnapshot:
    """One Cloud project's last good data."""

    name: str
    servers: tuple[CloudServer, ...] = ()
    resources: tuple[Resource, ...] = ()
    server_types: tuple[ServerType, ...] = ()
    pricing: Pricing | None = None
    metrics: Mapping[int, MetricsSample] = field(default_factory=dict)
    """The last Cloud metrics sample per server id."""


@dataclass(frozen=True)
class RobotSnapshot:
    """The Robot account's last good data."""

    servers: tuple[DedicatedServer, ...] = ()
    products: Mapping[str, DedicatedProduct] = field(default_factory=dict)
    """The Robot catalogue (empty until read, or when not used)."""


@dataclass(frozen=True)
class HealthSnapshot:
    """The self-health figures: samples per family (named as PromQL sees it)."""

    samples: Mapping[str, tuple[tuple[Labels, float], ...]] = field(default_factory=dict)

    def of(self, family: str) -> tuple[tuple[Labels, float], ...]:
        return self.samples.get(family, ())

    def value(self, family: str, **labels: str) -> float | None:
        """The value of the sample with exactly ``labels``, None if there is none."""
        for sample_labels, value in self.of(family):
            if dict(sample_labels) == labels:
                return value
        return None


@dataclass(frozen=True)
class Snapshot:
    """What the exporter knew at ``now``: the input of every rendering."""

    now: float
    settings: Settings
    projects: tuple[ProjectSnapshot, ...] = ()
    robot: RobotSnapshot | None = None
    health: HealthSnapshot = field(default_factory=HealthSnapshot)
    render_seconds: float = 0.0
    """How long the previous rendering took."""
    live_series: int = 0
    """Series a scrape appends to the rendering (the process's own)."""
