"""What the rules share: judging the data (confidence), formatting figures, the risk
of a type change. The commands (``hcloud …`` for Hetzner) come from the server's
provider adapter (:mod:`infrascope_recommender.providers`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from infrascope_core import contract
from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB

from ..model import (
    Action,
    Exclusion,
    ExclusionCause,
    Fleet,
    HaPeer,
    Kind,
    Level,
    Reason,
    Recommendation,
    RecommendationOption,
    Risk,
    Server,
    ServerKey,
    ServerRef,
    ServerType,
    Service,
    cents,
)
from ..providers import adapter
from ._fit import Candidate, Catalogue, Need, cheapest, cost_on, fits, holds_peak, type_disk

if TYPE_CHECKING:
    from ..thresholds import ConfidenceBands, Thresholds

MONTH_SECONDS = 30 * 86_400  # "a month" of traffic: the 30 days the averages cover
_LEVELS: tuple[Level, ...] = ("high", "medium", "low")


# --------------------------------------------------------------------------- formatting

def pct(ratio: float) -> str:
    """0.0523 -> '5.2%', 0.05 -> '5%'."""
    text = f"{ratio * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def num(value: float, digits: int = 2) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def gib(size: float) -> str:
    """Memory in GiB, the unit of the provider's memory GB (``MEMORY_BYTES_PER_GB``)."""
    return f"{num(size / MEMORY_BYTES_PER_GB, 1)} GiB"


def gb(size: float) -> str:
    """Disks in the provider's GB (``DISK_BYTES_PER_GB``: 10^9 bytes), as it sells them."""
    return f"{num(size / DISK_BYTES_PER_GB, 0)} GB"


rate = contract.byte_rate_text  # 52000 -> '52 kB/s'


def monthly_traffic(bytes_per_second: float) -> str:
    """A 30-day average rate as traffic a month, in Hetzner's TB (2^40 bytes) or GB."""
    total = bytes_per_second * MONTH_SECONDS
    if total >= contract.TRAFFIC_BYTES_PER_TB / 10:
        return f"{num(total / contract.TRAFFIC_BYTES_PER_TB, 1)} TB"
    return f"{num(total / (contract.TRAFFIC_BYTES_PER_TB / 1024), 1)} GB"


def traffic_reason(server: Server) -> Reason | None:
    """The server's 30-day traffic, in and out, as a reason (None when not measured)."""
    u = server.utilisation
    if u.network_in_avg is None or u.network_out_avg is None:
        return None
    return Reason(
        f"network: {rate(u.network_out_avg)} out and {rate(u.network_in_avg)} in on "
        f"average over 30 days ({monthly_traffic(u.network_out_avg)} out a month)",
        {"network_out_avg_30d": rate(u.network_out_avg),
         "network_in_avg_30d": rate(u.network_in_avg),
         "network_out_month": monthly_traffic(u.network_out_avg)})


def eur(amount: Decimal) -> str:
    return f"{cents(amount)} €"


# ------------------------------------------------------------------- traffic overage
#
# Outgoing traffic a month, and what a server type charges for it above what it includes.
#
# Hetzner bills outgoing traffic above a type's included amount per TB (2^40 bytes,
# ``contract.TRAFFIC_BYTES_PER_TB``) at the type's per-TB price in the location
# (``server_type_location:server_type_{included_traffic_bytes,traffic_tebibyte_price_euros}
# :normalised``). A recommendation compares a target with what the servers have today on
# the same footing: the 30-day average outgoing rate × 30 days, priced on both sides
# (``overage``), so only the **extra** overage a target would cost counts against the
# savings; where the target includes at least as much, nothing changes. The agent's figure
# counts every interface but loopback and container devices (a private network's traffic
# too, which Hetzner does not bill): where an agent reports, the overage is an upper bound.

_TB = Decimal(contract.TRAFFIC_BYTES_PER_TB)


def monthly_outgoing(server: Server) -> int | None:
    """Bytes the server sends in 30 days at its 30-day average (None: not measured)."""
    out = server.utilisation.network_out_avg
    return None if out is None else int(out * MONTH_SECONDS)


def overage(t: ServerType | None, location: str, outgoing: int | None) -> Decimal:
    """What type ``t`` in ``location`` charges a month for ``outgoing`` bytes above what it
    includes; 0 when the traffic, the type or its traffic prices are not known."""
    if t is None or outgoing is None:
        return Decimal(0)
    included, price = t.included_traffic.get(location), t.traffic_price_per_tb.get(location)
    if included is None or price is None or outgoing <= included:
        return Decimal(0)
    return Decimal(outgoing - included) / _TB * price


