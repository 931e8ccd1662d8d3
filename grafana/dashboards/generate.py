#!/usr/bin/env python3
"""Build InfraScope's Grafana dashboards (fleet, server, cost, recommendations) as JSON.

Plain Python on purpose (stdlib + PyYAML): a dashboard is a JSON document, and the
few dozen helpers below keep every panel one readable call. grafana-foundation-sdk
would add a dependency whose unpinned install resolves to an old Grafana 10.1 build;
pinning it to a Grafana 11 build buys typed builders we would still have to check
against the same lint. See README.md.

    .venv/bin/python grafana/dashboards/generate.py            # rewrite *.json
    .venv/bin/python grafana/dashboards/generate.py --check    # exit 1 when stale

Job names come from ``prometheus/config.yaml`` (``jobs:``), the one place the rules
pack reads them from, so a renamed scrape job regenerates the dashboards with it.

:func:`panel_queries` and :func:`variable_queries` list every PromQL query of the
committed boards with the Grafana variables substituted, for tests that run them
against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infrascope_core import contract

N = contract.neutral
"""The provider-neutral recorded family of a metric (``server_info`` ->
``source_server_id:server_info:normalised``): every inventory, size, cost, traffic and
catalogue query reads the rules pack's neutral layer, never one provider's series."""

Json = dict[str, Any]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROMETHEUS_CONFIG = REPO / "prometheus" / "config.yaml"

SCHEMA_VERSION = 39  # Grafana 11.0-11.2 write 39; later 11.x migrate it on load
TAG = "infrascope"
INFINITY_PLUGIN = "yesoreyeram-infinity-datasource"
PROM_DS: Json = {"type": "prometheus", "uid": "${datasource}"}
INFINITY_DS: Json = {"type": INFINITY_PLUGIN, "uid": "${infinity}"}
GRAFANA_DS: Json = {"type": "grafana", "uid": "-- Grafana --"}  # built-in annotations only

FLEET, SERVER, COST, RECOMMENDATIONS = ("infrascope-fleet", "infrascope-server",
                                        "infrascope-cost", "infrascope-recommendations")
FILES = {FLEET: "fleet.json", SERVER: "server.json", COST: "cost.json",
         RECOMMENDATIONS: "recommendations.json"}

# The Cloud console addresses a server as /projects/<numeric project id>/servers/<id>;
# the API token does not reveal the project id, so the best stable target is the
# project list. Robot lists every dedicated server on one page.
CLOUD_CONSOLE_URL = "https://console.hetzner.cloud/projects"
ROBOT_URL = "https://robot.hetzner.com/server"

DEFAULT_RECOMMENDER_JOB = "infrascope-recommender"

# Filesystems that say nothing about disk space (the rules pack's disk alert skips them too).
PSEUDO_FS = contract.excluded_fstypes_regex()

# (tier number, name, colour), the names and numbers of the series contract
TIER_COLOUR_SCALE = ("blue", "green", "yellow", "orange", "red")  # idle … critical
TIERS = [(-1, contract.TIER_UNKNOWN, "text"),
         *((n, name, colour) for n, (name, colour)
           in enumerate(zip(contract.TIERS, TIER_COLOUR_SCALE, strict=True)))]
TIER_COLOURS = {name: colour for _, name, colour in TIERS} | {"unattached": "purple"}


# --- configuration -------------------------------------------------------------------------

@dataclass(frozen=True)
class Jobs:
    """Scrape job names (``job_name`` in prometheus.yml) the queries select on."""

    exporter: str = "hetzner"
    agent: str = "infrascope-agent"
    recommender: str = DEFAULT_RECOMMENDER_JOB

    @classmethod
    def load(cls, path: Path = PROMETHEUS_CONFIG) -> Jobs:
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        jobs = (data or {}).get("jobs") or {}
        return cls(exporter=str(jobs.get("exporter", cls.exporter)),
                   agent=str(jobs.get("agent", cls.agent)),
                   recommender=str(jobs.get("recommender", cls.recommender)))

    def job_for(self, metric: str) -> str | None:
        """The job a raw series comes from; ``None`` for recorded series (``a:b:c``)."""
        if ":" in metric:
            return None
        if metric.startswith("hetzner_"):
            return self.exporter
        if metric.startswith(("node_", "infrascope_service_", "infrascope_listen_port_")):
            return self.agent
        if metric.startswith("infrascope_recommend"):
            return self.recommender
        raise ValueError(f"no job known for series {metric!r}: add its prefix to Jobs.job_for")


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def ne(label: str, value: str) -> str:
    return f'{label}!="{value}"'


def rx(label: str, value: str) -> str:
    return f'{label}=~"{value}"'


def nrx(label: str, value: str) -> str:
    return f'{label}!~"{value}"'


class Q:
    """Selectors with the job matcher every raw series needs (dashboard-linter's target-job)."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def __call__(self, metric: str, *matchers: str) -> str:
        job = self.jobs.job_for(metric)
        parts = ([f'job="{job}"'] if job else []) + list(matchers)
        return f"{metric}{{{', '.join(parts)}}}" if parts else metric

    def up(self, job: str, *matchers: str) -> str:
        return f"up{{{', '.join([f'job={json.dumps(job)}', *matchers])}}}"


# --- panels --------------------------------------------------------------------------------

def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Json:
    return {
        "datasource": PROM_DS,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": "",
    }


def infinity_target(url: str, columns: Sequence[tuple[str, str, str]], *,
                    params: Sequence[tuple[str, str]] = (), root: str = "") -> Json:
    """An Infinity JSON query; ``url`` is relative to the datasource's configured URL."""
    return {
        "columns": [{"selector": sel, "text": text, "type": kind} for sel, text, kind in columns],
        "datasource": INFINITY_DS,
        "filters": [],
        "format": "table",
        "parser": "backend",
        "refId": "",
        "root_selector": root,
        "source": "url",
        "type": "json",
        "url": url,
        "url_options": {"data": "", "method": "GET",
                        "params": [{"key": k, "value": v} for k, v in params]},
    }


def override(name: str, **props: Any) -> Json:
    """Field override by display name; ``custom__x`` stands for property ``custom.x``."""
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()]}


DASHED = {"dash": [10, 10], "fill": "dash"}


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = thresholds((None, "green"))


def value_map(mapping: Mapping[str, tuple[str, str]]) -> list[Json]:
    return [{"type": "value", "options": {
        key: {"color": colour, "index": i, "text": text}
        for i, (key, (text, colour)) in enumerate(mapping.items())}}]


TIER_MAPPINGS = value_map({str(v): (name, colour) for v, name, colour in TIERS})
CONSOLE_MAPPINGS = value_map({CLOUD_CONSOLE_URL: ("Cloud Console", "text"),
                              ROBOT_URL: ("Robot", "text")})


def _panel(kind: str, title: str, description: str, unit: str, targets: Sequence[Json], *,
           options: Json, defaults: Json | None = None, overrides: Sequence[Json] = (),
           links: Sequence[Json] = (), transformations: Sequence[Json] = (),
           datasource: Json = PROM_DS, **extra: Any) -> Json:
    field_defaults: Json = {"color": {"mode": "palette-classic"}, "mappings": [],
                            "thresholds": GREEN, "unit": unit}
    field_defaults.update(defaults or {})
    refs = [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)]
    panel: Json = {
        "datasource": datasource,
        "description": description,
        "fieldConfig": {"defaults": field_defaults, "overrides": list(overrides)},
        "options": options,
        "targets": refs,
        "title": title,
        "type": kind,
    }
    if links:
        panel["links"] = list(links)
    if transformations:
        panel["transformations"] = list(transformations)
    panel.update(extra)
    return panel


REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat(title: str, description: str, unit: str, *targets: Json, mappings: Sequence[Json] = (),
         steps: Json = GREEN, text_mode: str = "auto", color_mode: str = "value",
         no_value: str | None = None, decimals: int | None = None,
         links: Sequence[Json] = ()) -> Json:
    defaults: Json = {"color": {"mode": "thresholds"}, "mappings": list(mappings),
                      "thresholds": steps}
    if no_value is not None:
        defaults["noValue"] = no_value
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel("stat", title, description, unit, targets, defaults=defaults, links=links,
                  options={"colorMode": color_mode, "graphMode": "none", "justifyMode": "auto",
                           "orientation": "auto", "reduceOptions": REDUCE_LAST,
                           "showPercentChange": False, "textMode": text_mode,
                           "wideLayout": True})


