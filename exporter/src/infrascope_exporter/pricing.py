"""The month's bill, as Hetzner computes it, in Decimal euros.

Billing rules applied (per resource, for the current calendar month in UTC):

- A Cloud resource with an hourly price (servers, primary IPs, load
  balancers) costs ``min(hourly × billed hours, monthly)``; billed hours are
  the started hours it exists this month, projected to the month's end.
- Resources priced only per month (volumes and snapshots per GB, floating IPs)
  are prorated by the same billed hours over the month's hours.
- Backups cost ``backup percentage × the server's own cost``.
- A server's cost is its own price, its backup surcharge and the primary IPs
  assigned to it. Volumes, floating IPs, load balancers, snapshots and
  unassigned primary IPs are resources of their own, so nothing is counted
  twice. Automatic backup images cost nothing extra (the surcharge pays them).
- Traffic: outgoing bytes so far this month, extrapolated to the month's end,
  above the server's included traffic, at the location's price per TB
  (Hetzner's TB here is 2^40 bytes, as ``included_traffic`` values show:
  :data:`infrascope_core.contract.TRAFFIC_BYTES_PER_TB`).
- Dedicated servers cost their monthly price (configured per server or per
  product, or the Robot catalogue's list price).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from infrascope_core.contract import TRAFFIC_BYTES_PER_TB

from .model import CloudServer, DedicatedProduct, DedicatedServer, Pricing, Resource, TypePrice

CENT = Decimal("0.01")


def month_bounds(now: float) -> tuple[float, float]:
    dt = datetime.fromtimestamp(now, UTC)
    start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    end = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def month_hours(now: float) -> int:
    start, end = month_bounds(now)
    return round((end - start) / 3600)


def billed_hours(created: float, now: float) -> int:
    """Started hours the resource exists in ``now``'s month, projected to its end."""
    start, end = month_bounds(now)
    begin = max(start, created)
    if begin >= end:
        return 0
    return math.ceil((end - begin) / 3600 - 1e-9)


def capped(hourly: Decimal, monthly: Decimal, hours: int) -> Decimal:
    return min(hourly * hours, monthly)


def prorated(monthly: Decimal, hours: int, now: float) -> Decimal:
    total = month_hours(now)
    return monthly if hours >= total else monthly * hours / total


@dataclass(frozen=True)
class ServerCost:
    server: Decimal
    backup: Decimal
    primary_ipv4: Decimal
    primary_ipv6: Decimal
    hourly: Decimal  # price per hour of all parts together

    @property
    def monthly(self) -> Decimal:
        return self.server + self.backup + self.primary_ipv4 + self.primary_ipv6

    def components(self) -> dict[str, Decimal]:
        return {"server": self.server, "backup": self.backup,
                "primary_ipv4": self.primary_ipv4, "primary_ipv6": self.primary_ipv6}


class PriceMissing(LookupError):
    pass


def server_price(server: CloudServer, pricing: Pricing | None,
                 override_monthly: Decimal | None) -> TypePrice:
    """The type's price in the server's location; an override replaces the monthly price
    and scales the hourly one by the same factor (existing servers keep older prices)."""
    price = server.server_type.prices.get(server.location)
    if price is None and pricing is not None:
        price = pricing.server_types.get(server.server_type.name, {}).get(server.location)
    if price is None:
        raise PriceMissing(f"no price for {server.server_type.name} in {server.location}")
    if override_monthly is None:
        return price
    factor = override_monthly / price.monthly if price.monthly else Decimal(1)
    return TypePrice(price.location, price.hourly * factor, override_monthly,
                     price.included_traffic, price.per_tb_traffic)


def cloud_server_cost(server: CloudServer, pricing: Pricing, primary_ips: Iterable[Resource],
                      now: float, override_monthly: Decimal | None = None) -> ServerCost:
    price = server_price(server, pricing, override_monthly)
    hours = billed_hours(server.created, now)
    base = capped(price.hourly, price.monthly, hours)
    share = pricing.backup_percentage / 100 if server.backups else Decimal(0)
    ip_costs = {"ipv4": Decimal(0), "ipv6": Decimal(0)}
    ip_hourly = Decimal(0)
    for ip in primary_ips:
        hourly, monthly = primary_ip_price(ip, pricing)
        ip_costs[ip.ip_type] = ip_costs.get(ip.ip_type, Decimal(0)) + capped(
            hourly, monthly, billed_hours(ip.created, now))
        ip_hourly += hourly
    return ServerCost(
        server=base,
        backup=base * share,
        primary_ipv4=ip_costs["ipv4"],
        primary_ipv6=ip_costs["ipv6"],
        hourly=price.hourly * (1 + share) + ip_hourly,
    )