def current_overage(fleet: Fleet, servers: Iterable[Server]) -> Decimal:
    """The servers' overage today by the same formula (a dedicated server: none)."""
    return sum((overage(fleet.types.get(s.server_type), s.location, monthly_outgoing(s))
                for s in servers if s.source != "dedicated"), Decimal(0))


def extra_overage(fleet: Fleet, servers: list[Server], target: ServerType,
                  location: str) -> tuple[Decimal, Reason | None]:
    """What moving ``servers`` onto one ``target`` adds to the traffic bill a month (never
    below 0), and the reason that says so when it adds anything."""
    sent = [monthly_outgoing(s) for s in servers]
    if any(b is None for b in sent):
        return Decimal(0), None
    total = sum(b for b in sent if b is not None)
    extra = overage(target, location, total) - current_overage(fleet, servers)
    if extra <= 0:
        return Decimal(0), None
    included = target.included_traffic.get(location, 0)
    return extra, Reason(
        f"{target.name} includes {num(included / contract.TRAFFIC_BYTES_PER_TB, 1)} TB of "
        f"outgoing traffic in {location}; {num(total / contract.TRAFFIC_BYTES_PER_TB, 1)} TB "
        f"a month go out: {eur(extra)} more overage a month, counted in the savings",
        {"included_traffic_tb": num(included / contract.TRAFFIC_BYTES_PER_TB, 1),
         "outgoing_tb_month": num(total / contract.TRAFFIC_BYTES_PER_TB, 1),
         "extra_overage": str(cents(extra))})


def image_of(server: Server) -> str:
    """The image the server was created from (``server_info{image}``), if known."""
    return server.image


def service_text(service: Service) -> str:
    text = f"{service.kind} {service.name}"
    return f"{text} ({', '.join(service.ports)})" if service.ports else text


def unlisted_services(servers: Iterable[Server]) -> str | None:
    """Why the services of those of ``servers`` that list none are not known, server by
    server: no agent, an agent that is down, or an agent that found none (it lists Docker
    containers and the systemd services that listen on a port). None when every server
    lists its services."""
    why: dict[str, list[str]] = {}
    for s in servers:
        if not s.services:
            state = ("no agent" if s.agent_up is None else
                     "its agent is down" if not s.agent_up else
                     "its agent found no container and no systemd service listening on a port")
            why.setdefault(state, []).append(s.name)
    if not why:
        return None
    return "services not known on " + "; ".join(f"{', '.join(names)} ({state})"
                                                 for state, names in why.items())


# --------------------------------------------------------------------------- confidence

def lower(level: Level) -> Level:
    return _LEVELS[min(_LEVELS.index(level) + 1, len(_LEVELS) - 1)]


def lowest(levels: list[Level]) -> Level:
    """The lowest confidence of several."""
    return max(levels, key=_LEVELS.index) if levels else "high"


def highest(levels: list[Level]) -> Level:
    """The highest risk of several."""
    return min(levels, key=_LEVELS.index) if levels else "low"


@dataclass
class Assessment:
    """Whether a server's 30-day figures can be used, and how far to trust them.

    The coverage sentence is only formatted when a recommendation asks for
    :attr:`reasons` (most servers get none: formatting for all of them is wasted time).
    """

    cpu_ok: bool
    memory_ok: bool
    confidence: Level = "low"
    extra: list[Reason] = field(default_factory=list)  # reasons added by the rules
    exclusion: str | None = None  # why the CPU figures cannot be used
    exclusion_cause: ExclusionCause = "data"
    memory_note: str = ""  # why memory is unusable ("" when it is)
    server: Server | None = None  # set when the coverage sentence applies
    bands: ConfidenceBands | None = None
    base_level: Level = "low"  # the level from coverage alone

    @property
    def reasons(self) -> list[Reason]:
        out: list[Reason] = []
        if self.server is not None and self.bands is not None:
            out.append(self._coverage_reason(self.server, self.bands))
        return out + self.extra

    def _coverage_reason(self, server: Server, bands: ConfidenceBands) -> Reason:
        u = server.utilisation
        figures = {"cpu_coverage": pct(u.cpu_coverage or 0.0)}
        text = f"CPU data covers {pct(u.cpu_coverage or 0.0)} of the 30 days"
        if self.memory_ok:
            figures["memory_coverage"] = pct(u.memory_coverage or 0.0)
            text += f", memory data {pct(u.memory_coverage or 0.0)}"
        if u.via:
            figures["cpu_via"] = u.via
        figures["high_from"] = pct(bands.high)
        figures["medium_from"] = pct(bands.medium)
        return Reason(f"{text}: {self.base_level} confidence", figures)


