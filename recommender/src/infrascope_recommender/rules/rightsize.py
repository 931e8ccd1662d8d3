"""Right-sizing: a Cloud server well under its capacity moves to the cheapest type that
still fits with headroom.

Considered when p95 CPU is below ``rules.rightsize.cpu_p95_max`` (50 %) of the cores
and peak memory (where measured) below ``memory_max`` (60 %). The target is the cheapest
orderable type of the same architecture (and CPU type) at the server's location that
keeps p95 CPU <= ``headroom.cpu``, the recurring daily peak (where known) <=
``headroom.peak`` and peak memory <= ``headroom.memory`` of the target; without memory
figures it keeps at least the current memory. Recommended only when it saves at least
``min_savings_euros`` **and** ``min_savings_percent``. When the type the p95 alone would
pick does not hold the daily peak, the reasons say so and the options (the chosen type
first) say how much slower each cheaper type would run the peak; when no type that
holds the peak saves enough, there is no recommendation (a slowdown is not signed for
the operator).

Hetzner cannot shrink a disk: in place, only types whose disk is at least the server's
current primary disk are possible. When the cheapest such type does not save enough but
a type with a smaller disk would, the recommendation is a migration to a new server of
that type (and says why).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from ..model import Fleet, Reason, RuleResult
from ..providers import adapter
from ..settings import fail, money, percent, ratio, setting
from . import Rule, RuleSettings, servers_of, target_of, types_of
from ._common import (
    Option,
    assess,
    downsize_options,
    eur,
    exclusion,
    extra_overage,
    gb,
    in_order,
    no_catalogue,
    no_price,
    not_assessed,
    num,
    pct,
    resize_recommendation,
    savings_enough,
    savings_figures,
    sizing_need,
    sizing_reasons,
    traffic_reason,
    without_memory,
)
from ._fit import Catalogue

if TYPE_CHECKING:
    from ..thresholds import Thresholds


@dataclass(frozen=True)
class RightsizeSettings(RuleSettings):
    cpu_p95_max: float = setting(
        0.5, ratio, "only servers whose p95 CPU is below half their cores: clearly "
                    "over-provisioned (must stay below `underprovisioned.cpu_p95_min`)")
    memory_max: float = setting(0.6, ratio, "and whose peak memory (where measured) is below "
                                            "60 %")
    min_savings_euros: Decimal = setting(Decimal("1.00"), money,
                                         "a type change costs a power-off: not for cents …")
    min_savings_percent: Decimal = setting(Decimal("10"), percent,
                                           "… nor for a small share of the bill (both must "
                                           "be met)")


def check(th: Thresholds) -> None:
    from .underprovisioned import UnderprovisionedSettings

    rs = th.settings(RightsizeSettings)
    up = th.settings(UnderprovisionedSettings)
    if rs.cpu_p95_max >= up.cpu_p95_min:
        fail("rules.rightsize.cpu_p95_max",
             f"must be below rules.underprovisioned.cpu_p95_min ({up.cpu_p95_min})")


class RightsizeRule:
    name = "rightsize"

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        result = RuleResult()
        rs = thresholds.settings(RightsizeSettings)
        cat = Catalogue(fleet)
        for server in in_order(fleet):
            if not adapter(server).resizable_in_place(server):
                continue
            a = assess(server, thresholds)
            if not a.cpu_ok:
                result.exclusions.append(exclusion(server, self.name, not_assessed(a)))
                continue
            u = server.utilisation
            assert u.cpu_p95 is not None
            if u.cpu_p95 >= rs.cpu_p95_max:
                continue
            if a.memory_ok and u.memory_max is not None and u.memory_max >= rs.memory_max:
                continue
            if server.monthly_cost is None:
                result.exclusions.append(exclusion(server, self.name, no_price(server)))
                continue
            missing = no_catalogue(server, cat, thresholds)
            if missing:
                result.exclusions.append(exclusion(server, self.name, missing))
                continue
            current = server.monthly_cost
            need = sizing_need(server, a, thresholds, fleet)
            in_place, anywhere = downsize_options(server, fleet, thresholds, need, cat)
            chosen = _saving(rs, current, in_place, anywhere)
            if chosen is None:
                continue  # nothing that holds the recurring peak saves enough: no slowdown signed
            if not a.memory_ok:
                without_memory(a, "the target keeps at least the current memory",
                               {"memory": "not measured"})
            reasons = [Reason(
                f"p95 CPU ({pct(u.cpu_p95)}) is below {pct(rs.cpu_p95_max)}"
                + (f" and peak memory ({pct(u.memory_max)}) below {pct(rs.memory_max)}"
                   if a.memory_ok and u.memory_max is not None else "")
                + " of the current capacity",
                {"cpu_p95_30d": pct(u.cpu_p95), "cpu_p95_max": pct(rs.cpu_p95_max),
                 **({"memory_max_30d": pct(u.memory_max), "memory_max": pct(rs.memory_max)}
                    if a.memory_ok and u.memory_max is not None else {})})]
            reasons += sizing_reasons(server, need, chosen.candidate, thresholds,
                                      server.location)
            if need.peak_cores is not None:
                p95_only = _saving(rs, current, *downsize_options(
                    server, fleet, thresholds, replace(need, peak_cores=None), cat))
                if p95_only is not None and p95_only.candidate.type.name != \
                        chosen.candidate.type.name:
                    cheap, t = p95_only.candidate.type, chosen.candidate.type
                    reasons.append(Reason(
                        f"{cheap.name} ({cheap.cores} cores) would hold the p95 for "
                        f"{eur(chosen.projected - p95_only.projected)} a month less, but not "
                        f"the recurring daily peak of {num(need.peak_cores)} cores: "
                        f"{t.name} ({t.cores} cores) is the cheapest type that keeps it "
                        f"within {pct(thresholds.headroom.peak)} of its cores (the options "
                        "say how much slower the cheaper types would be)",
                        {"p95_target": cheap.name, "peak_target": t.name,
                         "daily_peak_cores": num(need.peak_cores),
                         "peak_headroom": pct(thresholds.headroom.peak)}))
            traffic = traffic_reason(server)
            if traffic is not None:
                reasons.append(traffic)
            overage = extra_overage(fleet, [server], chosen.candidate.type, server.location)[1]
            if overage is not None:
                reasons.append(overage)
            savings = current - chosen.projected
            reasons.append(Reason(
                f"saves {eur(savings)} a month ({pct(float(savings / current))}); minimum "
                f"{eur(rs.min_savings_euros)} and {rs.min_savings_percent}%",
                {**savings_figures(current, chosen.projected),
                 "min_savings": eur(rs.min_savings_euros),
                 "min_savings_percent": f"{rs.min_savings_percent}%"}))
            if chosen.in_place and anywhere is not None and not anywhere.in_place \
                    and anywhere.projected < chosen.projected:
                alt = anywhere.candidate.type
                reasons.append(Reason(
                    f"{alt.name} would save {eur(chosen.projected - anywhere.projected)} a "
                    f"month more, but its {gb(alt.disk_bytes)} disk is smaller than "
                    f"{server.name}'s and Hetzner cannot shrink a disk: it would need a new "
                    "server and a migration",
                    {"alternative": alt.name,
                     "alternative_projected": eur(anywhere.projected)}))
            elif not chosen.in_place and in_place is not None:
                reasons.append(Reason(
                    f"in place, {in_place.candidate.type.name} would only save "
                    f"{eur(current - in_place.projected)} a month (below the minimum)",
                    {"in_place_alternative": in_place.candidate.type.name}))
            result.recommendations.append(resize_recommendation(
                "rightsize", server, chosen, need, a, thresholds, fleet, reasons, cat=cat))
        return result


def _saving(rs: RightsizeSettings, current: Decimal, *options: Option | None) -> Option | None:
    """The first of ``options`` (in place, then anywhere) that saves enough."""
    for option in options:
        if option is not None and savings_enough(current, option.projected,
                                                 rs.min_savings_euros, rs.min_savings_percent):
            return option
    return None


RULE = Rule(
    kind=RightsizeRule.name, label="Right-sizing", order=30, priority=50,
    description="A Cloud server whose p95 CPU and peak memory are well under its capacity "
                "moves to the cheapest type that still fits with headroom, its recurring "
                "daily peak included: same architecture "
                "and CPU type, orderable in its location, a disk at least as large (Hetzner "
                "cannot shrink a disk: when only a smaller one saves enough, the "
                "recommendation is a new server and a migration, and says why).",
    settings=RightsizeSettings, evaluate=RightsizeRule().evaluate, check=check,
    title=lambda rec: f"Right-size {servers_of(rec)}: {types_of(rec)} → {target_of(rec)}",
    precedence="the general fallback",
    details="""\
