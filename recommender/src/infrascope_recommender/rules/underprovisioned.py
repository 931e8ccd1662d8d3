"""Under-provisioned: a Cloud server in the rules pack's critical tier gets the next type
up, with the extra cost (negative savings are still a recommendation).

Critical: p95 CPU >= ``rules.underprovisioned.cpu_p95_min`` (85 %) or p95 memory >=
``memory_p95_min`` (90 %) over 30 days — the bounds of the ``critical`` tier in
``prometheus/config.yaml``. The target is the cheapest orderable type of the same
architecture (and CPU type) at the location with more of the saturated resource, no
less of the other, and room for today's demand within the headroom ceilings; when no
type gives the full headroom, the one with the most of the saturated resource. The
change is made in place with ``--keep-disk`` so the server can come back down later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..model import Fleet, Reason, Recommendation, RuleResult, Server
from ..providers import adapter
from ..settings import ratio, setting
from . import Rule, RuleSettings, servers_of, target_of, types_of
from ._common import (
    Assessment,
    Option,
    Unjudged,
    assess,
    band,
    eur,
    exclusion,
    gib,
    in_order,
    no_price,
    not_assessed,
    num,
    pct,
    resize_recommendation,
    savings_figures,
)
from ._fit import Candidate, Need, cost_on, fits, orderable, type_disk

if TYPE_CHECKING:
    from ..thresholds import Thresholds


@dataclass(frozen=True)
class UnderprovisionedSettings(RuleSettings):
    """Matches the rules pack's ``critical`` tier (prometheus/config.yaml ``tiers:``)."""

    cpu_p95_min: float = setting(
        0.85, ratio, "p95 CPU ≥ 85 %: the pack's `tiers.cpu.critical` (`prometheus/config.yaml`)")
    memory_p95_min: float = setting(
        0.90, ratio, "p95 memory ≥ 90 %: the pack's `tiers.memory.critical`")


