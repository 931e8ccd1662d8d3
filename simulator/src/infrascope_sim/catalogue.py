"""The simulated Hetzner catalogue: locations, server types, prices.

Prices are illustrative 2026 list prices (net EUR per month) in the shape the
Cloud API uses: decimal strings with ten places, hourly prices that are capped
at the monthly price by Hetzner's billing (hourly = monthly / 624, rounded up
to four places, so the cap is reached after about 26 days). They are not
Hetzner's published numbers; code under test must read prices from the API
and never from this module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any

from infrascope_core.contract import TRAFFIC_BYTES_PER_TB

TEN_PLACES = Decimal("0.0000000001")
HOURS_PER_MONTH_PRICE_DIVISOR = Decimal(624)
VAT_RATE = Decimal("19.00")

# Hetzner's "20 TB" is 21990232555520 bytes in the API (TB = 2^40)
INCLUDED_TRAFFIC_EU = 20 * TRAFFIC_BYTES_PER_TB
INCLUDED_TRAFFIC_US = 1 * TRAFFIC_BYTES_PER_TB
INCLUDED_TRAFFIC_SIN = TRAFFIC_BYTES_PER_TB // 2


def money(value: Decimal | str | int) -> str:
    """Format an amount the way the Cloud API does: a string with ten decimals."""
    return str(Decimal(value).quantize(TEN_PLACES, rounding=ROUND_HALF_UP))


def gross(net: Decimal) -> Decimal:
    return (net * (1 + VAT_RATE / 100)).quantize(TEN_PLACES, rounding=ROUND_HALF_UP)


def net_gross(net: Decimal) -> dict[str, str]:
    return {"net": money(net), "gross": money(gross(net))}


def hourly_from_monthly(monthly: Decimal) -> Decimal:
    return (monthly / HOURS_PER_MONTH_PRICE_DIVISOR).quantize(Decimal("0.0001"), rounding=ROUND_UP)


@dataclass(frozen=True)
class Location:
    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str
    price_factor: Decimal
    included_traffic: int
    price_per_tb: Decimal

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        }


LOCATIONS: dict[str, Location] = {
    loc.name: loc
    for loc in [
        Location(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071,
                 "eu-central", Decimal("1.00"), INCLUDED_TRAFFIC_EU, Decimal("1.00")),
        Location(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665,
                 "eu-central", Decimal("1.00"), INCLUDED_TRAFFIC_EU, Decimal("1.00")),
        Location(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379,
                 "eu-central", Decimal("1.00"), INCLUDED_TRAFFIC_EU, Decimal("1.00")),
        Location(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073,
                 "us-east", Decimal("1.15"), INCLUDED_TRAFFIC_US, Decimal("1.00")),
        Location(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.95028,
                 "us-west", Decimal("1.15"), INCLUDED_TRAFFIC_US, Decimal("1.00")),
        Location(6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333,
                 "ap-southeast", Decimal("1.35"), INCLUDED_TRAFFIC_SIN, Decimal("7.40")),
    ]
}
EU = ("fsn1", "nbg1", "hel1")
ALL = tuple(LOCATIONS)

LEGACY_DEPRECATION = {
    "announced": "2025-10-16T06:00:00+00:00",
    "unavailable_after": "2026-01-16T06:00:00+00:00",
}


@dataclass(frozen=True)
class ServerType:
    id: int
    name: str
    category: str
    cores: int
    memory_gb: float
    disk_gb: int
    cpu_type: str
    architecture: str
    monthly_net_eu: Decimal
    locations: tuple[str, ...]
    legacy: bool = False

    def monthly_net(self, location: str) -> Decimal:
        factor = LOCATIONS[location].price_factor
        return (self.monthly_net_eu * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def hourly_net(self, location: str) -> Decimal:
        return hourly_from_monthly(self.monthly_net(location))

    def price_entry(self, location: str) -> dict[str, Any]:
        loc = LOCATIONS[location]
        return {
            "location": location,
            "price_hourly": net_gross(self.hourly_net(location)),
            "price_monthly": net_gross(self.monthly_net(location)),
            "included_traffic": loc.included_traffic,
            "price_per_tb_traffic": net_gross(loc.price_per_tb),
        }

    def to_api(self) -> dict[str, Any]:
        """The API object; cached and shared, so callers must not mutate it."""
        return _server_type_api(self)

    def _build_api(self) -> dict[str, Any]:
        deprecation = LEGACY_DEPRECATION if self.legacy else None
        return {
            "id": self.id,
            "name": self.name,
            "description": self.name.upper(),
            "category": self.category,
            "cores": self.cores,
            "memory": self.memory_gb,
            "disk": self.disk_gb,
            "deprecated": self.legacy,
            "deprecation": deprecation,
            "prices": [self.price_entry(loc) for loc in self.locations],
            "storage_type": "local",
            "cpu_type": self.cpu_type,
            "architecture": self.architecture,
            "included_traffic": 0,
            "locations": [
                {
                    "id": LOCATIONS[loc].id,
                    "name": loc,
                    "deprecation": deprecation,
                    "available": not self.legacy,
                    "recommended": not self.legacy,
                }
                for loc in self.locations
            ],
        }


@functools.cache
def _server_type_api(stype: ServerType) -> dict[str, Any]:
    return stype._build_api()


def _types() -> list[ServerType]:
    d = Decimal
    out: list[ServerType] = []
    # Cost-optimised shared x86 (EU only).
    for i, (n, c, m, dk, p) in enumerate([
        ("cx23", 2, 4.0, 40, "3.49"), ("cx33", 4, 8.0, 80, "5.99"),
        ("cx43", 8, 16.0, 160, "10.99"), ("cx53", 16, 32.0, 320, "20.49"),
    ]):
        out.append(ServerType(104 + i, n, "cost_optimized", c, m, dk, "shared", "x86", d(p), EU))
    # Regular-purpose shared AMD.
    for i, (n, c, m, dk, p) in enumerate([
        ("cpx12", 1, 2.0, 40, "7.49"), ("cpx22", 2, 4.0, 80, "9.49"),
        ("cpx32", 4, 8.0, 160, "16.49"), ("cpx42", 8, 16.0, 320, "29.99"),
        ("cpx52", 12, 24.0, 480, "42.99"), ("cpx62", 16, 32.0, 640, "58.99"),
    ]):
        out.append(ServerType(108 + i, n, "regular_purpose", c, m, dk, "shared", "x86", d(p), ALL))
    # Arm64 (EU only).
    for i, (n, c, m, dk, p) in enumerate([
        ("cax11", 2, 4.0, 40, "4.49"), ("cax21", 4, 8.0, 80, "7.99"),
        ("cax31", 8, 16.0, 160, "15.49"), ("cax41", 16, 32.0, 320, "30.49"),
    ]):
        out.append(ServerType(45 + i, n, "cost_optimized", c, m, dk, "shared", "arm", d(p), EU))
    # Dedicated vCPU.
    for i, (n, c, m, dk, p) in enumerate([
        ("ccx13", 2, 8.0, 80, "14.49"), ("ccx23", 4, 16.0, 160, "28.99"),
        ("ccx33", 8, 32.0, 240, "57.49"), ("ccx43", 16, 64.0, 360, "114.49"),
        ("ccx53", 32, 128.0, 600, "228.49"), ("ccx63", 48, 192.0, 960, "342.49"),
    ]):
        out.append(
            ServerType(96 + i, n, "general_purpose", c, m, dk, "dedicated", "x86", d(p), ALL)
        )
    # Legacy generations: still running on older servers, no longer orderable.
    for i, (n, c, m, dk, p) in enumerate([
        ("cx22", 2, 4.0, 40, "4.59"), ("cx32", 4, 8.0, 80, "7.59"),
        ("cx42", 8, 16.0, 160, "18.59"), ("cx52", 16, 32.0, 320, "36.59"),
    ]):
        out.append(
            ServerType(22 + i, n, "cost_optimized", c, m, dk, "shared", "x86", d(p), EU, True)
        )
    for i, (n, c, m, dk, p) in enumerate([
        ("cpx11", 2, 2.0, 40, "5.49"), ("cpx21", 3, 4.0, 80, "9.99"),
        ("cpx31", 4, 8.0, 160, "17.99"), ("cpx41", 8, 16.0, 240, "33.49"),
        ("cpx51", 16, 32.0, 360, "68.49"),
    ]):
        out.append(
            ServerType(
                10 + i, n, "regular_purpose", c, m, dk, "shared", "x86", d(p), ALL, True
            )
        )
    return sorted(out, key=lambda t: t.id)


SERVER_TYPES: dict[str, ServerType] = {t.name: t for t in _types()}
SERVER_TYPES_BY_ID: dict[int, ServerType] = {t.id: t for t in SERVER_TYPES.values()}

PRIMARY_IPV4_MONTHLY = Decimal("0.60")
PRIMARY_IPV6_MONTHLY = Decimal("0.00")
FLOATING_IP_MONTHLY = {"ipv4": Decimal("3.49"), "ipv6": Decimal("3.49")}
VOLUME_PER_GB_MONTH = Decimal("0.0520")
IMAGE_PER_GB_MONTH = Decimal("0.0130")
BACKUP_PERCENTAGE = Decimal("20")


@dataclass(frozen=True)
class LoadBalancerType:
    id: int
    name: str
    max_connections: int
    max_services: int
    max_targets: int
    max_assigned_certificates: int
    monthly_net_eu: Decimal
    locations: tuple[str, ...] = field(default=ALL)

    def monthly_net(self, location: str) -> Decimal:
        factor = LOCATIONS[location].price_factor
        return (self.monthly_net_eu * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def price_entry(self, location: str) -> dict[str, Any]:
        loc = LOCATIONS[location]
        monthly = self.monthly_net(location)
        return {
            "location": location,
            "price_hourly": net_gross(hourly_from_monthly(monthly)),
            "price_monthly": net_gross(monthly),
            "included_traffic": loc.included_traffic,
            "price_per_tb_traffic": net_gross(loc.price_per_tb),
        }

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.name.upper(),
            "max_connections": self.max_connections,
            "max_services": self.max_services,
            "max_targets": self.max_targets,
            "max_assigned_certificates": self.max_assigned_certificates,
            "deprecated": None,
            "prices": [self.price_entry(loc) for loc in self.locations],
        }


LOAD_BALANCER_TYPES: dict[str, LoadBalancerType] = {
    t.name: t
    for t in [
        LoadBalancerType(1, "lb11", 10000, 5, 25, 10, Decimal("6.49")),
        LoadBalancerType(2, "lb21", 20000, 15, 75, 25, Decimal("17.99")),
        LoadBalancerType(3, "lb31", 40000, 30, 150, 50, Decimal("35.49")),
    ]
}


def pricing_document() -> dict[str, Any]:
    """The body of ``GET /pricing``."""

    def per_location(monthly: Decimal, with_hourly: bool) -> list[dict[str, Any]]:
        entries = []
        for name in LOCATIONS:
            entry: dict[str, Any] = {"location": name, "price_monthly": net_gross(monthly)}
            if with_hourly:
                entry["price_hourly"] = net_gross(hourly_from_monthly(monthly))
            entries.append(entry)
        return entries

    return {
        "pricing": {
            "currency": "EUR",
            "vat_rate": str(VAT_RATE),
            "image": {"price_per_gb_month": net_gross(IMAGE_PER_GB_MONTH)},
            "floating_ip": {"price_monthly": net_gross(FLOATING_IP_MONTHLY["ipv4"])},
            "floating_ips": [
                {"type": kind, "prices": per_location(price, with_hourly=False)}
                for kind, price in FLOATING_IP_MONTHLY.items()
            ],
            "primary_ips": [
                {"type": "ipv4", "prices": per_location(PRIMARY_IPV4_MONTHLY, with_hourly=True)},
                {"type": "ipv6", "prices": per_location(PRIMARY_IPV6_MONTHLY, with_hourly=True)},
            ],
            "server_backup": {"percentage": str(BACKUP_PERCENTAGE)},
            "server_types": [
                {"id": t.id, "name": t.name, "prices": [t.price_entry(loc) for loc in t.locations]}
                for t in SERVER_TYPES.values()
            ],
            "load_balancer_types": [
                {"id": t.id, "name": t.name, "prices": [t.price_entry(loc) for loc in t.locations]}
                for t in LOAD_BALANCER_TYPES.values()
            ],
            "volume": {"price_per_gb_month": net_gross(VOLUME_PER_GB_MONTH)},
            "traffic": {"price_per_tb": net_gross(Decimal("1.00"))},
        }
    }


@dataclass(frozen=True)
class RobotProduct:
    """A dedicated-server product in the Robot order catalogue (list prices)."""

    id: str
    description: tuple[str, ...]
    traffic: str
    locations: tuple[str, ...]
    monthly_net: Decimal
    setup_net: Decimal
    cores: int
    memory_gb: int
    disk_gb: int

    def to_api(self) -> dict[str, Any]:
        hourly = (self.monthly_net / 720).quantize(Decimal("0.0001"), rounding=ROUND_UP)
        return {
            "id": self.id,
            "name": f"Dedicated Server {self.id}",
            "description": list(self.description),
            "traffic": self.traffic,
            "dist": ["Rescue system", "Debian 12 base", "Ubuntu 24.04 LTS base"],
            "arch": [64],
            "lang": ["en"],
            "location": list(self.locations),
            "prices": [
                {
                    "location": loc,
                    "price": {
                        "net": f"{self.monthly_net:.4f}",
                        "gross": f"{gross(self.monthly_net):.4f}",
                        "hourly_net": f"{hourly:.4f}",
                        "hourly_gross": f"{gross(hourly):.4f}",
                    },
                    "price_setup": {
                        "net": f"{self.setup_net:.4f}",
                        "gross": f"{gross(self.setup_net):.4f}",
                    },
                }
                for loc in self.locations
            ],
            "orderable_addons": [],
        }


ROBOT_PRODUCTS: dict[str, RobotProduct] = {
    p.id: p
    for p in [
        RobotProduct("AX42", ("AMD Ryzen 7 PRO 8700GE", "64 GB DDR5 ECC", "2 x 512 GB NVMe SSD"),
                     "unlimited", ("FSN1", "NBG1", "HEL1"), Decimal("52.00"), Decimal("0.00"),
                     8, 64, 1024),
        RobotProduct("AX52", ("AMD Ryzen 7 7700", "64 GB DDR5", "2 x 1 TB NVMe SSD"),
                     "unlimited", ("FSN1", "NBG1", "HEL1"), Decimal("72.00"), Decimal("0.00"),
                     8, 64, 2048),
        RobotProduct("AX102", ("AMD Ryzen 9 7950X3D", "128 GB DDR5 ECC", "2 x 1.92 TB NVMe SSD"),
                     "unlimited", ("FSN1", "NBG1", "HEL1"), Decimal("119.00"), Decimal("0.00"),
                     16, 128, 3840),
        RobotProduct("EX44", ("Intel Core i5-13500", "64 GB DDR4", "2 x 512 GB NVMe SSD"),
                     "unlimited", ("FSN1", "NBG1", "HEL1"), Decimal("49.00"), Decimal("0.00"),
                     14, 64, 1024),
        RobotProduct("EX101", ("Intel Core i9-13900", "64 GB DDR5 ECC", "2 x 1.92 TB NVMe SSD"),
                     "unlimited", ("FSN1", "NBG1"), Decimal("94.00"), Decimal("0.00"),
                     24, 64, 3840),
        RobotProduct("SX65", ("AMD Ryzen 7 3700X", "64 GB DDR4 ECC", "4 x 22 TB HDD"),
                     "unlimited", ("FSN1", "HEL1"), Decimal("109.00"), Decimal("0.00"),
                     8, 64, 88000),
    ]
}