In place when a cheaper type with a large enough disk saves enough:
`hcloud server shutdown --wait <name>`, `hcloud server change-type [--keep-disk] <name>
<type>` (`--keep-disk` when the target's disk is larger than the current one, so the
server stays downsizable), `hcloud server poweron <name>`; the reasons mention a
cheaper type that would need a new server. Otherwise, when only a type with a smaller
disk saves enough, the recommendation is a migration (`action: migrate`) with the
reason — "the primary disk is 160 GB, larger than cx33's 80 GB: Hetzner cannot shrink a
disk (and a snapshot of it cannot be restored onto a smaller disk)" — and the steps:
snapshot, `hcloud server create --name <name>-<type> …`, move services and data (or the
primary IP), `hcloud server delete <name>`.

A nightly job is sized by the recurring daily peak, not the p95 (a one-hour job every
night is 30 hours of 720, under the p95's 36): when the type the p95 alone would pick
does not hold the peak within `headroom.peak`, the reasons say so and name the type
chosen ("cx23 (2 cores) would hold the p95 for 7.50 € a month less, but not the
recurring daily peak of 6.5 cores: cx43 (8 cores) is the cheapest type that keeps it
within 90% of its cores"), and the options list the cheaper types with the slowdown
("the daily peak of 6.5 cores would take ~3.3x longer on 2 cores"). When no type that
holds the peak saves enough, there is **no** right-sizing: a careful operator does not
sign a slowdown, and the options are there for whoever decides otherwise by hand.
""")
