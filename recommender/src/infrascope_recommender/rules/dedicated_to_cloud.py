"""Dedicated -> Cloud: a dedicated server whose measured usage fits a Cloud type that
costs less.

Needs the agent on the dedicated server (Robot has no metrics): its core count
(``node_cpu_seconds_total``), memory (``node_memory_MemTotal_bytes``), used disk
(filesystems) and the 30-day CPU and memory figures. The Cloud location comes from the
datacenter (``FSN1-DC14`` -> ``fsn1``) through ``rules.dedicated_to_cloud.locations``.
The target is the cheapest orderable x86 Cloud type there (CPU types from ``cpu_types``)
holding p95 CPU, the recurring daily peak (where known), peak memory and used disk within
the headroom ceilings; its cost is the
type's price plus a primary IPv4 (the fleet's own Cloud IPv4 price where one is seen,
else ``primary_ipv4_euros``). Recommended when it saves at least ``min_savings_euros``
and ``min_savings_percent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..model import Fleet, Reason, Recommendation, RuleResult, Server, ServerRef
from ..providers import adapter
from ..settings import fail, mapping_of, money, percent, setting, strings, text
from . import Rule, RuleSettings, servers_of, target_of
from ._common import (
    Unjudged,
    assess,
    cpu_peak_risk,
    daily_peak_cores,
    eur,
    exclusion,
    extra_overage,
    gb,
    gib,
    highest,
    in_order,
    no_price,
    num,
    pct,
    savings_enough,
    savings_figures,
    service_text,
)
from ._fit import Need, cheapest, orderable

if TYPE_CHECKING:
    from ..thresholds import Thresholds


def _locations(value: Any, key: str) -> dict[str, str]:
    return {prefix.lower(): location.lower()
            for prefix, location in mapping_of(text)(value, key).items()}


def _cpu_types(value: Any, key: str) -> tuple[str, ...]:
    out = strings(value, key)
    for cpu_type in out:
        if cpu_type not in ("shared", "dedicated"):
            fail(key, f"expected shared and/or dedicated, got {cpu_type!r}")
    return out


@dataclass(frozen=True)
class DedicatedToCloudSettings(RuleSettings):
    locations: Mapping[str, str] = setting(
        {"fsn1": "fsn1", "nbg1": "nbg1", "hel1": "hel1"}, _locations,
        "datacenter prefix (`FSN1-DC14` → `fsn1`) → Cloud location: stay in the same site")
    cpu_types: tuple[str, ...] = setting(
        ("shared", "dedicated"), _cpu_types,
        "Cloud CPU types allowed; `[dedicated]` for CPU-bound work that needs guaranteed "
        "cores")
    image: str = setting("ubuntu-24.04", text, "image of the new Cloud server")
    primary_ipv4_euros: Decimal = setting(
        Decimal("0.50"), money, "a Cloud server needs a primary IPv4; used when no Cloud "
                                "server of the fleet shows its price")
    min_savings_euros: Decimal = setting(Decimal("5.00"), money,
                                         "a migration off a dedicated server is real work")
    min_savings_percent: Decimal = setting(Decimal("10"), percent,
                                           "… and must be worth it relative to the bill")


def cloud_location(server: Server, th: Thresholds) -> str | None:
    prefix = (server.datacenter.split("-")[0] if server.datacenter else server.location)
    return th.settings(DedicatedToCloudSettings).locations.get(prefix.strip().lower())


class Ipv4Prices:
    """What a primary IPv4 costs: as the fleet's Cloud servers there (else anywhere) pay.

    Built once per evaluation (one pass over the fleet), not once per dedicated server.
    """

    def __init__(self, fleet: Fleet, th: Thresholds) -> None:
        self.by_location: dict[str, Decimal] = {}
        self.anywhere: Decimal | None = None
        for s in fleet.servers.values():
            amount = s.cost_breakdown.get("primary_ipv4")
            if s.source == "cloud" and amount is not None:
                here = self.by_location.get(s.location)
                self.by_location[s.location] = amount if here is None else max(here, amount)
                self.anywhere = amount if self.anywhere is None else max(self.anywhere, amount)
        self.default = th.settings(DedicatedToCloudSettings).primary_ipv4_euros

    def __call__(self, location: str) -> Decimal:
        price = self.by_location.get(location, self.anywhere)
        return self.default if price is None else price


def cloud_name(server: Server) -> str:
    name = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in server.name.lower())
    name = "-".join(part for part in name.split("-") if part)
    return name or f"dedicated-{server.key.server_id}"


class DedicatedToCloudRule:
    name = "dedicated_to_cloud"

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        result = RuleResult()
        prices = Ipv4Prices(fleet, thresholds)
        for server in in_order(fleet):
            if adapter(server).migration_source(server) != "cloud":
                continue  # only a server that cannot change type moves to the Cloud
            outcome = self._judge(server, fleet, thresholds, prices)
            if isinstance(outcome, Unjudged):
                result.exclusions.append(exclusion(server, self.name, outcome))
            elif outcome is not None:
                result.recommendations.append(outcome)
        return result

    def _judge(self, server: Server, fleet: Fleet, th: Thresholds,
               prices: Ipv4Prices) -> Recommendation | Unjudged | None:
        dc = th.settings(DedicatedToCloudSettings)
        a = assess(server, th)
        missing = []
        if not a.cpu_ok:
            missing.append(a.exclusion or "no CPU figures")
        if not a.memory_ok:
            missing.append(a.memory_note)
        if server.memory_bytes is None:
            missing.append("no memory size (node_memory_MemTotal_bytes)")
        if server.disk_used_bytes is None:
            missing.append("no disk usage (node_filesystem_*)")
        if missing:
            cause = a.exclusion_cause if not a.cpu_ok else "data"
            return Unjudged("needs 30 days of the agent's figures to size a Cloud server: "
                            + "; ".join(missing), cause)
        if server.monthly_cost is None:
            return no_price(server)
        location = cloud_location(server, th)
        if location is None:
            return Unjudged(f"no Cloud location mapped for datacenter "
                            f"{server.datacenter or server.location!r} "
                            "(rules.dedicated_to_cloud.locations)", "target")
        u = server.utilisation
        assert u.cpu_p95 is not None and u.memory_max is not None
        assert server.cores is not None and server.memory_bytes is not None
        assert server.disk_used_bytes is not None
        cpu = u.cpu_p95 * server.cores
        memory = u.memory_max * server.memory_bytes
        need = Need(cpu_cores=cpu, memory_bytes=memory, disk_used_bytes=server.disk_used_bytes,
                    peak_cores=daily_peak_cores(server))
        p = adapter(server)
        candidates = orderable(fleet, location, server.architecture or "x86", dc.cpu_types,
                               provider=p.name)
        if not candidates:
            return Unjudged(f"no orderable Cloud type in {location} in the catalogue", "target")
        target = cheapest(candidates, need, th.headroom, in_place=False)
        if target is None:
            return Unjudged(f"no Cloud type in {location} holds {num(cpu)} cores at p95, "
                            f"{gib(memory)} peak memory and {gb(server.disk_used_bytes)} of "
                            "data within the headroom", "target")
        ipv4 = prices(location)
        # a dedicated server's traffic is included (Robot): all of the target's overage
        overage, overage_reason = extra_overage(fleet, [server], target.type, location)
        projected = target.price + ipv4 + overage
        current = server.monthly_cost
        if not savings_enough(current, projected, dc.min_savings_euros, dc.min_savings_percent):
            return None
        t = target.type
        name = cloud_name(server)
        savings = current - projected
        reasons = [
            Reason(f"p95 CPU over 30 days is {pct(u.cpu_p95)} of {server.cores} cores "
                   f"({num(cpu)} cores); peak memory {gib(memory)} of "
                   f"{gib(server.memory_bytes)}; {gb(server.disk_used_bytes)} of data on disk",
                   {"cpu_p95_30d": pct(u.cpu_p95), "cores": str(server.cores),
                    "memory_peak": gib(memory), "disk_used": gb(server.disk_used_bytes)}),
            Reason(f"{t.name} ({t.cores} {t.cpu_type} vCPUs, {gib(t.memory_bytes)}, "
                   f"{gb(t.disk_bytes)} disk, {eur(target.price)}/month in {location}) is the "
                   f"cheapest Cloud type that holds it with p95 CPU at most "
                   f"{pct(th.headroom.cpu)}, memory at most {pct(th.headroom.memory)} and "
                   f"data at most {pct(th.headroom.disk)} of the disk",
                   {"target": t.name, "target_price": eur(target.price),
                    "location": location}),
            Reason(f"{server.server_type} costs {eur(current)} a month; {t.name} with a "
                   f"primary IPv4 ({eur(ipv4)})"
                   f"{' and its traffic overage' if overage else ''} {eur(projected)}: "
                   f"saves {eur(savings)}",
                   {**savings_figures(current, projected), "ipv4": eur(ipv4)}),
        ]
        if overage_reason is not None:
            reasons.append(overage_reason)
        level, risk_reasons = cpu_peak_risk(server, t.cores)
        level = highest([level, "medium"])
        risk_reasons.insert(0, Reason(
            "a migration to a new machine: services and data are moved by hand and the IP "
            "addresses change"))
        if t.cpu_type == "shared":
            risk_reasons.append(Reason(f"{t.name} has shared vCPUs, not the dedicated cores "
                                       f"of {server.server_type}: CPU time can vary"))
        if server.services:
            listed = ", ".join(service_text(s) for s in server.services[:20])
            risk_reasons.append(Reason(f"services to move: {listed}",
                                       {"services": str(len(server.services))}))
        commands = [
            p.create_command(name, t.name, location, dc.image),
            f"# move the services and data of {server.name} (Robot server "
            f"{server.key.server_id}) to {name}, then switch DNS",
            p.cancel_command(server),
        ]
        preconditions = [
            "the software runs on a virtual machine (no special hardware, RAID or "
            "kernel needs)",
            "Cloud servers include a traffic allowance per month (most dedicated servers "
            "have unlimited traffic): check the server's outgoing traffic first",
            "the dedicated server is billed until the end of its cancellation period: "
            "the savings start then",
        ]
        return Recommendation(
            kind="dedicated_to_cloud", action="migrate", servers=[ServerRef.of(server)],
            current_monthly_cost=current, projected_monthly_cost=projected,
            target_type=t.name, target_location=location,
            projected_cpu_utilisation=cpu / t.cores,
            projected_memory_utilisation=memory / t.memory_bytes,
            confidence=a.confidence, risk=level, reasons=reasons,
            confidence_reasons=list(a.reasons), risk_reasons=risk_reasons,
            preconditions=preconditions, commands=commands)


RULE = Rule(
    kind=DedicatedToCloudRule.name, label="Dedicated → Cloud", order=50, priority=40,
    description="A dedicated server whose measured usage (agent) fits a Cloud type in the "
                "same site for less gets the migration steps, ending with the cancellation "
                "in Robot.",
    settings=DedicatedToCloudSettings, evaluate=DedicatedToCloudRule().evaluate,
    title=lambda rec: f"Move dedicated {servers_of(rec)} to Cloud {target_of(rec)}",
    precedence="dedicated servers only",
    details="""\
Needs the agent (Robot has no metrics): cores (count of
`node_cpu_seconds_total{mode="idle"}`), memory (`node_memory_MemTotal_bytes`), used disk
and the 30-day CPU and memory figures; without them the server is excluded, naming what
is missing. Target: the cheapest orderable x86 Cloud type at the mapped location holding
p95 CPU, the recurring daily peak, peak memory and used disk within the headroom.
Commands: create the Cloud server, move services and data and switch DNS, then
`# cancel server <number> in Robot (Server → Cancellation)`. Preconditions: runs on a
VM, traffic allowance, billed until the end of the cancellation period.
""")
