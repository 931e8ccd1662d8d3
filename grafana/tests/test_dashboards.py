"""The committed dashboards: up to date, lint-clean, every query valid PromQL over
documented series, provisioning consistent with them.

Regenerate after a change: `.venv/bin/python grafana/dashboards/generate.py`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboards_lint import (
    DASHBOARDS_DIR,
    GENERATOR,
    PROVISIONING_DIR,
    REPO,
    Documented,
    documented_series,
    expected_jobs,
    generator,
    label_values_selector,
    lint_all,
    panels,
    selectors,
)

from infrascope_core.prometheus import Promtool

Json = dict[str, Any]


def boards() -> dict[str, Json]:
    return generator().committed()


def panel(board: Json, title: str) -> Json:
    return next(p for p in panels(board) if p.get("title") == title and p["type"] != "row")


# --- generated files ---------------------------------------------------------------------

def test_committed_dashboards_are_not_stale() -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    assert files == ["cost.json", "fleet.json", "recommendations.json", "server.json"]


@pytest.mark.parametrize(("damage", "culprit"), [
    (lambda d: (d / "server.json").write_text("{}\n"), "server.json"),
    (lambda d: (d / "cost.json").unlink(), "cost.json"),
    (lambda d: (d / "old-board.json").write_text("{}\n"), "old-board.json"),
])
def test_check_mode_fails_on_stale_files(tmp_path: Path, damage: Callable[[Path], Any],
                                         culprit: str) -> None:
    out = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS_DIR, out, ignore=shutil.ignore_patterns("*.py", "*.md"))
    check = [sys.executable, str(GENERATOR), "--check", "--output-dir", str(out)]
    assert subprocess.run(check, capture_output=True, timeout=60).returncode == 0
    damage(out)
    proc = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert culprit in proc.stderr


def test_json_is_stable_and_sorted() -> None:
    gen = generator()
    for name in gen.FILES.values():
        text = (DASHBOARDS_DIR / name).read_text()
        assert gen.render(json.loads(text)) == text, f"{name} is not sorted/indented JSON"


def test_job_names_come_from_the_rules_pack_config(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "prometheus" / "config.yaml").read_text())
    cfg["jobs"] = {"exporter": "hcloud", "agent": "node", "recommender": "recs"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert generator().main(["--output-dir", str(out), "--prometheus-config", str(path)]) == 0
    text = "".join(p.read_text() for p in sorted(out.glob("*.json")))
    for old in ("hetzner", "infrascope-agent", "infrascope-recommender"):
        assert f'job=\\"{old}\\"' not in text
    for new in ("hcloud", "node", "recs"):
        assert f'job=\\"{new}\\"' in text
    renamed = {json.loads(p.read_text())["uid"]: json.loads(p.read_text())
               for p in out.glob("*.json")}
    assert lint_all(renamed, jobs={"exporter": "hcloud", "agent": "node",
                                   "recommender": "recs"}) == []


def test_generator_reads_the_same_jobs_as_the_lint() -> None:
    jobs = generator().Jobs.load()
    assert {"exporter": jobs.exporter, "agent": jobs.agent,
            "recommender": jobs.recommender} == expected_jobs()


# --- lint --------------------------------------------------------------------------------

def test_dashboards_pass_the_lint() -> None:
    assert lint_all(boards()) == []


def _first_prom_target(board: Json) -> Json:
    return next(t for p in panels(board) for t in p.get("targets", []) if "expr" in t)


def _set_expr(title: str, expr: str) -> Callable[[dict[str, Json]], None]:
    def edit(b: dict[str, Json]) -> None:
        for board in b.values():
            for p in panels(board):
                if p.get("title") == title:
                    p["targets"][0]["expr"] = expr
                    return
        raise AssertionError(f"no panel {title!r}")
    return edit


def _server(b: dict[str, Json]) -> Json:
    return b["infrascope-server"]


BROKEN: list[tuple[str, Callable[[dict[str, Json]], None], str]] = [
    ("hard-coded panel datasource",
     lambda b: panel(_server(b), "Load average").update(
         datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}), "is hard-coded"),
    ("hard-coded target datasource",
     lambda b: _first_prom_target(b["infrascope-cost"]).update(
         datasource={"type": "prometheus", "uid": "prometheus"}), "is hard-coded"),
    ("no datasource variable",
     lambda b: b["infrascope-cost"]["templating"].update(list=[]),
     "no `datasource` variable"),
    ("rate over a fixed range",
     _set_expr("Load average",
               'sum(rate(node_cpu_seconds_total{job="infrascope-agent"}[5m]))'),
     "is not [$__rate_interval]"),
    ("increase over a fixed range",
     _set_expr("Regenerations", 'sum(increase(infrascope_recommender_runs_total'
               '{job="infrascope-recommender"}[1h]))'), "is not [$__rate_interval]"),
    ("counter without rate",
     _set_expr("Load average", 'node_network_receive_bytes_total{job="infrascope-agent"}'),
     "read without rate"),
    ("raw series without job",
     _set_expr("Load average", 'node_load1{source="$source", server_id="$server_id"}'),
     "has no job matcher"),
    ("raw series of the wrong job",
     _set_expr("Load average", 'node_load1{job="hetzner", server_id="$server_id"}'),
     "expected ='infrascope-agent'"),
    ("typo'd series",
     _set_expr("Load average", 'node_laod1{job="infrascope-agent", server_id="$server_id"}'),
     "'node_laod1' is not a documented series"),
    ("typo'd recorded series",
     _set_expr("Monthly cost trend", ":monthly_cost_euro:avg1d"),
     "':monthly_cost_euro:avg1d' is not a documented series"),
    ("undocumented member of a documented family",
     _set_expr("Load average", 'rate(node_disk_reeds_completed_total{job="infrascope-agent"}'
               "[$__rate_interval])"), "declare the series itself in the contract"),
    ("missing unit",
     lambda b: panel(_server(b), "Load average")["fieldConfig"]["defaults"].pop("unit"),
     "no or invalid unit None"),
    ("invalid unit",
     lambda b: panel(_server(b), "Load average")["fieldConfig"]["defaults"].update(
         unit="euros"), "no or invalid unit 'euros'"),
    ("missing description",
     lambda b: panel(_server(b), "Load average").update(description=""), "no description"),
    ("missing title", lambda b: panel(_server(b), "Load average").update(title=""),
     "no title"),
    ("no targets", lambda b: panel(_server(b), "Load average").update(targets=[]),
     "no targets"),
    ("uid changed", lambda b: _server(b).update(uid="server-detail"), "is not the fixed one"),
    ("editable board", lambda b: _server(b).update(editable=True), "editable is not false"),
    ("overlapping panels",
     lambda b: panel(_server(b), "Load average")["gridPos"].update(x=0), "overlaps"),
    ("undefined variable",
     _set_expr("Load average", 'node_load1{job="infrascope-agent", server_id="$servr_id"}'),
     "undefined variable $servr_id"),
    ("unused variable",
     lambda b: b["infrascope-cost"]["templating"]["list"].append(
         dict(b["infrascope-fleet"]["templating"]["list"][2])), "'location' is not used"),
    ("multi-valued variable in an equality matcher",
     _set_expr("Monthly cost (selected servers)",
               'sum(location:monthly_cost_euros:sum{location="$location"})'),
     "multi-valued $location used with location="),
    ("filter variable without All",
     lambda b: b["infrascope-fleet"]["templating"]["list"][2].update(includeAll=False),
     "must be multi-valued"),
    ("server picked by a multi-valued variable",
     lambda b: _server(b)["templating"]["list"][3].update(multi=True),
     "must be single-valued"),
    ("variable not refreshed on time-range change",
     lambda b: b["infrascope-fleet"]["templating"]["list"][1].update(refresh=1),
     "does not refresh on time-range change"),
    ("board link forgets the time range",
     lambda b: b["infrascope-cost"]["links"][0].update(keepTime=False),
     "does not keep the time range"),
    ("data link forgets the time range",
     lambda b: panel(b["infrascope-cost"], "Most expensive servers")["fieldConfig"][
         "defaults"]["links"][0].update(url="/d/infrascope-server/x?var-server_id=1"),
     "lacks ${__url_time_range}"),
    ("data link to a variable the target lacks",
     lambda b: panel(b["infrascope-cost"], "Most expensive servers")["fieldConfig"][
         "defaults"]["links"][0].update(
         url="/d/infrascope-server/x?${datasource:queryparam}&var-host=a&${__url_time_range}"),
     "infrascope-server has no variable host"),
]


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_lint_catches(edit: Callable[[dict[str, Json]], None], message: str) -> None:
    broken = copy.deepcopy(boards())
    edit(broken)
    problems = lint_all(broken)
    assert any(message in p for p in problems), "\n".join(problems) or "no problem found"


def test_series_parsing_reads_every_component() -> None:
    doc: Documented = documented_series()
    for name in ("hetzner_server_info", "hetzner_server_type_memory_bytes",  # exporter
                 "node_filesystem_avail_bytes", "node_network_transmit_packets_total",
                 "infrascope_service_info", "infrascope_listen_port_info",  # agent
                 "source_server_id:utilisation:tier30d", ":monthly_cost_euros:avg1d",  # rules
                 "infrascope_recommendations", "infrascope_recommender_runs_total"):
        assert doc.problem(name) is None, name
    assert doc.problem("node_memory_MemAvailable_bytes") is None  # read by the rules
    assert doc.problem("node_disk_written_bytes_total") is None  # a diskstats member
    assert "documented family" in (doc.problem("node_disk_bogus_total") or "")
    assert "not a documented series" in (doc.problem("hetzner_server_cost") or "")


def test_selector_scanner() -> None:
    expr = ('sum by (tier) (a:b:c{x=~"$v"} * on (source) group_left (tier) '
            '(0 * rate(node_x_total{job="j", mode!="idle"}[$__rate_interval]) + 1)) '
            'or label_replace(vector(0), "item", "$1", "kind", "(.*)") or up')
    found = [(s.name, s.matchers) for s in selectors(expr)]
    assert found == [("a:b:c", (("x", "=~", "$v"),)),
                     ("node_x_total", (("job", "=", "j"), ("mode", "!=", "idle"))),
                     ("up", ())]


# --- PromQL validity (promtool) ---------------------------------------------------------

def promtool_check(promtool: Promtool, exprs: list[tuple[str, str]], tmp_path: Path
                   ) -> tuple[bool, str]:
    """Parse expressions with promtool: as recording rules of a temporary rule file
    (promtool has no command checking a bare expression)."""
    rules = [{"record": f"grafana_dashboard_query_{i}", "expr": expr}
             for i, (_, expr) in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = promtool.check_rules(path, lint="none")
    out = proc.stdout + proc.stderr
    legend = "\n".join(f"grafana_dashboard_query_{i}: {where}" for i, (where, _) in
                       enumerate(exprs) if f"rule {i + 1}," in out or f"_{i}\"" in out)
    return proc.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in out, out + legend


def all_substituted_queries() -> list[tuple[str, str]]:
    gen = generator()
    out = [(f"{q.dashboard}: panel {q.panel!r} {q.ref_id}", q.expr)
           for q in gen.panel_queries()]
    out += [(f"{v.dashboard}: variable {v.variable!r}", label_values_selector(v.query))
            for v in gen.variable_queries()]
    return out


def test_every_query_parses(promtool: Promtool, tmp_path: Path) -> None:
    exprs = all_substituted_queries()
    assert len(exprs) > 100
    ok, out = promtool_check(promtool, exprs, tmp_path)
    assert ok, out


def test_promtool_check_rejects_a_broken_query(promtool: Promtool, tmp_path: Path) -> None:
    exprs = all_substituted_queries()
    exprs[7] = ("broken", "sum(rate(node_load1[5m])")
    ok, out = promtool_check(promtool, exprs, tmp_path)
    assert not ok
    assert "grafana_dashboard_query_7: broken" in out


# --- helpers for the demo test ------------------------------------------------------------

def test_panel_queries_cover_every_prometheus_target() -> None:
    gen = generator()
    queries = gen.panel_queries()
    targets = [(b["uid"], p["title"], t["refId"]) for b in boards().values()
               for p in panels(b) for t in p.get("targets", [])
               if t["datasource"]["type"] == "prometheus"]
    assert sorted((q.dashboard, q.panel, q.ref_id) for q in queries) == sorted(targets)
    for q in queries:
        assert "$" not in q.expr.replace('"$1"', ""), q  # every variable substituted
    assert 'server_id="1"' in " ".join(q.expr for q in queries)
    chosen = gen.panel_queries(values={"source": "dedicated", "server_id": "2391001",
                                       "__rate_interval": "2m"})
    server = [q.expr for q in chosen if q.dashboard == "infrascope-server"]
    assert all('server_id="1"' not in e for e in server)
    assert any('source="dedicated", server_id="2391001"' in e for e in server)
    assert any("[2m]" in e for e in server)
    every_panel = {(b["uid"], p["title"]) for b in boards().values() for p in panels(b)
                   if p["type"] not in ("row", "text") and p["datasource"]["type"] == "prometheus"}
    assert {(q.dashboard, q.panel) for q in queries} == every_panel


#: The Hetzner Cloud API's own measurements, shown on the Server board next to the
#: agent's: no provider-neutral counterpart (another provider measures other things, or
#: nothing), so they stay the exporter's series (grafana/dashboards/README.md).
PROVIDER_MEASUREMENTS = {"hetzner_server_cpu_cores_used", "hetzner_server_disk_iops",
                         "hetzner_server_disk_bandwidth_bytes_per_second",
                         "hetzner_server_network_bandwidth_bytes_per_second",
                         "hetzner_server_network_packets_per_second"}


def test_inventory_cost_and_catalogue_come_from_the_neutral_layer() -> None:
    """No query reads a provider's own series but its Cloud measurements."""
    gen = generator()
    exprs = [(q.dashboard, q.panel, q.expr) for q in gen.panel_queries()]
    exprs += [(v.dashboard, v.variable, v.query) for v in gen.variable_queries()]
    native = sorted({(board, where, name) for board, where, expr in exprs
                     for name in re.findall(r"(?<![\w:])(hetzner_[a-z_]+)", expr)
                     if name not in PROVIDER_MEASUREMENTS})
    assert native == []
    assert any(":normalised" in expr for _, _, expr in exprs)


