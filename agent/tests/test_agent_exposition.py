"""The agent's fast text renderer equals prometheus-client's ``generate_latest``."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from infrascope_agent.collectors import build
from infrascope_agent.exposition import render
from infrascope_agent.registry import Registry, Settings


class Static(Collector):
    def __init__(self, *metrics: object) -> None:
        self.metrics = metrics

    def collect(self):  # type: ignore[no-untyped-def]
        return list(self.metrics)


def registry_of(*metrics: object) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Static(*metrics))
    return reg


def test_full_agent_registry_renders_identically() -> None:
    reg = CollectorRegistry(auto_describe=False)
    collectors = build(Settings(), None)
    # One collection feeds both renderers: a live registry changes between two scrapes.
    metrics = list(Registry(collectors, timeout=10).collect())
    assert len(metrics) > 20
    reg.register(Static(*metrics))
    ours, theirs = render(reg), generate_latest(reg)
    assert ours == theirs
    assert ours.count(b"\n") > 100


def test_edge_values_and_labels() -> None:
    g = GaugeMetricFamily("edge_value", 'doc with \\ backslash\nand newline', labels=["a", "b"])
    values = [0.0, -0.0, 1.0, -1.5, 1e-9, 123456.0, 1234567.0, 12345678.9, 1e21, -1e21,
              math.inf, -math.inf, math.nan, 3, 2**53 + 1, 0.1 + 0.2]
    for i, v in enumerate(values):
        g.add_metric([f"v{i}", 'quote " back \\ nl \n ü'], v)
    c = CounterMetricFamily("edge_requests", "Requests.", labels=["code"])
    c.add_metric(["200"], 10)
    c.add_metric(["500"], 1.5)
    u = UnknownMetricFamily("edge_untyped", "Untyped.", value=7)
    i = InfoMetricFamily("edge_build", "Build.", value={"version": "1.0", "rev": "abc"})
    s = StateSetMetricFamily("edge_state", "State.", value={"a": True, "b": False})
    h = HistogramMetricFamily("edge_hist", "Hist.", buckets=[("1", 1), ("+Inf", 2)], sum_value=3)
    sm = SummaryMetricFamily("edge_summary", "Summary.", count_value=2, sum_value=1.5)
    created = CounterMetricFamily("edge_created", "With created.", created=1700000000.0, value=1)
    stamped = GaugeMetricFamily("edge_stamped", "Timestamped.")
    stamped.add_metric([], 1.0, timestamp=1700000000.5)
    reg = registry_of(g, c, u, i, s, h, sm, created, stamped)
    assert render(reg) == generate_latest(reg)


def test_unusual_label_name_falls_back() -> None:
    from prometheus_client.samples import Sample

    g = GaugeMetricFamily("edge_utf8", "UTF-8 label name.")
    g.samples.append(Sample("edge_utf8", {"bad.name": "x", "ok": "y"}, 1.0))
    reg = registry_of(g)
    assert render(reg) == generate_latest(reg)