def assess(server: Server, th: Thresholds) -> Assessment:
    u = server.utilisation
    cpu_ok = False
    exclusion: str | None = None
    cause: ExclusionCause = "data"
    if u.cpu_coverage is None and u.cpu_p95 is None:
        exclusion = no_cpu_history(server, th)
    elif u.cpu_coverage is None or u.cpu_avg is None or u.cpu_p95 is None or u.cpu_max is None:
        missing = [name for name, value in [("coverage30d", u.cpu_coverage), ("avg30d", u.cpu_avg),
                                            ("p95_30d", u.cpu_p95), ("max30d", u.cpu_max)]
                   if value is None]
        exclusion = f"incomplete 30-day CPU figures (no {', '.join(missing)})"
    elif u.cpu_coverage < th.min_coverage:
        exclusion = (f"CPU data covers {pct(u.cpu_coverage)} of the 30 days, below the "
                     f"minimum of {pct(th.min_coverage)}")
    elif server.cores is None:
        exclusion, cause = "the server's core count is unknown", "inventory"
    else:
        cpu_ok = True

    memory_ok = False
    memory_note = ""
    if u.memory_coverage is None or u.memory_max is None or u.memory_p95 is None:
        memory_note = no_memory_history(server)
    elif u.memory_coverage < th.min_coverage:
        memory_note = (f"memory data covers only {pct(u.memory_coverage)} of the 30 days "
                       f"(below {pct(th.min_coverage)})")
    elif server.memory_bytes is None:
        memory_note = "the server's memory size is unknown"
    else:
        memory_ok = True

    result = Assessment(cpu_ok, memory_ok, exclusion=exclusion, exclusion_cause=cause,
                        memory_note=memory_note)
    if not cpu_ok:
        return result
    assert u.cpu_coverage is not None
    coverage = u.cpu_coverage
    if memory_ok:
        assert u.memory_coverage is not None
        coverage = min(coverage, u.memory_coverage)
    result.confidence = result.base_level = band(coverage, th.confidence)
    result.server, result.bands = server, th.confidence
    return result


def _agent_reports(server: Server) -> bool:
    """An agent reports for the server now: its target is up, or its CPU ratio is the
    agent's."""
    return bool(server.agent_up) or server.utilisation.via == "agent"


def no_cpu_history(server: Server, th: Thresholds) -> str:
    """Why a server has no 30-day CPU figure at all, from what is known about it now."""
    u = server.utilisation
    if _agent_reports(server) or u.via is not None:
        who = "its agent" if _agent_reports(server) else "the Cloud API"
        return (f"no 30 days of history yet: {who} reports CPU now, but no hour of the "
                f"last 30 days is recorded yet (judged from {pct(th.min_coverage)} of the "
                "30 days on; backfill the history to judge it now)")
    if server.agent_up is False:
        other = ("the Cloud API reported no CPU either" if server.source == "cloud"
                 else "Robot has no CPU metrics")
        return (f"no utilisation data: its agent is down (its scrape fails) and {other} "
                "in the last 30 days")
    if server.source == "dedicated":
        return ("no utilisation data: no agent reports for it, and Robot has no CPU "
                "metrics (install the agent)")
    return ("no utilisation series: neither an agent nor the Cloud API reported CPU for "
            "this server in the last 30 days")


def no_memory_history(server: Server) -> str:
    """Why a server has no 30-day memory figure (only an agent measures memory)."""
    if _agent_reports(server):
        return "memory has no 30 days of history yet (its agent reports it now)"
    if server.agent_up is False:
        return "memory was not measured (its agent is down; the Cloud API has no memory figure)"
    return "memory was not measured (no agent; the Cloud API has no memory figure)"


def band(coverage: float, bands: ConfidenceBands) -> Level:
    return "high" if coverage >= bands.high else (
        "medium" if coverage >= bands.medium else "low")


