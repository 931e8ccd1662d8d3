"""Consolidation: non-production Cloud servers that fit together on one cheaper server.

Non-production: the Hetzner label ``rules.consolidation.env_label`` (``env``) has one of
``env_values`` (staging, stage, dev, development, test; case-insensitive); a server
without that label counts when its name matches ``name_patterns[<project>]`` or else
``name_pattern`` (a label with another value, e.g. ``production``, always wins over the
name). Servers are grouped by Cloud project, location and architecture; a group of at
least ``min_servers`` is merged onto the cheapest orderable type that holds the sum of
their p95 CPU and peak memory within the headroom ceilings, and their data (used disk
where the agent measures it, else their whole primary disk) within ``headroom.disk``.
Summing p95 figures over-estimates the p95 of the sum: the error is on the safe side.

When the whole group does not fit one type (or would not be cheaper), the most demanding
server is left out and the rest tried again, down to ``min_servers``. The new server is
billed like the group's servers: the type's price, the backup surcharge if any member
had backups, and the most expensive member's primary IPs.

Replicas (``rules.ha``: the servers of one spread placement group, or with one value of
the replica label) are never merged together: of two, the more demanding is left out
and the reasons say why, so a pair alone is never merged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ..model import (
    Fleet,
    HaPeer,
    Level,
    Reason,
    Recommendation,
    RuleResult,
    Server,
    ServerKey,
    ServerRef,
)
from ..providers import adapter
from ..settings import integer, mapping_of, money, regex, setting, strings, text
from . import Rule, RuleSettings, servers_of, target_of
from ._common import (
    Assessment,
    assess,
    daily_peak_cores,
    eur,
    exclusion,
    extra_overage,
    gb,
    gib,
    ha_peers,
    image_of,
    in_order,
    lowest,
    name_of,
    no_price,
    not_assessed,
    num,
    pct,
    service_text,
    shortlist,
    unlisted_services,
    without_memory,
)
from ._fit import Need, backup_ratio, cheapest, orderable, unchanged_components

#: Default name pattern of non-production servers (case-insensitive): ``staging``,
#: ``stage``, ``stg``, ``dev``, ``development``, ``test``, ``testing`` or ``qa`` as a
#: word of the server name (words are separated by ``-``, ``_``, ``.`` or digits).
DEFAULT_NONPROD_NAME_PATTERN = (
    r"(?i)(^|[-_.0-9])(staging|stage|stg|dev|development|test|testing|qa)([-_.0-9]|$)"
)

if TYPE_CHECKING:
    from ..thresholds import Thresholds

Member = tuple[Server, Assessment, str]  # a server, its figures, why it is non-production


@dataclass(frozen=True)
class ConsolidationSettings(RuleSettings):
    env_label: str = setting("env", text, "the Hetzner label that says what a server is")
    env_values: tuple[str, ...] = setting(
        ("staging", "stage", "dev", "development", "test"), strings,
        "label values meaning non-production (case-insensitive)")
    name_pattern: str = setting(
        DEFAULT_NONPROD_NAME_PATTERN, regex,
        "for servers without the label: one of those words in the name (`shop-dev-1`, "
        "`api-test`; not `latest-build`, not `devops`); `\"\"` disables")
    name_patterns: Mapping[str, str] = setting(
        {}, mapping_of(regex), "`{<hcloud project>: <regex>}`: a project's own naming "
                               "scheme, instead of `name_pattern`")
    min_servers: int = setting(2, integer(2), "a group needs at least two servers")
    min_savings_euros: Decimal = setting(Decimal("1.00"), money, "not worth a migration below")


def nonprod_reason(server: Server, th: Thresholds) -> str | None:
    """Why ``server`` counts as non-production, or None."""
    c = th.settings(ConsolidationSettings)
    value = server.labels.get(c.env_label)
    if value is not None and value.strip():
        if value.strip().lower() in {v.lower() for v in c.env_values}:
            return f"label {c.env_label}={value}"
        return None  # labelled, and not as non-production: the label decides
    pattern = c.name_patterns.get(server.project, c.name_pattern)
    if pattern and re.search(pattern, server.name):
        return f"name matches {pattern!r}"
    return None


class ConsolidationRule:
    name = "consolidation"

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        result = RuleResult()
        c = thresholds.settings(ConsolidationSettings)
        groups: dict[tuple[str, str, str], list[Member]] = defaultdict(list)
        for server in in_order(fleet):
            if not adapter(server).deletable(server):
                continue  # merged servers are deleted (a dedicated server is cancelled)
            why = nonprod_reason(server, thresholds)
            if why is None:
                continue
            a = assess(server, thresholds)
            if not a.cpu_ok:
                result.exclusions.append(exclusion(server, self.name, not_assessed(a)))
                continue
            if server.monthly_cost is None:
                result.exclusions.append(exclusion(server, self.name, no_price(server)))
                continue
            groups[(server.project, server.location, server.architecture)].append(
                (server, a, why))
        for (_project, location, arch), members in sorted(groups.items()):
            members.sort(key=lambda m: (self._demand(m[0], m[1]), m[0].key))
            while True:
                kept, apart = self._apart(members, fleet, thresholds)
                if len(kept) < c.min_servers:
                    break
                rec = self._merge(kept, fleet, thresholds, location, arch, apart)
                if rec is not None:
                    result.recommendations.append(rec)
                    break
                # leave out the most demanding server, try again
                members = [m for m in members if m is not kept[-1]]
        return result

    @staticmethod
    def _apart(members: list[Member], fleet: Fleet, th: Thresholds
               ) -> tuple[list[Member], list[tuple[Server, HaPeer]]]:
        """``members`` (least demanding first) without the replicas of one kept before
        them: merging replicas onto one machine removes the high availability they are
        there for. The ones left out, each with the peer it stays apart from."""
        kept: list[Member] = []
        apart: list[tuple[Server, HaPeer]] = []
        taken: set[ServerKey] = set()
        for member in members:
            clash = next((p for p in ha_peers(member[0], fleet, th) if p.key in taken), None)
            if clash is not None:
                apart.append((member[0], clash))
                continue
            kept.append(member)
            taken.add(member[0].key)
        return kept, apart

    @staticmethod
    def _demand(server: Server, a: Assessment) -> tuple[float, float]:
        u = server.utilisation
        cores = (u.cpu_p95 or 0.0) * (server.cores or 0)
        memory = (u.memory_max or 0.0) * (server.memory_bytes or 0) if a.memory_ok \
            else float(server.memory_bytes or 0)
        return cores, memory

    def _merge(self, members: list[Member], fleet: Fleet, th: Thresholds, location: str,
               arch: str, apart: list[tuple[Server, HaPeer]]) -> Recommendation | None:
        # Which servers take part follows their demand (the caller drops the most
        # demanding first); how they are shown does not: by name, so that the same merge
        # reads the same on every run, whatever small differences the figures have.
        members = sorted(members, key=lambda m: (m[0].name, m[0].key))
        servers = [m[0] for m in members]
        cpu = sum((s.utilisation.cpu_p95 or 0.0) * (s.cores or 0) for s in servers)
        cpu_peak = sum((s.utilisation.cpu_max or 0.0) * (s.cores or 0) for s in servers)
        measured = [(s.utilisation.memory_max or 0.0) * (s.memory_bytes or 0)
                    for s, a, _ in members if a.memory_ok]
        unmeasured = [s for s, a, _ in members if not a.memory_ok]
        memory_needed = sum(measured) / th.headroom.memory + \
            sum(s.memory_bytes or 0 for s in unmeasured)
        disk_known = [s.disk_used_bytes for s in servers if s.disk_used_bytes is not None]
        disk_unknown = [s for s in servers if s.disk_used_bytes is None]
        disk_needed = int(sum(disk_known) / th.headroom.disk) + \
            sum(s.disk_bytes or 0 for s in disk_unknown)
        cpu_types = {s.cpu_type for s in servers}
        allowed = tuple(cpu_types) if th.same_cpu_type and len(cpu_types) == 1 else None
        # the members' recurring daily peaks summed, as if they all came at the same hour
        # (the safe side, like the p95 sum); where none is known, none is checked
        peaks = [p for p in (daily_peak_cores(s) for s in servers) if p is not None]
        need = Need(cpu_cores=cpu, memory_bytes=None,
                    min_memory_bytes=int(memory_needed + 0.5),
                    disk_used_bytes=int(disk_needed * th.headroom.disk),
                    peak_cores=sum(peaks) if peaks else None)
        p = adapter(servers[0])
        target = cheapest(orderable(fleet, location, arch, allowed, provider=p.name), need,
                          th.headroom, in_place=False)
        if target is None:
            return None
        current = sum((s.monthly_cost or Decimal(0) for s in servers), Decimal(0))
        projected = target.price
        with_backups = [s for s in servers if s.backups]
        if with_backups:
            projected += target.price * max(backup_ratio(fleet, s) for s in with_backups)
        projected += max(unchanged_components(s) for s in servers)
        # one target's included traffic for what all of them send
        overage, overage_reason = extra_overage(fleet, servers, target.type, location)
        projected += overage
        savings = current - projected
        c = th.settings(ConsolidationSettings)
        if savings <= 0 or savings < c.min_savings_euros:
            return None
        t = target.type
        envs = {s.labels.get(c.env_label, "").lower() for s in servers}
        env = envs.pop() if len(envs) == 1 and "" not in envs else "nonprod"
        new_name = f"{env}-consolidated-{location}"
        images = {image_of(s) for s in servers}
        image = images.pop() if len(images) == 1 else (image_of(servers[0]) or p.default_image)

        names = ", ".join(s.name for s in servers)
        reasons = [Reason(
            f"{len(servers)} non-production servers in project {servers[0].project or '-'}, "
            f"{location} ({arch}): {names}",
            {"servers": str(len(servers)), "location": location})]
        for s, _, why in members:
            reasons.append(Reason(f"{s.name}: {why}", {"server": s.name}))
        for s, peer in apart:
            peer_name = name_of(fleet, peer.key)
            reasons.append(Reason(
                f"{s.name} left out: in {peer.why} with {peer_name} — merging replicas "
                "removes the HA", {"server": s.name, "peer": peer_name, "ha": peer.why}))
        mem_text = (f"{gib(sum(measured))} peak memory" if measured else "")
        if unmeasured:
            mem_text += (" plus " if mem_text else "") + \
                f"{gib(sum(s.memory_bytes or 0 for s in unmeasured))} of unmeasured memory " \
                "counted in full"
        reasons.append(Reason(
            f"together they need {num(cpu)} cores at p95 and {mem_text}; {t.name} "
            f"({t.cores} cores, {gib(t.memory_bytes)}, {gb(t.disk_bytes)} disk, "
            f"{eur(target.price)}/month) is the cheapest orderable type that holds them with "
            f"p95 CPU at most {pct(th.headroom.cpu)} and memory at most "
            f"{pct(th.headroom.memory)}",
            {"cpu_p95_cores": num(cpu), "memory_needed": gib(memory_needed),
             "disk_needed": gb(disk_needed), "target": t.name,
             "target_price": eur(target.price)}))
        reasons.append(Reason(
            f"the {len(servers)} servers cost {eur(current)} a month, one {t.name} "
            f"{eur(projected)}: saves {eur(savings)}",
            {"current": eur(current), "projected": eur(projected), "savings": eur(savings)}))
        if overage_reason is not None:
            reasons.append(overage_reason)

        levels = [a.confidence for _, a, _ in members]
        confidence = lowest(levels)
        confidence_reasons: list[Reason] = []
        for s, a, _ in members:
            confidence_reasons += [Reason(f"{s.name}: {r.text}", r.figures) for r in a.reasons]
        if unmeasured:
            a0 = Assessment(True, False, confidence=confidence,
                            memory_note=f"memory of {', '.join(s.name for s in unmeasured)} "
                                        "was not measured (no agent)")
            without_memory(a0, "counted at its full size", {"unmeasured": str(len(unmeasured))})
            confidence = a0.confidence
            confidence_reasons += a0.reasons

        risk: Level = "medium"
        risk_reasons = [Reason(
            f"{len(servers)} servers' services share one machine: a noisy one slows the "
            "others, and one failure takes them all down")]
        services = [(s.name, svc) for s in servers for svc in s.services]
        if services:
            listed = "; ".join(f"{n}: {service_text(svc)}" for n, svc in services[:20])
            risk_reasons.append(Reason(f"services to move: {listed}",
                                       {"services": str(len(services))}))
            conflicts = self._port_conflicts(servers)
            if conflicts:
                risk_reasons.append(Reason(
                    "ports used on more than one server (need other ports or a reverse "
                    f"proxy): {conflicts}", {"conflicts": conflicts}))
        unlisted = unlisted_services(servers)
        if unlisted:
            risk_reasons.append(Reason(f"{unlisted}: inventory them before moving"))
        peak_ratio = cpu_peak / t.cores
        if peak_ratio > 1.0:
            risk = "high"
        risk_reasons.append(Reason(
            f"their 30-day CPU peaks add up to {num(cpu_peak)} cores, {pct(peak_ratio)} of "
            f"{t.name}'s {t.cores}", {"cpu_peak_cores": num(cpu_peak),
                                      "peak_on_target": pct(peak_ratio)}))

        commands = [p.create_command(new_name, t.name, location, image)]
        commands += [f"# move the services and data of {s.name} to {new_name}"
                     for s in servers]
        for s in servers:
            commands += [p.snapshot_command(s, f"before consolidation onto {new_name}"),
                         p.delete_command(s)]
        preconditions = [
            "the services can run side by side (ports, versions, resource limits)",
            "a snapshot of each server is taken before it is deleted (billed per GB per "
            "month until you delete it)",
            "attached volumes and floating IPs are billed separately and not counted: "
            "re-attach or delete them",
        ]
        merged = {s.key for s in servers}
        for s in servers:
            outside = [p for p in ha_peers(s, fleet, th) if p.key not in merged]
            if outside:
                preconditions.append(
                    f"{s.name} is a replica of "
                    + shortlist([f"{name_of(fleet, p.key)} ({p.why})" for p in outside])
                    + f": keep {new_name} on other hosts than them (create it in the same "
                    "placement group)")
        if disk_unknown:
            preconditions.append(
                "disk usage of " + ", ".join(s.name for s in disk_unknown)
                + " was not measured: their whole primary disks were counted")
        return Recommendation(
            kind="consolidation", action="merge", servers=[ServerRef.of(s) for s in servers],
            current_monthly_cost=current, projected_monthly_cost=projected,
            target_type=t.name, target_location=location,
            projected_cpu_utilisation=cpu / t.cores,
            projected_memory_utilisation=(sum(measured) / t.memory_bytes
                                          if measured and not unmeasured else None),
            confidence=confidence, risk=risk, reasons=reasons,
            confidence_reasons=confidence_reasons, risk_reasons=risk_reasons,
            preconditions=preconditions, commands=commands)

    @staticmethod
    def _port_conflicts(servers: list[Server]) -> str:
        seen: dict[str, list[str]] = defaultdict(list)
        for s in servers:
            ports = sorted({p for svc in s.services for p in svc.ports})
            for port in ports:
                seen[port].append(s.name)
        return ", ".join(f"{port} on {' and '.join(names)}"
                         for port, names in sorted(seen.items()) if len(names) > 1)


RULE = Rule(
    kind=ConsolidationRule.name, label="Consolidation", order=20, priority=30,
    description="Non-production Cloud servers (Hetzner `env` label, or a name pattern per "
                "project) of one project, location and architecture whose summed p95 CPU, "
                "peak memory and disk fit one cheaper type with headroom are merged onto it: "
                "create that server, move the services, delete the others.",
    settings=ConsolidationSettings, evaluate=ConsolidationRule().evaluate,
    title=lambda rec: f"Consolidate {servers_of(rec)} onto one {target_of(rec)}",
    precedence="removes all but one server of a group; the group is formed from the servers "
               "still free (an idle member is deleted, the rest still merge)",
    details="""\
A label with another value (`env=production`) always wins over the name. Groups are
per Cloud project, location and architecture (a server cannot move between projects
without a snapshot transfer, and a merge must stay in one place). The demand of a group
is the **sum** of p95 CPU (cores), peak memory (unmeasured memory counted at its full
size), used disk (unmeasured: the whole primary disk) and recurring daily peaks (where
known; as if every member's busiest hour came at the same time); summing p95s and peaks
over-estimates those of the sum, on the safe side. When the whole group does not fit one
type or is not cheaper, the most demanding server is left out and the rest tried again.
Two HA replicas (see [High availability](#high-availability-replicas)) are never in one
merge: the more demanding is left out ("shop-db-b left out: in spread placement group
db-spread with shop-db-a — merging replicas removes the HA"), and a member whose replica
stays outside the merge gets a precondition to keep the new server on other hosts.
Commands:
`hcloud server create --name <env>-consolidated-<location> --type <type> --location
<location> --image <image>` (the servers' image, else `ubuntu-24.04`), a step per server
to move its services and data, then a snapshot and `hcloud server delete` per server.
""")
