"""Which catalogue type fits a demand, and what a server would cost on it.

Pure functions over :class:`~infrascope_recommender.model.Fleet`; every rule that picks
a target type goes through :func:`cheapest` so the fit criteria are the same everywhere:

- same architecture (x86 / arm); for in-place changes the same ``cpu_type`` when
  ``rules.same_cpu_type`` is on;
- of the server's provider, orderable in the location (``server_type_available``), not
  deprecated there, and priced there;
- p95 CPU demand (cores) <= ``headroom.cpu`` x the target's cores;
- where known, the recurring daily peak (cores: the busiest hour that comes back on at
  least half the days, e.g. a nightly job) <= ``headroom.peak`` x the target's cores, so
  the job keeps its speed;
- peak memory demand <= ``headroom.memory`` x the target's memory; when memory was not
  measured, the target keeps at least the given memory instead;
- in place (Hetzner: ``hcloud server change-type``): the target's disk >= the server's
  current primary disk, where the provider cannot shrink a disk (its adapter's
  ``disk_can_shrink``, false for Hetzner); on a new server (migration,
  consolidation, dedicated -> Cloud): used disk <= ``headroom.disk`` x the target's
  disk, where the used disk is known.

The cheapest fitting type wins; a tie goes to fewer cores, then less memory, then the
name, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ..model import Fleet, Server, ServerType
from ..providers import adapter

if TYPE_CHECKING:
    from ..thresholds import Headroom

_EPSILON = 1e-9


@dataclass(frozen=True)
class Need:
    """What a target must hold."""

    cpu_cores: float  # p95 CPU demand in cores
    memory_bytes: float | None = None  # peak memory demand; None = not measured
    min_memory_bytes: int | None = None  # when not measured: keep at least this much
    min_cores: int | None = None  # never fewer cores than this (upsizes)
    min_disk_bytes: int | None = None  # in place: the disk cannot shrink below this
    disk_used_bytes: int | None = None  # new server: data that must fit with headroom
    peak_cores: float | None = None  # recurring daily peak in cores; None = not known
    # an HA replica takes over its busiest peer's load on failover: that p95 CPU (cores)
    # and peak memory (bytes) must fit within the headroom too; ``failover`` says whose
    failover_cores: float | None = None
    failover_memory_bytes: float | None = None
    failover: str | None = None


@dataclass(frozen=True)
class Candidate:
    type: ServerType
    price: Decimal  # monthly list price at the location


def orderable(fleet: Fleet, location: str, architecture: str,
              cpu_types: Iterable[str] | None = None,
              exclude: Iterable[str] = (), *, provider: str) -> list[Candidate]:
    """Types of ``provider`` that can be ordered at ``location``, cheapest first."""
    allowed = set(cpu_types) if cpu_types is not None else None
    skip = set(exclude)
    out: list[Candidate] = []
    for t in fleet.types.values():
        if t.provider != provider:
            continue
        if t.name in skip or (architecture and t.architecture != architecture):
            continue
        if allowed is not None and t.cpu_type not in allowed:
            continue
        if location not in t.available or location in t.deprecated:
            continue
        price = t.prices.get(location)
        if price is None:
            continue
        out.append(Candidate(t, price))
    out.sort(key=lambda c: (c.price, c.type.cores, c.type.memory_bytes, c.type.name))
    return out


class Catalogue:
    """:func:`orderable` remembered per (provider, location, architecture, CPU types) for
    one evaluation: a rule asks the same question for thousands of servers."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._memo: dict[tuple[str, str, str, tuple[str, ...] | None], list[Candidate]] = {}

    def orderable(self, location: str, architecture: str,
                  cpu_types: Iterable[str] | None = None,
                  exclude: Iterable[str] = (), *, provider: str) -> list[Candidate]:
        key = (provider, location, architecture,
               tuple(sorted(cpu_types)) if cpu_types is not None else None)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = orderable(self.fleet, location, architecture, cpu_types,
                                                provider=provider)
        skip = set(exclude)
        return [c for c in found if c.type.name not in skip] if skip else list(found)


def holds_peak(t: ServerType, need: Need, headroom: Headroom) -> bool:
    """The target keeps the recurring daily peak's speed (true when it is unknown)."""
    return need.peak_cores is None or need.peak_cores <= t.cores * headroom.peak + _EPSILON


def fits(t: ServerType, need: Need, headroom: Headroom, *, in_place: bool) -> bool:
    if need.cpu_cores > t.cores * headroom.cpu + _EPSILON:
        return False
    if not holds_peak(t, need, headroom):
        return False
    if need.min_cores is not None and t.cores < need.min_cores:
        return False
    if need.memory_bytes is not None:
        if need.memory_bytes > t.memory_bytes * headroom.memory + _EPSILON:
            return False
    if need.min_memory_bytes is not None and t.memory_bytes < need.min_memory_bytes:
        return False
    if need.failover_cores is not None and \
            need.failover_cores > t.cores * headroom.cpu + _EPSILON:
        return False
    if need.failover_memory_bytes is not None and \
            need.failover_memory_bytes > t.memory_bytes * headroom.memory + _EPSILON:
        return False
    if in_place:
        if need.min_disk_bytes is not None and t.disk_bytes < need.min_disk_bytes:
            return False
    elif need.disk_used_bytes is not None:
        if need.disk_used_bytes > t.disk_bytes * headroom.disk + _EPSILON:
            return False
    return True


def cheapest(candidates: list[Candidate], need: Need, headroom: Headroom, *,
             in_place: bool) -> Candidate | None:
    for candidate in candidates:
        if fits(candidate.type, need, headroom, in_place=in_place):
            return candidate
    return None


# ------------------------------------------------------------------------------- money

def backup_ratio(fleet: Fleet, server: Server) -> Decimal:
    """The project's backup surcharge (``pricing_backup_ratio``), else the server's own
    breakdown's, else its provider's default."""
    ratio = fleet.backup_ratio.get(server.project)
    if ratio is not None:
        return ratio
    part, backup = server.cost_breakdown.get("server"), server.cost_breakdown.get("backup")
    if part and backup is not None:
        return backup / part
    return adapter(server).default_backup_ratio


def unchanged_components(server: Server) -> Decimal:
    """Cost parts a type change leaves alone: the primary IPs (``primary_ipv4/6``)."""
    return sum((amount for component, amount in server.cost_breakdown.items()
                if component not in ("server", "backup")), Decimal(0))


def cost_on(fleet: Fleet, server: Server, price: Decimal) -> Decimal:
    """The server's monthly cost after a change to a type of monthly ``price``:
    the price, its backup surcharge when backups are on, and the unchanged primary IPs."""
    total = price
    if server.backups:
        total += price * backup_ratio(fleet, server)
    return total + unchanged_components(server)


def type_disk(fleet: Fleet, server: Server) -> int | None:
    """The server's primary disk: its own figure, else its type's."""
    if server.disk_bytes is not None:
        return server.disk_bytes
    current = fleet.types.get(server.server_type)
    return current.disk_bytes if current else None
