"""The recommender's data model: what the loader builds from PromQL, what rules emit.

Everything that is money is :class:`~decimal.Decimal` euros per month (net or gross as
the exporter reports them, see :attr:`Fleet.price_mode`), quantised to the cent only
when shown. Utilisation figures are ratios in ``[0, 1]`` (``0.25`` = 25 %), bytes are
bytes, cores are cores.

Identity follows the data contract: a server is ``(source, server_id)`` with
``source`` ``"cloud"`` or ``"dedicated"``; :class:`ServerKey` renders as
``"cloud/42"``.

Flow: ``loader.load(client, config) -> Fleet``; every rule in ``rules/`` is
``evaluate(fleet, thresholds) -> RuleResult``; ``engine.generate(fleet, config) -> RunResult``
keeps at most one recommendation per server. State, API, report and metrics only
read :class:`Recommendation` (and its ``to_dict``/``from_dict`` form).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, NamedTuple, get_args

from infrascope_core import contract

Source = Literal["cloud", "dedicated"]
"""``contract.SOURCES`` for the type checker (a Literal cannot be built from a tuple
there); the assertion below keeps the two equal."""
assert get_args(Source) == contract.SOURCES, "model.Source differs from contract.SOURCES"
#: A registered rule's kind (``infrascope_recommender.rules.kinds()``: each rule module
#: declares its own, so the set is only known once the rules are loaded).
Kind = str
Action = Literal["delete", "change_type", "merge", "migrate"]
Level = Literal["high", "medium", "low"]
Status = Literal["pending", "accepted", "dismissed"]

STATUSES: tuple[Status, ...] = ("pending", "accepted", "dismissed")
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """Round half up to the cent, as a bill shows it."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, order=True)
class ServerKey:
    source: Source
    server_id: str

    def __str__(self) -> str:
        return f"{self.source}/{self.server_id}"

    @classmethod
    def parse(cls, text: str) -> ServerKey:
        source, _, server_id = text.partition("/")
        if source not in contract.SOURCES or not server_id:
            raise ValueError(f"not a server key (source/server_id): {text!r}")
        return cls(source, server_id)  # type: ignore[arg-type]


@dataclass
class Utilisation:
    """The rules pack's 30-day figures for one server (``None`` = no series)."""

    cpu_avg: float | None = None
    cpu_max: float | None = None
    cpu_p95: float | None = None
    cpu_coverage: float | None = None
    #: The recurring daily peak: the level each day's busiest hourly average reaches on
    #: at least half the days (the rules pack's ``daily_peak30d``), ratio of the cores.
    cpu_daily_peak: float | None = None
    memory_avg: float | None = None
    memory_max: float | None = None
    memory_p95: float | None = None
    memory_coverage: float | None = None
    # network throughput, bytes/s: the agent's interfaces (but loopback and container
    # devices) where an agent reports, else the Cloud API's public interface
    network_in_avg: float | None = None
    network_out_avg: float | None = None
    network_in_p95: float | None = None
    network_out_p95: float | None = None
    network_in_max: float | None = None
    network_out_max: float | None = None
    network_coverage: float | None = None  # the lower of the two directions'
    via: str | None = None  # "agent" or "cloud": where the CPU figures come from
    tier: str | None = None  # idle, low, moderate, high, critical, unknown


    @property
    def network_avg(self) -> float | None:
        """30-day average traffic, in + out (bytes/s); None when either is unknown."""
        if self.network_in_avg is None or self.network_out_avg is None:
            return None
        return self.network_in_avg + self.network_out_avg


@dataclass
class Service:
    """One service the agent found (``infrascope_service_info``)."""

    kind: str  # docker, systemd
    name: str
    state: str = ""
    image: str = ""
    compose_project: str = ""
    ports: list[str] = field(default_factory=list)  # e.g. tcp/5432 (infrascope_listen_port_info)


@dataclass(frozen=True)
class PlacementGroup:
    """The placement group a server is in (``source_server_id:server_placement_group_info:
    normalised``); a ``spread`` group keeps its servers on different physical hosts."""

    id: str
    name: str
    type: str

    def __str__(self) -> str:
        return f"{self.type} placement group {self.name}".lstrip()


