"""Idle: a server that does (next to) nothing.

30-day average CPU below ``rules.idle.cpu_avg_max`` (5 %) and, where memory is
measured, p95 memory below ``memory_p95_max`` (30 %):

- if even the 30-day CPU maximum stayed below ``delete_cpu_max`` (10 %), nothing ran:
  **delete** it (a Cloud server after a snapshot; a dedicated server is cancelled in
  Robot);
- otherwise (a Cloud server that wakes up now and then) **move it to the smallest type
  that fits** its p95 CPU and peak memory with headroom, if that saves at least
  ``min_savings_euros``.

A Cloud server that is powered off and has too little data to judge is recommended
for deletion with low confidence (``powered_off``): it still costs its full price.

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

from ..model import Fleet, Reason, Recommendation, RuleResult, Server, ServerRef
from ..providers import adapter
from ..settings import boolean, fail, money, ratio, setting
from . import Rule, RuleSettings, Step, servers_of, target_of, types_of
from ._common import (
    Assessment,
    Unjudged,
    assess,
    downsize_options,
    eur,
    exclusion,
    gib,
    in_order,
    no_catalogue,
    no_price,
    not_assessed,
    pct,
    resize_recommendation,
    savings_enough,
    savings_figures,
    service_text,
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
        for server in in_order(fleet):
            if not self.delete and not adapter(server).resizable_in_place(server):
                continue  # only Cloud servers can move to another type
            a = assess(server, thresholds)
            if not a.cpu_ok:
                off = self._powered_off(server, a, thresholds) if self.delete else None
                if off is not None:
                    result.recommendations.append(off)
                else:
                    result.exclusions.append(exclusion(server, self.name, not_assessed(a)))
                continue
            rec = self._judge(server, a, fleet, thresholds, cat)
            if isinstance(rec, Unjudged):
                result.exclusions.append(exclusion(server, self.name, rec))
            elif rec is not None:
                result.recommendations.append(rec)
        return result

    # ----------------------------------------------------------------------------------

    def _judge(self, server: Server, a: Assessment, fleet: Fleet, th: Thresholds,
               cat: Catalogue) -> Recommendation | Unjudged | None:
        u = server.utilisation
        idle = th.settings(IdleSettings)
        assert u.cpu_avg is not None and u.cpu_max is not None
        if u.cpu_avg >= idle.cpu_avg_max:
            return None
        if a.memory_ok and u.memory_p95 is not None and u.memory_p95 >= idle.memory_p95_max:
            return None  # memory in use: something lives there
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
        if u.cpu_max < idle.delete_cpu_max:
            reasons.append(Reason(
                f"even the busiest 5 minutes of the 30 days used only {pct(u.cpu_max)} CPU "
                f"(below {pct(idle.delete_cpu_max)}): nothing ran on it",
                {"cpu_max_30d": pct(u.cpu_max), "delete_cpu_max": pct(idle.delete_cpu_max)}))
            return self._delete(server, a, reasons) if self.delete else None
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
                reasons.append(Reason(
                    f"saves {eur(server.monthly_cost - option.projected)} a month",
                    savings_figures(server.monthly_cost, option.projected)))
                return resize_recommendation("idle", server, option, need, a, th, fleet,
                                             reasons)
        return None  # already on the smallest type that fits

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
            "nobody needs the server any more (check with its owner; network traffic is "
            "not part of this judgement)",
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

    def _powered_off(self, server: Server, a: Assessment,
                     th: Thresholds) -> Recommendation | None:
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
        return self._delete(server, a, reasons)


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
                "where measured) is **deleted** (after a snapshot) when even its 30-day "
                "maximum stayed below 10 %, otherwise moved to the smallest type that fits.",
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
- Network traffic is not part of the judgement: the preconditions ask to confirm nobody
  needs the server.

The two outcomes are two steps of one rule because they rank differently: deleting beats
everything but a safety fix; a move is a resize and ranks after consolidation and
dedicated → Cloud.
""")
