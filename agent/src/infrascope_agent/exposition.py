"""Text exposition (format 0.0.4), byte-for-byte what prometheus-client renders.

``prometheus_client.generate_latest`` validates and escapes every metric and label
name on every sample line (since 0.22 it supports UTF-8 names); on the agent's
~230 series that is about two thirds of a scrape's CPU. Our collectors emit only
legacy-valid names (a test checks it), so the families are written with
:mod:`infrascope_core.exposition` — InfraScope's one writer of the format, whose
names are checked once per distinct name and whose values are written as
prometheus-client writes them. ``tests/test_agent_exposition.py`` asserts the output
equals ``generate_latest`` for the agent's full registry and for edge cases; anything
that is not a plain counter/gauge/untyped/info/stateset family (histograms,
summaries, OpenMetrics-only samples, names outside the legacy character set) falls
back to prometheus-client itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from infrascope_core.exposition import family_header, is_metric_name, sample_line

_SIMPLE_TYPES = {"counter", "gauge", "unknown", "info", "stateset"}
_TYPE_NAMES = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}


class _Fallback(Exception):
    """The family needs prometheus-client's full renderer."""


def _family(metric: Metric) -> list[str]:
    mtype = metric.type
    if mtype not in _SIMPLE_TYPES:
        raise _Fallback
    mname = metric.name + ("_total" if mtype == "counter" else "_info" if mtype == "info"
                           else "")
    if not is_metric_name(mname):
        raise _Fallback
    out = [family_header(mname, _TYPE_NAMES.get(mtype, mtype), metric.documentation)]
    created = metric.name + "_created"
    try:
        for s in metric.samples:
            name = s.name
            if name == created or s.timestamp is not None or s.exemplar is not None:
                raise _Fallback
            if name != mname and not is_metric_name(name):
                raise _Fallback
            out.append(sample_line(name, s.labels, s.value, sort=True))
    except ValueError:  # a label name outside the legacy set: prometheus-client quotes it
        raise _Fallback from None
    return out


def render(registry: CollectorRegistry) -> bytes:
    """The registry's exposition, equal to ``generate_latest(registry)``."""
    output: list[str] = []
    for metric in registry.collect():
        try:
            output.extend(_family(metric))
        except _Fallback:
            output.append(generate_latest(_One(metric)).decode("utf-8"))  # type: ignore[arg-type]
    return "".join(output).encode("utf-8")


class _One:
    """A collector yielding one family (for the fallback path)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]