class UnderprovisionedRule:
    name = "underprovisioned"

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        result = RuleResult()
        up = thresholds.settings(UnderprovisionedSettings)
        for server in in_order(fleet):
            if not adapter(server).resizable_in_place(server):
                continue  # a dedicated server cannot change type
            a = assess(server, thresholds)
            u = server.utilisation
            if not a.cpu_ok and not a.memory_ok:
                result.exclusions.append(exclusion(server, self.name, not_assessed(a)))
                continue
            cpu_hot = a.cpu_ok and u.cpu_p95 is not None and u.cpu_p95 >= up.cpu_p95_min
            mem_hot = a.memory_ok and u.memory_p95 is not None \
                and u.memory_p95 >= up.memory_p95_min
            if not (cpu_hot or mem_hot):
                continue
            if server.monthly_cost is None:
                result.exclusions.append(exclusion(server, self.name, no_price(server)))
                continue
            if not a.cpu_ok:  # memory alone: confidence from the memory coverage
                a = self._memory_only(server, a, thresholds)
            outcome = self._plan(server, a, fleet, thresholds, cpu_hot, mem_hot)
            if isinstance(outcome, Unjudged):
                result.exclusions.append(exclusion(server, self.name, outcome))
            else:
                result.recommendations.append(outcome)
        return result

    def _memory_only(self, server: Server, a: Assessment, th: Thresholds) -> Assessment:
        cov = server.utilisation.memory_coverage or 0.0
        level = band(cov, th.confidence)
        out = Assessment(cpu_ok=False, memory_ok=True, confidence=level)
        out.extra.append(Reason(
            f"memory data covers {pct(cov)} of the 30 days: {level} confidence; {a.exclusion}",
            {"memory_coverage": pct(cov)}))
        return out

    def _plan(self, server: Server, a: Assessment, fleet: Fleet, th: Thresholds,
              cpu_hot: bool, mem_hot: bool) -> Recommendation | Unjudged:
        u = server.utilisation
        up = th.settings(UnderprovisionedSettings)
        assert server.monthly_cost is not None and server.cores is not None
        cpu_cores = (u.cpu_p95 or 0.0) * server.cores if a.cpu_ok else 0.0
        memory = (u.memory_max * server.memory_bytes
                  if a.memory_ok and u.memory_max is not None and server.memory_bytes
                  else None)
        cpu_types = (server.cpu_type,) if th.same_cpu_type and server.cpu_type else None
        disk = type_disk(fleet, server)
        larger: list[Candidate] = []
        for c in orderable(fleet, server.location, server.architecture, cpu_types,
                           exclude=[server.server_type], provider=server.provider):
            t = c.type
            if t.cores < server.cores or (server.memory_bytes and
                                          t.memory_bytes < server.memory_bytes):
                continue
            if disk is not None and t.disk_bytes < disk:
                continue
            if cpu_hot and t.cores <= server.cores:
                continue
            if mem_hot and server.memory_bytes and t.memory_bytes <= server.memory_bytes:
                continue
            larger.append(c)
        if not larger:
            return Unjudged(f"no larger orderable {server.architecture} type in "
                            f"{server.location} than {server.server_type}", "target")
        need = Need(cpu_cores=cpu_cores, memory_bytes=memory,
                    min_memory_bytes=server.memory_bytes, min_cores=server.cores,
                    min_disk_bytes=disk)
        fitting = [c for c in larger if fits(c.type, need, th.headroom, in_place=True)]
        reasons: list[Reason] = []
        if cpu_hot:
            assert u.cpu_p95 is not None
            reasons.append(Reason(
                f"p95 CPU over 30 days is {pct(u.cpu_p95)} of {server.cores} cores "
                f"(critical from {pct(up.cpu_p95_min)}); a saturated server hides part of "
                "its demand, so the real need may be higher",
                {"cpu_p95_30d": pct(u.cpu_p95), "cpu_p95_min": pct(up.cpu_p95_min),
                 "cpu_p95_cores": num(cpu_cores)}))
        if mem_hot:
            assert u.memory_p95 is not None
            reasons.append(Reason(
                f"p95 memory over 30 days is {pct(u.memory_p95)} of "
                f"{gib(server.memory_bytes or 0)} (critical from {pct(up.memory_p95_min)})",
                {"memory_p95_30d": pct(u.memory_p95),
                 "memory_p95_min": pct(up.memory_p95_min)}))
        if fitting:
            chosen = fitting[0]
            t = chosen.type
            reasons.append(Reason(
                f"{t.name} ({t.cores} cores, {gib(t.memory_bytes)}, {eur(chosen.price)}/month "
                f"in {server.location}) is the cheapest larger type that keeps p95 CPU at most "
                f"{pct(th.headroom.cpu)} and peak memory at most {pct(th.headroom.memory)}",
                {"target": t.name, "cpu_headroom": pct(th.headroom.cpu),
                 "memory_headroom": pct(th.headroom.memory)}))
        else:
            def capacity(c: Candidate) -> tuple[int, int]:
                return (c.type.cores if cpu_hot else 0, c.type.memory_bytes if mem_hot else 0)
            best = max(capacity(c) for c in larger)
            chosen = next(c for c in larger if capacity(c) == best)
            t = chosen.type
            reasons.append(Reason(
                f"no orderable type keeps today's demand within the headroom; {t.name} "
                f"({t.cores} cores, {gib(t.memory_bytes)}) is the largest step available",
                {"target": t.name}))
        projected = cost_on(fleet, server, chosen.price)
        reasons.append(Reason(
            f"costs {eur(projected - server.monthly_cost)} a month more",
            savings_figures(server.monthly_cost, projected)))
        option = Option(chosen, projected, True)
        return resize_recommendation("underprovisioned", server, option, need, a, th, fleet,
                                     reasons, upsize=True)


RULE = Rule(
    kind=UnderprovisionedRule.name, label="Under-provisioned", order=40, priority=10,
    description="A Cloud server in the rules pack's **critical** tier (30-day p95 CPU ≥ 85 % "
                "or p95 memory ≥ 90 %) gets the next type up, with the extra cost (negative "
                "savings; still a recommendation).",
    settings=UnderprovisionedSettings, evaluate=UnderprovisionedRule().evaluate,
    title=lambda rec: f"Upgrade {servers_of(rec)}: {types_of(rec)} → {target_of(rec)}",
    precedence="safety first: a saturated server is never shrunk or merged",
    details="""\
Target: the cheapest orderable type of the same architecture and CPU type with more of
the saturated resource, no less of the other, a disk at least as large, and room for
today's demand within the headroom; when none gives the full headroom, the one with the
most of the saturated resource. A saturated server's p95 understates its demand (it
cannot use more than 100 %): the reasons say so. Commands:
`hcloud server shutdown --wait <name>`, `hcloud server change-type --keep-disk <name> <type>`,
`hcloud server poweron <name>`. `--keep-disk` keeps the current disk so the server can
move back down later (a precondition explains it). Dedicated servers are not judged
(they cannot change type).
""")