def test_variable_queries() -> None:
    got = {(v.dashboard, v.variable): v.query for v in generator().variable_queries()}
    assert got[("infrascope-server", "server_id")] == (
        'label_values(source_server_id:server_info:normalised{source="cloud"}, server_id)')
    assert got[("infrascope-fleet", "env")] == (
        "label_values(source_server_id:server_labels:normalised, label_env)")
    for query in got.values():
        label_values_selector(query)  # every one is label_values(<selector>, <label>)


# --- what the boards show -----------------------------------------------------------------

def test_fleet_table_links_rows_to_the_server_board_and_hetzner() -> None:
    table = panel(boards()["infrascope-fleet"], "Servers")
    assert table["type"] == "table"
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in table["fieldConfig"]["overrides"]}
    (server_link,) = overrides["Name"]["links"]
    assert server_link["url"] == (
        "/d/infrascope-server/infrascope-server?${datasource:queryparam}"
        "&var-source=${__data.fields.source}&var-server_id=${__data.fields.server_id}"
        "&${__url_time_range}")
    (console,) = overrides["Hetzner console"]["links"]
    assert console["url"] == "${__value.raw}" and console["targetBlank"]
    exprs = [t["expr"] for t in table["targets"]]
    for expr in exprs:  # the console column is computed per row from the source
        assert '"console", "https://console.hetzner.cloud/projects", "source", "cloud"' in expr
        assert '"console", "https://robot.hetzner.com/server", "source", "dedicated"' in expr
    rename = table["transformations"][1]["options"]["renameByName"]
    assert {"Name", "Type", "Location", "Monthly cost", "CPU avg", "CPU peak", "Memory avg",
            "Memory peak", "Tier", "Hetzner console"} <= set(rename.values())
    # merge joins rows on identical labels: every query must return the same label set
    by = {re.match(r"max by \(([^)]*)\)", e).group(1) for e in exprs}  # type: ignore[union-attr]
    assert by == {"source, server_id, server_name, server_type, location, console"}


