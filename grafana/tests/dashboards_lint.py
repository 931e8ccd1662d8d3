"""Our lint for the InfraScope dashboards, after grafana/dashboard-linter's main rules.

Every ``lint_*`` function takes dashboards (uid -> JSON) and returns the problems it
found, one readable line each, so a test asserts ``== []`` on the committed boards and
asserts a specific problem on a deliberately broken copy.

Rules (dashboard-linter's name in brackets where there is one):

- ``datasource`` variable of type datasource, query prometheus, label "Data source"; an
  ``infinity`` variable where Infinity is used [template-datasource-rule]
- every panel and target datasource is ``${datasource}`` or ``${infinity}``, never a
  hard-coded uid [panel-datasource-rule, target-datasource]
- rate/irate/increase range is ``$__rate_interval`` [target-rate-interval-rule]
- counters (``*_total``) only inside rate/irate/increase [target-counter-agg-rule]
- every raw series has the job matcher of the component it comes from [target-job-rule]
- every panel has a title and a description [panel-title-description-rule], a valid
  unit [panel-units-rule] and at least one target [panel-no-targets-rule]
- fixed, unique uids and titles, ``editable: false`` [uneditable-dashboard], schema 39,
  panel ids unique, no overlapping panels
- query variables refresh on time-range change [template-on-time-change-reload-rule],
  read ``${datasource}``; multi-valued ones offer All as ``.*`` and are only used in
  ``=~`` matchers; every variable used, every used variable defined [template-unused]
- links to other boards keep the time range and the variables
- every metric name is declared in the series contract (see :func:`documented_series`)
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from infrascope_core import contract

Json = dict[str, Any]

GRAFANA_DIR = Path(__file__).resolve().parent.parent
REPO = GRAFANA_DIR.parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
GENERATOR = DASHBOARDS_DIR / "generate.py"

EXPECTED_UIDS = {"infrascope-fleet", "infrascope-server", "infrascope-cost",
                 "infrascope-recommendations"}
INFINITY_PLUGIN = "yesoreyeram-infinity-datasource"
DATASOURCE_UIDS = {"prometheus": "${datasource}", INFINITY_PLUGIN: "${infinity}"}
PANEL_TYPES = {"stat", "timeseries", "table", "piechart", "bargauge", "text", "row"}
NO_QUERY_PANELS = {"text", "row"}
# Boards that show one thing: their variables pick it, one value each.
SINGLE_VALUED = {"infrascope-server": {"source", "server_id", "server_name"}}
RATE_FUNCTIONS = ("rate", "irate", "increase")
RECOMMENDER_JOB = "infrascope-recommender"  # no scrape config names it yet

# grafana/dashboard-linter's panel-units-rule list (the categories a cost/ops board uses).
VALID_UNITS = {
    "none", "string", "short", "percent", "percentunit", "locale", "sci",
    "currencyEUR", "currencyUSD", "currencyGBP", "currencyCHF",
    "bytes", "decbytes", "bits", "decbits", "kbytes", "mbytes", "gbytes", "tbytes",
    "pps", "binBps", "Bps", "binbps", "bps", "KiBs", "KBs", "MiBs", "MBs", "GiBs", "GBs",
    "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsLocal", "dateTimeFromNow",
    "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms",
    "dtdhms", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
    "bool", "bool_yes_no", "bool_on_off",
}
# Grafana's own variables (and the data-link ones) a board may reference.
GRAFANA_GLOBALS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                   "__range_ms", "__from", "__to", "__url_time_range", "__data", "__value",
                   "__field", "__series", "__dashboard", "__org", "__user", "__all"}


@cache
def generator() -> ModuleType:
    """grafana/dashboards/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("infrascope_dashboards_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- walking a dashboard -------------------------------------------------------------------

def panels(board: Json) -> list[Json]:
    out: list[Json] = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


@dataclass(frozen=True)
class Query:
    board: str
    where: str  # "panel 'X' target A", "variable 'y'"
    expr: str


def prometheus_queries(board: Json) -> list[Query]:
    """Every PromQL text of a board: panel targets and the selectors of label_values()."""
    out = []
    for panel in panels(board):
        for t in panel.get("targets", []):
            if "expr" in t:
                out.append(Query(board["uid"], f"panel {panel['title']!r} target {t['refId']}",
                                 t["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            out.append(Query(board["uid"], f"variable {var['name']!r}",
                             label_values_selector(var["query"]["query"])))
    return out


def label_values_selector(query: str) -> str:
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip(), re.S)
    if not m:
        raise ValueError(f"not a label_values(<selector>, <label>) query: {query!r}")
    return m.group(1)


def links(board: Json) -> Iterator[tuple[str, Json]]:
    """(where, link) for dashboard links, panel links and data links (also in overrides)."""
    for link in board.get("links", []):
        yield "dashboard links", link
    for panel in panels(board):
        where = f"panel {panel.get('title')!r}"
        for link in panel.get("links", []):
            yield where, link
        field_config = panel.get("fieldConfig", {})
        for link in field_config.get("defaults", {}).get("links", []):
            yield where, link
        for ov in field_config.get("overrides", []):
            for prop in ov["properties"]:
                if prop["id"] == "links":
                    for link in prop["value"]:
                        yield f"{where} column {ov['matcher']['options']!r}", link


def texts_with_variables(board: Json) -> Iterator[tuple[str, str]]:
    """(where, text) for everything Grafana interpolates variables in."""
    for q in prometheus_queries(board):
        yield q.where, q.expr
    for panel in panels(board):
        yield f"panel {panel.get('title')!r}", panel.get("title", "")
        for t in panel.get("targets", []):
            if "url" in t:
                yield f"panel {panel['title']!r} url", t["url"]
                for p in t["url_options"].get("params", []):
                    yield f"panel {panel['title']!r} url param", p["value"]
    for where, link in links(board):
        yield where, link.get("url", "")
    for where, ds in _datasource_refs({"panels": board["panels"],
                                       "annotations": board["annotations"]}, "datasource"):
        if isinstance(ds, dict):
            yield where, ds.get("uid", "")
    for ann in board["annotations"]["list"]:
        t = ann.get("target", {})
        yield f"annotation {ann['name']!r}", t.get("url", "")
        for p in t.get("url_options", {}).get("params", []):
            yield f"annotation {ann['name']!r} url param", p["value"]


# --- a small PromQL scanner ----------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    name: str  # "" for {…} without a metric name
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)
    start: int  # offset in the expression

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None