def without_memory(a: Assessment, consequence: str, figures: dict[str, str]) -> None:
    """Memory unusable: lower the confidence one level and say why and what it means."""
    a.confidence = lower(a.confidence)
    a.extra.append(Reason(f"{a.memory_note}: {consequence}; confidence lowered to "
                          f"{a.confidence}", figures))


def in_order(fleet: Fleet) -> list[Server]:
    """The fleet's servers in a stable order (source, then server id)."""
    return sorted(fleet.servers.values(), key=lambda s: (s.key.source, s.key.server_id))


@dataclass(frozen=True)
class Unjudged:
    """A rule's answer when it makes no recommendation for a server, and why."""

    reason: str
    cause: ExclusionCause


def exclusion(server: Server, rule: str, why: Unjudged) -> Exclusion:
    return Exclusion(ServerRef.of(server), rule, why.reason, why.cause)


def not_assessed(a: Assessment) -> Unjudged:
    """Why the server's figures cannot be used (``a.cpu_ok`` is false)."""
    return Unjudged(a.exclusion or "no CPU figures", a.exclusion_cause)


def no_price(server: Server) -> Unjudged:
    return Unjudged(f"no price known for the server ({adapter(server).unpriced_hint()})",
                    "inventory")


# ------------------------------------------------------------------- high availability

def ha_peers(server: Server, fleet: Fleet, th: Thresholds) -> list[HaPeer]:
    """The replicas of ``server`` in the whole inventory (``rules.ha``: the other servers
    of its spread placement group, and those with its value of the replica label), each
    once with why, by name. A peer another rule has already taken is still a peer."""
    seen: dict[ServerKey, str] = {}
    for group in fleet.ha_groups(th.ha.replica_label, th.ha.placement_group_types).get(
            server.key, ()):
        for key in group.members:
            if key != server.key:
                seen.setdefault(key, group.why)
    return sorted((HaPeer(key, why) for key, why in seen.items()),
                  key=lambda p: (name_of(fleet, p.key), p.key))


def shortlist(items: list[str], most: int = 5) -> str:
    """``a, b, c`` — at most ``most`` of them, then how many more (a replica label set on
    a whole fleet by mistake must not make a reason of ten thousand names)."""
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def name_of(fleet: Fleet, key: ServerKey) -> str:
    """The name of a server of the inventory (its key when it has none)."""
    server = fleet.inventory.get(key)
    return server.name if server is not None and server.name else str(key)


# -------------------------------------------------------------------------------- risk

def cpu_peak_risk(server: Server, target_cores: int) -> tuple[Level, list[Reason]]:
    """How the 30-day CPU peak of ``server`` would load ``target_cores``."""
    u = server.utilisation
    if u.cpu_max is None or server.cores is None:
        return "medium", [Reason("the 30-day CPU peak is unknown")]
    peak_cores = u.cpu_max * server.cores
    ratio = peak_cores / target_cores
    figures = {"cpu_max_30d": pct(u.cpu_max), "peak_cores": num(peak_cores),
               "target_cores": str(target_cores), "peak_on_target": pct(ratio)}
    if ratio > 1.0:
        return "high", [Reason(
            f"the busiest 5 minutes of the 30 days used {num(peak_cores)} cores, more than "
            f"the target's {target_cores}: expect slowdowns at such peaks", figures)]
    if ratio > 0.8:
        return "medium", [Reason(
            f"the 30-day CPU peak ({num(peak_cores)} cores) would use {pct(ratio)} of the "
            "target: little room for growth", figures)]
    return "low", [Reason(f"the 30-day CPU peak ({num(peak_cores)} cores) would use "
                          f"{pct(ratio)} of the target's {target_cores} cores", figures)]


# ------------------------------------------------------------- resizing a Cloud server

@dataclass(frozen=True)
class Option:
    candidate: Candidate
    projected: Decimal  # the server's monthly cost on it
    in_place: bool  # change-type possible (disk large enough)


def sizing_need(server: Server, a: Assessment, th: Thresholds, fleet: Fleet) -> Need:
    """p95 CPU and peak memory of ``server`` as a demand (memory: keep it when unknown)."""
    u = server.utilisation
    assert u.cpu_p95 is not None and server.cores is not None
    memory: float | None = None
    keep_memory: int | None = None
    if a.memory_ok and u.memory_max is not None and server.memory_bytes is not None:
        memory = u.memory_max * server.memory_bytes
    else:
        keep_memory = server.memory_bytes
    min_disk = None if adapter(server).disk_can_shrink else type_disk(fleet, server)
    need = Need(cpu_cores=u.cpu_p95 * server.cores, memory_bytes=memory,
                min_memory_bytes=keep_memory, min_disk_bytes=min_disk,
                disk_used_bytes=server.disk_used_bytes, peak_cores=daily_peak_cores(server))
    return failover_need(server, need, th, fleet)