@dataclass
class Server:
    key: ServerKey
    name: str
    server_type: str  # Cloud type name, or the Robot product for dedicated servers
    location: str  # e.g. fsn1, nbg1, hel1, ash
    project: str = ""  # Cloud: hcloud_project; dedicated: its `project` label (robot.labels)
    datacenter: str = ""
    architecture: str = ""  # x86 or arm (Cloud); "" when unknown
    cpu_type: str = ""  # shared or dedicated (Cloud)
    status: str = ""
    image: str = ""  # the image it was created from (server_info{image}), Cloud
    labels: dict[str, str] = field(default_factory=dict)  # Hetzner labels, sanitised keys
    cores: int | None = None
    memory_bytes: int | None = None
    agent_up: bool | None = None  # up{job=<agent>} now: None = no agent target at all
    disk_bytes: int | None = None  # primary disk (Cloud); may exceed the type's disk
    disk_used_bytes: int | None = None  # from the agent's filesystems, when known
    backups: bool = False
    monthly_cost: Decimal | None = None  # source_server_id:server_monthly_cost_euros:normalised
    cost_breakdown: dict[str, Decimal] = field(default_factory=dict)  # component -> euros
    total_monthly_cost: Decimal | None = None  # source_server_id:monthly_cost_euros:sum
    utilisation: Utilisation = field(default_factory=Utilisation)
    services: list[Service] = field(default_factory=list)
    provider: str = "hetzner"  # whose server (label provider): picks the provider adapter
    placement_group: PlacementGroup | None = None

    @property
    def source(self) -> Source:
        return self.key.source


@dataclass
class ServerType:
    """A server type of a provider's catalogue (the rules pack's provider-neutral
    ``server_type:server_type_*:normalised`` series)."""

    name: str
    cores: int
    memory_bytes: int
    disk_bytes: int
    architecture: str
    cpu_type: str
    category: str = ""
    prices: dict[str, Decimal] = field(default_factory=dict)  # location -> monthly euros
    available: set[str] = field(default_factory=set)  # locations orderable now
    deprecated: set[str] = field(default_factory=set)  # locations where deprecated
    provider: str = "hetzner"
    # location -> outgoing traffic included a month (bytes), and the price of each TB
    # (2^40 bytes) above it
    included_traffic: dict[str, int] = field(default_factory=dict)
    traffic_price_per_tb: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class CostSummary:
    total: Decimal = Decimal(0)
    by_source: dict[str, Decimal] = field(default_factory=dict)
    by_location: dict[str, Decimal] = field(default_factory=dict)
    by_project: dict[str, Decimal] = field(default_factory=dict)


class HaPeer(NamedTuple):
    """Another server that is a replica of a server (high availability), and why."""

    key: ServerKey
    why: str  # "spread placement group db-spread", "label ha_group=pg"


@dataclass(frozen=True)
class HaGroup:
    """Servers that are replicas of each other: one placement group of an HA type, or one
    value of the replica label (:meth:`Fleet.ha_groups`)."""

    why: str  # "spread placement group db-spread", "label ha_group=pg"
    members: tuple[ServerKey, ...]  # at least two, sorted


