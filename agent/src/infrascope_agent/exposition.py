"""Text exposition (format 0.0.4), byte-for-byte what prometheus-client renders.

``prometheus_client.generate_latest`` validates and escapes every metric and label
name on every sample line (since 0.22 it supports UTF-8 names); on the agent's
~230 series that is about two thirds of a scrape's CPU. Our collectors emit only
legacy-valid names (a test checks it), so names are rendered once per family and
label names are checked once per distinct name; label values are escaped as the
format requires. ``tests/test_agent_exposition.py`` asserts the output equals
``generate_latest`` for the agent's full registry and for edge cases; anything
that is not a plain counter/gauge/untyped/info/stateset family (histograms,
summaries, OpenMetrics-only samples) falls back to prometheus-client itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SIMPLE_TYPES = {"counter", "gauge", "unknown", "info", "stateset"}
_TYPE_NAMES = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}


class _Fallback(Exception):
    """The family needs prometheus-client's full renderer."""


def _value(v: float) -> str:
    if type(v) is float and v == v and v not in (float("inf"), float("-inf")):
        s = repr(v)
        if not (v > 0 and s.find(".") > 6):
            return s
    return str(floatToGoString(v))


def _escape_value(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _family(metric: Metric, label_ok: dict[str, bool]) -> list[str]:
    mtype = metric.type
    if mtype not in _SIMPLE_TYPES:
        raise _Fallback
    mname = metric.name + ("_total" if mtype == "counter" else "_info" if mtype == "info"
                           else "")
    if not _LEGACY_NAME.match(mname):
        raise _Fallback
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out = [f"# HELP {mname} {doc}\n# TYPE {mname} {_TYPE_NAMES.get(mtype, mtype)}\n"]
    created = metric.name + "_created"
    for s in metric.samples:
        name = s.name
        if name == created or s.timestamp is not None or s.exemplar is not None:
            raise _Fallback
        if name != mname and not _LEGACY_NAME.match(name):
            raise _Fallback
        labels = s.labels
        if labels:
            parts = []
            for k in sorted(labels):
                ok = label_ok.get(k)
                if ok is None:
                    ok = label_ok[k] = bool(_LEGACY_LABEL.match(k))
                if not ok:
                    raise _Fallback
                parts.append(f'{k}="{_escape_value(labels[k])}"')
            out.append(f"{name}{{{','.join(parts)}}} {_value(s.value)}\n")
        else:
            out.append(f"{name} {_value(s.value)}\n")
    return out


def render(registry: CollectorRegistry) -> bytes:
    """The registry's exposition, equal to ``generate_latest(registry)``."""
    output: list[str] = []
    label_ok: dict[str, bool] = {}
    for metric in registry.collect():
        try:
            output.extend(_family(metric, label_ok))
        except _Fallback:
            output.append(generate_latest(_One(metric)).decode("utf-8"))  # type: ignore[arg-type]
    return "".join(output).encode("utf-8")


class _One:
    """A collector yielding one family (for the fallback path)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]