def test_fleet_filters_apply_to_per_server_panels() -> None:
    board = boards()["infrascope-fleet"]
    for title in ("Monthly cost (selected servers)", "Spent on idle servers",
                  "Number of servers", "Idle servers", "Servers by tier", "Servers"):
        for t in panel(board, title)["targets"]:
            for var in ("$source", "$location", "$project", "$env"):
                assert var in t["expr"], (title, var)


def test_server_board_overlays_30_day_figures_and_annotates_recommendations() -> None:
    board = boards()["infrascope-server"]
    for title, metric in (("CPU utilisation", "cpu"), ("Memory utilisation", "memory")):
        exprs = [t["expr"] for t in panel(board, title)["targets"]]
        for figure in ("ratio", "avg30d", "max30d", "p95_30d"):
            assert any(f"source_server_id:{metric}_utilisation:{figure}{{" in e
                       for e in exprs), (title, figure)
    (ann,) = [a for a in board["annotations"]["list"] if not a.get("builtIn")]
    target = ann["target"]
    assert ann["datasource"] == {"type": "yesoreyeram-infinity-datasource",
                                 "uid": "${infinity}"}
    assert target["url"] == "/api/annotations" and target["type"] == "json"
    params = {p["key"]: p["value"] for p in target["url_options"]["params"]}
    assert params == {"server": "${source}/${server_id}", "from": "${__from}", "to": "${__to}"}
    columns = {c["selector"]: c["type"] for c in target["columns"]}
    assert columns == {"time": "timestamp_epoch", "timeEnd": "timestamp_epoch",
                       "title": "string", "text": "string", "tags": "string"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["server_id"]["query"]["query"].startswith(
        'label_values(source_server_id:server_info:normalised{source="$source"}')


def test_cost_trend_reads_12_months_of_the_daily_series() -> None:
    board = boards()["infrascope-cost"]
    for title in ("Monthly cost trend", "Trend by label project", "Trend by env"):
        p = panel(board, title)
        assert p["timeFrom"] == "12M" and p["interval"] == "1d"
        assert ":monthly_cost_euros:avg1d" in p["targets"][0]["expr"]


def test_infinity_queries_match_the_recommender_api() -> None:
    """The Infinity columns are fields the recommender's API models declare."""
    api = pytest.importorskip("infrascope_recommender.api")
    annotation_fields = set(api.AnnotationModel.model_fields)
    recommendation_fields = set(api.RecommendationModel.model_fields)
    assert "items" in api.RecommendationList.model_fields
    for board in boards().values():
        for ann in board["annotations"]["list"]:
            if "target" in ann:
                assert {c["selector"] for c in ann["target"]["columns"]} <= annotation_fields
        for p in panels(board):
            for t in p.get("targets", []):
                if t.get("url") == "/api/recommendations":
                    assert t["root_selector"] == "items"
                    assert {c["selector"] for c in t["columns"]} <= recommendation_fields


# --- provisioning ------------------------------------------------------------------------

def test_datasource_provisioning_matches_the_boards() -> None:
    config = yaml.safe_load((PROVISIONING_DIR / "datasources" / "infrascope.yml").read_text())
    assert config["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    infinity = by_uid["infinity"]
    assert infinity["type"] == "yesoreyeram-infinity-datasource"
    from infrascope_recommender.config import DEFAULT_LISTEN

    assert infinity["url"].endswith(":" + DEFAULT_LISTEN.rsplit(":", 1)[1])
    for board in boards().values():
        for var in board["templating"]["list"]:
            if var["type"] == "datasource":
                assert var["query"] in {ds["type"] for ds in config["datasources"]}


def test_dashboard_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "infrascope.yml").read_text())
    (provider,) = config["providers"]
    assert config["apiVersion"] == 1
    assert provider["type"] == "file" and provider["folder"] == "InfraScope"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/infrascope"


def test_readme_lists_every_panel() -> None:
    readme = (DASHBOARDS_DIR / "README.md").read_text()
    for board in boards().values():
        for p in panels(board):
            if p["type"] not in ("row", "text"):
                assert f"| {p['title']} |" in readme, f"README misses panel {p['title']!r}"