def failover_need(server: Server, need: Need, th: Thresholds, fleet: Fleet) -> Need:
    """``need`` with the load ``server`` takes over when its busiest HA peer fails: a
    replica is sized to carry its peer (a standby smaller than its primary cannot take
    over). A peer whose load cannot be judged keeps the server at least its size."""
    cores: float | None = None
    memory: float | None = None
    whose: list[str] = []
    for peer in ha_peers(server, fleet, th):
        other = fleet.inventory.get(peer.key)
        if other is None:
            continue
        name = name_of(fleet, peer.key)
        a = assess(other, th)
        pu = other.utilisation
        if not a.cpu_ok or pu.cpu_p95 is None or other.cores is None:
            return dataclasses.replace(
                need, min_cores=max(need.min_cores or 0, other.cores or 0) or None,
                min_memory_bytes=max(need.min_memory_bytes or 0,
                                     other.memory_bytes or 0) or None,
                failover=f"its HA peer {name} ({peer.why}) cannot be judged "
                         f"({a.exclusion or 'no CPU figures'}): {server.name} keeps at least "
                         f"its {other.cores or '?'} cores and "
                         f"{gib(other.memory_bytes or 0)} to take over from it")
        peer_cores = pu.cpu_p95 * other.cores
        peer_memory = (pu.memory_max * other.memory_bytes
                       if a.memory_ok and pu.memory_max is not None and other.memory_bytes
                       else None)
        if peer_cores > need.cpu_cores or (
                peer_memory is not None and peer_memory > (need.memory_bytes or 0)):
            cores = max(cores or 0.0, peer_cores)
            memory = max(memory or 0.0, peer_memory) if peer_memory is not None else memory
            whose.append(f"{name} ({peer.why}: p95 CPU {num(peer_cores)} cores"
                         + (f", peak memory {gib(peer_memory)}" if peer_memory is not None
                            else "") + ")")
    if not whose:
        return need
    return dataclasses.replace(
        need, failover_cores=cores, failover_memory_bytes=memory,
        failover=f"on a failover {server.name} takes over the load of its HA peer "
                 f"{shortlist(whose)}: the target holds that too")


def daily_peak_cores(server: Server) -> float | None:
    """The server's recurring daily peak in cores (``daily_peak30d`` x cores), if known."""
    u = server.utilisation
    if u.cpu_daily_peak is None or server.cores is None:
        return None
    return u.cpu_daily_peak * server.cores


def peak_reason(server: Server, need: Need) -> Reason | None:
    """What the recurring daily peak is, when it is known."""
    u = server.utilisation
    if need.peak_cores is None or u.cpu_daily_peak is None or server.cores is None:
        return None
    return Reason(
        f"the recurring daily peak (the busiest hour, reached on at least half the days) "
        f"is {pct(u.cpu_daily_peak)} of {server.cores} cores ({num(need.peak_cores)} cores)",
        {"cpu_daily_peak_30d": pct(u.cpu_daily_peak), "daily_peak_cores": num(need.peak_cores)})