def timeseries(title: str, description: str, unit: str, *targets: Json,
               overrides: Sequence[Json] = (), minimum: float | None = None,
               maximum: float | None = None, stack: bool = False, bars: bool = False,
               interval: str | None = None, time_from: str | None = None,
               links: Sequence[Json] = ()) -> Json:
    custom: Json = {"axisBorderShow": False, "axisPlacement": "auto",
                    "drawStyle": "bars" if bars else "line",
                    "fillOpacity": 60 if bars else 10, "lineInterpolation": "linear",
                    "lineWidth": 1, "pointSize": 4, "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"group": "A", "mode": "normal" if stack else "none"}}
    defaults: Json = {"custom": custom}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    extra: Json = {}
    if interval:
        extra["interval"] = interval
    if time_from:
        extra["timeFrom"] = time_from
    return _panel("timeseries", title, description, unit, targets, defaults=defaults,
                  overrides=overrides, links=links,
                  options={"legend": {"calcs": ["mean", "max", "lastNotNull"],
                                      "displayMode": "table", "placement": "bottom",
                                      "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}}, **extra)


def table(title: str, description: str, unit: str, *targets: Json,
          transformations: Sequence[Json] = (), overrides: Sequence[Json] = (),
          sort_by: str | None = None, descending: bool = True,
          datasource: Json = PROM_DS) -> Json:
    options: Json = {"cellHeight": "sm", "showHeader": True,
                     "footer": {"countRows": False, "fields": "", "reducer": ["sum"],
                                "show": False}}
    if sort_by:
        options["sortBy"] = [{"desc": descending, "displayName": sort_by}]
    return _panel("table", title, description, unit, targets,
                  defaults={"custom": {"align": "auto", "cellOptions": {"type": "auto"},
                                       "filterable": True, "inspect": False}},
                  overrides=overrides, transformations=transformations,
                  datasource=datasource, options=options)


def piechart(title: str, description: str, unit: str, *targets: Json,
             overrides: Sequence[Json] = ()) -> Json:
    return _panel("piechart", title, description, unit, targets, overrides=overrides,
                  options={"displayLabels": ["percent"],
                           "legend": {"displayMode": "table", "placement": "right",
                                      "showLegend": True, "values": ["value", "percent"]},
                           "pieType": "donut", "reduceOptions": REDUCE_LAST,
                           "tooltip": {"mode": "single", "sort": "none"}})


def bargauge(title: str, description: str, unit: str, *targets: Json,
             minimum: float | None = 0, maximum: float | None = None,
             steps: Json = GREEN, overrides: Sequence[Json] = (),
             links: Sequence[Json] = ()) -> Json:
    defaults: Json = {"color": {"mode": "thresholds"}, "thresholds": steps}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if links:
        defaults["links"] = list(links)
    return _panel("bargauge", title, description, unit, targets, defaults=defaults,
                  overrides=overrides,
                  options={"displayMode": "gradient", "maxVizHeight": 300,
                           "minVizHeight": 16, "minVizWidth": 8, "namePlacement": "auto",
                           "orientation": "horizontal", "reduceOptions": REDUCE_LAST,
                           "showUnfilled": True, "sizing": "auto", "valueMode": "color"})


def text(title: str, description: str, content: str) -> Json:
    return {"description": description, "options": {"code": {"language": "plaintext"},
                                                     "content": content.strip() + "\n",
                                                     "mode": "markdown"},
            "title": title, "type": "text"}


def organize(exclude: Iterable[str] = (), rename: Mapping[str, str] | None = None,
             order: Sequence[str] = ()) -> Json:
    return {"id": "organize", "options": {
        "excludeByName": {name: True for name in exclude},
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": dict(rename or {})}}


MERGE: Json = {"id": "merge", "options": {}}
HIDDEN_LABELS = ("Time", "__name__", "job", "instance")


# --- variables, links, annotations ---------------------------------------------------------

def datasource_variable(name: str, plugin: str, label: str, description: str) -> Json:
    return {"current": {}, "description": description, "hide": 0, "includeAll": False,
            "label": label, "multi": False, "name": name, "options": [], "query": plugin,
            "refresh": 1, "regex": "", "skipUrlSync": False, "type": "datasource"}


def query_variable(name: str, label: str, description: str, query: str, *,
                   multi: bool, sort: int = 1) -> Json:
    """A label_values() variable; multi ones offer All as ``.*`` (matches an empty label)."""
    var: Json = {
        "current": {}, "datasource": PROM_DS, "definition": query, "description": description,
        "hide": 0, "includeAll": multi, "label": label, "multi": multi, "name": name,
        "options": [], "query": {"qryType": 1, "query": query,
                                 "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": sort, "type": "query"}
    if multi:
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


DATASOURCE_VAR = datasource_variable(
    "datasource", "prometheus", "Data source",
    "Prometheus-compatible datasource holding the exporter, agent, rules-pack and "
    "recommender series (Prometheus, Thanos, Mimir, VictoriaMetrics).")
INFINITY_VAR = datasource_variable(
    "infinity", INFINITY_PLUGIN, "Recommender (Infinity)",
    "Infinity datasource whose URL is the recommender (default http://localhost:8792): "
    "the annotation feed /api/annotations and the list /api/recommendations.")

BOARD_LINKS: list[Json] = [{
    "asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
    "tags": [TAG], "targetBlank": False, "title": "InfraScope", "tooltip": "",
    "type": "dashboards", "url": ""}]


def external_link(title: str, url: str, tooltip: str) -> Json:
    return {"asDropdown": False, "icon": "external link", "includeVars": False,
            "keepTime": False, "tags": [], "targetBlank": True, "title": title,
            "tooltip": tooltip, "type": "link", "url": url}


def board_url(uid: str, *params: str) -> str:
    """Link to another board keeping the datasource and the time range."""
    query = "&".join(["${datasource:queryparam}", *params, "${__url_time_range}"])
    return f"/d/{uid}/{uid}?{query}"


def server_link(source: str, server_id: str) -> Json:
    return {"targetBlank": False, "title": "Server details: CPU, memory, disk, services",
            "url": board_url(SERVER, f"var-source={source}", f"var-server_id={server_id}")}


BUILTIN_ANNOTATION: Json = {
    "builtIn": 1, "datasource": GRAFANA_DS, "enable": True, "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}


def recommendation_annotation(params: Sequence[tuple[str, str]]) -> Json:
    """Recommendations on the time axis, from the recommender's feed through Infinity."""
    columns = [("time", "time", "timestamp_epoch"), ("timeEnd", "timeEnd", "timestamp_epoch"),
               ("title", "title", "string"), ("text", "text", "string"),
               ("tags", "tags", "string")]
    return {"datasource": INFINITY_DS, "enable": True, "hide": False, "iconColor": "orange",
            "name": "Recommendations",
            "target": dict(infinity_target("/api/annotations", columns, params=[
                *params, ("from", "${__from}"), ("to", "${__to}")]), refId="Anno")}


# --- layout --------------------------------------------------------------------------------

class Board:
    """Panels placed left to right in rows of the 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._y = 0

    def row(self, title: str) -> None:
        self.panels.append({"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0,
                                                            "y": self._y},
                            "panels": [], "title": title, "type": "row"})
        self._y += 1

    def add(self, height: int, *panels: tuple[int, Json]) -> None:
        x = 0
        for width, panel in panels:
            if x + width > 24:
                raise ValueError(f"row too wide at panel {panel['title']!r}")
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": self._y}
            self.panels.append(panel)
            x += width
        self._y += height

    def numbered(self) -> list[Json]:
        return [dict(p, id=i) for i, p in enumerate(self.panels, start=1)]


def dashboard(uid: str, title: str, description: str, board: Board, variables: list[Json], *,
              tags: Sequence[str], time_from: str, annotations: Sequence[Json] = (),
              links: Sequence[Json] = ()) -> Json:
    return {
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [*BOARD_LINKS, *links],
        "panels": board.numbered(),
        "refresh": "5m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG, *tags],
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --- PromQL helpers ------------------------------------------------------------------------

def with_console(expr: str) -> str:
    """Add label ``console``: the Hetzner console URL for the server's source."""
    return (f'label_replace(label_replace({expr}, "console", "{CLOUD_CONSOLE_URL}", '
            f'"source", "cloud"), "console", "{ROBOT_URL}", "source", "dedicated")')


def rate_by(by: str, selector: str) -> str:
    """Per-second rate summed by ``by``, over ``$__rate_interval`` as Grafana advises."""
    return f"sum by ({by}) (rate({selector}[$__rate_interval]))"


def label_values(selector: str, label: str) -> str:
    return f"label_values({selector}, {label})"


def item(expr: str, name: str) -> str:
    """Label ``item`` for a legend mixing several series: a fixed name or ``$1`` of ``name``."""
    if name.isidentifier():
        return f'label_replace({expr}, "item", "$1", "{name}", "(.*)")'
    return f'label_replace({expr}, "item", "{name}", "", "")'


def none_label(expr: str, label: str, text: str = "(none)") -> str:
    """Name an empty label value, so legends do not show a blank entry."""
    return f'label_replace({expr}, "{label}", "{text}", "{label}", "")'


# --- Fleet ---------------------------------------------------------------------------------

def fleet(q: Q) -> Json:
    info = q(N("server_info"), rx("source", "$source"), rx("location", "$location"),
             rx("hcloud_project", "$project"))
    labels = q(N("server_labels"), rx("label_env", "$env"))
    selected = f"({info} and on (source, server_id) {labels})"

    def only_selected(expr: str) -> str:
        return f"({expr}) and on (source, server_id) {selected}"

    cost = "source_server_id:monthly_cost_euros:sum"
    tier = "source_server_id:utilisation:tier30d"
    idle = f"{tier}{{{eq('tier', 'idle')}}}"
    pending = q("infrascope_recommendations_monthly_savings_euros", 'status="pending"')
    b = Board()
    b.row("Overview")
    b.add(4,
          (4, stat("Monthly cost (account)",
                   "This month's projected bill of the whole account: servers with backups "
                   "and primary IPs, volumes, floating IPs, load balancers, snapshots and "
                   "projected traffic overage (rules pack `:monthly_cost_euros:sum`). Not "
                   "filtered by the variables. Net or gross as the exporter's price mode.",
                   "currencyEUR", target(":monthly_cost_euros:sum", "bill", instant=True))),
          (4, stat("Monthly cost (selected servers)",
                   "Projected bill this month of the servers the variables select, with "
                   "their attached resources and traffic overage. Resources attached to no "
                   "server are not in it (see the Cost board).",
                   "currencyEUR", target(f"sum({only_selected(cost)})", "selected",
                                         instant=True))),
          (4, stat("Spent on idle servers",
                   "Monthly cost of the selected servers in utilisation tier `idle` (CPU "
                   "p95 over 30 days below 5%, memory below 50%, at least 25% of the 30 "
                   "days covered by data).",
                   "currencyEUR",
                   target(f"sum({only_selected(f'{cost} and on (source, server_id) {idle}')})"
                          " or vector(0)", "idle", instant=True),
                   steps=thresholds((None, "green"), (0.01, "orange")))),
          (4, stat("Pending savings",
                   "Monthly euros the recommender's pending recommendations would save "
                   "(all servers; the recommender's /metrics). Click through to the "
                   "Recommendations board.",
                   "currencyEUR", target(f"sum({pending})", "pending", instant=True),
                   links=[{"title": "Recommendations",
                           "url": board_url(RECOMMENDATIONS)}])),
          (4, stat("Number of servers", "Servers in the inventory that the variables select (Cloud "
                   "and dedicated).", "short",
                   target(f"count({selected})", "servers", instant=True))),
          (4, stat("Idle servers", "Selected servers in utilisation tier `idle` over the "
                   "past 30 days.", "short",
                   target(f"count({only_selected(idle)}) or vector(0)",
                          "idle", instant=True),
                   steps=thresholds((None, "green"), (1, "orange")))))

    b.row("Where the money goes (whole bill, including resources attached to no server)")
    b.add(8,
          (4, piechart("Cost by source", "Projected monthly bill by source: Cloud "
                       "(with resources attached to no server) and dedicated (Robot).",
                       "currencyEUR",
                       target('source:monthly_cost_euros:sum{source=~"$source"}', "{{source}}",
                              instant=True))),
          (5, piechart("Cost by location", "Projected monthly bill by location (fsn1, nbg1, "
                       "hel1, ash, hil, sin; dedicated data-centre sites map to theirs).",
                       "currencyEUR",
                       target(none_label("location:monthly_cost_euros:sum"
                                         '{location=~"$location"}', "location"),
                              "{{location}}", instant=True))),
          (5, piechart("Cost by Cloud project", "Projected monthly bill by Hetzner Cloud "
                       "project; dedicated servers belong to none.", "currencyEUR",
                       target(none_label("hcloud_project:monthly_cost_euros:sum"
                                         '{hcloud_project=~"$project"}', "hcloud_project",
                                         "(dedicated)"),
                              "{{hcloud_project}}", instant=True))),
          (5, bargauge("Cost by label project", "Projected monthly bill by the Hetzner "
                       "label `project` ((none): no such label, or a resource attached to "
                       "no server).", "currencyEUR",
                       target(none_label("label_project:monthly_cost_euros:sum",
                                         "label_project"), "{{label_project}}",
                              instant=True))),
          (5, piechart("Cost by env", "Projected monthly bill by the Hetzner label `env` "
                       "((none): no such label, or a resource attached to no server).",
                       "currencyEUR",
                       target(none_label('label_env:monthly_cost_euros:sum{label_env=~"$env"}',
                                         "label_env"), "{{label_env}}", instant=True))))

    cost_with_tier = f"{cost} * on (source, server_id) group_left (tier) (0 * {tier} + 1)"
    tier_colours = [override(name, color={"fixedColor": colour, "mode": "fixed"})
                    for name, colour in TIER_COLOURS.items()]
    b.row("Utilisation tiers (30 days)")
    b.add(8,
          (8, bargauge("Servers by tier", "Selected servers per utilisation tier: the "
                       "highest tier any 30-day p95 figure (CPU, memory) reaches; `unknown` "
                       "when less than 25% of the 30 days have data.", "short",
                       target(f"count by (tier) ({only_selected(tier)})", "{{tier}}",
                              instant=True), overrides=tier_colours)),
          (8, piechart("Monthly cost by tier", "Projected monthly cost of the selected "
                       "servers per utilisation tier (resources attached to no server are "
                       "on the Cost board).", "currencyEUR",
                       target(f"sum by (tier) ({only_selected(cost_with_tier)})", "{{tier}}",
                              instant=True), overrides=tier_colours)),
          (8, timeseries("Servers by tier over time", "How many selected servers were in "
                         "each tier; a server moving to `idle` shows up here first.",
                         "short", target(f"count by (tier) ({only_selected(tier)})",
                                         "{{tier}}"),
                         overrides=tier_colours, stack=True, minimum=0)))

    row_labels = "source, server_id, server_name, server_type, location, console"

    def row(expr: str) -> str:
        return f"max by ({row_labels}) ({with_console(only_selected(expr))})"

    columns = [("A", "Monthly cost", cost),
               ("B", "CPU avg", "source_server_id:cpu_utilisation:avg30d"),
               ("C", "CPU peak", "source_server_id:cpu_utilisation:max30d"),
               ("D", "Memory avg", "source_server_id:memory_utilisation:avg30d"),
               ("E", "Memory peak", "source_server_id:memory_utilisation:max30d"),
               ("F", "Tier", tier)]
    pending_per_rec = q("infrascope_recommendation_monthly_savings_euros",
                        eq("status", "pending"))
    savings = (f"sum by (source, server_id) ({pending_per_rec})"
               " * on (source, server_id) group_left (server_name, server_type, location) "
               f"max by (source, server_id, server_name, server_type, location) "
               f"({q(N('server_info'))})")
    targets = [target(row(expr), instant=True, table=True) for _, _, expr in columns]
    targets.append(target(row(savings), instant=True, table=True))
    rename = {f"Value #{ref}": name for ref, name, _ in columns} | {
        "Value #G": "Pending savings", "server_name": "Name", "server_type": "Type",
        "location": "Location", "source": "Source", "server_id": "Server ID",
        "console": "Hetzner console"}
    order = ["server_name", "server_type", "location", "source", "server_id",
             *[f"Value #{ref}" for ref, _, _ in columns], "Value #G", "console"]
    percent_columns = [override(name, unit="percentunit", min=0, max=1,
                                custom__cellOptions={"mode": "basic", "type": "gauge",
                                                     "valueDisplayMode": "text"},
                                thresholds=thresholds((None, "blue"), (0.05, "green"),
                                                      (0.6, "orange"), (0.85, "red")))
                       for name in ("CPU avg", "CPU peak", "Memory avg", "Memory peak")]
    b.row("Servers")
    b.add(14, (24, table(
        "Servers",
        "Every selected server: monthly cost (with attached resources and traffic "
        "overage), 30-day average and peak (highest 5-minute) CPU and memory utilisation "
        "(memory only where the agent runs), utilisation tier and the savings pending "
        "for it (single-server recommendations). Click a name for the server board, the "
        "last column for the Hetzner Cloud Console or Robot.",
        "currencyEUR", *targets,
        transformations=[MERGE, organize(exclude=["Time"], rename=rename, order=order)],
        overrides=[
            *percent_columns,
            override("Tier", unit="short", mappings=TIER_MAPPINGS,
                     custom__cellOptions={"type": "color-text"}),
            override("Name", links=[server_link("${__data.fields.source}",
                                                "${__data.fields.server_id}")]),
            override("Hetzner console", unit="string", mappings=CONSOLE_MAPPINGS,
                     links=[{"targetBlank": True, "title": "Open in the Hetzner console",
                             "url": "${__value.raw}"}]),
            *[override(name, unit="string") for name in
              ("Type", "Location", "Source", "Server ID")],
        ],
        sort_by="Monthly cost")))

    variables = [
        DATASOURCE_VAR,
        query_variable("source", "Source", "Cloud servers, dedicated (Robot) servers or both.",
                       f"label_values({q(N('server_info'))}, source)", multi=True),
        query_variable("location", "Location", "Hetzner location of the server.",
                       f"label_values({q(N('server_info'))}, location)", multi=True),
        query_variable("project", "Cloud project",
                       "Hetzner Cloud project (the exporter's project name); All includes "
                       "dedicated servers, which have none.",
                       f"label_values({q(N('server_info'))}, hcloud_project)", multi=True),
        query_variable("env", "env label", "Hetzner label `env`; All includes servers "
                       "without one.",
                       f"label_values({q(N('server_labels'))}, label_env)", multi=True),
    ]
    return dashboard(FLEET, "InfraScope / Fleet",
                     "What the Hetzner fleet costs, where the money goes, how hard each "
                     "server works over 30 days and what idle servers cost.",
                     b, variables, tags=["fleet"], time_from="now-7d",
                     links=[external_link("Hetzner Cloud Console", CLOUD_CONSOLE_URL,
                                          "Cloud projects and servers"),
                            external_link("Hetzner Robot", ROBOT_URL, "Dedicated servers")])


# --- Server --------------------------------------------------------------------------------

def server(q: Q) -> Json:
    this = ('source="$source"', 'server_id="$server_id"')
    cost = 'source_server_id:monthly_cost_euros:sum{source="$source", server_id="$server_id"}'

    def util(metric: str) -> str:
        return f'source_server_id:{metric}{{source="$source", server_id="$server_id"}}'

    # Resources carry the Cloud server id only: give them source="cloud" to match this one.
    attached = (f"sum by (source, server_id, kind) (label_replace("
                f'{q(N("resource_monthly_cost_euros"), eq("server_id", "$server_id"))}, '
                f'"source", "cloud", "", "")) and on (source, server_id) '
                f'{q(N("server_info"), *this)}')
    cost_parts = " or ".join([
        item(q(N("server_monthly_cost_breakdown_euros"), *this), "component"),
        item(q(N("server_traffic_overage_projected_cost_euros"), *this), "traffic overage"),
        item(attached, "kind")])
    b = Board()
    b.row("Server $server_name")
    info_columns = {"server_name": "Name", "server_type": "Type", "location": "Location",
                    "datacenter": "Datacenter", "hcloud_project": "Cloud project",
                    "architecture": "Architecture", "cpu_type": "CPU type",
                    "image": "Image", "product": "Product", "network_zone": "Network zone",
                    "console": "Hetzner console"}
    b.add(5,
          (12, table("Attributes",
                     "The server's inventory attributes (server_info) and a link to "
                     "the Hetzner Cloud Console (project list: the API does not reveal the "
                     "console's project id) or Robot (dedicated servers).", "string",
                     target(with_console(q(N("server_info"), *this)), instant=True,
                            table=True),
                     transformations=[organize(
                         exclude=[*HIDDEN_LABELS, "Value", "source", "server_id"],
                         rename=info_columns, order=list(info_columns))],
                     overrides=[override("Hetzner console", mappings=CONSOLE_MAPPINGS,
                                         links=[{"targetBlank": True,
                                                 "title": "Open in the Hetzner console",
                                                 "url": "${__value.raw}"}])])),
          (3, stat("Status", "Status the Hetzner API reports (Cloud: running, off, ...; "
                   "Robot: ready, in process).", "short",
                   target(q(N("server_status"), *this), "{{status}}", instant=True),
                   text_mode="name", color_mode="none")),
          (3, stat("Agent", "Whether Prometheus reaches this server's InfraScope agent "
                   "(memory, disks, services and ports need it).", "short",
                   target(q.up(q.jobs.agent, *this), "agent", instant=True),
                   mappings=value_map({"0": ("down", "red"), "1": ("up", "green")}),
                   no_value="no agent")),
          (3, stat("Monthly cost", "This month's projected bill of the server: with backups, "
                   "primary IPs, attached volumes/floating IPs and projected traffic "
                   "overage.", "currencyEUR", target(cost, "cost", instant=True))),
          (3, stat("Tier (30 days)", "Utilisation tier from the 30-day p95 of CPU and "
                   "memory (idle < 5% CPU; unknown: less than 25% of the 30 days with "
                   "data).", "short",
                   target(util("utilisation:tier30d"), "{{tier}}", instant=True),
                   mappings=TIER_MAPPINGS, color_mode="background")))
    b.add(6,
          (8, table("Labels", "Hetzner labels of the server (for dedicated servers: "
                    "`robot.labels` of the exporter configuration).", "string",
                    target(q(N("server_labels"), *this), instant=True, table=True),
                    transformations=[
                        organize(exclude=[*HIDDEN_LABELS, "Value", "source", "server_id"]),
                        {"id": "renameByRegex",
                         "options": {"regex": "^label_(.*)$", "renamePattern": "$1"}}])),
          (8, bargauge("Cost breakdown", "Parts of the monthly cost: server, backup, "
                       "primary IPs, attached resources by kind, projected traffic overage.",
                       "currencyEUR",
                       target(cost_parts, "{{item}}", instant=True))),
          (8, bargauge("Traffic this month", "Outgoing traffic so far, extrapolated to the "
                       "month's end, and included in the price (Cloud servers; Robot "
                       "reports none). Above the included amount Hetzner bills per TB.",
                       "bytes",
                       target(q(N("server_traffic_outgoing_bytes"), *this), "outgoing",
                              instant=True),
                       target(q(N("server_traffic_projected_bytes"), *this),
                              "projected at month end", instant=True),
                       target(q(N("server_traffic_included_bytes"), *this), "included",
                              instant=True))))

    overlay = [override("30-day average", custom__lineStyle=DASHED),
               override("30-day peak", custom__lineStyle=DASHED,
                        color={"fixedColor": "red", "mode": "fixed"}),
               override("30-day p95", custom__lineStyle=DASHED,
                        color={"fixedColor": "orange", "mode": "fixed"})]
    b.row("Utilisation")
    b.add(8,
          (12, timeseries("CPU utilisation",
                          "Busy share of all CPUs (agent where it runs, Cloud API "
                          "otherwise: `via`), with the 30-day average, p95 of hourly "
                          "averages and peak (highest 5 minutes) overlaid.", "percentunit",
                          target(util("cpu_utilisation:ratio"), "CPU (via {{via}})"),
                          target(util("cpu_utilisation:avg30d"), "30-day average"),
                          target(util("cpu_utilisation:p95_30d"), "30-day p95"),
                          target(util("cpu_utilisation:max30d"), "30-day peak"),
                          overrides=overlay, minimum=0, maximum=1)),
          (12, timeseries("Memory utilisation",
                          "Memory in use (1 - MemAvailable / MemTotal, from the agent: the "
                          "Cloud API has no memory figure), with the 30-day average, p95 "
                          "and peak overlaid.", "percentunit",
                          target(util("memory_utilisation:ratio"), "memory"),
                          target(util("memory_utilisation:avg30d"), "30-day average"),
                          target(util("memory_utilisation:p95_30d"), "30-day p95"),
                          target(util("memory_utilisation:max30d"), "30-day peak"),
                          overrides=overlay, minimum=0, maximum=1)))
    b.add(7,
          (8, timeseries("CPU cores busy",
                         "CPU seconds per second by mode from the agent (1 = one core "
                         "busy) and the Cloud API's average vCPUs busy, against the vCPUs "
                         "of the type.", "short",
                         target(rate_by("mode", q("node_cpu_seconds_total", *this,
                                                  ne("mode", "idle"))),
                                "{{mode}} (agent)"),
                         target(q("hetzner_server_cpu_cores_used", *this), "busy (Cloud API)"),
                         target(q(N("server_cpu_cores"), *this), "vCPUs"),
                         overrides=[override("vCPUs", custom__lineStyle=DASHED,
                                             custom__stacking={"group": "B", "mode": "none"})],
                         stack=True, minimum=0)),
          (8, timeseries("Load average", "Run-queue length averaged over 1, 5 and 15 "
                         "minutes (agent).", "short",
                         target(q("node_load1", *this), "1m"),
                         target(q("node_load5", *this), "5m"),
                         target(q("node_load15", *this), "15m"), minimum=0)),
          (8, timeseries("Memory", "Memory in use and total from the agent, and the "
                         "memory of the Cloud server type.", "bytes",
                         target(f'{q("node_memory_MemTotal_bytes", *this)} - '
                                f'{q("node_memory_MemAvailable_bytes", *this)}',
                                "in use"),
                         target(q("node_memory_MemTotal_bytes", *this), "total"),
                         target(q(N("server_memory_bytes"), *this), "type's memory"),
                         minimum=0)))

    fs = (*this, f'fstype!~"{PSEUDO_FS}"')
    b.row("Disk and network")
    b.add(8,
          (6, bargauge("Filesystem usage", "Share of each filesystem's space in use "
                       "(1 - available / size, as the disk alert computes it; pseudo "
                       "filesystems left out).", "percentunit",
                       target(f'1 - {q("node_filesystem_avail_bytes", *fs)}'
                              f' / {q("node_filesystem_size_bytes", *fs)}',
                              "{{mountpoint}}", instant=True),
                       maximum=1, steps=thresholds((None, "green"), (0.8, "orange"),
                                                   (0.9, "red")))),
          (9, timeseries("Disk throughput", "Bytes read and written per second: per block "
                         "device from the agent, and the Cloud API's figures for the "
                         "server's disk.", "Bps",
                         target(rate_by("device", q("node_disk_read_bytes_total", *this)),
                                "read {{device}}"),
                         target(rate_by("device", q("node_disk_written_bytes_total", *this)),
                                "written {{device}}"),
                         target(q("hetzner_server_disk_bandwidth_bytes_per_second", *this),
                                "{{direction}} (Cloud API)"), minimum=0)),
          (9, timeseries("Disk IOPS", "Read and write operations per second: per block "
                         "device from the agent, and the Cloud API's figures.", "iops",
                         target(rate_by("device", q("node_disk_reads_completed_total", *this)),
                                "reads {{device}}"),
                         target(rate_by("device", q("node_disk_writes_completed_total", *this)),
                                "writes {{device}}"),
                         target(q("hetzner_server_disk_iops", *this),
                                "{{direction}} (Cloud API)"), minimum=0)))
    nic = (*this, 'device!="lo"')
    b.add(8,
          (12, timeseries("Network throughput", "Bytes per second received and sent per "
                          "interface (agent, loopback left out) and on the public interface "
                          "(Cloud API).", "Bps",
                          target(rate_by("device", q("node_network_receive_bytes_total", *nic)),
                                 "received {{device}}"),
                          target(rate_by("device", q("node_network_transmit_bytes_total", *nic)),
                                 "sent {{device}}"),
                          target(q("hetzner_server_network_bandwidth_bytes_per_second", *this),
                                 "{{direction}} (Cloud API)"), minimum=0)),
          (12, timeseries("Network packets", "Packets per second received and sent per "
                          "interface (agent) and on the public interface (Cloud API).", "pps",
                          target(rate_by("device", q("node_network_receive_packets_total", *nic)),
                                 "received {{device}}"),
                          target(rate_by("device", q("node_network_transmit_packets_total", *nic)),
                                 "sent {{device}}"),
                          target(q("hetzner_server_network_packets_per_second", *this),
                                 "{{direction}} (Cloud API)"), minimum=0)))

    b.row("Services found by the agent")
    service_columns = {"kind": "Kind", "service": "Service", "state": "State",
                       "sub_state": "Sub-state", "image": "Image",
                       "compose_project": "Compose project",
                       "compose_service": "Compose service"}
    port_columns = {"port": "Port", "protocol": "Protocol", "address": "Address",
                    "service": "Service", "kind": "Kind", "process": "Process"}
    identity = ["source", "server_id", "server_name", "Value"]
    b.add(9,
          (12, table("Services", "Docker containers and systemd units the agent found "
                     "(infrascope_service_info): what would have to move if this server "
                     "were consolidated.", "string",
                     target(q("infrascope_service_info", *this), instant=True, table=True),
                     transformations=[organize(exclude=[*HIDDEN_LABELS, *identity],
                                               rename=service_columns,
                                               order=list(service_columns))],
                     sort_by="Service", descending=False)),
          (12, table("Listening ports", "Listening TCP/UDP sockets and the service that "
                     "owns them (infrascope_listen_port_info).", "string",
                     target(q("infrascope_listen_port_info", *this), instant=True,
                            table=True),
                     transformations=[organize(exclude=[*HIDDEN_LABELS, *identity],
                                               rename=port_columns, order=list(port_columns))],
                     sort_by="Port", descending=False)))

    b.row("Recommendations")
    # Recommendations naming several servers join their ids with commas.
    naming_this = (rx("source", "(.*,)?$source(,.*)?"), rx("server_id", "(.*,)?$server_id(,.*)?"))
    per_rec = q("infrascope_recommendation_monthly_savings_euros", *naming_this)
    pending_here = q("infrascope_recommendation_monthly_savings_euros", *naming_this,
                     eq("status", "pending"))
    b.add(6,
          (6, stat("Savings recommended", "Monthly euros the pending recommendations that "
                   "name this server would save (0: none). Their start and decision are the "
                   "orange annotations on the time axis.", "currencyEUR",
                   target(f"sum({pending_here}) or vector(0)",
                          "pending", instant=True),
                   links=[{"title": "Recommendations", "url": board_url(RECOMMENDATIONS)}])),
          (18, table("Recommendations for this server", "Pending and accepted "
                     "recommendations naming this server (the recommender's /metrics).",
                     "currencyEUR", target(per_rec, instant=True, table=True),
                     transformations=[organize(
                         exclude=[*HIDDEN_LABELS, "source", "server_id"],
                         rename={"kind": "Kind", "action": "Action", "status": "Status",
                                 "server_names": "Servers", "target_type": "Target type",
                                 "project": "Project", "id": "Id",
                                 "Value": "Monthly savings"},
                         order=["kind", "action", "status", "server_names", "target_type",
                                "Value", "project", "id"])],
                     overrides=[override(name, unit="string") for name in
                                ("Kind", "Action", "Status", "Servers", "Target type",
                                 "Project", "Id")],
                     sort_by="Monthly savings")))

    variables = [
        DATASOURCE_VAR, INFINITY_VAR,
        query_variable("source", "Source", "cloud or dedicated.",
                       f"label_values({q(N('server_info'))}, source)", multi=False),
        query_variable("server_id", "Server ID", "Cloud server id or Robot server number.",
                       label_values(q(N("server_info"), eq("source", "$source")),
                                    "server_id"),
                       multi=False, sort=3),
        query_variable("server_name", "Name", "The selected server's name (follows the id).",
                       f"label_values({q(N('server_info'), *this)}, server_name)",
                       multi=False),
    ]
    return dashboard(SERVER, "InfraScope / Server",
                     "One server: CPU and memory over time against its 30-day figures, "
                     "disks, network, the services and ports the agent found, labels, cost, "
                     "and the recommender's recommendations on the time axis.",
                     b, variables, tags=["server"], time_from="now-7d",
                     annotations=[recommendation_annotation([("server",
                                                              "${source}/${server_id}")])],
                     links=[external_link("Hetzner Cloud Console", CLOUD_CONSOLE_URL,
                                          "Cloud projects and servers"),
                            external_link("Hetzner Robot", ROBOT_URL, "Dedicated servers")])


# --- Cost ----------------------------------------------------------------------------------

def cost(q: Q) -> Json:
    unattached = q(N("resource_monthly_cost_euros"), 'server_id=""')
    b = Board()
    b.row("This month")
    b.add(4,
          (4, stat("Projected bill", "This month's projected bill: servers + resources + "
                   "projected traffic overage, each euro counted once.", "currencyEUR",
                   target(":monthly_cost_euros:sum", "bill", instant=True))),
          (4, stat("Servers", "Servers with backups and primary IPs (server_monthly_"
                   "cost_euros); dedicated at their configured or catalogue price.",
                   "currencyEUR",
                   target(f'sum({q(N("server_monthly_cost_euros"))})', "servers",
                          instant=True))),
          (4, stat("Resources", "Volumes, floating IPs, load balancers, snapshots and "
                   "unassigned primary IPs, attached or not.", "currencyEUR",
                   target(f'sum({q(N("resource_monthly_cost_euros"))}) or vector(0)',
                          "resources", instant=True))),
          (4, stat("Projected traffic overage", "Projected cost of outgoing traffic above "
                   "the included amount, summed over servers.", "currencyEUR",
                   target(f'sum({q(N("server_traffic_overage_projected_cost_euros"))})'
                          " or vector(0)", "overage", instant=True),
                   steps=thresholds((None, "green"), (0.01, "orange")))),
          (4, stat("Unattached resources", "Monthly cost of volumes, IPs, "
                   "load balancers and snapshots that belong to no server: often "
                   "forgotten.", "currencyEUR",
                   target(f"sum({unattached}) or vector(0)", "unattached", instant=True),
                   steps=thresholds((None, "green"), (0.01, "orange")))),
          (4, stat("Servers without a price", "Servers the exporter could not price (an "
                   "auction server without a configured price): their cost is missing "
                   "from every figure.", "short",
                   target(f'count({q(N("server_price_known"))} == 0) or vector(0)',
                          "unpriced", instant=True),
                   steps=thresholds((None, "green"), (1, "red")))))

    trend_description = ("The projected monthly bill averaged over each day "
                         "(`{series}`), over the past 12 months whatever the board's time "
                         "range. Needs 13 months of retention for that series (see "
                         "prometheus/README.md, Retention).")
    b.row("Trend (12 months)")
    b.add(8, (24, timeseries("Monthly cost trend",
                             trend_description.format(series=":monthly_cost_euros:avg1d"),
                             "currencyEUR", target(":monthly_cost_euros:avg1d", "fleet"),
                             interval="1d", time_from="12M", minimum=0)))
    b.add(8,
          (12, timeseries("Trend by label project",
                          trend_description.format(
                              series="label_project:monthly_cost_euros:avg1d"),
                          "currencyEUR",
                          target(none_label("label_project:monthly_cost_euros:avg1d",
                                            "label_project"), "{{label_project}}"),
                          interval="1d", time_from="12M", stack=True, minimum=0)),
          (12, timeseries("Trend by env",
                          trend_description.format(series="label_env:monthly_cost_euros:avg1d"),
                          "currencyEUR",
                          target(none_label("label_env:monthly_cost_euros:avg1d", "label_env"),
                                 "{{label_env}}"),
                          interval="1d", time_from="12M", stack=True, minimum=0)))

    b.row("Breakdown")
    breakdown = q(N("server_monthly_cost_breakdown_euros"))
    by_component = f"sum by (source, component) ({breakdown})"
    components = " or ".join([
        f'label_join({by_component}, "item", " ", "source", "component")',
        item(f'sum by (kind) ({q(N("resource_monthly_cost_euros"))})', "kind"),
        item(f'sum({q(N("server_traffic_overage_projected_cost_euros"))})',
             "traffic overage")])
    b.add(9,
          (8, piechart("What the bill is made of", "Server price, backups and primary IPs "
                       "by source, resources by kind, projected traffic overage.",
                       "currencyEUR", target(components, "{{item}}", instant=True))),
          (8, bargauge("By tier", "Monthly cost by 30-day utilisation tier; `unattached`: "
                       "resources attached to no server.", "currencyEUR",
                       target("tier:monthly_cost_euros:sum", "{{tier}}", instant=True),
                       overrides=[override(name, color={"fixedColor": colour,
                                                        "mode": "fixed"})
                                  for name, colour in TIER_COLOURS.items()])),
          (8, bargauge("By location", "Monthly cost by location (resources attached to "
                       "no server included).", "currencyEUR",
                       target(none_label("location:monthly_cost_euros:sum", "location"),
                              "{{location}}", instant=True))))
    b.add(9,
          (12, bargauge("Most expensive servers", "The 15 servers with the highest "
                        "projected monthly cost (with attached resources and traffic "
                        "overage). Click a bar for the server board.", "currencyEUR",
                        target("topk(15, source_server_id:monthly_cost_euros:sum)",
                               "{{server_name}} ({{server_type}}, {{location}})",
                               instant=True),
                        links=[server_link("${__field.labels.source}",
                                           "${__field.labels.server_id}")])),
          (6, piechart("By Cloud project", "Monthly cost by Hetzner Cloud project; "
                       "dedicated servers belong to none.", "currencyEUR",
                       target(none_label("hcloud_project:monthly_cost_euros:sum",
                                         "hcloud_project", "(dedicated)"),
                              "{{hcloud_project}}", instant=True))),
          (6, piechart("By source", "Monthly cost of Cloud and dedicated servers.",
                       "currencyEUR", target("source:monthly_cost_euros:sum", "{{source}}",
                                             instant=True))))

    def per_server(metric: str) -> str:
        return (f"max by (source, server_id, server_name) ({q(metric)}"
                f" * on (source, server_id) group_left (server_name) "
                f"max by (source, server_id, server_name) ({q(N('server_info'))}))")

    traffic = [("A", "Outgoing", N("server_traffic_outgoing_bytes")),
               ("B", "Projected", N("server_traffic_projected_bytes")),
               ("C", "Included", N("server_traffic_included_bytes")),
               ("D", "Overage cost", N("server_traffic_overage_projected_cost_euros"))]
    b.row("Traffic")
    b.add(9,
          (10, timeseries("Fleet traffic this month", "Outgoing traffic so far this billing "
                          "month, its projection to the month's end and the included "
                          "traffic, summed over Cloud servers.", "bytes",
                          target(f'sum({q(N("server_traffic_outgoing_bytes"))})',
                                 "outgoing"),
                          target(f'sum({q(N("server_traffic_projected_bytes"))})',
                                 "projected at month end"),
                          target(f'sum({q(N("server_traffic_included_bytes"))})',
                                 "included"), minimum=0)),
          (14, table("Traffic by server", "Per Cloud server: outgoing traffic so far, "
                     "projected at the month's end, included, and the projected cost above "
                     "the included amount. Click a name for the server board.", "bytes",
                     *[target(per_server(metric), instant=True, table=True)
                       for _, _, metric in traffic],
                     transformations=[MERGE, organize(
                         exclude=["Time"],
                         rename={f"Value #{ref}": name for ref, name, _ in traffic}
                         | {"server_name": "Name", "source": "Source",
                            "server_id": "Server ID"},
                         order=["server_name", "source", "server_id",
                                *[f"Value #{ref}" for ref, _, _ in traffic]])],
                     overrides=[override("Overage cost", unit="currencyEUR"),
                                override("Name", unit="string",
                                         links=[server_link("${__data.fields.source}",
                                                            "${__data.fields.server_id}")]),
                                override("Source", unit="string"),
                                override("Server ID", unit="string")],
                     sort_by="Projected")))

    b.row("Resources that cost money without a server")
    b.add(8,
          (8, bargauge("By kind", "Monthly cost of resources attached to no server, by kind "
                       "(volume, floating_ip, primary_ip, load_balancer, snapshot).",
                       "currencyEUR", target(f"sum by (kind) ({unattached})", "{{kind}}",
                                             instant=True))),
          (16, table("Resources attached to no server", "Each volume, IP, load balancer "
                     "and snapshot attached to no server, with its monthly cost: candidates "
                     "for deletion.", "currencyEUR",
                     target(unattached, instant=True, table=True),
                     transformations=[organize(
                         exclude=[*HIDDEN_LABELS, "server_id"],
                         rename={"kind": "Kind", "resource_name": "Name",
                                 "resource_id": "Id", "location": "Location",
                                 "hcloud_project": "Cloud project", "Value": "Monthly cost"},
                         order=["kind", "resource_name", "resource_id", "location",
                                "hcloud_project", "Value"])],
                     overrides=[override(name, unit="string") for name in
                                ("Kind", "Name", "Id", "Location", "Cloud project")],
                     sort_by="Monthly cost")))
    return dashboard(COST, "InfraScope / Cost",
                     "The month's projected bill, its 12-month trend, what it is made of, "
                     "traffic and projected overage, and resources that cost money without "
                     "a server.", b, [DATASOURCE_VAR], tags=["cost"], time_from="now-30d")


# --- Recommendations -----------------------------------------------------------------------

def recommendations(q: Q) -> Json:
    kind, pending = rx("kind", "$kind"), eq("status", "pending")
    per_rec = q("infrascope_recommendation_monthly_savings_euros", kind, 'status=~"$status"')
    totals = "infrascope_recommendations_monthly_savings_euros"
    b = Board()
    b.row("Now")
    b.add(4,
          (5, stat("Pending savings", "Monthly euros all pending recommendations would "
                   "save together.", "currencyEUR",
                   target(f'sum({q(totals, eq("status", "pending"))})', "pending",
                          instant=True))),
          (5, stat("Pending recommendations", "How many recommendations wait for a "
                   "decision (kinds selected by the variable).", "short",
                   target(f'sum({q("infrascope_recommendations", kind, pending)})',
                          "pending", instant=True))),
          (5, stat("Accepted savings", "Monthly euros the accepted recommendations save.",
                   "currencyEUR",
                   target(f'sum({q(totals, eq("status", "accepted"))})', "accepted",
                          instant=True))),
          (5, stat("Since the last run", "Time since the recommender last regenerated its "
                   "recommendations (successfully or not).", "s",
                   target("time() - "
                          + q("infrascope_recommender_last_run_timestamp_seconds"),
                          "age", instant=True),
                   steps=thresholds((None, "green"), (7200, "orange"), (86400, "red")))),
          (4, stat("Last run", "Whether the last regeneration succeeded (it fails when "
                   "Prometheus is unreachable). Servers left without a recommendation, by "
                   "cause (too little data, price or size unknown, no type to move to, "
                   "kept for high availability): "
                   "infrascope_recommender_last_run_excluded_servers{cause}.",
                   "short",
                   target(q("infrascope_recommender_last_run_success"), "success",
                          instant=True),
                   mappings=value_map({"0": ("failed", "red"), "1": ("succeeded", "green")}),
                   color_mode="background")))

    b.row("Recommendations")
    rec_columns = {"kind": "Kind", "action": "Action", "status": "Status",
                   "server_names": "Servers", "source": "Source", "server_id": "Server ID",
                   "target_type": "Target type", "Value": "Monthly savings",
                   "project": "Project", "id": "Id"}
    b.add(10, (24, table(
        "Recommendations", "Pending and accepted recommendations with their monthly savings "
        "(negative: an upgrade that costs more), from the recommender's /metrics. Click the "
        "servers for the server board (single-server recommendations).", "currencyEUR",
        target(per_rec, instant=True, table=True),
        transformations=[organize(exclude=HIDDEN_LABELS, rename=rec_columns,
                                  order=list(rec_columns))],
        overrides=[*[override(name, unit="string") for name in
                     ("Kind", "Action", "Status", "Source", "Server ID", "Target type",
                      "Project", "Id")],
                   override("Servers", unit="string",
                            links=[server_link("${__data.fields.source}",
                                               "${__data.fields.server_id}")])],
        sort_by="Monthly savings")))
    api_columns = [("kind", "Kind", "string"), ("action", "Action", "string"),
                   ("status", "Status", "string"),
                   ("monthly_savings", "Monthly savings", "number"),
                   ("savings_percent", "Savings %", "number"),
                   ("current_monthly_cost", "Current cost", "number"),
                   ("projected_monthly_cost", "Projected cost", "number"),
                   ("target_type", "Target type", "string"),
                   ("target_location", "Target location", "string"),
                   ("confidence", "Confidence", "string"), ("risk", "Risk", "string"),
                   ("first_seen", "First seen", "timestamp"),
                   ("decided_by", "Decided by", "string"), ("reason", "Reason", "string"),
                   ("id", "Id", "string")]
    b.add(10, (24, table(
        "Recommendation details (recommender API)", "Every recommendation with confidence, "
        "risk, costs before and after and the decision, from the recommender's "
        "/api/recommendations through the Infinity datasource (needs the plugin).",
        "currencyEUR",
        infinity_target("/api/recommendations", api_columns, root="items"),
        datasource=INFINITY_DS,
        overrides=[override("Savings %", unit="percent"),
                   *[override(text_, unit="string") for _, text_, kind_ in api_columns
                     if kind_ == "string"],
                   override("First seen", unit="dateTimeAsIso")],
        sort_by="Monthly savings")))

    decided = q("infrascope_recommendations", kind, rx("status", "accepted|dismissed"))
    status_colours = [override("accepted", color={"fixedColor": "green", "mode": "fixed"}),
                      override("dismissed", color={"fixedColor": "red", "mode": "fixed"}),
                      override("pending", color={"fixedColor": "orange", "mode": "fixed"})]
    b.row("Over time")
    b.add(8,
          (8, timeseries("Accepted vs dismissed", "How many recommendations were accepted "
                         "and dismissed (kinds selected by the variable).", "short",
                         target(f"sum by (status) ({decided})",
                                "{{status}}"),
                         overrides=status_colours, minimum=0)),
          (8, timeseries("Savings by decision", "Monthly euros the recommendations of "
                         "each status save together.", "currencyEUR",
                         target(f"sum by (status) ({q(totals)})", "{{status}}"),
                         overrides=status_colours)),
          (8, bargauge("Pending savings by kind", "Monthly euros the pending "
                       "recommendations save, by kind (idle, consolidation, rightsize, "
                       "underprovisioned, dedicated_to_cloud).", "currencyEUR",
                       target("sum by (kind) ("
                              + q("infrascope_recommendation_monthly_savings_euros", kind,
                                  pending) + ")",
                              "{{kind}}", instant=True), minimum=None)))
    b.add(7,
          (12, timeseries("Regenerations", "Recommender runs per interval by outcome "
                          "(success, prometheus_error, error).", "short",
                          target("sum by (outcome) (increase("
                                 + q("infrascope_recommender_runs_total")
                                 + "[$__rate_interval]))",
                                 "{{outcome}}"), bars=True, stack=True, minimum=0)),
          (12, text("Acting on a recommendation", "How to accept, dismiss or reopen a "
                    "recommendation.", """
Decide through the recommender, not here (the boards are read-only):

* `recommender report` prints every pending recommendation with its reasons and the exact
  commands;
* `POST /api/recommendations/<id>/accept` (optional `note`, `by`),
  `POST /api/recommendations/<id>/dismiss` (`reason`, optional `until`: `90d` or a date) and
  `.../reopen` need the API token (`Authorization: Bearer ...`).

Accepted recommendations keep counting as savings; dismissed ones leave the list until
their `until` passes. The orange annotations mark when each recommendation appeared and
when it was decided.""")))

    variables = [
        DATASOURCE_VAR, INFINITY_VAR,
        query_variable("kind", "Kind", "Recommendation kind.",
                       f"label_values({q('infrascope_recommendations')}, kind)", multi=True),
        query_variable("status", "Status", "pending or accepted (dismissed ones have no "
                       "per-recommendation series).",
                       label_values(q("infrascope_recommendation_monthly_savings_euros"),
                                    "status"),
                       multi=True),
    ]
    return dashboard(RECOMMENDATIONS, "InfraScope / Recommendations",
                     "What the recommender suggests, what it would save, and what was "
                     "accepted or dismissed.", b, variables, tags=["recommendations"],
                     time_from="now-30d",
                     annotations=[recommendation_annotation([])])


BUILDERS: dict[str, Callable[[Q], Json]] = {
    FLEET: fleet, SERVER: server, COST: cost, RECOMMENDATIONS: recommendations}


# --- rendering and checking ----------------------------------------------------------------

def build(jobs: Jobs | None = None) -> dict[str, Json]:
    """uid -> dashboard."""
    q = Q(jobs or Jobs.load())
    return {uid: builder(q) for uid, builder in BUILDERS.items()}


def render(board: Json) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


README = HERE / "README.md"
README_BEGIN = "<!-- BEGIN GENERATED: panels (grafana/dashboards/generate.py) -->"
README_END = "<!-- END GENERATED: panels -->"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTED = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
_RECORDED = re.compile(r"(?<![\w:$])([a-z_]*:[a-z0-9_]+:[a-z0-9_]+)")


def series_read(expr: str) -> list[str]:
    """Series names in a query (raw series always carry a job matcher, so braces)."""
    bare = _STRING.sub('""', expr)
    names = [*_SELECTED.findall(bare), *_RECORDED.findall(bare)]
    return sorted(set(names), key=names.index)


def panel_table(boards: Mapping[str, Json]) -> str:
    """The README table: every panel of every board and what it reads."""
    lines = ["| board | panel | type | unit | reads |", "|---|---|---|---|---|"]
    for uid, board in boards.items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            reads: list[str] = []
            for t in panel.get("targets", []):
                if "expr" in t:
                    reads += [f"`{n}`" for n in series_read(t["expr"])
                              if f"`{n}`" not in reads]
                else:
                    reads.append(f"recommender `{t['url']}` (Infinity)")
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            lines.append(f"| {uid.removeprefix('infrascope-')} | {panel['title']} | "
                         f"{panel['type']} | {unit and f'`{unit}`'} | "
                         f"{', '.join(reads) or '–'} |")
        for ann in board["annotations"]["list"]:
            if "target" in ann:
                lines.append(f"| {uid.removeprefix('infrascope-')} | annotation: "
                             f"{ann['name']} | annotation | – | recommender "
                             f"`{ann['target']['url']}` (Infinity) |")
    return "\n".join(lines)


def with_panel_table(readme: str, boards: Mapping[str, Json]) -> str:
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README lacks the markers {README_BEGIN} ... {README_END}")
    return (readme[:start + len(README_BEGIN)] + "\n" + panel_table(boards) + "\n"
            + readme[end:])


def stale_files(output_dir: Path, boards: Mapping[str, Json],
                readme: Path | None = None) -> list[str]:
    """Files that differ from a fresh generation, are missing, or should not be there."""
    wanted = {FILES[uid]: render(board) for uid, board in boards.items()}
    stale = [name for name, content in sorted(wanted.items())
             if not (output_dir / name).exists() or (output_dir / name).read_text() != content]
    extra = sorted(p.name for p in output_dir.glob("*.json") if p.name not in wanted)
    if readme is not None:
        text = readme.read_text()
        if with_panel_table(text, boards) != text:
            stale.append(str(readme))
    return stale + extra


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed dashboard differs from a fresh generation")
    parser.add_argument("--output-dir", type=Path, default=HERE,
                        help="where the *.json files are (default: next to this script)")
    parser.add_argument("--prometheus-config", type=Path, default=PROMETHEUS_CONFIG,
                        help="rules-pack configuration holding the scrape job names")
    parser.add_argument("--readme", type=Path, default=None,
                        help="README whose panel table to update (default: README.md here "
                             "when writing next to this script, none otherwise)")
    args = parser.parse_args(argv)
    readme = args.readme or (README if args.output_dir.resolve() == HERE else None)
    boards = build(Jobs.load(args.prometheus_config))
    if args.check:
        stale = stale_files(args.output_dir, boards, readme)
        for name in stale:
            print(f"{args.output_dir / name}: stale; run "
                  "`.venv/bin/python grafana/dashboards/generate.py` and commit the result",
                  file=sys.stderr)
        return 1 if stale else 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for uid, board in boards.items():
        (args.output_dir / FILES[uid]).write_text(render(board))
    if readme is not None:
        readme.write_text(with_panel_table(readme.read_text(), boards))
    return 0


# --- queries for tests ---------------------------------------------------------------------

GLOBAL_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
EXAMPLE_VALUES = {"source": "cloud", "server_id": "1", "server_name": "example"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(text_: str, values: Mapping[str, str]) -> str:
    """Replace ``$var``/``${var}``/``[[var]]``; ``$1`` (regex groups) stays as it is."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name.isdigit():
            return match.group(0)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {text_!r}")
        return values[name]
    return _VARIABLE.sub(replace, text_)


def variable_values(board: Json, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values a query sees: All (``.*``) for multi variables, examples for the others."""
    values = dict(GLOBAL_VARIABLES)
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = (var.get("allValue", ".*") if var.get("includeAll")
                                   else EXAMPLE_VALUES.get(var["name"], "example"))
    values.update(overrides or {})
    return values


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str  # Grafana variables substituted
    instant: bool


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    variable: str
    query: str  # label_values(<selector>, <label>), variables substituted


def committed(directory: Path = HERE) -> dict[str, Json]:
    """The committed dashboards (uid -> JSON), what Grafana is provisioned with."""
    boards = (json.loads((directory / name).read_text()) for name in FILES.values())
    return {board["uid"]: board for board in boards}


def panels(board: Json) -> list[Json]:
    """Every panel, including those nested in collapsed rows."""
    out: list[Json] = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries(boards: Mapping[str, Json] | None = None,
                  values: Mapping[str, str] | None = None) -> list[PanelQuery]:
    """Every Prometheus query of every panel, with variables substituted.

    ``values`` override the defaults (All for multi variables, ``EXAMPLE_VALUES`` for
    single ones, ``$__rate_interval`` = 5m): pass a real ``source``/``server_id`` to run
    the server board's queries against a Prometheus that has that server.
    """
    out = []
    for uid, board in (boards or committed()).items():
        vals = variable_values(board, values)
        for panel in panels(board):
            for t in panel.get("targets", []):
                if t.get("datasource", {}).get("type") == "prometheus":
                    out.append(PanelQuery(uid, panel["title"], t["refId"],
                                          substitute(t["expr"], vals), bool(t["instant"])))
    return out


def variable_queries(boards: Mapping[str, Json] | None = None,
                     values: Mapping[str, str] | None = None) -> list[VariableQuery]:
    out = []
    for uid, board in (boards or committed()).items():
        vals = variable_values(board, values)
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                out.append(VariableQuery(uid, var["name"],
                                         substitute(var["query"]["query"], vals)))
    return out


if __name__ == "__main__":
    sys.exit(main())
