"""Idle: a server that does (next to) nothing.

30-day average CPU below ``rules.idle.cpu_avg_max`` (5 %), where memory is measured,
p95 memory below ``memory_p95_max`` (30 %), and, where traffic is measured, 30-day
average traffic (in + out) below ``network_avg_max`` (50 kB/s): a server that moves a
lot of data (a proxy, a mirror) is busy whatever its CPU says. Where traffic is not
measured, the confidence is lowered one level and the reason says so.

- if even the 30-day CPU maximum stayed below ``delete_cpu_max`` (10 %), nothing ran:
  **delete** it (a Cloud server after a snapshot; a dedicated server is cancelled in
  Robot);
- otherwise (a Cloud server that wakes up now and then) **move it to the smallest type
  that fits** its p95 CPU and peak memory with headroom, if that saves at least
  ``min_savings_euros``.

A Cloud server that is powered off and has too little data to judge is recommended
for deletion with low confidence (``powered_off``): it still costs its full price.

A server with HA replicas (``rules.ha``) is only deleted when every replica is idle by
the same tests (nothing ran on it either); a replica that is busy, cannot be judged or
was taken by an earlier rule keeps it, as an exclusion of cause ``ha`` that names it.

The two outcomes rank differently (see ``engine``): a delete (``RULE``, priority 20)
comes before consolidation, since nothing beats removing a server that does nothing; a
move (its second step, :data:`MOVE`, priority 45) is a resize and comes after
consolidation and dedicated -> Cloud, which remove whole servers, but before the general
right-sizing. Both are ``kind="idle"`` recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ..model import Fleet, Reason, Recommendation, RuleResult, Server, ServerKey, ServerRef
from ..providers import adapter
from ..settings import boolean, byte_rate, fail, money, ratio, setting
from . import Rule, RuleSettings, Step, servers_of, target_of, types_of
from ._common import (
    Assessment,
    Unjudged,
    assess,
    downsize_options,
    eur,
    exclusion,
    extra_overage,
    gib,
    ha_peers,
    in_order,
    lower,
    monthly_traffic,
    name_of,
    no_catalogue,
    no_price,
    not_assessed,
    pct,
    rate,
    resize_recommendation,
    savings_enough,
    savings_figures,
    service_text,
    shortlist,
    sizing_need,
    sizing_reasons,
    without_memory,
)
from ._fit import Catalogue

if TYPE_CHECKING:
    from ..thresholds import Thresholds


@dataclass(frozen=True)
class IdleSettings(RuleSettings):
    cpu_avg_max: float = setting(
        0.05, ratio, "30-day average CPU below 5 %: the rules pack's `low` bound; below it a "
                     "server does next to nothing")
    memory_p95_max: float = setting(
        0.30, ratio, "where memory is measured, p95 memory below 30 %: a server holding a lot "
                     "in memory (a cache, a database) is in use even when its CPU is quiet. "
                     "Stricter than the pack's idle tier (< 50 %) on purpose: deleting is "
                     "irreversible")
    network_avg_max: float = setting(
        50_000, byte_rate, "where traffic is measured, 30-day average traffic (in + out) "
                           "below 50 kB/s (~130 GB a month): updates, NTP, scans and the "
                           "agent's own scrapes stay well under 10 kB/s, while a proxy or a "
                           "site with a few requests a second is above it. A busy-network "
                           "server is never idle (it may still be right-sized)")
    delete_cpu_max: float = setting(
        0.10, ratio, "the 30-day **maximum** also below 10 %: nothing ran, not even a nightly "
                     "job → **delete**")
    powered_off: bool = setting(
        True, boolean, "a Cloud server that is off and has too little data to judge → delete "
                       "with **low** confidence: it is billed while off")
    min_savings_euros: Decimal = setting(Decimal("1.00"), money,
                                         "a move must save at least this")


def check(th: Thresholds) -> None:
    idle = th.settings(IdleSettings)
    if idle.delete_cpu_max < idle.cpu_avg_max:
        fail("rules.idle.delete_cpu_max",
             f"must be at least rules.idle.cpu_avg_max ({idle.cpu_avg_max}): "
             "a maximum below the average is impossible")


class IdleRule:
    def __init__(self, name: str, *, delete: bool = True, move: bool = False) -> None:
        self.name = name
        self.delete = delete  # recommend deleting servers where nothing ran
        self.move = move  # recommend moving servers that wake up to a smaller type

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        result = RuleResult()
        cat = Catalogue(fleet)
        busy: dict[ServerKey, str | None] = {}  # HA peer -> why it is busy (None: idle)
        for server in in_order(fleet):
            if not self.delete and not adapter(server).resizable_in_place(server):
                continue  # only Cloud servers can move to another type
            a = assess(server, thresholds)
            if not a.cpu_ok:
                off = (self._powered_off(server, a, fleet, thresholds, busy) if self.delete
                       else None)
                if isinstance(off, Recommendation):
                    result.recommendations.append(off)
                else:
                    result.exclusions.append(exclusion(server, self.name, off or not_assessed(a)))
                continue
            rec = self._judge(server, a, fleet, thresholds, cat, busy)
            if isinstance(rec, Unjudged):
                result.exclusions.append(exclusion(server, self.name, rec))
            elif rec is not None:
                result.recommendations.append(rec)
        return result

    # ----------------------------------------------------------------------------------

    def _judge(self, server: Server, a: Assessment, fleet: Fleet, th: Thresholds,
               cat: Catalogue, busy: dict[ServerKey, str | None]
               ) -> Recommendation | Unjudged | None:
        u = server.utilisation
        idle = th.settings(IdleSettings)
        assert u.cpu_avg is not None and u.cpu_max is not None
        if u.cpu_avg >= idle.cpu_avg_max:
            return None
        if a.memory_ok and u.memory_p95 is not None and u.memory_p95 >= idle.memory_p95_max:
            return None  # memory in use: something lives there
        traffic = u.network_avg
        if traffic is not None and traffic >= idle.network_avg_max:
            return None  # moves data: busy on the network, not idle
        if server.monthly_cost is None:
            return no_price(server)
        reasons = [Reason(
            f"30-day average CPU is {pct(u.cpu_avg)}, below {pct(idle.cpu_avg_max)}",
            {"cpu_avg_30d": pct(u.cpu_avg), "cpu_avg_max": pct(idle.cpu_avg_max)})]
        if a.memory_ok and u.memory_p95 is not None:
            reasons.append(Reason(
                f"p95 memory is {pct(u.memory_p95)}, below {pct(idle.memory_p95_max)}",
                {"memory_p95_30d": pct(u.memory_p95),
                 "memory_p95_max": pct(idle.memory_p95_max)}))
        else:
            without_memory(a, "idle judged on CPU alone", {"memory": "not measured"})
        if traffic is not None:
            assert u.network_in_avg is not None and u.network_out_avg is not None
            reasons.append(Reason(
                f"30-day average traffic is {rate(traffic)} (in {rate(u.network_in_avg)}, "
                f"out {rate(u.network_out_avg)}; {monthly_traffic(u.network_out_avg)} out a "
                f"month), below {rate(idle.network_avg_max)}",
                {"network_avg_30d": rate(traffic), "network_avg_max": rate(idle.network_avg_max),
                 "network_out_month": monthly_traffic(u.network_out_avg)}))
        else:
            a.confidence = lower(a.confidence)
            a.extra.append(Reason(
                "network traffic is not measured (no network figures for the 30 days): idle "
                f"judged without it; confidence lowered to {a.confidence}",
                {"network": "not measured"}))
        if u.cpu_max < idle.delete_cpu_max:
            if not self.delete:
                return None
            reasons.append(Reason(
                f"even the busiest 5 minutes of the 30 days used only {pct(u.cpu_max)} CPU "
                f"(below {pct(idle.delete_cpu_max)}): nothing ran on it",
                {"cpu_max_30d": pct(u.cpu_max), "delete_cpu_max": pct(idle.delete_cpu_max)}))
            kept = self._replicas(server, fleet, th, "idle", reasons, busy)
            return kept if kept is not None else self._delete(server, a, reasons)
        if not adapter(server).resizable_in_place(server) or not self.move:
            return None  # a dedicated server that does wake up: see dedicated_to_cloud
        reasons.append(Reason(
            f"the 30-day CPU maximum is {pct(u.cpu_max)} (not below "
            f"{pct(idle.delete_cpu_max)}): something runs now and then, so move it to the "
            "smallest type that fits rather than delete it",
            {"cpu_max_30d": pct(u.cpu_max), "delete_cpu_max": pct(idle.delete_cpu_max)}))
        missing = no_catalogue(server, cat, th)
        if missing:
            return missing
        need = sizing_need(server, a, th, fleet)
        in_place, anywhere = downsize_options(server, fleet, th, need, cat)
        for option in (in_place, anywhere):
            if option is not None and savings_enough(server.monthly_cost, option.projected,
                                                     idle.min_savings_euros, Decimal(0)):
                reasons += sizing_reasons(server, need, option.candidate, th, server.location)
                overage = extra_overage(fleet, [server], option.candidate.type,
                                        server.location)[1]
                if overage is not None:
                    reasons.append(overage)
                reasons.append(Reason(
                    f"saves {eur(server.monthly_cost - option.projected)} a month",
                    savings_figures(server.monthly_cost, option.projected)))
                return resize_recommendation("idle", server, option, need, a, th, fleet,
                                             reasons, cat=cat)
        return None  # already on the smallest type that fits

    def _replicas(self, server: Server, fleet: Fleet, th: Thresholds, state: str,
                  reasons: list[Reason], busy_cache: dict[ServerKey, str | None]
                  ) -> Unjudged | None:
        """Why ``server`` must stay for its HA replicas (one of them is busy, unknown or
        not in this view), or None; when every replica is idle too, ``reasons`` say so."""
        peers = ha_peers(server, fleet, th)
        if not peers:
            return None
        busy = []
        for p in peers:
            if p.key not in busy_cache:
                busy_cache[p.key] = self._busy(p.key, fleet, th)
            why = busy_cache[p.key]
            if why is not None:
                busy.append(f"{name_of(fleet, p.key)} ({p.why}: {why})")
        if busy:
            one = len(busy) == 1
            first = name_of(fleet, next(p.key for p in peers if busy_cache[p.key]))
            return Unjudged(
                f"{state}, but its HA peer{'' if one else 's'} {shortlist(busy)} "
                f"{'is' if one else 'are'} busy: deleting {server.name} would leave "
                f"{first if one else 'them'} without {'its' if one else 'their'} replica",
                "ha")
        one = len(peers) == 1
        reasons.append(Reason(
            f"its HA peer{'' if one else 's'} "
            f"{shortlist([f'{name_of(fleet, p.key)} ({p.why})' for p in peers])} "
            f"{'is' if one else 'are'} idle too: the service they replicate does not run",
            {"ha_peers": shortlist([name_of(fleet, p.key) for p in peers])}))
        return None

    @staticmethod
    def _busy(key: ServerKey, fleet: Fleet, th: Thresholds) -> str | None:
        """Why the HA peer ``key`` counts as busy, or None when nothing ran on it either
        (the tests that delete a server)."""
        peer = fleet.servers.get(key)
        if peer is None:
            return "another recommendation of this run changes it"
        a = assess(peer, th)
        if not a.cpu_ok:
            return f"its load is unknown ({not_assessed(a).reason})"
        u = peer.utilisation
        idle = th.settings(IdleSettings)
        assert u.cpu_avg is not None and u.cpu_max is not None
        if u.cpu_avg >= idle.cpu_avg_max:
            return f"30-day average CPU {pct(u.cpu_avg)}"
        if a.memory_ok and u.memory_p95 is not None and u.memory_p95 >= idle.memory_p95_max:
            return f"p95 memory {pct(u.memory_p95)}"
        if u.network_avg is not None and u.network_avg >= idle.network_avg_max:
            return f"30-day average traffic {rate(u.network_avg)}"
        if u.cpu_max >= idle.delete_cpu_max:
            return f"30-day CPU maximum {pct(u.cpu_max)}: something runs on it"
        return None

    def _delete(self, server: Server, a: Assessment,
                reasons: list[Reason]) -> Recommendation:
        assert server.monthly_cost is not None
        risk_reasons = [Reason("deleting is irreversible: a snapshot is taken first")]
        if server.services:
            shown = ", ".join(service_text(s) for s in server.services[:10])
            risk_reasons.append(Reason(
                f"the agent still sees {len(server.services)} service(s): {shown}",
                {"services": str(len(server.services))}))
        preconditions = [
            "nobody needs the server any more (check with its owner)",
            "attached volumes, floating IPs and snapshots are billed separately and are not "
            "counted in the savings: delete them too if they are no longer needed",
        ]
        p = adapter(server)
        if p.deletable(server):
            commands = [p.snapshot_command(server, "before deletion (idle)"),
                        p.delete_command(server)]
            preconditions.insert(1, f"a snapshot of {server.name} is taken first (billed per "
                                    "GB per month until you delete it)")
        else:
            commands = [f"# back up whatever you want to keep from {server.name}",
                        p.cancel_command(server)]
            preconditions.insert(1, "a dedicated server is billed until the end of its "
                                    "cancellation period: the savings start then")
        return Recommendation(
            kind="idle", action="delete", servers=[ServerRef.of(server)],
            current_monthly_cost=server.monthly_cost, projected_monthly_cost=Decimal(0),
            confidence=a.confidence, risk="medium",
            reasons=reasons + [Reason(f"saves {eur(server.monthly_cost)} a month",
                                      savings_figures(server.monthly_cost, Decimal(0)))],
            confidence_reasons=list(a.reasons), risk_reasons=risk_reasons,
            preconditions=preconditions, commands=commands)

    def _powered_off(self, server: Server, a: Assessment, fleet: Fleet, th: Thresholds,
                     busy: dict[ServerKey, str | None]) -> Recommendation | Unjudged | None:
        """A Cloud server that is off and has too little data: it costs, it does nothing."""
        if not (th.settings(IdleSettings).powered_off and adapter(server).deletable(server)
                and server.status == "off" and server.monthly_cost is not None):
            return None
        coverage = server.utilisation.cpu_coverage
        a.confidence = "low"
        a.extra.append(Reason(
            "the server is powered off now and there is "
            + (f"CPU data for only {pct(coverage)} of the 30 days" if coverage is not None
               else "no CPU data for the 30 days")
            + ": consistent with being off, but how long it has been off is not known",
            {"status": "off", "cpu_coverage": pct(coverage) if coverage is not None else "0%"}))
        memory = server.memory_bytes
        reasons = [Reason(
            f"{server.name} is powered off but a Cloud server is billed while off "
            f"({server.server_type}{', ' + gib(memory) if memory else ''})",
            {"status": "off"})]
        kept = self._replicas(server, fleet, th, "powered off", reasons, busy)
        return kept if kept is not None else self._delete(server, a, reasons)


def title(rec: Recommendation) -> str:
    if rec.action == "delete":
        return f"Delete idle {servers_of(rec)} ({types_of(rec)})"
    return f"Downsize idle {servers_of(rec)}: {types_of(rec)} → {target_of(rec)}"


MOVE = Step("idle_move", 45, IdleRule("idle_move", delete=False, move=True).evaluate,
            precedence="moving an idle server that wakes up now and then to a smaller type: "
                       "a resize, labelled idle because that is the more useful reason")

RULE = Rule(
    kind="idle", label="Idle", order=10, priority=20,
    description="A server whose 30-day average CPU is below 5 % (and p95 memory below 30 % "
                "and average traffic below 50 kB/s where measured) is **deleted** (after a "
                "snapshot) when even its 30-day maximum stayed below 10 %, otherwise moved "
                "to the smallest type that fits.",
    settings=IdleSettings, check=check, title=title,
    evaluate=IdleRule("idle", delete=True, move=False).evaluate,
    precedence="deleting a server where nothing ran: nothing beats removing a server that "
               "does nothing",
    more_steps=(MOVE,),
    details="""\