_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_MATCHER = re.compile(r"\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"
                      r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?")
_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LIST_KEYWORDS | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
                              "Inf", "NaN"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


def _skip_string(expr: str, i: int) -> int:
    quote, i = expr[i], i + 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {expr!r}")


def _close(expr: str, i: int, opening: str, closing: str) -> int:
    """Index after the bracket matching the one at ``i`` (strings skipped)."""
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {opening}{closing} in {expr!r}")


def parse_matchers(text: str) -> tuple[tuple[str, str, str], ...]:
    out, pos = [], 0
    while pos < len(text) and text[pos:].strip():
        m = _MATCHER.match(text, pos)
        if not m:
            raise ValueError(f"cannot read label matchers {text!r}")
        out.append((m.group(1), m.group(2), m.group(3)[1:-1]))
        pos = m.end()
    return tuple(out)


def selectors(expr: str) -> list[Selector]:
    """The series selectors of a PromQL expression (names, matchers, positions)."""
    out: list[Selector] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "[":
            i = _close(expr, i, "[", "]")
        elif c == "{":
            end = _close(expr, i, "{", "}")
            out.append(Selector("", parse_matchers(expr[i + 1:end - 1]), i))
            i = end
        elif c == "$" and (m := _GRAFANA_VAR.match(expr, i)):
            i = m.end()
        elif (m := _NUMBER.match(expr, i)) and not (i and (expr[i - 1].isalnum()
                                                          or expr[i - 1] == "_")):
            i = m.end()
        elif m := _IDENT.match(expr, i):
            word, j = m.group(0), m.end()
            k = j
            while k < n and expr[k].isspace():
                k += 1
            following = expr[k] if k < n else ""
            if word in _LIST_KEYWORDS and following == "(":
                i = _close(expr, k, "(", ")")
            elif word in _KEYWORDS or word in _AGGREGATIONS or following == "(":
                i = j
            elif following == "{":
                end = _close(expr, k, "{", "}")
                out.append(Selector(word, parse_matchers(expr[k + 1:end - 1]), m.start()))
                i = end
            else:
                out.append(Selector(word, (), m.start()))
                i = j
        else:
            i += 1
    return out


def calls(expr: str, functions: Iterable[str]) -> list[tuple[str, int, int]]:
    """(function, start, end) of every call to one of ``functions``."""
    names = "|".join(map(re.escape, functions))
    out = []
    for m in re.finditer(rf"(?<![\w:])({names})\s*\(", expr):
        out.append((m.group(1), m.start(), _close(expr, m.end() - 1, "(", ")")))
    return out


# --- declared series -----------------------------------------------------------------------

@dataclass(frozen=True)
class Documented:
    """The series a dashboard may read: the ones the series contract
    (``infrascope_core.contract``, which tests/test_contract.py holds every component and
    README to) declares by name, and Prometheus' own. A generated group of the agent
    (``node_disk_<field>_total``: whatever the kernel lists) promises no particular
    member; the rules pack's (``label_<key>:…``) has one per configured cost label, which
    the rules tests check."""

    def problem(self, name: str) -> str | None:
        if name == "up":  # Prometheus' own, per target
            return None
        declared = contract.lookup(name)
        if declared is None:
            return f"{name!r} is not a documented series (typo?)"
        if declared.generated and contract.AGENT in declared.emitted_by:
            return (f"{name!r} only matches the documented family {declared.name!r}: "
                    "declare the series itself in the contract")
        return None


@cache
def documented_series() -> Documented:
    return Documented()


def expected_jobs() -> dict[str, str]:
    jobs = yaml.safe_load((REPO / "prometheus" / "config.yaml").read_text())["jobs"]
    return {"exporter": jobs["exporter"], "agent": jobs["agent"],
            "recommender": jobs.get("recommender", RECOMMENDER_JOB)}


def job_of(name: str, jobs: Mapping[str, str]) -> str | None:
    """The job a raw series must be selected with; None: any job (``up``)."""
    if name.startswith("hetzner_"):
        return jobs["exporter"]
    if name.startswith(("node_", "infrascope_service_", "infrascope_listen_port_")):
        return jobs["agent"]
    if name.startswith("infrascope_recommend"):
        return jobs["recommender"]
    return None


# --- the rules -----------------------------------------------------------------------------

def lint_datasource_variables(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for uid, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables.get("datasource")
        if ds is None or ds["type"] != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{uid}: no `datasource` variable of type datasource (prometheus)")
        elif ds.get("label") != "Data source":
            problems.append(f"{uid}: the datasource variable is labelled {ds.get('label')!r}, "
                            "not 'Data source'")
        uses_infinity = INFINITY_PLUGIN in str(board["panels"]) + str(board["annotations"])
        inf = variables.get("infinity")
        if uses_infinity and (inf is None or inf["type"] != "datasource"
                              or inf.get("query") != INFINITY_PLUGIN):
            problems.append(f"{uid}: uses Infinity without an `infinity` datasource variable")
    return problems


def _datasource_refs(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{i}]")


def lint_datasources(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for uid, board in boards.items():
        for ann in board["annotations"]["list"]:
            if ann.get("builtIn") == 1:
                continue
            ds = ann.get("datasource", {})
            if ds.get("uid") != DATASOURCE_UIDS.get(ds.get("type", "")):
                problems.append(f"{uid}: annotation {ann['name']!r} datasource {ds!r} is not "
                                "a datasource variable")
        for where, ds in _datasource_refs({"panels": board["panels"],
                                           "templating": board["templating"]}, uid):
            if not isinstance(ds, dict) or ds.get("uid") != DATASOURCE_UIDS.get(
                    ds.get("type", "")):
                problems.append(f"{where}: datasource {ds!r} is hard-coded; use "
                                "${datasource} (Prometheus) or ${infinity}")
        for panel in panels(board):
            if panel["type"] in NO_QUERY_PANELS:
                continue
            for t in panel.get("targets", []):
                if t.get("datasource") != panel.get("datasource"):
                    problems.append(f"{uid}: panel {panel['title']!r} target {t.get('refId')} "
                                    "uses another datasource than its panel")
    return problems


def lint_rate_interval(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for board in boards.values():
        for q in prometheus_queries(board):
            for name, start, end in calls(q.expr, RATE_FUNCTIONS):
                ranges = re.findall(r"\[([^\]]*)\]", q.expr[start:end])
                if not ranges or any(r.strip() != "$__rate_interval" for r in ranges):
                    problems.append(f"{q.board}: {q.where}: {name}() range "
                                    f"{ranges} is not [$__rate_interval]")
    return problems


def lint_counters(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for board in boards.values():
        for q in prometheus_queries(board):
            spans = [(s, e) for _, s, e in calls(q.expr, RATE_FUNCTIONS)]
            for sel in selectors(q.expr):
                if sel.name.endswith("_total") and not any(s <= sel.start < e
                                                           for s, e in spans):
                    problems.append(f"{q.board}: {q.where}: counter {sel.name} read without "
                                    "rate/irate/increase")
    return problems


def lint_jobs(boards: Mapping[str, Json], jobs: Mapping[str, str]) -> list[str]:
    problems = []
    for board in boards.values():
        for q in prometheus_queries(board):
            for sel in selectors(q.expr):
                if not sel.name or ":" in sel.name:
                    continue  # recorded series carry no job
                job = sel.matcher("job")
                want = job_of(sel.name, jobs)
                if job is None:
                    problems.append(f"{q.board}: {q.where}: {sel.name} has no job matcher")
                elif want is not None and job != ("=", want):
                    problems.append(f"{q.board}: {q.where}: {sel.name} selects job "
                                    f"{job[0]}{job[1]!r}, expected ={want!r}")
    return problems


def lint_metric_names(boards: Mapping[str, Json], documented: Documented) -> list[str]:
    problems = []
    for board in boards.values():
        for q in prometheus_queries(board):
            for sel in selectors(q.expr):
                if not sel.name:
                    problems.append(f"{q.board}: {q.where}: selector without a metric name")
                    continue
                problem = documented.problem(sel.name)
                if problem:
                    problems.append(f"{q.board}: {q.where}: {problem}")
    return problems


def lint_panels(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for uid, board in boards.items():
        titles: set[str] = set()
        for panel in panels(board):
            title = panel.get("title", "").strip()
            kind = panel.get("type")
            where = f"{uid}: panel {title or panel.get('id')!r}"
            if kind not in PANEL_TYPES:
                problems.append(f"{where}: panel type {kind!r} not one of {sorted(PANEL_TYPES)}")
            if not title:
                problems.append(f"{where}: no title")
            if kind == "row":
                continue
            if title in titles:
                problems.append(f"{where}: title used twice on the board")
            titles.add(title)
            if not panel.get("description", "").strip():
                problems.append(f"{where}: no description")
            if kind in NO_QUERY_PANELS:
                continue
            if not panel.get("targets"):
                problems.append(f"{where}: no targets")
            field_config = panel.get("fieldConfig", {})
            units = [field_config.get("defaults", {}).get("unit")]
            units += [p["value"] for ov in field_config.get("overrides", [])
                      for p in ov["properties"] if p["id"] == "unit"]
            for unit in units:
                if unit not in VALID_UNITS:
                    problems.append(f"{where}: no or invalid unit {unit!r}")
    return problems


def lint_board_identity(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    if set(boards) != EXPECTED_UIDS:
        problems.append(f"dashboard uids {sorted(boards)} are not the fixed "
                        f"{sorted(EXPECTED_UIDS)}")
    titles: dict[str, str] = {}
    for key, board in boards.items():
        uid = board.get("uid", "")
        if uid != key or len(uid) > 40:
            problems.append(f"{key}: uid {uid!r} is not the fixed one (or longer than 40)")
        if board.get("title") in titles:
            problems.append(f"{key}: title {board.get('title')!r} also on {titles[board['title']]}")
        titles[board.get("title", "")] = key
        if board.get("editable") is not False:
            problems.append(f"{key}: editable is not false (provisioned boards are read-only)")
        if board.get("schemaVersion") != 39:
            problems.append(f"{key}: schemaVersion {board.get('schemaVersion')} is not 39")
        if "infrascope" not in board.get("tags", []):
            problems.append(f"{key}: no tag 'infrascope' (the boards' links list that tag)")
        if "__inputs" in board or "__requires" in board:
            problems.append(f"{key}: __inputs/__requires only work in the UI import flow")
        ids = [p.get("id") for p in panels(board)]
        if len(ids) != len(set(ids)) or None in ids:
            problems.append(f"{key}: panel ids missing or not unique")
        problems.extend(f"{key}: {p}" for p in _overlaps(panels(board)))
    return problems


def _overlaps(items: list[Json]) -> list[str]:
    problems: list[str] = []
    cells: dict[tuple[int, int], str] = {}
    for panel in items:
        g = panel["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"panel {panel['title']!r} leaves the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {panel['title']!r} overlaps {cells[x, y]!r}")
                    break
                cells[x, y] = panel["title"]
            else:
                continue
            break
    return problems


_VARIABLE_REF = re.compile(r"\$\{([^}:.\s]+)[^}]*\}|\$(\w+)|\[\[(\w+)\]\]")


def variable_refs(text: str) -> list[str]:
    refs = (m.group(1) or m.group(2) or m.group(3) for m in _VARIABLE_REF.finditer(text))
    return [r for r in refs if not r.isdigit()]  # $1: a regex group of label_replace


def lint_variables(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for uid, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        used: set[str] = set()
        for where, text in texts_with_variables(board):
            for ref in variable_refs(text):
                used.add(ref)
                if ref not in variables and ref not in GRAFANA_GLOBALS:
                    problems.append(f"{uid}: {where}: undefined variable ${ref}")
        for var in variables.values():
            name = var["name"]
            if name not in used:
                problems.append(f"{uid}: variable {name!r} is not used")
            if var["type"] != "query":
                continue
            if var.get("refresh") != 2:
                problems.append(f"{uid}: variable {name!r} does not refresh on time-range "
                                "change (refresh 2)")
            if var.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"{uid}: variable {name!r} does not query ${{datasource}}")
            single = name in SINGLE_VALUED.get(uid, set())
            multi = bool(var.get("multi")) and bool(var.get("includeAll"))
            if single and (var.get("multi") or var.get("includeAll")):
                problems.append(f"{uid}: variable {name!r} picks the one thing the board "
                                "shows: it must be single-valued")
            if not single and not (multi and var.get("allValue") == ".*"):
                problems.append(f"{uid}: filter variable {name!r} must be multi-valued with "
                                "All as '.*'")
        for q in prometheus_queries(board):
            for sel in selectors(q.expr):
                for label, op, value in sel.matchers:
                    for ref in variable_refs(value):
                        var = variables.get(ref)
                        if var is not None and var.get("multi") and op not in ("=~", "!~"):
                            problems.append(f"{uid}: {q.where}: multi-valued ${ref} used with "
                                            f"{label}{op}: use =~")
    return problems


def lint_links(boards: Mapping[str, Json]) -> list[str]:
    problems = []
    for uid, board in boards.items():
        if not any(link.get("type") == "dashboards" for link in board.get("links", [])):
            problems.append(f"{uid}: no link to the other InfraScope boards")
        for where, link in links(board):
            url = link.get("url", "")
            if link.get("type") == "dashboards":
                if not (link.get("keepTime") and link.get("includeVars")):
                    problems.append(f"{uid}: {where}: {link.get('title')!r} does not keep the "
                                    "time range and variables")
                continue
            if url.startswith("/d/"):
                target_uid = url.split("/")[2]
                if target_uid not in boards:
                    problems.append(f"{uid}: {where}: link to unknown board {target_uid!r}")
                    continue
                for needed in ("${__url_time_range}", "${datasource:queryparam}"):
                    if needed not in url:
                        problems.append(f"{uid}: {where}: link {url!r} lacks {needed}")
                target_vars = {v["name"] for v in boards[target_uid]["templating"]["list"]}
                for var in re.findall(r"var-(\w+)=", url):
                    if var not in target_vars:
                        problems.append(f"{uid}: {where}: {target_uid} has no variable {var}")
            elif url.startswith("https://") or url == "${__value.raw}":
                if not link.get("targetBlank"):
                    problems.append(f"{uid}: {where}: external link {url!r} should open a tab")
            else:
                problems.append(f"{uid}: {where}: link {url!r} is neither a board nor https")
    return problems


def lint_all(boards: Mapping[str, Json], jobs: Mapping[str, str] | None = None,
             documented: Documented | None = None) -> list[str]:
    return [*lint_board_identity(boards), *lint_datasource_variables(boards),
            *lint_datasources(boards), *lint_rate_interval(boards), *lint_counters(boards),
            *lint_jobs(boards, jobs or expected_jobs()),
            *lint_metric_names(boards, documented or documented_series()),
            *lint_panels(boards), *lint_variables(boards), *lint_links(boards)]