def sizing_reasons(server: Server, need: Need, target: Candidate, th: Thresholds,
                   location: str) -> list[Reason]:
    """What the demand is and why this target was chosen."""
    u = server.utilisation
    t = target.type
    assert u.cpu_p95 is not None and server.cores is not None
    reasons = [Reason(
        f"p95 CPU over 30 days is {pct(u.cpu_p95)} of {server.cores} cores "
        f"({num(need.cpu_cores)} cores)",
        {"cpu_p95_30d": pct(u.cpu_p95), "cores": str(server.cores),
         "cpu_p95_cores": num(need.cpu_cores)})]
    if need.memory_bytes is not None and server.memory_bytes:
        reasons.append(Reason(
            f"peak memory over 30 days is {gib(need.memory_bytes)} of "
            f"{gib(server.memory_bytes)} ({pct(need.memory_bytes / server.memory_bytes)})",
            {"memory_max_30d": pct(need.memory_bytes / server.memory_bytes),
             "memory_peak": gib(need.memory_bytes), "memory": gib(server.memory_bytes)}))
    peak = peak_reason(server, need)
    if peak is not None:
        reasons.append(peak)
    if need.failover is not None:
        reasons.append(Reason(need.failover, {
            **({"failover_cores": num(need.failover_cores)}
               if need.failover_cores is not None else {}),
            **({"failover_memory": gib(need.failover_memory_bytes)}
               if need.failover_memory_bytes is not None else {})}))
    mem_text = (f"peak memory at most {pct(th.headroom.memory)}" if need.memory_bytes is not None
                else f"at least the current {gib(need.min_memory_bytes or 0)} of memory")
    peak_text = (f", the daily peak at most {pct(th.headroom.peak)} of them"
                 if need.peak_cores is not None else "")
    reasons.append(Reason(
        f"{t.name} ({t.cores} cores, {gib(t.memory_bytes)}, {gb(t.disk_bytes)} disk, "
        f"{eur(target.price)}/month in {location}) is the cheapest orderable "
        f"{t.architecture} type that keeps p95 CPU at most {pct(th.headroom.cpu)} of its "
        f"cores{peak_text} and {mem_text}",
        {"target": t.name, "target_cores": str(t.cores), "target_memory": gib(t.memory_bytes),
         "target_disk": gb(t.disk_bytes), "target_price": eur(target.price),
         "cpu_headroom": pct(th.headroom.cpu), "memory_headroom": pct(th.headroom.memory),
         **({"peak_headroom": pct(th.headroom.peak)} if need.peak_cores is not None else {})}))
    return reasons


# ----------------------------------------------------------------------------- options

_RISK_RANK: dict[Risk, int] = {"low": 0, "medium": 1, "high": 2}


def slowdown_factor(slowdown: float) -> str:
    """``3.25`` -> ``"3.3"``: one decimal, rounded half up (as a person would)."""
    return str(Decimal(repr(round(slowdown, 9))).quantize(Decimal("0.1"), ROUND_HALF_UP))


def option_on(server: Server, t: ServerType, need: Need, th: Thresholds, projected: Decimal,
              in_place: bool) -> RecommendationOption:
    """``server`` on type ``t``: projected load, the recurring daily peak's performance
    risk and slowdown there."""
    assert server.monthly_cost is not None
    u = server.utilisation
    peak = need.peak_cores
    busiest = u.cpu_max * server.cores if u.cpu_max is not None and server.cores else None
    max_fits = busiest is None or busiest <= t.cores + 1e-9
    slowdown = peak / t.cores if peak is not None and peak > t.cores + 1e-9 else None
    risk: Risk
    if peak is None:
        risk = "low" if max_fits else "medium"
        text = (f"{t.name}: the recurring daily peak is not known; the busiest 5 minutes "
                + (f"({num(busiest or 0.0, 1)} cores) fit its {t.cores} cores" if max_fits else
                   f"({num(busiest or 0.0, 1)} cores) exceed its {t.cores} cores"))
    elif slowdown is not None:
        risk = "high"
        text = (f"the daily peak of {num(peak, 1)} cores would take "
                f"~{slowdown_factor(slowdown)}x longer on {t.cores} cores")
    elif holds_peak(t, need, th.headroom) and max_fits:
        risk = "low"
        text = (f"{t.name} holds the daily peak of {num(peak, 1)} cores at "
                f"{pct(peak / t.cores)} of its {t.cores} cores")
    else:
        risk = "medium"
        text = (f"the daily peak of {num(peak, 1)} cores would use {pct(peak / t.cores)} of "
                f"{t.name}'s {t.cores} cores (above {pct(th.headroom.peak)})"
                if not holds_peak(t, need, th.headroom) else
                f"{t.name} holds the daily peak of {num(peak, 1)} cores, but the busiest 5 "
                f"minutes ({num(busiest or 0.0, 1)} cores) exceed its {t.cores} cores")
    return RecommendationOption(
        target_type=t.name, in_place=in_place, projected_monthly_cost=projected,
        monthly_savings=server.monthly_cost - projected,
        projected_cpu_utilisation=need.cpu_cores / t.cores,
        projected_peak_utilisation=(peak / t.cores) if peak is not None else None,
        projected_memory_utilisation=(need.memory_bytes / t.memory_bytes
                                      if need.memory_bytes is not None else None),
        performance_risk=risk, slowdown=slowdown, text=text)