def primary_ip_price(ip: Resource, pricing: Pricing) -> tuple[Decimal, Decimal]:
    found = pricing.primary_ips.get((ip.ip_type, ip.location))
    if found is None:
        raise PriceMissing(f"no primary IP price for {ip.ip_type} in {ip.location}")
    return found


def resource_cost(resource: Resource, pricing: Pricing, now: float) -> Decimal:
    hours = billed_hours(resource.created, now)
    if resource.kind == "volume":
        return prorated(resource.size_gb * pricing.volume_per_gb_month, hours, now)
    if resource.kind == "snapshot":
        return prorated(resource.size_gb * pricing.image_per_gb_month, hours, now)
    if resource.kind == "floating_ip":
        monthly = pricing.floating_ips.get((resource.ip_type, resource.location))
        if monthly is None:
            raise PriceMissing(f"no floating IP price for {resource.ip_type} in "
                               f"{resource.location}")
        return prorated(monthly, hours, now)
    if resource.kind == "primary_ip":
        hourly, monthly = primary_ip_price(resource, pricing)
        return capped(hourly, monthly, hours)
    if resource.kind == "load_balancer":
        price = pricing.load_balancer_types.get(resource.lb_type, {}).get(resource.location)
        if price is None:
            raise PriceMissing(f"no price for load balancer type {resource.lb_type} in "
                               f"{resource.location}")
        return capped(price.hourly, price.monthly, hours)
    raise PriceMissing(f"unknown resource kind {resource.kind}")


@dataclass(frozen=True)
class Traffic:
    included_bytes: int
    outgoing_bytes: int
    projected_bytes: int
    overage_cost: Decimal


def traffic_projection(server: CloudServer, price: TypePrice, now: float) -> Traffic:
    start, end = month_bounds(now)
    begin = max(start, server.created)
    outgoing = server.outgoing_traffic or 0
    included = server.included_traffic or price.included_traffic
    elapsed = now - begin
    if elapsed <= 0:
        projected = outgoing
    else:
        projected = int(outgoing * (end - begin) / elapsed)
    over = max(0, projected - included)
    return Traffic(included, outgoing, projected,
                   Decimal(over) / TRAFFIC_BYTES_PER_TB * price.per_tb_traffic)


def dedicated_monthly_price(server: DedicatedServer, *, by_server: Mapping[int, Decimal],
                            by_product: Mapping[str, Decimal],
                            catalogue: Mapping[str, DedicatedProduct] | None, price_mode: str,
                            vat_rate_percent: Decimal) -> Decimal | None:
    """This month's price of a dedicated server in the price mode, or None if unknown.

    Configured prices (per server, per product) are net: in gross mode they get
    ``vat_rate_percent``; catalogue prices (``catalogue``: the Robot products, None
    when not used) already come in the price mode.
    """
    monthly = {k: v.monthly for k, v in catalogue.items()} if catalogue else None
    price = dedicated_price(server.number, server.product, server.location, by_server,
                            by_product, monthly)
    if price is None:
        return None
    if price_mode == "gross" and (server.number in by_server or server.product in by_product):
        price = price * (1 + vat_rate_percent / 100)
    return price


def dedicated_price(number: int, product: str, location: str,
                    by_server: Mapping[int, Decimal], by_product: Mapping[str, Decimal],
                    catalogue: Mapping[str, Mapping[str, Decimal]] | None) -> Decimal | None:
    """Monthly price of a dedicated server: per server, per product, then catalogue."""
    if number in by_server:
        return by_server[number]
    if product in by_product:
        return by_product[product]
    if catalogue is not None and product in catalogue:
        prices = catalogue[product]
        return prices.get(location) or (min(prices.values()) if prices else None)
    return None


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