_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class Fleet:
    """Everything one run knows, loaded with a fixed number of queries."""

    servers: dict[ServerKey, Server]
    types: dict[str, ServerType]
    backup_ratio: dict[str, Decimal] = field(default_factory=dict)  # project -> e.g. 0.2
    price_mode: str = "net"
    costs: CostSummary = field(default_factory=CostSummary)
    loaded_at: float = 0.0  # unix seconds of the query evaluation time
    queries: int = 0  # PromQL requests it took
    #: Every server the load found (default: ``servers``). The engine gives each rule a
    #: view without the servers earlier rules claimed (``dataclasses.replace(fleet,
    #: servers=...)``); the view keeps the whole inventory here, so a server's HA peers
    #: are known even when another rule has taken them.
    inventory: dict[ServerKey, Server] = field(default_factory=dict)
    _ha: dict[tuple[str, tuple[str, ...]], dict[ServerKey, tuple[HaGroup, ...]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.inventory:
            self.inventory = self.servers

    def ha_groups(self, replica_label: str, placement_group_types: Iterable[str]
                  ) -> Mapping[ServerKey, tuple[HaGroup, ...]]:
        """Each server of the inventory that has replicas -> its HA groups: its placement
        group when the group's type is one of ``placement_group_types``, and the servers
        with its value of the Hetzner label ``replica_label`` (the key sanitised as the
        exporter does; ``""``: no label). Computed once per fleet object and settings."""
        types = tuple(placement_group_types)
        found = self._ha.get((replica_label, types))
        if found is None:
            found = self._ha[(replica_label, types)] = _ha_groups(self.inventory,
                                                                  replica_label, types)
        return found


def _ha_groups(servers: Mapping[ServerKey, Server], replica_label: str,
               types: tuple[str, ...]) -> dict[ServerKey, tuple[HaGroup, ...]]:
    # (kind, id) -> (why, members); placement groups first, so they are named first
    by_group: dict[tuple[str, str], tuple[str, list[ServerKey]]] = {}
    ordered = sorted(servers.items())
    for key, server in ordered:
        pg = server.placement_group
        if pg is not None and pg.type in types:
            by_group.setdefault(("placement group", pg.id), (str(pg), []))[1].append(key)
    label = _LABEL_INVALID.sub("_", replica_label.strip())
    for key, server in ordered if label else ():
        value = server.labels.get(label, "")
        if value:
            by_group.setdefault(("label", value), (f"label {label}={value}", []))[1].append(key)
    out: dict[ServerKey, list[HaGroup]] = {}
    for why, keys in by_group.values():
        if len(keys) > 1:
            group = HaGroup(why, tuple(keys))
            for key in keys:
                out.setdefault(key, []).append(group)
    return {key: tuple(groups) for key, groups in out.items()}


@dataclass
class ServerRef:
    """A server as a recommendation names it (a snapshot, kept in the state)."""

    source: Source
    server_id: str
    name: str
    server_type: str
    location: str
    project: str = ""

    @property
    def key(self) -> ServerKey:
        return ServerKey(self.source, self.server_id)

    @classmethod
    def of(cls, server: Server) -> ServerRef:
        return cls(server.key.source, server.key.server_id, server.name, server.server_type,
                   server.location, server.project)


def server_names(servers: Sequence[ServerRef]) -> str:
    """``web-1, web-2`` (a server without a name as its key, ``cloud/42``)."""
    return ", ".join(s.name or str(s.key) for s in servers)


@dataclass
class Reason:
    """A sentence and the numbers behind it (``figures``: name -> value as shown)."""

    text: str
    figures: dict[str, str] = field(default_factory=dict)


Risk = Literal["low", "medium", "high"]


@dataclass
class RecommendationOption:
    """One target a recommendation offers, ranked like AWS Compute Optimizer's options:
    what it costs, how loaded the target would be, and how much the recurring daily peak
    would be slowed there (``performance_risk``: low keeps the peak within
    ``headroom.peak`` and the busiest 5 minutes within the cores; medium keeps the peak
    within the cores; high does not)."""

    target_type: str
    in_place: bool
    projected_monthly_cost: Decimal
    monthly_savings: Decimal
    projected_cpu_utilisation: float | None  # 30-day p95 on the target's cores
    projected_peak_utilisation: float | None  # the recurring daily peak on them
    projected_memory_utilisation: float | None
    performance_risk: Risk
    slowdown: float | None = None  # peak cores / target cores, when above 1
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"target_type": self.target_type, "in_place": self.in_place,
                "projected_monthly_cost": str(cents(self.projected_monthly_cost)),
                "monthly_savings": str(cents(self.monthly_savings)),
                "projected_cpu_utilisation": self.projected_cpu_utilisation,
                "projected_peak_utilisation": self.projected_peak_utilisation,
                "projected_memory_utilisation": self.projected_memory_utilisation,
                "performance_risk": self.performance_risk, "slowdown": self.slowdown,
                "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecommendationOption:
        return cls(data["target_type"], bool(data.get("in_place", True)),
                   Decimal(data["projected_monthly_cost"]), Decimal(data["monthly_savings"]),
                   data.get("projected_cpu_utilisation"),
                   data.get("projected_peak_utilisation"),
                   data.get("projected_memory_utilisation"),
                   data.get("performance_risk", "low"), data.get("slowdown"),
                   data.get("text", ""))


@dataclass
class Recommendation:
    kind: Kind
    action: Action
    servers: list[ServerRef]
    current_monthly_cost: Decimal
    projected_monthly_cost: Decimal
    target_type: str | None = None
    target_location: str | None = None
    projected_cpu_utilisation: float | None = None  # ratio of the target's capacity
    projected_memory_utilisation: float | None = None
    confidence: Level = "high"
    risk: Level = "low"
    reasons: list[Reason] = field(default_factory=list)  # why this is recommended
    confidence_reasons: list[Reason] = field(default_factory=list)
    risk_reasons: list[Reason] = field(default_factory=list)
    preconditions: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # the exact action, in order
    #: The targets offered, the chosen one first (empty for kinds without a type choice
    #: and for rows stored before options existed).
    options: list[RecommendationOption] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = recommendation_id(self.kind, self.action,
                                        [s.key for s in self.servers])

    @property
    def savings(self) -> Decimal:
        """Monthly euros saved (negative when the change costs more)."""
        return self.current_monthly_cost - self.projected_monthly_cost

    @property
    def savings_percent(self) -> Decimal:
        if not self.current_monthly_cost:
            return Decimal(0)
        return (self.savings * 100 / self.current_monthly_cost).quantize(Decimal("0.1"),
                                                                         ROUND_HALF_UP)

    @property
    def keys(self) -> list[ServerKey]:
        return [s.key for s in self.servers]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: money as strings with two decimals, ratios as floats."""
        def reasons(items: list[Reason]) -> list[dict[str, Any]]:
            return [{"text": r.text, "figures": dict(r.figures)} for r in items]

        return {
            "id": self.id,
            "kind": self.kind,
            "action": self.action,
            "servers": [{"source": s.source, "server_id": s.server_id, "name": s.name,
                         "server_type": s.server_type, "location": s.location,
                         "project": s.project} for s in self.servers],
            "current_monthly_cost": str(cents(self.current_monthly_cost)),
            "projected_monthly_cost": str(cents(self.projected_monthly_cost)),
            "monthly_savings": str(cents(self.savings)),
            "savings_percent": str(self.savings_percent),
            "target_type": self.target_type,
            "target_location": self.target_location,
            "projected_cpu_utilisation": self.projected_cpu_utilisation,
            "projected_memory_utilisation": self.projected_memory_utilisation,
            "confidence": self.confidence,
            "risk": self.risk,
            "reasons": reasons(self.reasons),
            "confidence_reasons": reasons(self.confidence_reasons),
            "risk_reasons": reasons(self.risk_reasons),
            "preconditions": list(self.preconditions),
            "commands": list(self.commands),
            "options": [o.to_dict() for o in self.options],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        def reasons(items: list[dict[str, Any]]) -> list[Reason]:
            return [Reason(r["text"], dict(r.get("figures", {}))) for r in items]

        return cls(
            id=data["id"], kind=data["kind"], action=data["action"],
            servers=[ServerRef(s["source"], s["server_id"], s["name"], s["server_type"],
                               s["location"], s.get("project", "")) for s in data["servers"]],
            current_monthly_cost=Decimal(data["current_monthly_cost"]),
            projected_monthly_cost=Decimal(data["projected_monthly_cost"]),
            target_type=data.get("target_type"), target_location=data.get("target_location"),
            projected_cpu_utilisation=data.get("projected_cpu_utilisation"),
            projected_memory_utilisation=data.get("projected_memory_utilisation"),
            confidence=data.get("confidence", "high"), risk=data.get("risk", "low"),
            reasons=reasons(data.get("reasons", [])),
            confidence_reasons=reasons(data.get("confidence_reasons", [])),
            risk_reasons=reasons(data.get("risk_reasons", [])),
            preconditions=list(data.get("preconditions", [])),
            commands=list(data.get("commands", [])),
            options=[RecommendationOption.from_dict(o) for o in data.get("options", [])],
        )


ExclusionCause = Literal["data", "inventory", "target", "ha"]

#: Why a server got no recommendation, in the order reports show them, with their titles:
#: ``data`` — too little measured data to judge it (no or too short a history, no agent);
#: ``inventory`` — what it costs or how big it is is unknown (no price, no core count);
#: ``target`` — it was judged, but nothing it could move to fits or can be ordered;
#: ``ha`` — it was judged idle, but it is the replica of a busy server (high availability).
EXCLUSION_CAUSES: dict[ExclusionCause, str] = {
    "data": "Not enough data to judge",
    "inventory": "Price or size unknown",
    "target": "No type to move to",
    "ha": "Kept for high availability",
}


@dataclass
class Exclusion:
    """A server a rule could not judge or found no recommendation for, and why (shown,
    never a silent guess); ``cause`` groups the reasons (see :data:`EXCLUSION_CAUSES`)."""

    server: ServerRef
    rule: str
    reason: str
    cause: ExclusionCause = "data"


@dataclass
class RuleResult:
    recommendations: list[Recommendation] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)


@dataclass
class RunResult:
    """One regeneration: what the engine kept, what it excluded, and the totals."""

    recommendations: list[Recommendation]
    exclusions: list[Exclusion]
    fleet: Fleet
    started_at: float
    duration_seconds: float = 0.0

    @property
    def total_savings(self) -> Decimal:
        return sum((r.savings for r in self.recommendations), Decimal(0))


def recommendation_id(kind: str, action: str, keys: list[ServerKey]) -> str:
    """Stable: the same kind of change to the same servers has the same id on every run.

    The target type is deliberately not part of it: a right-sizing that drifts from one
    target to the next is the same decision for the operator, so a dismissal sticks.
    """
    text = "|".join([kind, action, *sorted(str(k) for k in keys)])
    return "rec-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# The shape of every id recommendation_id makes: the API refuses anything else unread.
RECOMMENDATION_ID = re.compile(r"rec-[0-9a-f]{16}")
