"""Hand-built fleets, recommendations and run results for the service-side tests.

No Prometheus: state, API, annotations, metrics and reports only read these objects,
so their tests stay fast and exact (every euro amount here is chosen by hand).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal

from infrascope_recommender.annotations import GrafanaError, GrafanaPusher, PushResult
from infrascope_recommender.config import GrafanaSettings, Secret
from infrascope_recommender.model import (
    CostSummary,
    Exclusion,
    Fleet,
    Reason,
    Recommendation,
    RunResult,
    Server,
    ServerKey,
    ServerRef,
    ServerType,
    Service,
    Utilisation,
)
from infrascope_recommender.state import StoredRecommendation

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z: the fixed "now" of the tests
DAY = 86_400.0


def server(server_id: str, name: str, server_type: str = "cx42", *, source: str = "cloud",
           location: str = "fsn1", project: str = "shop", cost: str = "16.40",
           cpu_avg: float | None = 0.04, cpu_p95: float | None = 0.10,
           memory_avg: float | None = 0.20, memory_max: float | None = 0.30,
           tier: str = "low", labels: dict[str, str] | None = None) -> Server:
    return Server(
        key=ServerKey(source, server_id),  # type: ignore[arg-type]
        name=name, server_type=server_type, location=location,
        project=project if source == "cloud" else "", datacenter=f"{location}-dc14",
        architecture="x86", cpu_type="shared", status="running", labels=labels or {},
        cores=8, memory_bytes=16 * 2**30, disk_bytes=160 * 10**9, disk_used_bytes=20 * 10**9,
        monthly_cost=Decimal(cost), cost_breakdown={"server": Decimal(cost)},
        total_monthly_cost=Decimal(cost),
        utilisation=Utilisation(cpu_avg=cpu_avg, cpu_max=0.5, cpu_p95=cpu_p95,
                                cpu_coverage=0.99, memory_avg=memory_avg,
                                memory_max=memory_max, memory_p95=memory_max,
                                memory_coverage=0.98, via="agent", tier=tier),
        services=[Service("docker", "nginx", "running", "nginx:1.27", "shop")],
    )


SERVERS: list[Server] = [
    server("101", "web-1", "cx42", cost="16.40", tier="low"),
    server("102", "web-2", "cx42", cost="16.40", tier="idle", cpu_avg=0.01),
    server("103", "stg-1", "cx22", project="staging", cost="3.79"),
    server("104", "stg-2", "cx22", project="staging", cost="3.79"),
    server("105", "db-1", "cx22", cost="3.79", cpu_avg=0.85, cpu_p95=0.98, tier="critical"),
    server("2001", "ax41-1", "AX41-NVMe", source="dedicated", location="FSN1-DC7",
           cost="39.00", tier="low"),
    server("106", "ci-1", "cpx31", location="nbg1", project="ci", cost="13.10",
           memory_avg=None, memory_max=None, tier="unknown"),
]


def fleet(servers: Sequence[Server] = SERVERS, queries: int = 14) -> Fleet:
    by_source: dict[str, Decimal] = {}
    by_location: dict[str, Decimal] = {}
    by_project: dict[str, Decimal] = {}
    for s in servers:
        cost = s.total_monthly_cost or Decimal(0)
        by_source[s.source] = by_source.get(s.source, Decimal(0)) + cost
        by_location[s.location] = by_location.get(s.location, Decimal(0)) + cost
        if s.project:
            by_project[s.project] = by_project.get(s.project, Decimal(0)) + cost
    total = sum((s.total_monthly_cost or Decimal(0) for s in servers), Decimal(0))
    types = {
        "cx22": ServerType("cx22", 2, 4 * 2**30, 40 * 10**9, "x86", "shared",
                           prices={"fsn1": Decimal("3.79")}, available={"fsn1"}),
        "cx32": ServerType("cx32", 4, 8 * 2**30, 80 * 10**9, "x86", "shared",
                           prices={"fsn1": Decimal("6.80")}, available={"fsn1"}),
        "cx42": ServerType("cx42", 8, 16 * 2**30, 160 * 10**9, "x86", "shared",
                           prices={"fsn1": Decimal("16.40")}, available={"fsn1"}),
    }
    return Fleet(servers={s.key: s for s in servers}, types=types,
                 costs=CostSummary(total, by_source, by_location, by_project),
                 loaded_at=T0, queries=queries)


def _ref(name: str) -> ServerRef:
    return ServerRef.of(next(s for s in SERVERS if s.name == name))


def rightsize(name: str = "web-1", target: str = "cx22", current: str = "16.40",
              projected: str = "3.79") -> Recommendation:
    ref = _ref(name)
    return Recommendation(
        kind="rightsize", action="change_type", servers=[ref],
        current_monthly_cost=Decimal(current), projected_monthly_cost=Decimal(projected),
        target_type=target, target_location=ref.location,
        projected_cpu_utilisation=0.40, projected_memory_utilisation=0.55,
        confidence="high", risk="low",
        reasons=[Reason(f"p95 CPU {10} % and peak memory {30} % of a {ref.server_type}",
                        {"cpu_p95": "10 %", "memory_max": "30 %"})],
        confidence_reasons=[Reason("30 days of data, 99 % coverage", {"coverage": "99 %"})],
        risk_reasons=[Reason("peak memory stays under 80 % of the target",
                             {"projected_memory_max": "55 %"})],
        preconditions=["the primary disk fits the target's 40 GB disk (20 GB used)"],
        commands=[f"hcloud server poweroff {name}",
                  f"hcloud server change-type {name} {target} --keep-disk",
                  f"hcloud server poweron {name}"],
    )


def idle(name: str = "web-2", current: str = "16.40") -> Recommendation:
    return Recommendation(
        kind="idle", action="delete", servers=[_ref(name)],
        current_monthly_cost=Decimal(current), projected_monthly_cost=Decimal("0"),
        confidence="medium", risk="medium",
        reasons=[Reason("30-day average CPU 1 % (under 5 %)", {"cpu_avg": "1 %"})],
        confidence_reasons=[Reason("memory data covers 98 % of 30 days", {})],
        risk_reasons=[Reason("deleting loses the disk; take a snapshot first", {})],
        preconditions=["nobody uses web-2 (check its services: nginx)"],
        commands=[f"hcloud server create-image --type snapshot {name}",
                  f"hcloud server delete {name}"],
    )


def consolidation() -> Recommendation:
    return Recommendation(
        kind="consolidation", action="merge", servers=[_ref("stg-1"), _ref("stg-2")],
        current_monthly_cost=Decimal("7.58"), projected_monthly_cost=Decimal("3.79"),
        target_type="cx22", target_location="fsn1",
        projected_cpu_utilisation=0.3, projected_memory_utilisation=0.6,
        confidence="medium", risk="medium",
        reasons=[Reason("combined p95 CPU 0.6 cores and peak memory 2.4 GB fit one cx22",
                        {"cpu_p95_cores": "0.6", "memory_max_bytes": "2.4 GB"})],
        commands=["hcloud server create --name stg --type cx22 --location fsn1"],
    )


def underprovisioned() -> Recommendation:
    return Recommendation(
        kind="underprovisioned", action="change_type", servers=[_ref("db-1")],
        current_monthly_cost=Decimal("3.79"), projected_monthly_cost=Decimal("6.80"),
        target_type="cx32", target_location="fsn1", projected_cpu_utilisation=0.49,
        confidence="high", risk="low",
        reasons=[Reason("p95 CPU 98 % of 2 cores", {"cpu_p95": "98 %"})],
        commands=["hcloud server change-type db-1 cx32"],
    )


def dedicated_to_cloud() -> Recommendation:
    return Recommendation(
        kind="dedicated_to_cloud", action="migrate", servers=[_ref("ax41-1")],
        current_monthly_cost=Decimal("39.00"), projected_monthly_cost=Decimal("16.40"),
        target_type="cx42", target_location="fsn1", projected_cpu_utilisation=0.2,
        projected_memory_utilisation=0.4, confidence="low", risk="high",
        reasons=[Reason("p95 CPU 1.2 cores and peak memory 6 GB fit a cx42", {})],
        risk_reasons=[Reason("a migration needs a maintenance window", {})],
        preconditions=["the services on ax41-1 can move (docker: nginx)"],
        commands=["hcloud server create --name ax41-1 --type cx42 --location fsn1",
                  "rsync the data, switch DNS, cancel the Robot server"],
    )


def recommendations() -> list[Recommendation]:
    return [rightsize(), idle(), consolidation(), underprovisioned(), dedicated_to_cloud()]


def exclusions() -> list[Exclusion]:
    return [Exclusion(_ref("ci-1"), "rightsize", "no memory data (install the agent)")]


def run_result(recs: Sequence[Recommendation] | None = None, *, started_at: float = T0,
               duration: float = 1.25, servers: Sequence[Server] = SERVERS,
               excluded: Sequence[Exclusion] | None = None) -> RunResult:
    return RunResult(recommendations=list(recommendations() if recs is None else recs),
                     exclusions=list(exclusions() if excluded is None else excluded),
                     fleet=fleet(servers), started_at=started_at, duration_seconds=duration)


def many(count: int, start: int = 1000) -> list[Recommendation]:
    """``count`` distinct single-server right-sizings (for concurrency tests)."""
    out = []
    for i in range(start, start + count):
        ref = ServerRef("cloud", str(i), f"node-{i}", "cx42", "fsn1", "bulk")
        out.append(Recommendation(kind="rightsize", action="change_type", servers=[ref],
                                  current_monthly_cost=Decimal("16.40"),
                                  projected_monthly_cost=Decimal("3.79"), target_type="cx22",
                                  commands=[f"hcloud server change-type node-{i} cx22"]))
    return out


# --- test doubles for the service --------------------------------------------------------

class Runner:
    """Returns the queued results in turn; an exception in the queue is raised."""

    def __init__(self, *outcomes: RunResult | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self) -> RunResult:
        with self.lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            outcome = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        try:
            time.sleep(0.01)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        finally:
            with self.lock:
                self.active -= 1


class RecordingPusher(GrafanaPusher):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(GrafanaSettings(url="http://grafana.invalid", token=Secret("t")))
        self.fail = fail
        self.pushed: list[dict[str, str]] = []

    def push(self, items: Iterable[StoredRecommendation]) -> PushResult:
        if self.fail:
            raise GrafanaError("Grafana at http://grafana.invalid: HTTP 500")
        self.pushed.append({i.id: i.status for i in items})
        return PushResult(created=len(self.pushed[-1]))