def _peak_load(option: RecommendationOption) -> float:
    return option.projected_peak_utilisation or 0.0


def ranked_options(server: Server, fleet: Fleet, th: Thresholds, need: Need, chosen: Option,
                   cat: Catalogue | None = None) -> list[RecommendationOption]:
    """The targets a downsize offers, like AWS Compute Optimizer's ranked options: the
    chosen one (the cheapest that holds the recurring daily peak) first, then the cheaper
    types that hold the p95, memory and disk but not the peak, least slowed first (lower
    performance risk, then a lower load of the peak, then cheaper; a type that costs more
    than another and carries the peak no better is left out), at most ``max_options`` in
    all."""
    assert server.monthly_cost is not None
    first = option_on(server, chosen.candidate.type, need, th, chosen.projected,
                      chosen.in_place)
    if need.peak_cores is None or th.max_options <= 1:
        return [first]
    cpu_types = (server.cpu_type,) if th.same_cpu_type and server.cpu_type else None
    candidates = (cat or Catalogue(fleet)).orderable(
        server.location, server.architecture, cpu_types, exclude=[server.server_type],
        provider=server.provider)
    relaxed = dataclasses.replace(need, peak_cores=None)
    others: list[RecommendationOption] = []
    for c in candidates:  # cheapest first
        t = c.type
        if t.name == chosen.candidate.type.name or holds_peak(t, need, th.headroom):
            continue
        in_place = fits(t, relaxed, th.headroom, in_place=True)
        if not in_place and not fits(t, relaxed, th.headroom, in_place=False):
            continue
        projected = cost_on(fleet, server, c.price)
        if projected >= server.monthly_cost or projected >= chosen.projected:
            continue
        option = option_on(server, t, need, th, projected, in_place)
        if any(_peak_load(o) <= _peak_load(option) for o in others):
            continue  # a cheaper type carries the peak at least as well
        others.append(option)
    others.sort(key=lambda o: (_RISK_RANK[o.performance_risk], _peak_load(o),
                               o.projected_monthly_cost, o.target_type))
    return [first, *others[:th.max_options - 1]]


def resize_recommendation(kind: Kind, server: Server, option: Option, need: Need,
                          a: Assessment, th: Thresholds, fleet: Fleet,
                          reasons: list[Reason], *, upsize: bool = False,
                          cat: Catalogue | None = None) -> Recommendation:
    """A type change of one Cloud server: in place, or onto a new server when the disk
    cannot shrink. A downsize lists its options (:func:`ranked_options`), an upsize only
    its target."""
    t = option.candidate.type
    assert server.monthly_cost is not None
    p = adapter(server)
    disk = type_disk(fleet, server)
    level, risk_reasons = cpu_peak_risk(server, t.cores)
    preconditions: list[str] = []
    action: Action
    if option.in_place:
        keep_disk = disk is not None and t.disk_bytes > disk
        commands = p.change_type_commands(server, t.name, keep_disk)
        risk_reasons.append(Reason("the server is powered off for the type change "
                                   "(usually a few minutes)"))
        preconditions.append(f"{server.name} is powered off during the change: plan a "
                             "maintenance window")
        if keep_disk and disk is not None:
            preconditions.append(
                f"--keep-disk keeps the {gb(disk)} disk (instead of growing it to "
                f"{t.name}'s {gb(t.disk_bytes)}), so the server can move back to a smaller "
                "type later; drop the flag only if you need the larger disk — Hetzner "
                "cannot shrink it again")
        action = "change_type"
    else:
        new_name = f"{server.name}-{t.name}"
        image = image_of(server)
        commands = [
            p.snapshot_command(server, f"before migrating to {t.name}"),
            p.create_command(new_name, t.name, server.location, image),
            f"# move the services and data of {server.name} to {new_name} and switch "
            "traffic (DNS, or move the primary IP while both are off: "
            f"{p.move_address_hint()})",
            p.delete_command(server),
        ]
        level = highest([level, "medium"])
        risk_reasons.append(Reason("a new server: services and data have to be moved by "
                                   "hand, and its IP addresses differ unless the primary "
                                   "IPs are moved"))
        disk_text = gb(disk) if disk is not None else "its"
        reasons.append(Reason(
            f"{server.name}'s primary disk is {disk_text}, larger than {t.name}'s "
            f"{gb(t.disk_bytes)}: Hetzner cannot shrink a disk (and a snapshot of it cannot "
            f"be restored onto a smaller disk), so the change needs a new {t.name} server "
            "and a migration",
            {"disk": disk_text, "target_disk": gb(t.disk_bytes)}))
        if server.disk_used_bytes is None:
            preconditions.append(f"the data on {server.name} must fit {t.name}'s "
                                 f"{gb(t.disk_bytes)} disk (disk usage was not measured: "
                                 "install the agent)")
        preconditions.append(f"a snapshot of {server.name} is taken before the deletion "
                             "(snapshots are billed per GB per month until deleted)")
        if not image:
            preconditions.append(f"the new server starts from {p.default_image}: choose the "
                                 "image your services need")
        action = "migrate"
    if upsize:  # more capacity than today: the peak figures inform, they are no risk
        level = "low"
    u = server.utilisation
    mem_after = (need.memory_bytes / t.memory_bytes) if need.memory_bytes is not None else None
    return Recommendation(
        kind=kind, action=action, servers=[ServerRef.of(server)],
        current_monthly_cost=server.monthly_cost, projected_monthly_cost=option.projected,
        target_type=t.name, target_location=server.location,
        projected_cpu_utilisation=(u.cpu_p95 * server.cores / t.cores)
        if a.cpu_ok and u.cpu_p95 is not None and server.cores else None,
        projected_memory_utilisation=mem_after,
        confidence=a.confidence, risk=level, reasons=reasons,
        confidence_reasons=list(a.reasons), risk_reasons=risk_reasons,
        preconditions=preconditions, commands=commands,
        options=[option_on(server, t, need, th, option.projected, option.in_place)] if upsize
        else ranked_options(server, fleet, th, need, option, cat))


