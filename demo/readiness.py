"""Is every figure the recommender reads in Prometheus, for every server? (``make demo``)

The demo runs ``recommender run`` once, at start; its report must be the same on every
run, so the run must not begin while one server still lacks one figure (a staging server
without its memory peak is judged on CPU alone, and the consolidation row is gone).
Counting a few series by hand goes stale as the recommender grows; this check instead
loads the fleet with the recommender's own loader (``infrascope_recommender.loader``:
the same queries, the same parsing) and lists what is still missing:

- for every server: its inventory, sizes and price, its cost roll-up, the agent's cores,
  memory and used disk, and its tier;
- for every server that has history: all eight 30-day CPU and memory figures and where
  its CPU figures come from (``via``);
- for the fleet: the type catalogue with prices, the backup ratio of every Cloud
  project, the cost roll-ups by source, location and project, and no warning from the
  loader (it warns when it falls back, e.g. on a missing ``:monthly_cost_euros:sum``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import fields

from infrascope_recommender.config import PrometheusSettings
from infrascope_recommender.loader import load
from infrascope_recommender.model import Fleet, Server, ServerKey, Utilisation
from infrascope_recommender.promql import PrometheusClient, PrometheusError

#: The 30-day figures a server with history must have (every field of Utilisation).
HISTORY_FIGURES = tuple(f.name for f in fields(Utilisation) if f.name != "tier")


def missing_figures(fleet: Fleet, expected: Collection[ServerKey],
                    without_history: Collection[ServerKey] = ()) -> list[str]:
    """What the recommender would read from Prometheus but cannot yet: one entry per
    gap, ``"<source>/<id> <name>: <figure>"`` or a fleet-wide one; empty when complete."""
    gaps: list[str] = []
    for key in sorted(expected):
        server = fleet.servers.get(key)
        if server is None:
            gaps.append(f"{key.source}/{key.server_id}: not in the inventory")
            continue
        gaps += [f"{key.source}/{key.server_id} {server.name}: {figure}"
                 for figure in _server_gaps(server, history=key not in without_history)]
    for key in sorted(set(fleet.servers) - set(expected)):
        gaps.append(f"{key.source}/{key.server_id}: in the inventory but not expected")
    if not fleet.types:
        gaps.append("the server type catalogue (server_type:server_type_*:normalised)")
    for server in fleet.servers.values():
        t = fleet.types.get(server.server_type)
        if server.source == "cloud" and (t is None or server.location not in t.prices):
            gaps.append(f"the price of {server.server_type} in {server.location}")
    projects = {s.project for s in fleet.servers.values() if s.source == "cloud"}
    gaps += [f"the backup ratio of project {p}" for p in sorted(projects - set(fleet.backup_ratio))]
    costs = fleet.costs
    for source in sorted({s.source for s in fleet.servers.values()} - set(costs.by_source)):
        gaps.append(f"source:monthly_cost_euros:sum{{source={source}}}")
    for location in sorted({s.location for s in fleet.servers.values()} - set(costs.by_location)):
        gaps.append(f"location:monthly_cost_euros:sum{{location={location}}}")
    for project in sorted(projects - set(costs.by_project)):
        gaps.append(f"hcloud_project:monthly_cost_euros:sum{{hcloud_project={project}}}")
    return sorted(set(gaps), key=gaps.index)


def _server_gaps(server: Server, history: bool) -> list[str]:
    gaps = []
    if not server.status:
        gaps.append("status")
    for attr in ("cores", "memory_bytes", "disk_used_bytes", "monthly_cost",
                 "total_monthly_cost"):
        if getattr(server, attr) is None:
            gaps.append(attr)
    if server.source == "cloud":
        for attr in ("server_type", "location"):
            if not getattr(server, attr):
                gaps.append(attr)
        if server.disk_bytes is None:
            gaps.append("disk_bytes")
        if not server.cost_breakdown:
            gaps.append("cost_breakdown")
    u = server.utilisation
    if u.tier is None:
        gaps.append("tier")
    if history:
        gaps += [name for name in HISTORY_FIGURES if getattr(u, name) is None]
        if u.tier == "unknown":
            gaps.append("tier (unknown)")
    return gaps


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check(prometheus_url: str, expected: Collection[ServerKey],
          without_history: Collection[ServerKey] = ()) -> list[str]:
    """Load the fleet from Prometheus as ``recommender run`` does; what is missing."""
    settings = PrometheusSettings(url=prometheus_url)
    warnings = _Warnings()
    logger = logging.getLogger("infrascope_recommender")
    logger.addHandler(warnings)
    propagate = logger.propagate
    logger.propagate = False  # the loader's warnings are gaps here, not terminal output
    client = PrometheusClient(settings)
    try:
        fleet = load(client, settings)
    except PrometheusError as exc:
        return [f"the fleet cannot be loaded yet: {exc}"]
    finally:
        client.close()
        logger.removeHandler(warnings)
        logger.propagate = propagate
    return [f"loader warning: {m}" for m in warnings.messages] + \
        missing_figures(fleet, expected, without_history)