- Nothing ran: Cloud: `hcloud server create-image --type snapshot --description '<name>
  before deletion (idle)' <name>`, `hcloud server delete <name>`. Dedicated: back up,
  then `# cancel server <number> in Robot (Server → Cancellation)`.
- Something runs now and then (maximum ≥ 10 %): a Cloud server moves to the smallest type
  that fits (in place when the disk allows, else onto a new server: see right-sizing).
- Traffic: a server whose 30-day average traffic (in + out, the agent's interfaces or
  the Cloud API's public one) reaches `network_avg_max` is never idle; where traffic is
  not measured the confidence is lowered one level. The rules pack's utilisation tier
  takes the same default (`tiers.network.low` in `prometheus/config.yaml`), so
  `InfraScopeServerIdle` does not fire for a busy proxy either.
- A server with HA replicas (see [High availability](#high-availability-replicas)) is
  deleted only when nothing ran on any replica either (the reasons name them); if one is
  busy, cannot be judged or is taken by an earlier rule, the server is excluded with
  cause `ha`: "idle, but its HA peer db-a (spread placement group db-spread: 30-day
  average CPU 35%) is busy: deleting db-b would leave db-a without its replica".

The two outcomes are two steps of one rule because they rank differently: deleting beats
everything but a safety fix; a move is a resize and ranks after consolidation and
dedicated → Cloud.
""")