def no_catalogue(server: Server, cat: Catalogue, th: Thresholds) -> Unjudged | None:
    """Why no type could ever be a target for ``server`` (the catalogue has none), or None."""
    cpu_types = (server.cpu_type,) if th.same_cpu_type and server.cpu_type else None
    if cat.orderable(server.location, server.architecture, cpu_types,
                     provider=server.provider):
        return None
    kind = f"{server.cpu_type + ' ' if cpu_types else ''}{server.architecture or 'any'}"
    return Unjudged(f"no orderable {kind} server type in {server.location} in the catalogue "
                    f"({adapter(server).catalogue_hint()})",
                    "target")


def downsize_options(server: Server, fleet: Fleet, th: Thresholds, need: Need,
                     cat: Catalogue | None = None) -> tuple[Option | None, Option | None]:
    """The cheapest in-place option and the cheapest option overall (a new server when
    the disk cannot shrink), each only if cheaper than the server costs today."""
    assert server.monthly_cost is not None
    cpu_types = (server.cpu_type,) if th.same_cpu_type and server.cpu_type else None
    candidates = (cat or Catalogue(fleet)).orderable(
        server.location, server.architecture, cpu_types, exclude=[server.server_type],
        provider=server.provider)
    in_place = cheapest(candidates, need, th.headroom, in_place=True)
    anywhere = cheapest(candidates, need, th.headroom, in_place=False)

    current = server.monthly_cost

    def option(c: Candidate | None, inplace: bool) -> Option | None:
        if c is None:
            return None
        projected = cost_on(fleet, server, c.price) + extra_overage(
            fleet, [server], c.type, server.location)[0]
        return Option(c, projected, inplace) if projected < current else None

    best_in_place = option(in_place, True)
    if anywhere is not None and in_place is not None and anywhere.type.name == in_place.type.name:
        return best_in_place, best_in_place
    # a type with a disk at least as large as the current one can also be reached in place
    disk = type_disk(fleet, server)
    anywhere_in_place = anywhere is not None and (
        disk is None or adapter(server).disk_can_shrink or anywhere.type.disk_bytes >= disk)
    return best_in_place, option(anywhere, anywhere_in_place)


def savings_enough(current: Decimal, projected: Decimal, min_euros: Decimal,
                   min_percent: Decimal) -> bool:
    savings = current - projected
    return savings > 0 and savings >= min_euros and savings * 100 >= min_percent * current


def savings_figures(current: Decimal, projected: Decimal) -> dict[str, str]:
    return {"current": eur(current), "projected": eur(projected),
            "savings": eur(current - projected)}
