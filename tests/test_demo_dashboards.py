"""The dashboards against the demo's Prometheus: no empty panel, no empty variable.

Every panel query of every committed board (``generate.panel_queries()``) runs against
the running demo (the stack of ``test_demo.py``, shared) over the board's own default
time range — instant queries at now, the others as range queries — and every panel must
show data (a panel shows data when any of its queries does). Every variable query
(``generate.variable_queries()``) must return values. The Server board is filled in for
``shop-db-1``, a Cloud server with an agent and a pending recommendation (see
grafana/dashboards/README.md). The boards also pass our own lint after the main
grafana/dashboard-linter rules (grafana/tests/dashboards_lint.py).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_demo import DemoStack, needs_binaries, shared_demo

# The first test waits for the demo to start (about a minute; more on a busy machine).
pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
SERVER = {"source": "cloud", "server_id": "41000103", "server_name": "shop-db-1"}
POINTS = 250  # points per range query, about what a panel asks for


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ beside the generator
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


GENERATE = load(ROOT / "grafana" / "dashboards" / "generate.py", "infrascope_demo_generate")


@pytest.fixture(scope="module")
def demo(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    yield from shared_demo(request, tmp_path_factory)


def seconds(text: str) -> int:
    m = re.fullmatch(r"now-(\d+)([mhdw])", text)
    assert m, text
    return int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def board_range(board: dict[str, Any]) -> float:
    assert board["time"]["to"] == "now"
    return seconds(board["time"]["from"])


def has_data(demo: DemoStack, expr: str, instant: bool, span: float) -> bool:
    now = time.time()
    if instant:
        result = demo.prom("/api/v1/query", query=expr, time=str(now))["result"]
    else:
        step = max(60, int(span / POINTS))
        result = demo.prom("/api/v1/query_range", query=expr, start=str(now - span),
                           end=str(now), step=str(step))["result"]
    if isinstance(result, list):
        return any(r.get("value") or r.get("values") for r in result)
    return bool(result)  # a scalar


@needs_binaries
def test_every_panel_of_every_board_shows_data(demo: DemoStack) -> None:
    boards = GENERATE.committed()
    queries = GENERATE.panel_queries(boards, values=SERVER)
    assert {q.dashboard for q in queries} == {"infrascope-fleet", "infrascope-server",
                                              "infrascope-cost", "infrascope-recommendations"}
    # the check can fail: a series nobody writes shows no data
    assert not has_data(demo, 'up{job="no-such-job"}', True, 3600)
    assert not has_data(demo, 'up{job="no-such-job"}', False, 3600)
    panels: dict[tuple[str, str], bool] = {}
    for q in queries:
        key = (q.dashboard, q.panel)
        if panels.get(key):
            continue
        panels[key] = has_data(demo, q.expr, q.instant, board_range(boards[q.dashboard]))
    empty = sorted(k for k, ok in panels.items() if not ok)
    assert empty == [], f"{len(empty)} of {len(panels)} panels without data: {empty}"
    # Every panel with a Prometheus query was run (text panels and the Infinity-only
    # table read the recommender's API, checked in test_demo.py).
    prom_panels = {(uid, p["title"]) for uid, b in boards.items() for p in GENERATE.panels(b)
                   if any(t.get("datasource", {}).get("type") == "prometheus"
                          for t in p.get("targets", []))}
    assert set(panels) == prom_panels
    assert len(panels) >= 60


@needs_binaries
def test_every_variable_query_returns_values(demo: DemoStack) -> None:
    boards = GENERATE.committed()
    variables = GENERATE.variable_queries(boards, values=SERVER)
    assert variables
    now = time.time()
    for v in variables:
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v.query.strip(), re.S)
        assert m, v.query
        selector, label = m.group(1), m.group(2)
        span = board_range(boards[v.dashboard])
        values = demo.prom(f"/api/v1/label/{label}/values", **{
            "match[]": selector, "start": str(now - span), "end": str(now)})
        assert values, f"{v.dashboard} variable {v.variable}: {v.query} has no values"
        if v.dashboard == "infrascope-server" and v.variable in SERVER:
            assert SERVER[v.variable] in values, (v.variable, values)


def test_boards_pass_our_dashboard_linter() -> None:
    lint = load(ROOT / "grafana" / "tests" / "dashboards_lint.py", "infrascope_demo_lint")
    assert lint.lint_all(GENERATE.committed()) == []
